"""One attempt of one stage: the step loop between boundaries, and what happens at them.

Boundaries are the log cadence (``stage.log_every``), evaluations (``stage.eval.every``
and always the stage's last step), trainer-state checkpoints (``stage.checkpoint.every``,
or at evaluations when it is None) and the stage's end. At an evaluation: ``val/*``
values, the best checkpoint on ``eval.monitor``, a monitored scheduler's step, early
stopping and a ``check = "eval"`` gate.

A trainer checkpoint is taken *after* everything a boundary does (log, evaluation, best
weights, gate, early stop), so it holds the whole state at a step; the attempt's last one
also records how the attempt ended (`RunState.attempt_end`). None is written while a
loss since the last check, or a weight, is non-finite: the last checkpoint is always a
good one. A stop signal ends the attempt after the current step, with a checkpoint.

Under torchrun every process runs the same boundaries; only rank 0 writes. A stop
signal is acted on at the first boundary after it, by every process at once (they are
asked there; boundaries come at least every `STOP_POLL_STEPS` steps), and the checks a
checkpoint makes (finite losses and weights) give the same answer everywhere.
"""

from __future__ import annotations

import math
import time
from typing import Optional

import attrs

from stagedsl.engine.checkpointing import trainer_checkpoints, trainer_payload
from stagedsl.engine.checkpointing.weights import BEST, cpu_state_dict, non_finite, save_weights
from stagedsl.engine.context import RunContext
from stagedsl.engine.events import Event
from stagedsl.engine.freeze import set_train_mode
from stagedsl.engine.gates import CONTINUE, WARN, GateDecision, decide
from stagedsl.engine.gates import STOP as STOP_RUN
from stagedsl.engine.loop import StepLoop, last_good
from stagedsl.engine.signals import STOP, RunInterrupted
from stagedsl.engine.stage_setup import StageObjects
from stagedsl.errors import RunError

COMPLETED, EARLY_STOPPED, GATE = "completed", "early_stopped", "gate"
STOP_POLL_STEPS = 20
"""Under torchrun, the most steps between two boundaries (where the processes agree on stopping)."""


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
    if decision.action != STOP_RUN:  # a stop is said once, by the error that ends the run (E420)
        (ctx.progress.notice if decision.passed else ctx.progress.warn)(decision.describe())
    ctx.fire(Event.GATE_DECIDED)


def save_stage_weights(ctx: RunContext, stage: str, which: str) -> None:
    """Write ``stages/<stage>/<which>.safetensors`` (rank 0 only) and tell the callbacks."""
    if not ctx.placement.is_writer:
        return
    path = ctx.run_dir.weights(stage, which)
    save_weights(ctx.model, path, metadata={"stage": stage, "step": str(ctx.state.stage_step)})
    ctx.state.record(stage).checkpoints[which] = ctx.run_dir.relative(path)
    ctx.state.last_checkpoint = str(path)
    ctx.fire(Event.CHECKPOINT_SAVED)


def saved_outcome(state) -> AttemptOutcome:
    """The outcome an attempt-end checkpoint recorded (a resume replays what follows it)."""
    end = state.attempt_end or {}
    decision = end.get("decision")
    return AttemptOutcome(end.get("reason", COMPLETED), GateDecision(**decision) if decision else None,
                          float(state.attempt_elapsed_s))


class AttemptDriver:
    """Runs one attempt of a stage from step 0 (or a checkpoint's step) to its end, an early stop or a failing eval gate."""

    def __init__(self, ctx: RunContext, objs: StageObjects, resume_from: Optional[dict] = None, save_at_start: bool = False):
        """`resume_from`: the step loop's part of a checkpoint (see `StepLoop`); `save_at_start`: checkpoint step 0."""
        self.ctx, self.objs, self.stage = ctx, objs, objs.plan
        self.state = ctx.state
        self.loop = StepLoop(ctx, objs, resume_from)
        self.monitor_warned = False
        self.state_saved_at: Optional[int] = self.state.stage_step if resume_from is not None else None
        self.evaluated_at: Optional[int] = None
        self.save_at_start = save_at_start
        self._started = time.perf_counter() - self.state.attempt_elapsed_s
        self._window_start = time.perf_counter()
        self._window_steps = 0

    def run(self) -> AttemptOutcome:
        """Train the stage; return how it ended."""
        ctx, stage, state, loop = self.ctx, self.stage, self.state, self.loop
        set_train_mode(ctx.model, self.objs.held_norms)
        log_every = max(1, int(stage.log_every or 1))
        eval_every = stage.eval.every
        state_every = stage.checkpoint.every
        poll = STOP_POLL_STEPS if ctx.placement.distributed else None
        outcome: Optional[AttemptOutcome] = None
        if self.save_at_start and state.stage_step < stage.steps:
            self.save_state()
        while state.stage_step < stage.steps and outcome is None:
            self.stop_if_asked()
            step = state.stage_step
            boundary = min(b for b in (stage.steps, _next_multiple(step, log_every), _next_multiple(step, eval_every),
                                       _next_multiple(step, state_every), step + poll if poll else None) if b is not None)
            loop.train_steps(boundary - step)
            self._window_steps += state.stage_step - step
            step = state.stage_step
            if step < boundary:  # a stop signal came: no boundary here
                continue
            is_eval = step == stage.steps or bool(eval_every and step % eval_every == 0)
            if is_eval or step % log_every == 0:
                self.log_train()
            if is_eval:
                outcome = self.evaluate()
            due = step % state_every == 0 if state_every else is_eval
            if due and outcome is None and step < stage.steps and self.state_saved_at != step:
                self.save_state()
            self._window_start = time.perf_counter()  # steps/s measures training, not the boundary's work
        if self.evaluated_at is None:  # a stage of zero steps (or cut to the step it resumed at) still evaluates once
            outcome = self.evaluate() or outcome
        reason = outcome.reason if outcome else COMPLETED
        decision = outcome.decision if outcome else None
        state.attempt_end = {"reason": reason, "decision": decision.to_dict() if decision else None}
        self.save_state()  # the attempt's last checkpoint, with how it ended
        ctx.writer.wait()
        return AttemptOutcome(reason, decision, time.perf_counter() - self._started)

    def stop_if_asked(self) -> None:
        """After a SIGINT / SIGTERM (in any process, under torchrun): save a checkpoint at this step
        (if there is none) and stop."""
        if not self.ctx.placement.any_true(STOP.requested):
            return
        state = self.state
        if self.state_saved_at != state.stage_step:
            self.save_state()
        self.ctx.writer.wait()
        where = f"stage `{self.stage.name}` step {state.stage_step} (global step {state.global_step})"
        raise RunInterrupted(signal_name=STOP.name, signum=STOP.signum, where=where, checkpoint=state.last_resume_point,
                             run_dir=str(self.ctx.run_dir.root), processes=self.ctx.placement.world_size)

    # -- boundaries ----------------------------------------------------------------
    def log_train(self) -> None:
        """Read the loss window (one sync) and log train/loss and the learning rates."""
        ctx, state, stage = self.ctx, self.state, self.stage
        mean = self.loop.take_window()
        if mean is None:
            return
        if not math.isfinite(mean) and stage.on_nonfinite != "skip":
            self._nonfinite_loss(str(mean))
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
        self._nonfinite_eval(values)
        if _improved(monitor, state.best_value, stage.eval.mode):
            state.best_value, state.best_step = monitor, state.stage_step
            self.save_weights(BEST)
        if objs.monitored:
            value = self._value(stage.scheduler_monitor, "scheduler_monitor")
            if value is not None and math.isfinite(value):  # a NaN would count as a stall and cut the LR
                objs.scheduler.step(value)

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
                    f"for {early.patience} evaluation(s) (best {state.early_stop_best:.4g})"
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

    def _nonfinite_eval(self, values: dict) -> None:
        """A non-finite ``val/loss`` or monitored value: stop (E446) or, with ``on_nonfinite = "skip"``, warn (W010).

        Either way the stage's best is never taken from it (`_improved` refuses a NaN).
        """
        stage, state = self.stage, self.state
        watched = dict.fromkeys(("val/loss", stage.eval.monitor))
        bad = {name: values[name] for name in watched if name in values and not math.isfinite(values[name])}
        if not bad:
            return
        shown = ", ".join(f"`{name}` = {value}" for name, value in bad.items())
        if stage.on_nonfinite != "skip":
            raise RunError(
                f"stage `{stage.name}`: the validation values {shown} at step {state.stage_step} are not finite "
                f"(on_nonfinite = \"stop\"); {last_good(state)}; check the validation split for NaN or infinite inputs "
                "and targets, or set on_nonfinite = \"skip\" to go on and keep the previous best",
                code="E446",
            )
        state.nonfinite_evals += 1
        if state.nonfinite_evals == 1:  # once per attempt: the count is in summary.json
            kept = (f"the best stays the one of step {state.best_step} ({stage.eval.monitor} = {state.best_value:.6g})"
                    if state.best_step is not None else "the stage has no best weights yet")
            self.ctx.progress.warn(f"stage `{stage.name}`: the validation values {shown} at step {state.stage_step} are "
                                   f"not finite (on_nonfinite = \"skip\"): {kept}", code="W010")

    def _nonfinite_loss(self, value: str) -> None:
        stage, state = self.stage, self.state
        raise RunError(
            f"stage `{stage.name}`: the training loss became {value} by step {state.stage_step} "
            f"(on_nonfinite = \"stop\"); {last_good(state)}; lower the learning rate, clip gradients, or check the data",
            code="E401",
        )

    def save_state(self) -> None:
        """Capture a full trainer checkpoint (only of finite weights and losses) and have it written in the background;
        keep the newest `checkpoint.keep_last`. The attempt's last one is waited for."""
        ctx, objs, state, stage = self.ctx, self.objs, self.state, self.stage
        placement = ctx.placement
        self.state_saved_at = state.stage_step
        if placement.is_writer:
            ctx.writer.wait()  # the previous write is done (or its failure raised) before the next is captured
        if stage.on_nonfinite != "skip" and not placement.all_true(self.loop.window_finite()):
            self._nonfinite_loss("non-finite")
        if placement.is_writer:
            tensors = cpu_state_dict(ctx.model, copy=True)  # a snapshot: training goes on while it is written
        else:  # the same weights as rank 0's: the same check, so every process stops alike
            tensors = {name: value.detach() for name, value in ctx.model.state_dict().items()}
        bad = non_finite(tensors)
        if bad is not None:
            raise RunError(f"stage `{stage.name}`: the weights became non-finite (`{bad}`) by step {state.stage_step}; "
                           f"{last_good(state)}; lower the learning rate or clip gradients", code="E401")
        if not placement.is_writer:
            return
        state.attempt_elapsed_s = time.perf_counter() - self._started
        state.checkpoint_seq += 1
        path = ctx.run_dir.trainer_state(stage.name, state.stage_step, state.attempt)
        state.last_resume_point = ctx.run_dir.relative(path)
        window, folded = self.loop.window_state()
        trainer = trainer_payload.capture(model=ctx.model, optimizer=objs.optimizer, scheduler=objs.scheduler,
                                        scaler=objs.scaler, generator=ctx.loaders.generator,
                                        epoch_start=self.loop.epoch_start, window=window, window_folded=folded,
                                        auto_values=ctx.auto.values)
        best = ctx.run_dir.weights(stage.name, BEST)
        pending = trainer_checkpoints.prepare_state(path, state=state, model=tensors, trainer=trainer,
                                            best=best if best.exists() else None,
                                            manifest={"metrics_bytes": ctx.outputs.metrics_size()})
        keep_last = stage.checkpoint.keep_last

        def write() -> None:
            trainer_checkpoints.finish_state(pending)
            trainer_checkpoints.rotate_states(ctx.run_dir, path.parent, keep_last)

        ctx.writer.submit(str(path), write)
        state.last_checkpoint = str(path)
        ctx.fire(Event.CHECKPOINT_SAVED)
