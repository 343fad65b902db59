"""The step loop: the hot path.

`StepLoop.train_steps(n)` runs `n` optimizer steps and nothing else: no host sync, no
logging, no checks. Each micro-batch's loss is kept (detached, on the device) and summed
at the log cadence by `take_window`, one sync per log; the caller decides where the next boundary (log, evaluation, checkpoint,
stage end) is and calls `train_steps` up to it. One step, as a reader would write it::

    scheduler.step()                      # except before the stage's first step
    for each of `accumulate` micro-batches:
        x, y = next batch (a new epoch when the loader runs out), moved to the device
        with autocast: loss = objective(model(x), y, x)
        window.append(loss.detach())      # on the device; summed at the log cadence
        (scaler.scale(loss / accumulate) or loss / accumulate).backward()
    unscale, clip_grad_norm_ (when grad_clip is set)
    optimizer.step() (through the scaler in fp16); optimizer.zero_grad(set_to_none=True)

The scheduler is advanced at the start of each step, so after `train_steps` the optimizer
shows the learning rate the last step used (what the log records) and the sequence of
rates equals torch's scheduler stepped after every optimizer step.

After each step the loop reads one Python flag (`signals.STOP`): a SIGINT / SIGTERM ends
`train_steps` early, after the step, so the driver can save and stop. Under torchrun it
does not (a process that stopped alone would leave the others waiting in a collective):
the driver asks every process at its boundaries instead. There, too, the first
micro-batches of an accumulated step run under DDP's ``no_sync`` (one gradient reduction
a step), and the loss window and the skip-a-non-finite-step decision are combined over
the processes. The order
generator's state at each epoch's start (`epoch_start`) and the loss window are what a
checkpoint needs to continue mid-epoch exactly (`resume_from`).
"""

from __future__ import annotations

import contextlib
from typing import Any, Optional

import torch

from stagedsl.data import call_model
from stagedsl.engine.context import RunContext
from stagedsl.engine.loaders import TensorBatches
from stagedsl.engine.signals import STOP, StopRequest
from stagedsl.engine.stage_setup import StageObjects
from stagedsl.errors import RunError


class StepLoop:
    """Optimizer steps of one stage attempt."""

    distributed = False  # one of several processes under torchrun

    def __init__(self, ctx: RunContext, objs: StageObjects, resume_from: Optional[dict] = None):
        """`resume_from`: ``{"epoch_start", "window", "window_folded"}`` of a checkpoint to continue from."""
        self.state = ctx.state
        self.forward = objs.train_forward
        self.loader = ctx.loaders.train
        placement = ctx.placement
        self.placement = placement
        self.distributed = placement.distributed
        resident = isinstance(self.loader, TensorBatches) and self.loader.device == placement.device
        self.move = None if resident and not placement.channels_last else placement.batch_mover()
        self.autocast = placement.autocast()  # one context object, entered once per micro-batch
        self.objective = objs.objective
        self.optimizer = objs.optimizer
        self.scheduler = None if objs.monitored else objs.scheduler
        self.scaler = objs.scaler
        self.params = objs.trainable_params
        self.grad_clip = objs.plan.grad_clip
        self.accumulate = max(1, int(objs.plan.accumulate))
        self.skip_nonfinite = objs.plan.on_nonfinite == "skip"
        self.max_nonfinite = objs.plan.max_nonfinite
        self.stage_name = objs.plan.name
        self.window: list[torch.Tensor] = []  # detached micro-batch losses since the last log
        self._folded_count = 0  # losses summed into window[0] by `_fold`, beyond the one it counts as
        self.generator = ctx.loaders.generator
        if resume_from is not None:
            self.window, self._folded_count = list(resume_from["window"]), int(resume_from["window_folded"])
            if resume_from.get("epoch_start") is not None:
                self.generator.set_state(resume_from["epoch_start"])
            ctx.loaders.skip_train(self.state.batch_in_epoch)
        self.epoch_start = self.generator.get_state()  # the order generator when this epoch began
        self._batches = iter(self.loader)

    def _next_batch(self) -> Any:
        state = self.state
        try:
            batch = next(self._batches)
        except StopIteration:
            state.epoch += 1
            state.batch_in_epoch = 0
            self.epoch_start = self.generator.get_state()
            self._batches = iter(self.loader)
            try:
                batch = next(self._batches)
            except StopIteration:
                raise RunError(f"stage `{self.stage_name}`: the training split yields no batch", code="E405") from None
        state.batch_in_epoch += 1
        return batch

    def train_steps(self, n: int) -> None:
        """Run `n` optimizer steps (fewer when a stop signal arrives: after the step it came in; in one process)."""
        state, forward, objective, optimizer = self.state, self.forward, self.objective, self.optimizer
        stop = _NEVER if self.distributed else STOP
        no_sync = self.placement.no_sync
        scheduler, scaler, params, clip = self.scheduler, self.scaler, self.params, self.grad_clip
        move, autocast, next_batch, window = self.move, self.autocast, self._next_batch, self.window
        accumulate, skip_nonfinite = self.accumulate, self.skip_nonfinite
        clip_grad_norm_ = torch.nn.utils.clip_grad_norm_
        for _ in range(n):
            if scheduler is not None and state.stage_step:
                scheduler.step()  # the schedule's rate for this step; the stage's first step uses the initial rate
            for micro in range(accumulate):
                batch = next_batch()
                if move is not None:
                    batch = move(batch)
                inputs, target = batch
                with (no_sync() if micro < accumulate - 1 else _NOTHING):  # DDP reduces at the last one only
                    with autocast:
                        output = call_model(forward, inputs)
                        loss = objective(output, target, inputs)
                    window.append(loss.detach())
                    if accumulate > 1:
                        loss = loss / accumulate
                    if scaler is None:
                        loss.backward()
                    else:
                        scaler.scale(loss).backward()
            if skip_nonfinite and not self._finite_step():
                optimizer.zero_grad(set_to_none=True)  # on_nonfinite = "skip": drop this step
            elif scaler is None:
                if clip is not None:
                    clip_grad_norm_(params, clip)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            else:
                if clip is not None:
                    scaler.unscale_(optimizer)
                    clip_grad_norm_(params, clip)
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
            state.stage_step += 1
            state.global_step += 1
            if len(window) >= 4096:
                self._fold()
            if stop.requested:
                return

    def _fold(self) -> None:
        """Sum the kept losses into one tensor (bounds memory when logs are far apart)."""
        total = _sum(self.window)
        count = self._folded_count + len(self.window)
        self.window.clear()
        self.window.append(total)
        self._folded_count = count - 1  # the sum stands for `count` losses

    def _finite_step(self) -> bool:
        """Whether this step's losses were finite (one host sync; on_nonfinite = "skip" only).

        A non-finite step is dropped and counted; more than ``max_nonfinite`` of them in a
        row stop the run (E401), naming the last good checkpoint.
        """
        state = self.state
        latest = self.window[-self.accumulate:]
        if self.placement.all_true(bool(torch.isfinite(torch.stack(latest)).all())):  # every process skips, or none
            state.nonfinite_in_row = 0
            return True
        del self.window[-self.accumulate:]
        state.nonfinite_steps += 1
        state.nonfinite_in_row += 1
        if state.nonfinite_in_row > self.max_nonfinite:
            raise RunError(
                f"stage `{self.stage_name}`: {state.nonfinite_in_row} steps in a row had a non-finite loss "
                f"(more than max_nonfinite = {self.max_nonfinite}), the last at step {state.stage_step + 1}; "
                f"{last_good(state)}",
                code="E401",
            )
        return False

    def window_state(self) -> tuple[list[torch.Tensor], int]:
        """The losses since the last log, and how many more the first one stands for (for a checkpoint)."""
        return self.window, self._folded_count

    def window_finite(self) -> bool:
        """Whether every loss since the last log is finite (one host sync)."""
        return not self.window or bool(torch.isfinite(torch.stack([w.float() for w in self.window])).all())

    def take_window(self) -> Optional[float]:
        """The mean loss since the last call (one host sync; over every process's batches under torchrun),
        or None if no batch ran."""
        if not self.window:
            return None
        count = len(self.window) + self._folded_count
        if self.distributed:
            sums = self.placement.sum_across(torch.stack([_sum(self.window), torch.tensor(float(count), device=self.window[0].device)]))
            mean = float(sums[0].item()) / float(sums[1].item())
        else:
            mean = float(_sum(self.window).item()) / count
        self.window.clear()
        self._folded_count = 0
        return mean

    def learning_rates(self) -> list[float]:
        """The current learning rate of each parameter group."""
        return [float(group["lr"]) for group in self.optimizer.param_groups]


_NEVER = StopRequest()  # a request nobody sets: under torchrun the driver asks every process at its boundaries
_NOTHING = contextlib.nullcontext()


def last_good(state: Any) -> str:
    """The sentence naming the last good checkpoint, for a non-finite stop."""
    if state.last_resume_point:
        return f"the last good checkpoint is `{state.last_resume_point}` (continue from it with `staged resume`)"
    return "no trainer checkpoint was written before it"


def _sum(losses: list[torch.Tensor]) -> torch.Tensor:
    """The sum of scalar losses, in float32 whatever precision they came in."""
    return torch.stack([loss.float() for loss in losses]).sum()
