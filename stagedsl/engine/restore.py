"""Putting a trainer checkpoint back into a freshly built stage (the loading half of the resume seam).

The runner builds the stage from the plan first (seed, freeze, optimizer, scheduler,
loss, metrics: `stage.build_stage(..., resuming=True)`), then `apply` loads, in order:
the weights, the optimizer state (`trainer_state.restore_optimizer`: by parameter name;
settings from the plan when a resume changed them), the scheduler (its state, or the new
schedule advanced to this step), the GradScaler, the stage's best weights as they were,
and last the RNG states. The step loop gets the data position and the loss window.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional

import attrs
import torch

from stagedsl.engine import checkpoints, trainer_state
from stagedsl.engine.context import RunContext
from stagedsl.engine.stage import StageObjects
from stagedsl.engine.state import RunState
from stagedsl.errors import CheckpointError, Problem

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


def apply(ctx: RunContext, objs: StageObjects, point: ResumePoint) -> dict[str, Any]:
    """Load `point` into the run's model and the stage's objects; return the step loop's part of it."""
    try:
        ctx.model.load_state_dict(point.model)
    except RuntimeError as exc:
        raise CheckpointError([Problem(code="E411", message=f"checkpoint `{point.path}` does not fit the model: {exc}",
                                       hint="the model changed since the checkpoint; resume with the run's own model")]) from None
    how = trainer_state.restore_optimizer(objs.optimizer, ctx.model, point.trainer, same_settings=point.same_settings,
                                          same_optimizer=point.same_optimizer)
    trainer_state.restore_scheduler(objs.scheduler, point.trainer, exact=how == "exact", monitored=objs.monitored,
                                    stage_step=ctx.state.stage_step)
    trainer_state.restore_scaler(objs.scaler, point.trainer)
    restore_best(ctx.run_dir, objs.plan.name, point.path)
    if how != "exact":
        ctx.progress.notice(f"stage {objs.plan.name}: optimizer "
                            + ("state kept, settings from the changed plan" if how == "state" else "started afresh (another optimizer)"))
    trainer_state.set_rng_state(point.trainer.get("rng") or {})
    window, folded = trainer_state.loss_window(point.trainer, ctx.placement.device)
    data = point.trainer.get("data") or {}
    if point.on_loaded is not None:
        point.on_loaded()
    return {"epoch_start": data.get("epoch_start"), "window": window, "window_folded": folded}


def restore_best(run_dir: Path, stage: str, checkpoint: Path) -> None:
    """Make ``stages/<stage>/best.safetensors`` what it was when the checkpoint was taken."""
    target = checkpoints.weights_path(run_dir, stage, checkpoints.BEST)
    saved = Path(checkpoint) / checkpoints.BEST_FILE
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


def save_start_weights(ctx: RunContext, stage: str, weights: dict[str, torch.Tensor]) -> None:
    """Keep the weights a stage with a retry gate starts from (a resumed retry needs them)."""
    if ctx.placement.is_writer:
        checkpoints.save_weights({k: v.detach().cpu().contiguous() for k, v in weights.items()},
                                 checkpoints.weights_path(ctx.run_dir, stage, START))


def start_weights(ctx: RunContext, stage: str) -> Optional[dict[str, torch.Tensor]]:
    """The weights `save_start_weights` kept, or None."""
    path = checkpoints.weights_path(ctx.run_dir, stage, START)
    return checkpoints.read_weights(path) if path.exists() else None
