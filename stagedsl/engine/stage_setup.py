"""Build one stage: seed, init weights, freeze, optimizer, scheduler, objective, metrics.

Everything here runs once per stage (or per gate retry of it), never per step.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import attrs
import torch
from torch import nn

from stagedsl.engine.checkpointing.init_weights import load_init
from stagedsl.engine.context import RunContext
from stagedsl.engine.evaluation import Evaluator, build_metrics
from stagedsl.engine.freeze import apply_freeze, check_optimizer_params, frozen_norms
from stagedsl.engine.objective import build_objective
from stagedsl.engine.seeding import seed_everything, stage_seed
from stagedsl.errors import RunError, StagedError
from stagedsl.plan.model import StagePlan
from stagedsl.registry import Registry, singular


@attrs.define(eq=False)
class StageObjects:
    """The live pieces of one stage attempt."""

    plan: StagePlan
    optimizer: torch.optim.Optimizer
    scheduler: Any  # None when the factory returns None
    monitored: bool  # the scheduler is stepped with a metric after each evaluation
    objective: Callable
    evaluator: Evaluator
    scaler: Optional[torch.amp.GradScaler]
    trainable_params: list[nn.Parameter]
    held_norms: list[nn.Module]
    group_names: list[str]
    init_report: Optional[dict]
    auto_args: dict


def optimizer_groups(model: nn.Module, stage: StagePlan, trainable: list[str]) -> list[dict[str, Any]]:
    """Parameter groups of the stage (trainable parameters only); uncovered ones join ``default``."""
    table = dict(model.named_parameters())
    groups: list[dict[str, Any]] = []
    covered: set[str] = set()
    for group in stage.groups:
        params = []
        for name in group.params:
            if name not in table:
                raise RunError(f"stage `{stage.name}`: group `{group.name}` names unknown parameter `{name}`", code="E402")
            if not table[name].requires_grad:
                raise RunError(f"stage `{stage.name}`: group `{group.name}` holds frozen parameter `{name}`", code="E402")
            if name in covered:
                raise RunError(f"stage `{stage.name}`: parameter `{name}` is in two groups", code="E402")
            covered.add(name)
            params.append(table[name])
        if params:
            entry: dict[str, Any] = {"params": params, "lr": float(group.lr), "name": group.name}
            if group.weight_decay is not None:
                entry["weight_decay"] = float(group.weight_decay)
            groups.append(entry)
    rest = [name for name in trainable if name not in covered]
    if rest:
        names = {g["name"] for g in groups}
        label = "default" if "default" not in names else "default_rest"
        groups.append({"params": [table[n] for n in rest], "lr": float(stage.lr), "name": label})
    if not groups:
        raise RunError(f"stage `{stage.name}` trains no parameter", code="E402")
    return groups


def build_piece(registry: Registry, kind: str, name: str, /, *args: Any, **kwargs: Any) -> Any:
    """Call the factory registered as `name`; a plugin's own failure becomes a RunError naming it."""
    factory = registry.get(kind, name).factory
    try:
        return factory(*args, **kwargs)
    except StagedError:
        raise
    except Exception as exc:
        raise RunError(f"building {singular(kind)} `{name}` failed: {type(exc).__name__}: {exc}", code="E408") from exc


def build_stage(ctx: RunContext, stage: StagePlan, attempt: int, restore: Optional[dict] = None, *,
                resuming: bool = False) -> StageObjects:
    """Prepare one attempt of `stage` on the run's model.

    `restore` (a state_dict) is loaded first: the weights a retry starts from, or the
    previous stage's last weights when a run starts at a later stage. The stage's own
    `init` wins over it. `resuming`: a checkpoint's weights and states follow
    (`stagedsl.engine.checkpointing.resume_point`), so neither `restore` nor `init` is loaded.
    """
    model, registry, placement = ctx.model, ctx.registry, ctx.placement
    seed = stage_seed(ctx.plan.run.seed, stage.index, attempt)
    seed_everything(seed)
    ctx.loaders.generator.manual_seed(seed)
    if ctx.loaders.worker_generator is not None:
        ctx.loaders.worker_generator.manual_seed((seed + 1) % 2**63)

    if restore is not None and not resuming:
        model.load_state_dict(restore)
    init_report = None
    if stage.init is not None and not resuming:
        init_report = load_init(model, stage.init, ctx.run_dir)
        if init_report["missing"] or init_report["unexpected"]:
            ctx.progress.warn(
                f"stage {stage.name}: init `{init_report['path']}` left {len(init_report['missing'])} missing key(s) "
                f"{init_report['missing'][:3]} and {len(init_report['unexpected'])} unexpected key(s) {init_report['unexpected'][:3]}"
            )
        else:
            ctx.progress.notice(f"stage {stage.name}: loaded init `{init_report['path']}`")

    trainable, _frozen = apply_freeze(model, stage)
    held = frozen_norms(model) if stage.frozen_norm != "train" else []

    groups = optimizer_groups(model, stage, trainable)
    optimizer = build_piece(registry, "optimizers", stage.optimizer.name, groups, float(stage.lr), **stage.optimizer.args)
    check_optimizer_params(optimizer, stage.name)

    entry = registry.get("schedulers", stage.scheduler.name)
    scheduler = build_piece(registry, "schedulers", stage.scheduler.name, optimizer, total_steps=stage.steps, **stage.scheduler.args)
    monitored = bool(entry.meta.get("monitored")) and scheduler is not None

    objective, auto_args = build_objective(stage.loss, registry, ctx.splits.train, ctx.auto, placement.device)
    metrics = build_metrics(stage.metrics, registry, placement.device)
    evaluator = Evaluator(ctx.loaders.val, objective, metrics, placement)

    trainable_set = set(trainable)
    return StageObjects(
        plan=stage,
        optimizer=optimizer,
        scheduler=scheduler,
        monitored=monitored,
        objective=objective,
        evaluator=evaluator,
        scaler=placement.grad_scaler(),
        trainable_params=[p for n, p in model.named_parameters() if n in trainable_set],
        held_norms=held,
        group_names=[str(g.get("name", f"group{i}")) for i, g in enumerate(optimizer.param_groups)],
        init_report=init_report,
        auto_args=auto_args,
    )
