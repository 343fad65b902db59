"""One stage of a run: its attempts (a gate may retry it), or its continuation from a checkpoint.

`run_stage` builds an attempt (`stage_setup.build_stage`), drives it (`driver.AttemptDriver`),
saves its last weights, decides its end gate and records it all. Resumed from a
checkpoint, the attempt is rebuilt from the plan and the checkpoint loaded into it
(`apply_resume_point`); a checkpoint taken at an attempt's end replays only what follows it
(last weights, end gate, records), which is idempotent.
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from stagedsl.engine.checkpointing import trainer_payload
from stagedsl.engine.checkpointing.resume_point import (
    START,
    ResumePoint,
    restore_best,
    restore_optimizer,
    restore_scaler,
    restore_scheduler,
)
from stagedsl.engine.checkpointing.weights import BEST, LAST, cpu_state_dict, read_weights, save_weights
from stagedsl.engine import distributed
from stagedsl.engine.context import RunContext
from stagedsl.engine.driver import EARLY_STOPPED, GATE, AttemptDriver, record_gate, save_stage_weights, saved_outcome
from stagedsl.engine.events import Event
from stagedsl.engine.gates import GOTO, RETRY, STOP, GateDecision, decide
from stagedsl.engine.run_state import StageRecord
from stagedsl.engine.stage_setup import StageObjects, build_stage
from stagedsl.errors import CheckpointError, Problem
from stagedsl.plan.model import StagePlan


def run_stage(ctx: RunContext, stage: StagePlan, restore: Optional[dict], resume: Optional[ResumePoint] = None, *,
               save_at_start: bool = False) -> Optional[GateDecision]:
    """Run a stage (with its gate retries), or finish one from a checkpoint; return the final gate decision."""
    state = ctx.state
    record = state.record(stage.name)
    gate = stage.gate
    retries = gate is not None and gate.on_fail == RETRY and stage.init is None
    if resume is not None:
        restore = start_weights(ctx, stage.name) if retries else None
    elif retries:
        if restore is None:
            restore = cpu_state_dict(ctx.model, copy=True)  # what a retry starts from (on the host: no second copy on the GPU)
        save_start_weights(ctx, stage.name, restore)
    attempt = state.attempt if resume is not None else 0
    while True:
        loop_resume = None
        state.live.stage = None  # the previous attempt's optimizer and DDP wrapper go before the next is built
        ctx.placement.drop_wrapper()
        if resume is None:
            state.stage_index, state.stage_name, state.attempt = stage.index, stage.name, attempt
            state.reset_stage_counters()
            record.status, record.attempts = "running", attempt + 1
            record.gate, record.early_stopped, record.checkpoints = None, False, {}
            objs = build_stage(ctx, stage, attempt, restore)
        else:
            state.stage_index = stage.index
            record.status = "running"
            objs = build_stage(ctx, stage, attempt, resuming=True)
            loop_resume = apply_resume_point(ctx, objs, resume)
        state.live.stage = objs
        record.monitor, record.mode = stage.eval.monitor, stage.eval.mode
        if resume is None:
            record.init, record.auto_loss_args = objs.init_report, objs.auto_args
        _stage_started(ctx, stage, attempt, resume)
        if resume is not None and resume.phase == "end":
            outcome = saved_outcome(state)
        else:
            outcome = AttemptDriver(ctx, objs, loop_resume, save_at_start=save_at_start).run()
        resume, save_at_start = None, False
        _stage_finished(ctx, stage, objs, outcome)

        decision = outcome.decision
        if gate is not None and gate.check == "end" and outcome.reason != GATE:
            decision = decide(gate, state.values, stage=stage.name, attempt=attempt, step=state.global_step,
                              stage_step=state.stage_step)
            record_gate(ctx, decision)
        elif gate is not None and decision is None:
            decision = _last_decision(record)
        record.status = _status(outcome.reason, decision)
        ctx.outputs.log({"event": "stage_end", "stage": stage.name, "step": state.global_step, "status": record.status,
                         "steps": record.steps, "wall_time_s": record.wall_time_s, "best_value": record.best_value,
                         "best_step": record.best_step})
        ctx.outputs.text("stages", f"stage {stage.name} ended at step {state.global_step}: {record.status}", state.global_step)
        ctx.outputs.flush()
        ctx.progress.stage_end(stage.name, record.status, record.steps, record.wall_time_s, record.monitor, record.best_value)
        ctx.fire(Event.STAGE_END)
        if decision is not None and decision.action == RETRY:
            state.retries[stage.name] = state.retries.get(stage.name, 0) + 1
            attempt += 1
            continue
        return decision


def _last_decision(record: StageRecord) -> Optional[GateDecision]:
    return GateDecision(**record.gate) if record.gate else None


def _status(reason: str, decision: Optional[GateDecision]) -> str:
    if decision is not None and decision.action == STOP:
        return "stopped"
    if decision is not None and decision.action == RETRY:
        return "retrying"
    if decision is not None and decision.action == GOTO:
        return "gate_goto"
    return "early_stopped" if reason == EARLY_STOPPED else "completed"


def _stage_started(ctx: RunContext, stage: StagePlan, attempt: int, resume: Optional[ResumePoint] = None) -> None:
    state = ctx.state
    again = f" (retry {attempt})" if attempt else ""
    if resume is None:
        ctx.outputs.log({"event": "stage_start", "stage": stage.name, "step": state.global_step, "attempt": attempt,
                         "steps": stage.steps, "auto_loss_args": ctx.state.record(stage.name).auto_loss_args})
        ctx.outputs.text("stages", f"stage {stage.name}{again} started at step {state.global_step}", state.global_step)
    else:
        ctx.outputs.log({"event": "resume", "stage": stage.name, "step": state.global_step, "stage_step": state.stage_step,
                         "attempt": attempt, **resume.record})
        ctx.outputs.text("stages", f"stage {stage.name}{again} resumed at step {state.global_step}", state.global_step)
        changes = resume.record.get("changes") or []
        ctx.progress.notice(f"resuming stage {stage.name}{again} at step {state.stage_step} from `{resume.path}`"
                            + (f" with {len(changes)} change(s): " + ", ".join(
                                f"{c['key']} {c['old']!r} -> {c['new']!r}" for c in changes) if changes else ""))
    ctx.progress.stage_start(stage.name, stage.steps, attempt, start_step=state.stage_step)
    ctx.fire(Event.STAGE_START)


def _stage_finished(ctx: RunContext, stage: StagePlan, objs: Any, outcome: Any) -> None:
    """Save the last weights (and best, when nothing measured the monitor) and fill the record."""
    state = ctx.state
    record = state.record(stage.name)
    save_stage_weights(ctx, stage.name, LAST)
    if state.best_value is None and not state.nonfinite_evals:  # nothing measured the monitor: last is the best known
        save_stage_weights(ctx, stage.name, BEST)
    record.steps = state.stage_step
    record.epochs = state.epoch + 1 if state.stage_step else 0
    record.wall_time_s = round(outcome.wall_time_s, 4)
    record.steps_per_s = round(state.stage_step / outcome.wall_time_s, 3) if outcome.wall_time_s > 0 else None
    record.best_value, record.best_step = state.best_value, state.best_step
    record.skipped_steps = state.nonfinite_steps
    record.nonfinite_evals = state.nonfinite_evals
    record.early_stopped = outcome.reason == EARLY_STOPPED
    record.last_values = dict(state.values)


# -- resume points and retry starts ------------------------------------------------------
def apply_resume_point(ctx: RunContext, objs: StageObjects, point: ResumePoint) -> dict[str, Any]:
    """Load `point` into the run's model and the stage's objects; return the step loop's part of it."""
    try:
        ctx.model.load_state_dict(point.model)
    except RuntimeError as exc:
        raise CheckpointError([Problem(code="E411", message=f"checkpoint `{point.path}` does not fit the model: {exc}",
                                       hint="the model changed since the checkpoint; resume with the run's own model")]) from None
    how = restore_optimizer(objs.optimizer, ctx.model, point.trainer, same_settings=point.same_settings,
                            same_optimizer=point.same_optimizer)
    restore_scheduler(objs.scheduler, point.trainer, exact=how == "exact", monitored=objs.monitored,
                      stage_step=ctx.state.stage_step)
    restore_scaler(objs.scaler, point.trainer)
    if ctx.placement.is_writer:
        restore_best(ctx.run_dir, objs.plan.name, point.path)
    if how != "exact":
        ctx.progress.notice(f"stage {objs.plan.name}: optimizer "
                            + ("state kept, settings from the changed plan" if how == "state" else "started afresh (another optimizer)"))
    trainer_payload.set_rng_state(point.trainer.get("rng") or {})
    window, folded = trainer_payload.loss_window(point.trainer, ctx.placement.device)
    data = point.trainer.get("data") or {}
    if point.on_loaded is not None:
        point.on_loaded()
    return {"epoch_start": data.get("epoch_start"), "window": window, "window_folded": folded}


def save_start_weights(ctx: RunContext, stage: str, weights: dict[str, torch.Tensor]) -> None:
    """Keep the weights a stage with a retry gate starts from (a resumed retry needs them)."""
    if ctx.placement.is_writer:
        save_weights({k: v.detach().cpu().contiguous() for k, v in weights.items()}, ctx.run_dir.weights(stage, START))


def start_weights(ctx: RunContext, stage: str) -> Optional[dict[str, torch.Tensor]]:
    """The weights `save_start_weights` kept, or None (every process gets rank 0's)."""
    def read() -> Optional[dict[str, torch.Tensor]]:
        path = ctx.run_dir.weights(stage, START)
        return read_weights(path) if path.exists() else None

    return distributed.from_writer(read) if ctx.placement.distributed else read()
