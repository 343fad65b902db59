"""A loaded trainer checkpoint (`ResumePoint`) and how each part of it goes back into a fresh stage.

The engine builds the stage from the plan first (seed, freeze, optimizer, scheduler,
loss, metrics), then loads, in order (`attempts.apply_resume_point`): the weights, the
optimizer state (`restore_optimizer`: by parameter name; settings from the plan when a
resume changed them), the scheduler (`restore_scheduler`: its state, or the new schedule
advanced to this step), the GradScaler, the stage's best weights as they were
(`restore_best`), and last the RNG states. The step loop gets the data position and the
loss window.
"""

from __future__ import annotations

import copy
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Optional

import attrs
import torch

from stagedsl.engine.checkpointing import trainer_payload
from stagedsl.engine.checkpointing.trainer_checkpoints import BEST_FILE
from stagedsl.engine.checkpointing.weights import BEST
from stagedsl.engine.run_state import RunState
from stagedsl.run_dir import RunDir

IMPLEMENTATION_KEYS = ("fused", "foreach", "capturable", "differentiable")
"""Optimizer group keys that choose a kernel, not the math: always the fresh optimizer's."""

START = "start"
"""``stages/<stage>/start.safetensors``: the weights a stage with a retry gate started from."""


@attrs.define(eq=False)
class ResumePoint:
    """A loaded trainer checkpoint and how the plan it resumes under differs from its own."""

    path: Path
    state: RunState
    model: dict
    trainer: dict
    manifest: dict
    same_settings: bool = True  # the resumed stage's optimizer and scheduler settings are unchanged
    same_optimizer: bool = True  # ... and it is the same optimizer
    record: dict = attrs.field(factory=dict)  # the resume's entry of RunState.resumes
    on_loaded: Optional[Callable[[], None]] = None  # called once the checkpoint is in place (the run is resumable)

    @property
    def phase(self) -> str:
        """``"end"`` when the checkpoint is the end of an attempt, else ``"train"``."""
        return "end" if self.state.attempt_end else "train"

    @property
    def metrics_bytes(self) -> Optional[int]:
        value = self.manifest.get("metrics_bytes")
        return int(value) if value is not None else None


def restore_best(run_dir: RunDir, stage: str, checkpoint: Path) -> None:
    """Make ``stages/<stage>/best.safetensors`` what it was when the checkpoint was taken."""
    target = run_dir.weights(stage, BEST)
    saved = Path(checkpoint) / BEST_FILE
    if not saved.exists():
        target.unlink(missing_ok=True)  # written after the checkpoint, by the run that stopped
        return
    if target.exists() and os.path.samefile(saved, target):
        return
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    os.unlink(tmp)
    try:
        try:
            os.link(saved, tmp)
        except OSError:
            import shutil

            shutil.copy2(saved, tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


# -- optimizer, scheduler, scaler -----------------------------------------------------------
def restore_optimizer(optimizer: torch.optim.Optimizer, model: torch.nn.Module, trainer: dict[str, Any], *,
                      same_settings: bool, same_optimizer: bool) -> str:
    """Load the saved optimizer state into the freshly built `optimizer`; say how.

    - ``"exact"``: same parameters, same settings: the saved state and hyperparameters;
    - ``"state"``: the settings changed (a resume with --set): per-parameter state
      (moments, step counts) is kept, hyperparameters (LR, decay, betas) are the new plan's;
    - ``"fresh"``: another optimizer than the saved one: nothing is loaded.

    Per-parameter state is matched by parameter name, so a changed set of trainable
    parameters keeps the state of the parameters both sets hold.
    """
    saved = trainer.get("optimizer")
    if saved is None or not same_optimizer:
        return "fresh"
    fresh_groups = [{k: copy.deepcopy(v) for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    names_now = trainer_payload.optimizer_param_names(optimizer, model)
    saved_names = trainer.get("optimizer_params")
    if saved_names == names_now:
        optimizer.load_state_dict(saved)
    else:
        index: dict[str, int] = {}
        for group, names in zip(saved["param_groups"], saved_names or []):
            index.update(zip(names, group["params"]))
        current = optimizer.state_dict()
        mapped = {}
        for group, names in zip(current["param_groups"], names_now):
            for position, name in zip(group["params"], names):
                old = index.get(name)
                if old is not None and old in saved["state"]:
                    mapped[position] = saved["state"][old]
        current["state"] = mapped
        optimizer.load_state_dict(current)
        same_settings = False
    for group, fresh in zip(optimizer.param_groups, fresh_groups):
        if same_settings:
            group.update({k: fresh[k] for k in IMPLEMENTATION_KEYS if k in fresh})
        else:
            group.update(fresh)
    return "exact" if same_settings else "state"


def restore_scheduler(scheduler: Any, trainer: dict[str, Any], *, exact: bool, monitored: bool, stage_step: int) -> None:
    """Put the scheduler where it was: its saved state, or (settings changed) the new schedule at this step.

    The loop steps a non-monitored scheduler before every step but the stage's first, so
    after `stage_step` steps it has been stepped ``stage_step - 1`` times: a new schedule
    is advanced that far and gives the rate of the next step from the new plan.
    A monitored scheduler with changed settings starts afresh at the plan's LR.
    """
    if scheduler is None:
        return
    saved = trainer.get("scheduler")
    if exact and saved is not None:
        scheduler.load_state_dict(saved)
        return
    if monitored:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(max(stage_step - 1, 0)):
            scheduler.step()


def restore_scaler(scaler: Any, trainer: dict[str, Any]) -> None:
    """Load the GradScaler's state when both the run and the checkpoint have one."""
    if scaler is not None and trainer.get("scaler"):
        scaler.load_state_dict(trainer["scaler"])
