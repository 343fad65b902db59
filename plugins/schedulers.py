"""LR schedulers: ``factory(optimizer, total_steps, **args) -> torch LR scheduler``.

The engine steps them once per optimizer step; ``total_steps`` is the stage's length
and arguments annotated `Steps` arrive as step counts from the stage's start. Every
factor scales each parameter group's own LR, so per-group LRs keep their ratios.
``plateau`` is *monitored*: stepped with a metric after each evaluation instead.
"""

import inspect
import math
from dataclasses import dataclass

from stagedsl import Steps, hookimpl


def constant(optimizer, total_steps: int, warmup: Steps = 0):
    """The base LR throughout, after an optional linear warmup."""
    from torch.optim.lr_scheduler import LambdaLR

    _check_warmup(warmup, total_steps)
    if warmup == 0:
        return None  # nothing changes the LR: no scheduler to step at all
    return LambdaLR(optimizer, _Constant(warmup))


def multistep(optimizer, total_steps: int, milestones: list[Steps], gamma: float = 0.1):
    """Multiply the LR by gamma at each milestone (torch MultiStepLR)."""
    from torch.optim.lr_scheduler import MultiStepLR

    if any(m < 0 for m in milestones):
        raise ValueError(f"milestones cannot be negative, found {list(milestones)}")
    return MultiStepLR(optimizer, milestones=sorted(int(m) for m in milestones), gamma=gamma)


def cosine(optimizer, total_steps: int, warmup: Steps = 0, min_lr_ratio: float = 0.0):
    """Linear warmup, then cosine decay to min_lr_ratio x the base LR at the stage's end."""
    from torch.optim.lr_scheduler import LambdaLR

    _check_warmup(warmup, total_steps)
    return LambdaLR(optimizer, _Cosine(total_steps, warmup, min_lr_ratio))


def linear(optimizer, total_steps: int, warmup: Steps = 0, end_factor: float = 0.0):
    """Linear warmup, then linear decay to end_factor x the base LR at the stage's end."""
    from torch.optim.lr_scheduler import LambdaLR

    _check_warmup(warmup, total_steps)
    return LambdaLR(optimizer, _Linear(total_steps, warmup, end_factor))


def onecycle(
    optimizer,
    total_steps: int,
    max_lr_ratio: float = 1.0,
    pct_start: float = 0.3,
    anneal_strategy: str = "cos",
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    three_phase: bool = False,
    cycle_momentum: bool = True,
):
    """One-cycle policy (torch OneCycleLR) peaking at max_lr_ratio x each group's LR."""
    from torch.optim.lr_scheduler import OneCycleLR

    peaks = [group["lr"] * max_lr_ratio for group in optimizer.param_groups]
    return OneCycleLR(
        optimizer,
        max_lr=peaks,
        total_steps=total_steps,
        pct_start=pct_start,
        anneal_strategy=anneal_strategy,
        div_factor=div_factor,
        final_div_factor=final_div_factor,
        three_phase=three_phase,
        cycle_momentum=cycle_momentum,
    )


def plateau(
    optimizer,
    total_steps: int,
    mode: str = "min",
    factor: float = 0.1,
    patience: int = 10,
    threshold: float = 1e-4,
    min_lr: float = 0.0,
    cooldown: int = 0,
):
    """Reduce the LR by factor when the monitored metric stalls for patience evaluations."""
    from torch.optim.lr_scheduler import ReduceLROnPlateau

    return ReduceLROnPlateau(optimizer, mode=mode, factor=factor, patience=patience, threshold=threshold, min_lr=min_lr, cooldown=cooldown)


def plateau_worst_case(args: dict, lr: float, evaluations: int) -> list[float]:
    """The LR `plateau` leaves after each of a stage's evaluations if the metric never improves
    (what the W001 lint needs to see the LR collapse)."""
    settings = {name: p.default for name, p in inspect.signature(plateau).parameters.items() if p.default is not p.empty}
    settings.update(args)
    factor, patience, cooldown, min_lr = float(settings["factor"]), int(settings["patience"]), int(settings["cooldown"]), float(settings["min_lr"])
    rates, current, since, cooling = [], lr, 0, 0
    for _ in range(evaluations):
        if cooling > 0:
            cooling -= 1
        else:
            since += 1
            if since > patience:
                current = max(current * factor, min_lr)
                since, cooling = 0, cooldown
        rates.append(current)
    return rates


# -- learning-rate multipliers ----------------------------------------------------------
# Learning-rate multipliers for `torch.optim.lr_scheduler.LambdaLR`, as picklable objects.
#
# They are dataclasses with a ``__dict__`` (not slots): ``LambdaLR.state_dict`` saves a
# callable object's ``__dict__`` and ``load_state_dict`` restores it.
#
# Each is called with the number of scheduler steps taken so far (the optimizer step
# about to run, counted from the stage's start) and returns the factor applied to every
# group's base LR. Warmup is linear: ``(step + 1) / (warmup + 1)``, reaching 1 at
# ``step == warmup`` (as torch's ``LinearLR(start_factor=1 / (warmup + 1))``).


def _check_warmup(warmup: int, total_steps: int) -> None:
    """A ValueError unless 0 <= warmup < total_steps (or warmup is 0)."""
    if warmup < 0:
        raise ValueError(f"warmup cannot be negative, found {warmup}")
    if warmup and warmup >= total_steps:
        raise ValueError(f"warmup ({warmup} steps) must be shorter than the stage ({total_steps} steps)")


def _warmup_factor(step: int, warmup: int) -> float:
    """The linear-warmup factor at `step` (1 once warmup is over)."""
    return (step + 1) / (warmup + 1) if step < warmup else 1.0


@dataclass(frozen=True)
class _Constant:
    """Linear warmup, then the base LR."""

    warmup: int = 0

    def __call__(self, step: int) -> float:
        """Factor at `step`."""
        return _warmup_factor(step, self.warmup)


@dataclass(frozen=True)
class _Cosine:
    """Linear warmup, then half a cosine from 1 down to `min_ratio` at `total` steps (held after)."""

    total: int
    warmup: int = 0
    min_ratio: float = 0.0

    def __call__(self, step: int) -> float:
        """Factor at `step`."""
        if step < self.warmup:
            return _warmup_factor(step, self.warmup)
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass(frozen=True)
class _Linear:
    """Linear warmup, then a straight line from 1 to `end_factor` at `total` steps (held after)."""

    total: int
    warmup: int = 0
    end_factor: float = 0.0

    def __call__(self, step: int) -> float:
        """Factor at `step`."""
        if step < self.warmup:
            return _warmup_factor(step, self.warmup)
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return 1.0 + (self.end_factor - 1.0) * progress


@hookimpl
def register_schedulers(register):
    """Register the schedulers; constant is the one a stage gets when it names none; plateau is stepped
    with a metric and tells the lint how low it can go."""
    register("constant", constant, default=True)
    register("multistep", multistep)
    register("cosine", cosine)
    register("linear", linear)
    register("onecycle", onecycle)
    register("plateau", plateau, monitored=True, worst_case=plateau_worst_case)
