"""One attempt of one stage: the step loop between boundaries, and what happens at them.

Boundaries are the log cadence (``stage.log_every``), evaluations (``stage.eval.every``
and always the stage's last step), trainer-state checkpoints (``stage.checkpoint.every``,
or at evaluations when it is None) and the stage's end. At an evaluation: ``val/*``
values, the best checkpoint on ``eval.monitor``, a monitored scheduler's step, early
stopping and a ``check = "eval"`` gate.
"""

from __future__ import annotations

import math
import time
from typing import Optional

import attrs

from stagedsl.engine import checkpoints
from stagedsl.engine.context import RunContext
from stagedsl.engine.events import Event
from stagedsl.engine.freeze import set_train_mode
from stagedsl.engine.gates import CONTINUE, WARN, GateDecision, decide
from stagedsl.engine.loop import StepLoop
from stagedsl.engine.stage import StageObjects
from stagedsl.errors import RunError

COMPLETED, EARLY_STOPPED, GATE = "completed", "early_stopped", "gate"


@attrs.frozen
class AttemptOutcome:
    """How an attempt ended; `decision` is set when a ``check = "eval"`` gate ended it."""

    reason: str
    decision: Optional[GateDecision] = None
    wall_time_s: float = 0.0


def _next_multiple(step: int, every: Optional[int]) -> Optional[int]:
    if not every or every <= 0:
        return None
    return (step // every + 1) * every


def _improved(value: float, best: Optional[float], mode: str, min_delta: float = 0.0) -> bool:
    if value is None or math.isnan(value):
        return False
    if best is None:
        return True
    return value < best - min_delta if mode == "min" else value > best + min_delta


def record_gate(ctx: RunContext, decision: GateDecision) -> None:
    """Record a gate decision everywhere: state, summary record, metrics.jsonl, TensorBoard, stderr, callbacks."""
    data = decision.to_dict()
    ctx.state.gate_decisions.append(data)
    record = ctx.state.record(decision.stage)
    record.gate_decisions.append(data)
    record.gate = data
    ctx.outputs.log({"event": "gate", **data})
    ctx.outputs.text("gates", decision.describe(), ctx.state.global_step)
    (ctx.progress.notice if decision.passed else ctx.progress.warn)(decision.describe())
    ctx.fire(Event.GATE_DECIDED)


def save_stage_weights(ctx: RunContext, stage: str, which: str) -> None:
    """Write ``stages/<stage>/<which>.safetensors`` (rank 0 only) and tell the callbacks."""
    if not ctx.placement.is_writer:
        return
    path = checkpoints.weights_path(ctx.run_dir, stage, which)
    checkpoints.save_weights(ctx.model, path, metadata={"stage": stage, "step": str(ctx.state.stage_step)})
    ctx.state.record(stage).checkpoints[which] = str(path.relative_to(ctx.run_dir))
    ctx.state.last_checkpoint = str(path)
    ctx.fire(Event.CHECKPOINT_SAVED)


class AttemptDriver:
    """Runs one attempt of a stage from step 0 to its end, an early stop or a failing eval gate."""

    def __init__(self, ctx: RunContext, objs: StageObjects):
        self.ctx, self.objs, self.stage = ctx, objs, objs.plan
        self.state = ctx.state
        self.loop = StepLoop(ctx, objs)
        self.monitor_warned = False
        self.state_saved_at: Optional[int] = None
        self.evaluated_at: Optional[int] = None
        self._window_start = time.perf_counter()
        self._window_steps = 0

    def run(self) -> AttemptOutcome:
        """Train the stage; return how it ended."""
        ctx, stage, state, loop = self.ctx, self.stage, self.state, self.loop
        started = time.perf_counter()
        set_train_mode(ctx.model, self.objs.held_norms)
        log_every = max(1, int(stage.log_every or 1))
        eval_every = stage.eval.every
        state_every = stage.checkpoint.every
        outcome: Optional[AttemptOutcome] = None
        while state.stage_step < stage.steps and outcome is None:
            step = state.stage_step
            boundary = min(b for b in (stage.steps, _next_multiple(step, log_every), _next_multiple(step, eval_every),
                                       _next_multiple(step, state_every)) if b is not None)
            loop.train_steps(boundary - step)
            self._window_steps += boundary - step
            step = state.stage_step
            is_eval = step == stage.steps or bool(eval_every and step % eval_every == 0)
            if is_eval or step % log_every == 0:
                self.log_train()
            if is_eval:
                outcome = self.evaluate()
            if state_every and step % state_every == 0 and self.state_saved_at != step:
                self.save_state()
            self._window_start = time.perf_counter()  # steps/s measures training, not the boundary's work
        if self.evaluated_at is None:  # a stage of zero steps still evaluates once
            outcome = self.evaluate() or outcome
        if self.state_saved_at != state.stage_step:
            self.save_state()
        reason = outcome.reason if outcome else COMPLETED
        return AttemptOutcome(reason, outcome.decision if outcome else None, time.perf_counter() - started)

    # -- boundaries ----------------------------------------------------------------
    def log_train(self) -> None:
        """Read the loss window (one sync) and log train/loss and the learning rates."""
        ctx, state, stage = self.ctx, self.state, self.stage
        mean = self.loop.take_window()
        if mean is None:
            return
        if not math.isfinite(mean) and stage.on_nonfinite != "skip":
            raise RunError(
                f"stage `{stage.name}`: the training loss became {mean} by step {state.stage_step} "
                f"(on_nonfinite = \"stop\"); lower the learning rate, clip gradients, or check the data",
                code="E401",
            )
        now = time.perf_counter()  # after the window's sync: the steps' work is done
        rate = self._window_steps / (now - self._window_start) if now > self._window_start else None
        self._window_steps = 0
        lrs = {f"lr/{name}": lr for name, lr in zip(self.objs.group_names, self.loop.learning_rates())}
        state.values["train/loss"] = mean
        ctx.outputs.log({"event": "train", "stage": stage.name, "step": state.global_step, "stage_step": state.stage_step,
                         "epoch": state.epoch, "train/loss": mean, **lrs, "steps_per_s": rate})
        ctx.outputs.scalars({"train/loss": mean, **lrs}, state.global_step)
        ctx.progress.update(state.stage_step, {"loss": mean}, rate)
        ctx.fire(Event.STEP_END)

    def evaluate(self) -> Optional[AttemptOutcome]:
        """Evaluate, then best checkpoint, monitored scheduler, state checkpoint, eval gate, early stop."""
        ctx, state, stage, objs = self.ctx, self.state, self.stage, self.objs
        values = objs.evaluator.evaluate(ctx.forward, ctx.model)
        set_train_mode(ctx.model, objs.held_norms)
        self.evaluated_at = state.stage_step
        state.values.update(values)
        ctx.outputs.log({"event": "eval", "stage": stage.name, "step": state.global_step, "stage_step": state.stage_step,
                         "epoch": state.epoch, **values})
        ctx.outputs.scalars(values, state.global_step)
        if values:
            ctx.progress.update(state.stage_step, values)
        ctx.fire(Event.EVAL_END)

        monitor = self._value(stage.eval.monitor, "eval.monitor")
        if _improved(monitor, state.best_value, stage.eval.mode):
            state.best_value, state.best_step = monitor, state.stage_step
            self.save_weights(checkpoints.BEST)
        if objs.monitored:
            name = stage.scheduler_monitor or stage.eval.monitor
            value = self._value(name, "scheduler_monitor")
            if value is not None:
                objs.scheduler.step(value)
        if stage.checkpoint.every is None:
            self.save_state()

        if stage.gate is not None and stage.gate.check == "eval":
            decision = decide(stage.gate, state.values, stage=stage.name, attempt=state.attempt,
                              step=state.global_step, stage_step=state.stage_step)
            record_gate(ctx, decision)
            if decision.action not in (CONTINUE, WARN):
                return AttemptOutcome(GATE, decision)

        early = stage.early_stop
        if early is not None:
            value = self._value(early.monitor, "early_stop.monitor")
            if _improved(value, state.early_stop_best, early.mode, early.min_delta):
                state.early_stop_best, state.early_stop_bad_evals = value, 0
            elif value is not None:
                state.early_stop_bad_evals += 1
            if state.early_stop_bad_evals >= early.patience and state.stage_step < stage.steps:
                ctx.progress.notice(
                    f"stage {stage.name}: early stop at step {state.stage_step}: {early.monitor} did not improve "
                    f"for {early.patience} evaluation(s) (best {state.early_stop_best:.6g})"
                )
                return AttemptOutcome(EARLY_STOPPED)
        return None

    def _value(self, name: str, what: str) -> Optional[float]:
        """A metric value by name; None (with one notice) when there is no validation split."""
        if name in self.state.values:
            return self.state.values[name]
        if not self.objs.evaluator.available and name.startswith("val/"):
            if not self.monitor_warned:
                self.ctx.progress.notice(f"stage {self.stage.name}: no validation split, so {what} `{name}` is never measured")
                self.monitor_warned = True
            return None
        raise RunError(
            f"stage `{self.stage.name}`: {what} `{name}` is not a measured value; available: {', '.join(sorted(self.state.values))}",
            code="E409",
        )

    # -- checkpoints -----------------------------------------------------------------
    def save_weights(self, which: str) -> None:
        """Write the stage's best/last weights."""
        save_stage_weights(self.ctx, self.stage.name, which)

    def save_state(self) -> None:
        """Write a full trainer checkpoint and keep the newest `checkpoint.keep_last`."""
        ctx, objs, state = self.ctx, self.objs, self.state
        self.state_saved_at = state.stage_step
        if not ctx.placement.is_writer:
            return
        path = checkpoints.state_path(ctx.run_dir, self.stage.name, state.stage_step)
        checkpoints.save_state(path, state=state, model=ctx.model, optimizer=objs.optimizer, scheduler=objs.scheduler,
                               scaler=objs.scaler, generator=ctx.loaders.generator)
        checkpoints.rotate_states(path.parent, self.stage.checkpoint.keep_last)
        state.last_checkpoint = str(path)
        ctx.fire(Event.CHECKPOINT_SAVED)
