"""`python -m stagedsl` is the `staged` command."""

from stagedsl.cli.app import main

if __name__ == "__main__":
    main()
