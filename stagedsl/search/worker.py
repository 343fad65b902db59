"""A trial's own process: ``python -m stagedsl.search.worker RUN_DIR TRIAL [--device D]``.

Started by `stagedsl.search.runner` for ``--jobs N > 1``. It loads the registry the usual
way (built-ins and installed plugins), opens the study's storage when the study prunes (its
evaluations are reported there), runs the trial with `run_trial` and exits 0 whatever the
trial's outcome (written to ``jobs/<n>.result.json``); 128 + N when a signal stopped it
(after saving: the trial stays running in the study, and `staged search RUN_DIR` continues it).
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    """Run one trial of the search run directory; the exit code says only whether the process was stopped."""
    parser = argparse.ArgumentParser(prog="python -m stagedsl.search.worker")
    parser.add_argument("run_dir")
    parser.add_argument("trial", type=int)
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)

    from stagedsl.matrix.jobs import worker_exit
    from stagedsl.registry import get_registry
    from stagedsl.search.layout import SearchDir
    from stagedsl.search.study import NoReporter, open_study
    from stagedsl.search.trials import run_trial

    search_dir = SearchDir(args.run_dir)
    index = search_dir.read_index()
    with search_dir.trial_lock(args.trial) as held:
        if not held:
            print(f"trial {args.trial}: another process runs it", file=sys.stderr)
            return 0
        reporter = open_study(search_dir, index).reporter(args.trial) if index.get("pruner") else NoReporter()
        return worker_exit(f"trial {args.trial}", lambda: run_trial(search_dir, args.trial, registry=get_registry(), reporter=reporter,
                                                                    device=args.device)["state"])


if __name__ == "__main__":
    sys.exit(main())
