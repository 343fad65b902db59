"""Build one stage: seed, init weights, freeze, optimizer, scheduler, objective, metrics.

Everything here runs once per stage (or per gate retry of it), never per step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

import attrs
import torch
from torch import nn

from stagedsl.engine.checkpointing.init_weights import load_init
from stagedsl.engine.context import RunContext
from stagedsl.engine.evaluation import Evaluator, build_metrics
from stagedsl.engine.freeze import apply_freeze, frozen_norms
from stagedsl.engine.objective import build_objective
from stagedsl.engine.seeding import seed_everything, stage_seed
from stagedsl.plan.model import StagePlan


@attrs.define(eq=False)
class StageObjects:
    """The live pieces of one stage attempt."""

    plan: StagePlan
    train_forward: Callable[..., Any]  # what the step loop calls: the run's forward, or this stage's DDP wrapper of it
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


def optimizer_groups(model: nn.Module, stage: StagePlan) -> list[dict[str, Any]]:
    """The optimizer's parameter groups: the plan's groups as they are, each name looked up in the model."""
    table = dict(model.named_parameters())
    groups = []
    for group in stage.groups:
        entry: dict[str, Any] = {"params": [table[name] for name in group.params], "lr": float(group.lr), "name": group.name}
        if group.weight_decay is not None:
            entry["weight_decay"] = float(group.weight_decay)
        groups.append(entry)
    return groups


LISTED_KEYS = 50
"""How many missing / unexpected init keys the warning names (summary.json holds every one)."""


def _keys(what: str, names: list[str]) -> str:
    shown = ", ".join(names[:LISTED_KEYS]) + (f", ... ({len(names) - LISTED_KEYS} more)" if len(names) > LISTED_KEYS else "")
    return f"{len(names)} {what} key(s)" + (f": {shown}" if names else "")


def build_stage(ctx: RunContext, stage: StagePlan, attempt: int, restore: Optional[dict] = None, *,
                resuming: bool = False) -> StageObjects:
    """Prepare one attempt of `stage` on the run's model.

    `restore` (a state_dict) is loaded first: the weights a retry starts from, or the
    previous stage's last weights when a run starts at a later stage. The stage's own
    `init` wins over it. `resuming`: a checkpoint's weights and states follow
    (`stagedsl.engine.checkpointing.resume_point`), so neither `restore` nor `init` is loaded.

    Under torchrun only rank 0 reads the `init` file (the others never touch the run
    directory); the stage's DDP wrapper, made after the freeze, hands every process rank
    0's weights and buffers.
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
    if stage.init is not None and not resuming and placement.is_writer:
        init_report = load_init(model, stage.init, ctx.run_dir)
        if init_report["missing"] or init_report["unexpected"]:
            ctx.progress.warn(f"stage {stage.name}: init `{init_report['path']}` loaded what matched (strict = false); "
                              f"{_keys('missing', init_report['missing'])}; {_keys('unexpected', init_report['unexpected'])} "
                              "(every key: summary.json, stages.<stage>.init)")
        else:
            ctx.progress.notice(f"stage {stage.name}: loaded init `{_shown(init_report['path'], ctx.run_dir.root)}`")

    apply_freeze(model, stage)
    held = frozen_norms(model) if stage.frozen_norm != "train" else []
    ddp = ctx.plan.distributed.stages[stage.index] if ctx.plan.distributed is not None else None
    train_forward = placement.stage_forward(model, ctx.forward, find_unused=ddp.find_unused if ddp else False)

    at = f"stage[{stage.index}]"
    optimizer = registry.build("optimizers", stage.optimizer.name, stage.optimizer.args, at=f"{at}.optimizer",
                               param_groups=optimizer_groups(model, stage), lr=float(stage.lr))
    scheduler = registry.build("schedulers", stage.scheduler.name, stage.scheduler.args, at=f"{at}.scheduler",
                               optimizer=optimizer, total_steps=stage.steps)
    monitored = stage.scheduler_monitor is not None and scheduler is not None  # the Plan names the metric of a monitored one

    objective, auto_args = build_objective(stage.loss, registry, ctx.splits.train, ctx.auto, placement.device, at=f"{at}.loss")
    metrics = build_metrics(stage.metrics, registry, placement.device, at=f"{at}.metrics", distributed=placement.distributed)
    evaluator = Evaluator(ctx.loaders.val, objective, metrics, placement)

    trainable_set = set(stage.trainable)
    return StageObjects(
        plan=stage,
        train_forward=train_forward,
        optimizer=optimizer,
        scheduler=scheduler,
        monitored=monitored,
        objective=objective,
        evaluator=evaluator,
        scaler=placement.grad_scaler(),
        trainable_params=[p for n, p in model.named_parameters() if n in trainable_set],
        held_norms=held,
        group_names=[group.name for group in stage.groups],
        init_report=init_report,
        auto_args=auto_args,
    )


def _shown(path: str, root: Path) -> str:
    """`path` relative to the run directory when it is inside it (a line that fits 80 columns), else as written."""
    try:
        return str(Path(path).resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)
