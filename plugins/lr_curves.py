"""Learning-rate multipliers for `torch.optim.lr_scheduler.LambdaLR`, as picklable objects.

They are dataclasses with a ``__dict__`` (not slots): ``LambdaLR.state_dict`` saves a
callable object's ``__dict__`` and ``load_state_dict`` restores it.

Each is called with the number of scheduler steps taken so far (the optimizer step
about to run, counted from the stage's start) and returns the factor applied to every
group's base LR. Warmup is linear: ``(step + 1) / (warmup + 1)``, reaching 1 at
``step == warmup`` (as torch's ``LinearLR(start_factor=1 / (warmup + 1))``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def check_warmup(warmup: int, total_steps: int) -> None:
    """A ValueError unless 0 <= warmup < total_steps (or warmup is 0)."""
    if warmup < 0:
        raise ValueError(f"warmup cannot be negative, found {warmup}")
    if warmup and warmup >= total_steps:
        raise ValueError(f"warmup ({warmup} steps) must be shorter than the stage ({total_steps} steps)")


def warmup_factor(step: int, warmup: int) -> float:
    """The linear-warmup factor at `step` (1 once warmup is over)."""
    return (step + 1) / (warmup + 1) if step < warmup else 1.0


@dataclass(frozen=True)
class Constant:
    """Linear warmup, then the base LR."""

    warmup: int = 0

    def __call__(self, step: int) -> float:
        """Factor at `step`."""
        return warmup_factor(step, self.warmup)


@dataclass(frozen=True)
class Cosine:
    """Linear warmup, then half a cosine from 1 down to `min_ratio` at `total` steps (held after)."""

    total: int
    warmup: int = 0
    min_ratio: float = 0.0

    def __call__(self, step: int) -> float:
        """Factor at `step`."""
        if step < self.warmup:
            return warmup_factor(step, self.warmup)
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass(frozen=True)
class Linear:
    """Linear warmup, then a straight line from 1 to `end_factor` at `total` steps (held after)."""

    total: int
    warmup: int = 0
    end_factor: float = 0.0

    def __call__(self, step: int) -> float:
        """Factor at `step`."""
        if step < self.warmup:
            return warmup_factor(step, self.warmup)
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return 1.0 + (self.end_factor - 1.0) * progress
