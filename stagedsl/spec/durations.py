"""Durations as values: ``"30 epochs"``, ``"500 steps"``, or a bare integer (steps).

Counted from the start of the stage that uses them. The planner turns them into step
counts once the number of batches per epoch is known.
"""

from __future__ import annotations

import math
import re
from typing import Optional, Union

import attrs

_UNITS = {
    "step": "steps", "steps": "steps", "ba": "steps", "batch": "steps", "batches": "steps",
    "epoch": "epochs", "epochs": "epochs", "ep": "epochs",
}
_PATTERN = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([A-Za-z]+)\s*$")


class Steps(int):
    """Annotation marker: a factory argument written as a duration in the spec.

    A scheduler factory declares ``milestones: list[Steps]`` or ``warmup: Steps = 0``;
    the spec may then write ``"30 epochs"`` and the factory receives a step count.
    """


class DurationError(ValueError):
    """A duration string that cannot be read."""


@attrs.frozen
class Duration:
    """An amount of training in `steps` or `epochs`."""

    value: float
    unit: str  # "steps" | "epochs"

    def to_steps(self, batches_per_epoch: Optional[int], accumulate: int = 1) -> int:
        """The duration in optimizer steps of `accumulate` micro-batches each.

        Epochs need `batches_per_epoch` and round up, to at least one step.
        """
        if self.unit == "steps":
            return int(self.value)
        if batches_per_epoch is None:
            raise DurationError("durations in epochs need the dataset's length, which this dataset does not report; use steps")
        steps = self.value * batches_per_epoch / accumulate
        if not math.isfinite(steps):
            raise DurationError(f"{self.value:g} epochs is too long: it overflows a step count")
        return max(1, math.ceil(steps - 1e-9))

    def __str__(self) -> str:
        value = int(self.value) if float(self.value).is_integer() else self.value
        return f"{value} {self.unit}"


def parse_duration(value: Union[str, int, float, Duration]) -> Duration:
    """Read ``"30 epochs"`` / ``"500 steps"`` / ``"2ep"`` / ``1200`` (steps) into a `Duration`."""
    if isinstance(value, Duration):
        return value
    if isinstance(value, bool):
        raise DurationError(f"expected a duration such as \"500 steps\" or \"3 epochs\", found {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise DurationError(f"a duration cannot be negative, found {value}")
        return Duration(value, "steps")
    if isinstance(value, str):
        match = _PATTERN.match(value)
        if match:
            number, unit = float(match.group(1)), _UNITS.get(match.group(2).lower())
            if not math.isfinite(number):
                raise DurationError(f"a duration must be a finite number, found {value!r}")
            if unit == "steps" and not number.is_integer():
                raise DurationError(f"steps must be a whole number, found {value!r}")
            if unit is not None:
                return Duration(number, unit)
    raise DurationError(f"expected a duration such as \"500 steps\" or \"3 epochs\", found {value!r}")
