"""How many CPU threads torch's intra-op pool gets: ``run.threads``, or the "auto" rule.

The rule lives here and nowhere else; the plan carries the setting (an integer, or
``"auto"`` with the model's parameter count in ``plan.parameters``), the runner applies
what `choose_threads` returns once, before the model is built.

Why a rule at all: torch starts as many intra-op threads as the machine has cores. For a
small model the per-op work is too little to split, and when another process holds a
core the threads wait on each other at every op (measured on a busy 2-core machine: 50x
slower; see ``benchmarks/RESULTS.md``). So "auto" is

- one thread for a model under `SMALL_MODEL` parameters, whatever the machine;
- otherwise the cores this process may use (``os.sched_getaffinity``) minus the ones
  other processes keep busy (the 1-minute load average, rounded), at least one and at
  most torch's own default.
"""

from __future__ import annotations

import os
from typing import Optional, Union

import attrs

AUTO = "auto"
SMALL_MODEL = 2_000_000
"""Models with fewer parameters than this train on one CPU thread under "auto"."""


@attrs.frozen
class ThreadChoice:
    """The number of threads, and why (a short phrase for the run's notice)."""

    threads: Optional[int]  # None: leave torch's default alone
    reason: str


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, else the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def busy_cores() -> float:
    """Cores other processes keep busy: the 1-minute load average (0 where there is none)."""
    try:
        return max(0.0, os.getloadavg()[0])
    except (AttributeError, OSError):
        return 0.0


def choose_threads(setting: Union[int, str, None], parameters: int, *, torch_default: int,
                   cores: Optional[int] = None, load: Optional[float] = None) -> ThreadChoice:
    """The thread count for `setting` (an int, "auto", or None for torch's default) and a model of `parameters`."""
    if setting is None:
        return ThreadChoice(None, "torch's default")
    if setting != AUTO:
        return ThreadChoice(int(setting), "run.threads")
    if parameters < SMALL_MODEL:
        return ThreadChoice(1, f"auto: {_count(parameters)} parameters is a small model")
    cores = usable_cores() if cores is None else cores
    load = busy_cores() if load is None else load
    free = max(1, min(cores - int(load + 0.5), torch_default))
    return ThreadChoice(free, f"auto: {cores} cores, load {load:.1f}, {_count(parameters)} parameters")


def _count(parameters: int) -> str:
    return f"{parameters / 1e6:.1f}M" if parameters >= 100_000 else f"{parameters / 1e3:.0f}k"
