"""Pieces the planner builds once, before any compute: the cheap ones, and the live ones.

A loss, metric, optimizer or scheduler refusing its arguments (a ``ValueError`` for a
value out of range) would otherwise surface only when its stage starts, after the
earlier stages have trained. `check_stage_pieces` builds each of them once while
planning (the optimizer over one stand-in scalar per parameter group, the scheduler on
that optimizer), so the refusal is a located error of ``staged run`` before any stage
trains. ``staged plan``'s dry run builds the losses alone (it must stay interactive: a torch
optimizer imports torch._dynamo, a metric torchmetrics). A loss with an argument written
``"auto"`` is left to the run (the value is computed from the data).

A live model or dataset handed to `stagedsl.plan` / `stagedsl.run` stands where the
spec says ``<live:...>``; `live_piece` checks it is what it should be.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Optional

from stagedsl.errors import PlanError, Problem, StagedError
from stagedsl.plan.model import StagePlan
from stagedsl.registry import Registry, singular
from stagedsl.spec.check import loss_term_path
from stagedsl.spec.locate import format_path

AUTO = "auto"
"""A loss argument computed from the training data when the stage starts (`stagedsl.engine.objective`)."""


def live_piece(kind: str, name: str, obj: Any) -> Any:
    """The live object handed over for the spec's ``<live:...>`` `name`; a `PlanError` (E086) when it is missing or unfit."""
    at = "model" if kind == "models" else "data"
    if obj is None:
        raise PlanError([Problem(code="E086", message=f"the spec's {singular(kind)} is the live `{name}`, which was not handed over",
                                 path=at, hint=f"pass it: stagedsl.plan(spec, {at}=...) or stagedsl.run(spec, {at}=...)")])
    if kind == "models":
        import torch

        if not isinstance(obj, torch.nn.Module):
            raise PlanError([Problem(code="E086", message=f"a live model must be a torch.nn.Module, found {type(obj).__name__}", path=at)])
    elif getattr(obj, "train", None) is None:
        raise PlanError([Problem(code="E086", message=f"live data must be a stagedsl.DataSplits with a train split, found {type(obj).__name__}",
                                 path=at, hint="stagedsl.DataSplits(train=..., val=..., test=...)")])
    return obj


def split_sizes(splits: Any) -> dict[str, int]:
    """The lengths of a `DataSplits`' splits (those that have one); a `PlanError` (E106) for anything else."""
    if getattr(splits, "train", None) is None:
        raise PlanError([Problem(code="E106", message=f"the dataset returned {type(splits).__name__}, not a stagedsl.DataSplits with a train split",
                                 path="data", hint="a dataset factory returns stagedsl.DataSplits(train=..., val=..., test=...)")])
    parts = {name: getattr(splits, name, None) for name in ("train", "val", "test")}
    return {name: len(part) for name, part in parts.items() if part is not None and hasattr(part, "__len__")}


def stand_in_groups(stage: StagePlan) -> list[dict]:
    """One trainable scalar per parameter group of the stage, with the group's LR and name (as the engine builds them)."""
    import torch

    groups = []
    for group in stage.groups:
        entry: dict[str, Any] = {"params": [torch.zeros(1, requires_grad=True)], "lr": group.lr, "name": group.name}
        if group.weight_decay is not None:
            entry["weight_decay"] = group.weight_decay
        groups.append(entry)
    return groups


def _attempt(problems: Any, build: Callable[[], Any]) -> Optional[Any]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # nothing trains here: a piece's warnings belong to the run
            return build()
    except StagedError as exc:
        problems.extend(exc)
        return None


def check_stage_pieces(stage: StagePlan, registry: Registry, problems: Any, *, losses_only: bool = False) -> None:
    """Build the stage's losses, metrics, optimizer and scheduler once (see the module docstring); what
    fails goes to `problems`, located at the piece. `losses_only`: the losses alone (a dry run, which
    stays fast: no torch optimizer, so no torch._dynamo, and no torchmetrics)."""
    at = ("stage", stage.index)
    for j, term in enumerate(stage.loss.terms):
        if any(isinstance(value, str) and value == AUTO for value in term.args.values()):
            continue
        path = format_path(list(loss_term_path(stage.index, stage.loss.kind, len(stage.loss.terms), j)))
        _attempt(problems, lambda: registry.build("losses", term.name, term.args, at=path, phase="plan"))
    if losses_only:
        return
    for j, metric in enumerate(stage.metrics):
        path = format_path(list(at + ("metrics", j)))
        _attempt(problems, lambda: registry.build("metrics", metric.name, metric.args, at=path, phase="plan"))
    optimizer = _attempt(problems, lambda: registry.build(
        "optimizers", stage.optimizer.name, stage.optimizer.args, at=format_path(list(at + ("optimizer",))), phase="plan",
        param_groups=stand_in_groups(stage), lr=stage.lr))
    if optimizer is not None:
        _attempt(problems, lambda: registry.build(
            "schedulers", stage.scheduler.name, stage.scheduler.args, at=format_path(list(at + ("scheduler",))), phase="plan",
            optimizer=optimizer, total_steps=stage.steps))


__all__ = ["check_stage_pieces", "live_piece", "split_sizes", "stand_in_groups"]
