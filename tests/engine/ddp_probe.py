"""A `staged` program for distributed tests: ``python ddp_probe.py ARGS`` is ``staged ARGS`` with a probe registered.

`staged run --nproc 2` started from it starts it again in every process (the launcher runs
the script it was started as), so each process has the probe:

- ``STAGEDSL_TEST_PROBE_DIR``: each process appends its gate decisions and evaluated values
  to ``<dir>/rank<r>.jsonl`` (the `ddp_probe` callback), and a process other than rank 0
  records every file it opens, creates, renames or removes under the run directory
  (``--out``), reading or writing, to ``<dir>/touched-rank<r>.json`` at exit (Python's audit
  hooks, plus safetensors, whose file I/O is in Rust);
- ``python ddp_probe.py api SPEC --out DIR`` is a script calling ``stagedsl.run(SPEC, out=DIR)``;
- ``STAGEDSL_TEST_KILL="<rank>:<stage>:<stage_step>"``: that process kills itself with
  SIGKILL at that step's end (rank 0 in a single-process run), after the checkpoint being
  written has landed.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import sys
from pathlib import Path

from stagedsl import hookimpl
from stagedsl.engine.events import Callback

PROBE = "STAGEDSL_TEST_PROBE_DIR"
KILL = "STAGEDSL_TEST_KILL"


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


class Probe(Callback):
    """Records decisions and values per process; kills one process at a chosen step."""

    def on_event(self, event, state) -> None:
        folder = os.environ.get(PROBE)
        if folder and event.value in ("gate_decided", "eval_end"):
            record = {"event": event.value, "stage": state.stage_name, "step": state.stage_step,
                      "gate": state.gate_decisions[-1] if event.value == "gate_decided" else None,
                      "values": {k: v for k, v in state.values.items() if k.startswith("val/")}}
            with open(Path(folder) / f"rank{_rank()}.jsonl", "a") as handle:
                handle.write(json.dumps(record) + "\n")
        kill = os.environ.get(KILL)
        if kill and event.value == "step_end":
            rank, stage, step = kill.split(":")
            if int(rank) == _rank() and (state.stage_name, state.stage_step) == (stage, int(step)):
                state.live.ctx.writer.wait()
                os.kill(os.getpid(), signal.SIGKILL)


class ProbePlugin:
    """Registers the `ddp_probe` callback."""

    @hookimpl
    def register_callbacks(self, register):
        register("ddp_probe", Probe)


def _watch_run_dir(argv: list[str]) -> None:
    """In a process other than rank 0: record every touch of the run directory."""
    folder = os.environ.get(PROBE)
    if not folder or _rank() == 0 or "WORLD_SIZE" not in os.environ:
        return
    target = Path(argv[argv.index("--out") + 1] if "--out" in argv else argv[1]).resolve()
    touched: list[str] = []

    def note(path) -> None:
        if isinstance(path, (str, bytes, os.PathLike)):
            resolved = Path(os.fsdecode(path)).resolve()
            if resolved == target or target in resolved.parents:
                touched.append(str(resolved))

    def hook(event: str, args: tuple) -> None:
        if event in ("open", "os.mkdir", "os.remove", "os.rmdir", "os.listdir", "os.scandir", "os.truncate", "os.link",
                     "shutil.rmtree", "os.chmod", "os.utime") and args:
            note(args[0])
        elif event == "os.rename" and len(args) >= 2:
            note(args[0])
            note(args[1])

    sys.addaudithook(hook)
    import safetensors
    import safetensors.torch

    for module, name in ((safetensors.torch, "save_file"), (safetensors.torch, "load_file"), (safetensors, "safe_open")):
        original = getattr(module, name)

        def wrapped(*args, _original=original, **kwargs):
            note(args[1] if _original.__name__ == "save_file" and len(args) > 1 else (args[0] if args else kwargs.get("filename")))
            return _original(*args, **kwargs)

        setattr(module, name, wrapped)
    atexit.register(lambda: (Path(folder) / f"touched-rank{_rank()}.json").write_text(json.dumps(touched)))


if __name__ == "__main__":
    from stagedsl.cli.app import run_cli
    from stagedsl.registry import Registry, set_registry

    set_registry(Registry.load(autoload=False, plugins=[("ddp-probe", ProbePlugin())]))
    _watch_run_dir(sys.argv[1:])
    if sys.argv[1] == "api":  # ``api SPEC --out DIR``: a script calling stagedsl.run, as torchrun starts it
        import stagedsl

        result = stagedsl.run(sys.argv[2], out=sys.argv[4])
        sys.exit(0 if result.status == "completed" else 1)
    sys.exit(run_cli(sys.argv[1:]))
