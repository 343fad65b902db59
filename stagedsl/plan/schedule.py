"""The learning-rate curve of a plan, from the very schedulers the engine will build.

Each stage's scheduler factory runs on a throw-away optimizer (one scalar per group)
and is stepped exactly as the engine steps it, so the curve is what training will see.
Metric-driven schedulers (plateau) are drawn flat: they move only if the metric stalls
(the W001 lint gives their worst case).

The throw-away optimizer is `RatesOnly`: a `torch.optim.Optimizer` holding parameter groups
and nothing else. A real one would do (SGD's groups and defaults are what it copies), but
building any torch optimizer imports ``torch._dynamo`` (its methods are wrapped to keep
the compiler out), ~2 s of a dry run that never steps an optimizer.
"""

from __future__ import annotations

import warnings
from typing import Optional

from stagedsl.plan.model import Plan, StagePlan
from stagedsl.plan.pieces import stand_in_groups
from stagedsl.registry import Registry, get_registry


def stage_lr_curve(stage: StagePlan, registry: Registry) -> dict[str, list[float]]:
    """LR per optimizer step of one stage, by group name."""
    import torch

    monitored = registry.get("schedulers", stage.scheduler.name).meta.monitored
    optimizer = rates_only(stand_in_groups(stage), lr=stage.lr)
    curves: dict[str, list[float]] = {g.name: [] for g in stage.groups}
    scheduler = registry.build("schedulers", stage.scheduler.name, stage.scheduler.args, at=f"stage[{stage.index}].scheduler",
                               phase="plan", optimizer=optimizer, total_steps=stage.steps)
    step = getattr(scheduler, "step", None) if scheduler is not None and not monitored else None
    with warnings.catch_warnings():
        # no optimizer step happens here: there is nothing to train, only rates to read
        warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step\\(\\)` before")
        for _ in range(stage.steps):
            for group in optimizer.param_groups:
                curves[group["name"]].append(group["lr"])
            if step is not None:
                step()
    return curves


def rates_only(groups: list[dict], *, lr: float) -> "torch.optim.Optimizer":  # noqa: F821
    """A `torch.optim.Optimizer` with these parameter groups (filled in with SGD's defaults) and no state:
    what a scheduler reads and writes, built without importing ``torch._dynamo``."""
    import collections

    import torch

    class RatesOnly(torch.optim.Optimizer):
        """Parameter groups for a scheduler to set rates in; it trains nothing."""

        def __init__(self, param_groups: list[dict], defaults: dict):  # no Optimizer.__init__: it imports torch._dynamo
            self.defaults = defaults
            self.state = collections.defaultdict(dict)
            self.param_groups = [{**defaults, **group} for group in param_groups]
            for hooks in ("_optimizer_step_pre_hooks", "_optimizer_step_post_hooks", "_optimizer_state_dict_pre_hooks",
                          "_optimizer_state_dict_post_hooks", "_optimizer_load_state_dict_pre_hooks",
                          "_optimizer_load_state_dict_post_hooks"):
                setattr(self, hooks, collections.OrderedDict())

        def step(self, closure=None):  # noqa: D102 - nothing to train
            return None

    defaults = {"lr": lr, "momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0, "nesterov": False, "maximize": False,
                "foreach": None, "differentiable": False, "fused": None}
    return RatesOnly(groups, defaults)


def plan_lr_curve(plan: Plan, registry: Optional[Registry] = None) -> list[dict]:
    """Per stage: its name, first global step and LR curves by group."""
    registry = registry or get_registry()
    out = []
    start = 0
    for stage in plan.stages:
        out.append({"stage": stage.name, "start": start, "curves": stage_lr_curve(stage, registry)})
        start += stage.steps
    return out


GROUP_MARKS = "█▒•+x#*o"
"""The terminal chart's mark of each parameter group, in order of first appearance (default first)."""


def ascii_chart(curve: list[dict], width: int = 64, height: int = 8) -> str:
    """A log-scale terminal chart of the plan's LR, every parameter group with its own mark (legend below).

    Where two groups share a cell, the one listed first in the legend shows.
    """
    import math

    steps: list[dict[str, float]] = []  # per step: group -> LR
    boundaries, groups, where = [], {}, {}
    for stage in curve:
        boundaries.append(len(steps))
        length = len(next(iter(stage["curves"].values()))) if stage["curves"] else 0
        for group in stage["curves"]:
            groups.setdefault(group, GROUP_MARKS[len(groups) % len(GROUP_MARKS)])
            where.setdefault(group, []).append(stage["stage"])
        for i in range(length):
            steps.append({group: values[i] for group, values in stage["curves"].items()})
    if not steps:
        return ""
    total = len(steps)
    columns = [steps[min(total - 1, int(c * total / width))] for c in range(width)]
    positive = [v for column in columns for v in column.values() if v > 0]
    if not positive:
        return "(LR is zero throughout)"
    top, bottom = math.log10(max(positive)), math.log10(min(positive))
    if top - bottom < 1e-9:
        top, bottom = top + 0.5, bottom - 0.5
    rows = [[" "] * width for _ in range(height)]
    for c, column in enumerate(columns):
        for group in reversed(list(groups)):  # the first group is drawn last: it shows where groups overlap
            if group not in column:
                continue
            value = column[group]
            level = 0 if value <= 0 else round((math.log10(value) - bottom) / (top - bottom) * (height - 1))
            rows[height - 1 - level][c] = groups[group] if value > 0 else "_"
    marks = [" "] * width
    for b in boundaries[1:]:
        marks[min(width - 1, int(b * width / total))] = "|"
    labels = [f"{10 ** (top - r * (top - bottom) / (height - 1)):8.1e} " for r in range(height)]
    lines = [labels[r] + "".join(rows[r]) for r in range(height)]
    lines.append(" " * 9 + "".join(marks) + "  (| = stage boundary)")
    lines.append(" " * 9 + f"step 0{' ' * (width - len(str(total)) - 6)}{total}")
    every = len(curve)
    legend = [f"{mark} {group}" + ("" if len(where[group]) == every else f" ({', '.join(where[group])})")
              for group, mark in groups.items()]
    lines.append(" " * 9 + "groups: " + "   ".join(legend))
    return "\n".join(lines)
