"""Lints of a compiled plan: legal, but probably not what the user meant.

- W001: a metric-driven schedule that can cut the LR below 1e-3 x its start within the
  stage if the metric stalls (seed 003: ReduceLROnPlateau(patience 5, factor 0.5) drove
  the LR to ~0 by epoch 20). The scheduler's plugin says how low it can go (its
  ``worst_case``, `stagedsl.registry.meta.SchedulerMeta`); the lint knows no scheduler;
- W002: evaluation cadence longer than the stage (it only evaluates at the end);
- W003: a stage identical to the one before it (the same settings, the same init);
- W004: a parameter group whose parameters are all frozen (it optimizes nothing);
- W005: a selector that names a module and selects part of it (``transformer.*``, where
  ``transformer.**`` was meant): found where selectors are resolved
  (`stagedsl.plan.selectors`), and listed with these among the plan's warnings.
"""

from __future__ import annotations

import attrs

from stagedsl.errors import Problem
from stagedsl.plan.model import Plan, StagePlan
from stagedsl.registry import Registry
from stagedsl.spec.model import REST_GROUP

COLLAPSE_RATIO = 1e-3


def collapse(rates: list[float], lr: float) -> tuple[float, int]:
    """The lowest of `rates` (the LR after each evaluation) and the evaluation (from 1) at which it
    first falls below `COLLAPSE_RATIO` x `lr` (0 if it never does)."""
    at = next((i + 1 for i, rate in enumerate(rates) if rate < COLLAPSE_RATIO * lr), 0)
    return min(rates, default=lr), at


def _comparable(stage: StagePlan) -> StagePlan:
    """The stage without what only names it (its init stays: starting from other weights is another stage)."""
    return attrs.evolve(stage, index=0, name="", gate=None)


def lint_plan(plan: Plan, registry: Registry) -> list[Problem]:
    """Warnings about a plan, each pointing at the key that causes it."""
    warnings: list[Problem] = []
    for stage in plan.stages:
        at = f"stage[{stage.index}]"
        entry = registry.find("schedulers", stage.scheduler.name)
        if entry is not None and entry.meta.worst_case is not None:
            evaluations = stage.steps // stage.eval.every if stage.eval.every else 1
            lowest, collapse_at = collapse(list(entry.meta.worst_case(dict(stage.scheduler.args), stage.lr, evaluations)), stage.lr)
            if collapse_at:
                step = collapse_at * (stage.eval.every or stage.steps)
                when = f"step {step}" + (f" (epoch {step * stage.accumulate / plan.data.batches_per_epoch:.0f})" if plan.data.batches_per_epoch else "")
                warnings.append(Problem(
                    "W001",
                    f"stage `{stage.name}`: {stage.scheduler.name}({_args(stage.scheduler.args)}) can cut the LR from "
                    f"{stage.lr:.2g} to {lowest:.2g} within the stage, below {COLLAPSE_RATIO:g}x its start by {when} if "
                    f"`{stage.scheduler_monitor}` stalls",
                    path=f"{at}.scheduler", severity="warning",
                    hint="a schedule by fixed milestones keeps the LR predictable; or give this scheduler arguments that cut less",
                ))
        if stage.eval.every is not None and stage.eval.every > stage.steps:
            warnings.append(Problem(
                "W002", f"stage `{stage.name}` evaluates every {stage.eval.every} steps but lasts {stage.steps}: it will only evaluate at its end",
                path=f"{at}.eval.every", severity="warning", hint="shorten eval.every or drop it",
            ))
        for group in stage.groups:
            if not group.params and group.name != REST_GROUP:
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


def _args(args: dict) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v!r}" for k, v in args.items())
