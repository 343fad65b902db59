"""A stage's optimizer groups, decided once: named, exhaustive, non-overlapping.

Each `groups` entry of the spec becomes a `GroupPlan` of the trainable parameters its
selectors pick (a group whose parameters are all frozen stays, empty, and is linted
W004); every trainable parameter no entry picks joins the group named `REST_GROUP`
("default"), which also holds everything when the stage names no group. The engine
builds the optimizer from these groups as they are: it looks the names up and decides
nothing.
"""

from __future__ import annotations

from typing import Any, Sequence

from stagedsl.plan.model import GroupPlan
from stagedsl.plan.selectors import select
from stagedsl.registry import Registry
from stagedsl.spec.model import REST_GROUP, StageSpec


def plan_groups(stage: StageSpec, at: tuple, names: Sequence[str], trainable: Sequence[str], registry: Registry,
                problems: Any, modules: Sequence[Any] = ()) -> tuple[GroupPlan, ...]:
    """The stage's groups (see the module docstring); overlaps and selectors that match nothing go to `problems`."""
    trainable_set = set(trainable)
    owner: dict[str, str] = {}
    groups = []
    for g, group in enumerate(stage.groups):
        chosen: set[str] = set()
        for j, matched, problem in select(group.params, names, registry, modules):
            if problem:
                problems.add(at + ("groups", g, "params", j), str(problem), problem.hint, problem.code, problem.severity, trace=problem.trace)
            chosen.update(matched)
        overlap = next((name for name in names if name in chosen and name in owner), None)
        if overlap is not None:
            problems.add(at + ("groups", g, "params"), f"groups `{owner[overlap]}` and `{group.name}` overlap (e.g. `{overlap}`)",
                         "a parameter can be in one group only; narrow one of the globs", "E062")
        for name in chosen:
            owner.setdefault(name, group.name)
        lr = group.lr if group.lr is not None else stage.lr * (group.lr_scale if group.lr_scale is not None else 1.0)
        params = tuple(n for n in names if n in trainable_set and owner.get(n) == group.name)
        groups.append(GroupPlan(group.name, params, float(lr), group.weight_decay))
    rest = tuple(n for n in trainable if n not in owner)
    if rest or not groups:
        groups.insert(0, GroupPlan(REST_GROUP, rest, float(stage.lr), None))
    return tuple(groups)
