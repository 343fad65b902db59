"""A member's own process: ``python -m stagedsl.matrix.worker RUN_DIR MEMBER [--resume] [--device D]``.

Started by `stagedsl.matrix.jobs` for ``--jobs N > 1``. It loads the registry the usual
way (built-ins and installed plugins; pieces registered only inside the calling Python
process are not there), trains the member with `run_member` and exits 0 whatever the
member's outcome (written to ``jobs/<member>.result.json``); 128 + N when a signal
stopped it (after saving).
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    """Train one member of the matrix run directory; the exit code says only whether the process was stopped."""
    parser = argparse.ArgumentParser(prog="python -m stagedsl.matrix.worker")
    parser.add_argument("run_dir")
    parser.add_argument("member")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)

    from stagedsl.matrix.jobs import worker_exit
    from stagedsl.matrix.layout import MatrixDir
    from stagedsl.matrix.members import run_member
    from stagedsl.registry import get_registry

    def work() -> str:
        result = run_member(MatrixDir(args.run_dir), args.member, resume=args.resume, device=args.device, registry=get_registry())
        return result["status"]

    return worker_exit(f"member {args.member}", work)


if __name__ == "__main__":
    sys.exit(main())
