"""A test plugin that kills a run at a chosen point, and a `staged` entry point that registers it.

``STAGEDSL_TEST_KILL_AT="<what>:<stage>:<stage_step>"`` picks the point:

- an event's value (``step_end``, ``eval_end``, ``checkpoint_saved``, ``stage_start``,
  ``stage_end``, ``gate_decided``): SIGKILL when the `kill_switch` callback sees it there;
- ``write``: SIGKILL in the middle of writing that step's trainer checkpoint (after
  ``trainer.safetensors``, before the manifest: the folder is still under its temp name);
- ``sigterm``: SIGTERM at that step's ``step_end`` (the run finishes the step, saves, stops);
- ``sigterm2``: two SIGTERMs at once there (the second stops the run at once, without saving);
- ``pause``: at that step's ``step_end``, write ``paused`` into ``$STAGEDSL_TEST_PAUSE_DIR`` and wait
  (up to a minute) until a file ``go`` appears there: another process can act while this one holds the run.

Without the variable the callback does nothing, so a reference run has the same plan.
Run as a script, ``python kill_switch.py ARGS`` is ``staged ARGS`` with the plugin registered.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import torch

from stagedsl import DataSplits, TensorSplit, hookimpl
from stagedsl.engine.events import Callback

ENV = "STAGEDSL_TEST_KILL_AT"
PAUSE_DIR = "STAGEDSL_TEST_PAUSE_DIR"


def kill_toy(n_train: int = 96, n_val: int = 32, seed: int = 0) -> DataSplits:
    """8 features -> 2 targets, in memory."""
    def split(n: int, offset: int) -> TensorSplit:
        g = torch.Generator().manual_seed(seed + offset)
        x = torch.randn(n, 8, generator=g)
        y = torch.tanh(x @ torch.linspace(-1, 1, 16).reshape(8, 2)) + 0.05 * torch.randn(n, 2, generator=g)
        return TensorSplit(x, y)

    return DataSplits(train=split(n_train, 0), val=split(n_val, 1))


def _target() -> tuple[str, str, int] | None:
    at = os.environ.get(ENV)
    if not at:
        return None
    what, stage, step = at.split(":")
    return what, stage, int(step)


class KillSwitch(Callback):
    """Kills the process at ``STAGEDSL_TEST_KILL_AT``.

    Before a SIGKILL at an event it lets the checkpoint being written in the background
    land, so which checkpoint the resume finds does not depend on the disk's speed
    (``write`` kills in the middle of that background write instead).
    """

    def on_event(self, event, state) -> None:
        target = _target()
        if target is None or (state.stage_name, state.stage_step) != target[1:]:
            return
        if target[0] == "sigterm" and event.value == "step_end":
            os.kill(os.getpid(), signal.SIGTERM)
        elif target[0] == "sigterm2" and event.value == "step_end":
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)
        elif target[0] == "pause" and event.value == "step_end":
            _pause(Path(os.environ[PAUSE_DIR]))
        elif target[0] == event.value:
            state.live.ctx.writer.wait()
            os.kill(os.getpid(), signal.SIGKILL)


def _pause(folder: Path) -> None:
    (folder / "paused").write_text(str(os.getpid()))
    deadline = time.monotonic() + 60
    while not (folder / "go").exists() and time.monotonic() < deadline:
        time.sleep(0.05)


class KillSwitchPlugin:
    """Registers the `kill_toy` dataset and the `kill_switch` callback."""

    @hookimpl
    def register_datasets(self, register):
        register("kill_toy", kill_toy)

    @hookimpl
    def register_callbacks(self, register):
        register("kill_switch", KillSwitch)


def _kill_during_checkpoint_writes() -> None:
    target = _target()
    if target is None or target[0] != "write":
        return
    from stagedsl.engine.checkpointing import trainer_checkpoints
    original = trainer_checkpoints.write_durable
    marker = f"{os.sep}stages{os.sep}{target[1]}{os.sep}state{os.sep}.step_{target[2]:09d}"

    def write_durable(path, write):
        original(path, write)
        if marker in str(path) and str(path).endswith(trainer_checkpoints.TRAINER_FILE):
            os.kill(os.getpid(), signal.SIGKILL)

    trainer_checkpoints.write_durable = write_durable


if __name__ == "__main__":
    from stagedsl.cli.app import run_cli
    from stagedsl.registry import Registry, set_registry

    set_registry(Registry.load(autoload=False, plugins=[("kill-switch", KillSwitchPlugin())]))
    _kill_during_checkpoint_writes()
    sys.exit(run_cli(sys.argv[1:]))
