"""Run events and the `Callback` base class.

Per-step events are not pluggy calls: the engine gathers the run's callbacks once
(`plan.callbacks` through the registry, then those passed to `run_plan`), keeps them in
an ordered list and calls them with a plain loop. Events fire at stage boundaries, at
evaluations and at the log cadence, never on every step (`STEP_END` is the end of a log
window, despite its name).
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Iterable

from stagedsl.errors import RunError, StagedError

if TYPE_CHECKING:  # pragma: no cover
    from stagedsl.engine.run_state import RunState


class Event(str, enum.Enum):
    """Where in the run a callback is called. The run, as pseudocode::

        # RUN_START
        for stage in plan.stages[from_stage:]:           # gates may skip (goto) or repeat (retry)
            build stage: seed, init load, freeze, optimizer, scheduler, loss, metrics
            # STAGE_START
            while stage_step < stage.steps:
                if stage_step > 0: scheduler.step()       # this step's rate (a monitored one steps at evaluations)
                for micro_batch in range(stage.accumulate):
                    loss = objective(model(x), y); backward(loss)
                clip; optimizer.step(); zero_grad(set_to_none=True)
                if stage_step % stage.log_every == 0 or an evaluation is due:
                    read the mean loss since the last log (one host sync) -> state.values["train/loss"]
                    # STEP_END            (at the log cadence only, never after every step)
                if stage_step % stage.eval.every == 0 or stage_step == stage.steps:
                    evaluate -> state.values["val/..."]
                    # EVAL_END
                    save best if it improved
                    # CHECKPOINT_SAVED    (state.last_checkpoint names it)
                    if stage.gate.check == "eval": decide
                        # GATE_DECIDED
                    early stopping
                if a trainer checkpoint is due (stage.checkpoint.every, else at evaluations):
                    save trainer state
                    # CHECKPOINT_SAVED    (captured; its folder lands in the background, before the next one)
            save trainer state (the attempt's end)
            # CHECKPOINT_SAVED
            save last (and best, if nothing measured the monitor)
            # CHECKPOINT_SAVED
            if stage.gate.check == "end": decide
                # GATE_DECIDED        (state.gate_decisions[-1] is the decision)
            # STAGE_END             (after every attempt; a gate retry starts the stage again)
        # RUN_END                        (also when a gate stops the run; not when it fails)

    A resumed run (`staged resume`) fires RUN_START, then STAGE_START for the stage it
    continues (at the checkpoint's step, `state.live` holding the loaded objects), and
    goes on from there.

    `state` is the `RunState`; `state.live` holds the live objects of the running stage
    (model, optimizer, scheduler, run_dir) for callbacks that need them.
    """

    RUN_START = "run_start"
    STAGE_START = "stage_start"
    STEP_END = "step_end"
    """After the step that closes a log window (every ``stage.log_every`` steps, and before
    each evaluation): per-step events would cost a host sync each, so there are none."""
    EVAL_END = "eval_end"
    CHECKPOINT_SAVED = "checkpoint_saved"
    GATE_DECIDED = "gate_decided"
    STAGE_END = "stage_end"
    RUN_END = "run_end"


class Callback:
    """Base class of run callbacks.

    Override `on_event(event, state)`, or define a method named after the event's value
    (``def eval_end(self, state): ...``), which the default `on_event` calls.
    """

    def on_event(self, event: Event, state: "RunState") -> None:
        """Called for every event, in the order the run's callbacks were gathered."""
        method = getattr(self, event.value, None)
        if method is not None:
            method(state)


class CallbackList:
    """The run's callbacks, in order, called with a plain loop."""

    def __init__(self, callbacks: Iterable[Callback] = ()):
        self.callbacks: list[Callback] = list(callbacks)
        for callback in self.callbacks:
            if not callable(getattr(callback, "on_event", None)):
                raise RunError(
                    f"callback {callback!r} has no `on_event(event, state)` method; subclass stagedsl.Callback",
                    code="E403",
                )

    def fire(self, event: Event, state: "RunState") -> None:
        """Call every callback with `event`; a crash in one is a `RunError` naming it."""
        for callback in self.callbacks:
            try:
                callback.on_event(event, state)
            except StagedError:
                raise
            except Exception as exc:
                raise RunError(
                    f"callback {type(callback).__name__} failed on {event.value}: {type(exc).__name__}: {exc}",
                    code="E403",
                ) from exc

    def __len__(self) -> int:
        return len(self.callbacks)
