"""Freezing: which parameters train in a stage, and frozen norm layers held in eval mode.

`apply_freeze` sets ``requires_grad`` from the stage's concrete parameter names.
`frozen_norms` finds the normalisation layers that must not change while frozen: a norm
module whose parameters are all frozen, or a parameter-less norm inside a fully frozen
parent. `set_train_mode` is the engine's only way to put the model in training mode: it
calls ``model.train()`` and puts those layers back in ``eval()``, so BatchNorm running
statistics of frozen parts stay put. A stage with ``frozen_norm = "train"`` opts out.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from stagedsl.errors import RunError
from stagedsl.plan.model import StagePlan

NORM_TYPES: tuple[type[nn.Module], ...] = tuple(
    t
    for t in (
        nn.modules.batchnorm._NormBase,  # BatchNorm*, SyncBatchNorm, InstanceNorm*
        nn.LayerNorm,
        nn.GroupNorm,
        nn.LocalResponseNorm,
        getattr(nn, "RMSNorm", None),
    )
    if t is not None
)
"""Module types treated as normalisation layers."""


def apply_freeze(model: nn.Module, stage: StagePlan) -> tuple[list[str], list[str]]:
    """Set ``requires_grad`` for the stage; return (trainable, frozen) parameter names.

    `stage.trainable` lists exactly the parameters that train. A plan with only
    `stage.frozen` trains everything else; a plan with neither trains everything.
    """
    names = [name for name, _ in model.named_parameters()]
    known = set(names)
    trainable_set, frozen_set = set(stage.trainable), set(stage.frozen)
    unknown = sorted((trainable_set | frozen_set) - known)
    if unknown:
        shown = ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise RunError(
            f"stage `{stage.name}` names parameters the model does not have: {shown}; was the plan compiled for another model?",
            code="E402",
        )
    both = sorted(trainable_set & frozen_set)
    if both:
        raise RunError(f"stage `{stage.name}` both trains and freezes: {', '.join(both[:5])}", code="E402")
    if trainable_set:
        trains = trainable_set.__contains__
    elif frozen_set:
        trains = lambda name: name not in frozen_set  # noqa: E731
    else:
        trains = lambda name: True  # noqa: E731
    trainable, frozen = [], []
    for name, param in model.named_parameters():
        flag = trains(name)
        param.requires_grad_(flag)
        (trainable if flag else frozen).append(name)
    return trainable, frozen


def _all_frozen(module: nn.Module) -> bool:
    params = list(module.parameters())
    return bool(params) and not any(p.requires_grad for p in params)


def frozen_norms(model: nn.Module) -> list[nn.Module]:
    """Norm layers to hold in eval mode: all their parameters frozen, or none and a frozen parent."""
    parent: dict[int, nn.Module] = {}
    for module in model.modules():
        for child in module.children():
            parent.setdefault(id(child), module)
    held = []
    for module in model.modules():
        if not isinstance(module, NORM_TYPES):
            continue
        if any(True for _ in module.parameters(recurse=False)):
            if _all_frozen(module):
                held.append(module)
            continue
        # no parameters: held when the nearest ancestor that has parameters is fully frozen
        ancestor = parent.get(id(module))
        while ancestor is not None and not any(True for _ in ancestor.parameters()):
            ancestor = parent.get(id(ancestor))
        if ancestor is not None and _all_frozen(ancestor):
            held.append(module)
    return held


def set_train_mode(model: nn.Module, held: Sequence[nn.Module]) -> None:
    """``model.train()``, then hold the frozen norm layers in eval mode."""
    model.train()
    for module in held:
        module.eval()


def check_optimizer_params(optimizer: torch.optim.Optimizer, stage_name: str) -> None:
    """Fail if a frozen parameter reached the optimizer."""
    for group in optimizer.param_groups:
        for param in group["params"]:
            if not param.requires_grad:
                raise RunError(
                    f"stage `{stage_name}`: a frozen parameter reached the optimizer (group `{group.get('name', '?')}`)",
                    code="E402",
                )
