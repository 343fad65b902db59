"""Lints of a compiled plan: legal, but probably not what the user meant.

- W001: a metric-driven (plateau) schedule that can cut the LR below 1e-3 x its start
  within the stage (seed 003: ReduceLROnPlateau(patience 5, factor 0.5) drove the LR to
  ~0 by epoch 20);
- W002: evaluation cadence longer than the stage (it only evaluates at the end);
- W003: a stage identical to the one before it;
- W004: a parameter group whose parameters are all frozen (it optimizes nothing).
"""

from __future__ import annotations

import attrs

from stagedsl.errors import Problem
from stagedsl.plan.model import Plan, StagePlan
from stagedsl.registry import Registry

COLLAPSE_RATIO = 1e-3


def worst_case_plateau_lr(stage: StagePlan, factor: float, patience: int, cooldown: int = 0, min_lr: float = 0.0) -> tuple[float, int]:
    """The lowest LR a plateau schedule can reach in the stage if the metric never improves,
    and the evaluation at which it first drops below `COLLAPSE_RATIO` x the start (0 if never)."""
    evaluations = stage.steps // stage.eval.every if stage.eval.every else 1
    lr = stage.lr
    since = 0
    collapse_at = 0
    cooling = 0
    for evaluation in range(1, evaluations + 1):
        if cooling > 0:
            cooling -= 1
            continue
        since += 1
        if since > patience:
            lr = max(lr * factor, min_lr)
            since = 0
            cooling = cooldown
            if not collapse_at and lr < COLLAPSE_RATIO * stage.lr:
                collapse_at = evaluation
    return lr, collapse_at


def _comparable(stage: StagePlan) -> StagePlan:
    return attrs.evolve(stage, index=0, name="", init=None, gate=None)


def lint_plan(plan: Plan, registry: Registry) -> list[Problem]:
    """Warnings about a plan, each pointing at the key that causes it."""
    warnings: list[Problem] = []
    for stage in plan.stages:
        at = f"stage[{stage.index}]"
        entry = registry.find("schedulers", stage.scheduler.name)
        if entry is not None and entry.meta.get("monitored"):
            args = stage.scheduler.args
            factor = float(args.get("factor", 0.1))
            patience = int(args.get("patience", 10))
            lowest, collapse_at = worst_case_plateau_lr(stage, factor, patience, int(args.get("cooldown", 0)), float(args.get("min_lr", 0.0)))
            if collapse_at:
                step = collapse_at * (stage.eval.every or stage.steps)
                when = f"step {step}" + (f" (epoch {step * stage.accumulate / plan.data.batches_per_epoch:.0f})" if plan.data.batches_per_epoch else "")
                warnings.append(Problem(
                    "W001",
                    f"stage `{stage.name}`: {stage.scheduler.name}(factor={factor:g}, patience={patience}) can cut the LR from "
                    f"{stage.lr:.2g} to {lowest:.2g} within the stage, below {COLLAPSE_RATIO:g}x its start by {when} if "
                    f"`{stage.scheduler_monitor}` stalls",
                    path=f"{at}.scheduler", severity="warning",
                    hint='a schedule by milestones keeps the LR predictable: { use = "multistep", milestones = ["30 epochs", "60 epochs"], gamma = 0.1 }, or raise patience / min_lr',
                ))
        if stage.eval.every is not None and stage.eval.every > stage.steps:
            warnings.append(Problem(
                "W002", f"stage `{stage.name}` evaluates every {stage.eval.every} steps but lasts {stage.steps}: it will only evaluate at its end",
                path=f"{at}.eval.every", severity="warning", hint="shorten eval.every or drop it",
            ))
        for group in stage.groups:
            if not group.params and group.name != "default":
                warnings.append(Problem(
                    "W004", f"stage `{stage.name}`: group `{group.name}` holds no trainable parameter",
                    path=f"{at}.groups", severity="warning", hint="its parameters are all frozen in this stage",
                ))
        if stage.index > 0 and _comparable(stage) == _comparable(plan.stages[stage.index - 1]):
            warnings.append(Problem(
                "W003", f"stage `{stage.name}` is identical to stage `{plan.stages[stage.index - 1].name}`",
                path=at, severity="warning", hint="merge them into one stage with the summed duration",
            ))
    return warnings
