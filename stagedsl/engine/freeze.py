"""Freezing: which parameters train in a stage, and frozen norm layers held in eval mode.

`apply_freeze` sets ``requires_grad`` from the stage's concrete parameter names (the
plan's `trainable`, decided once by the compiler).
`frozen_norms` finds the normalisation layers that must not change while frozen: a norm
module whose parameters are all frozen, or a parameter-less norm inside a fully frozen
parent. `set_train_mode` is the engine's only way to put the model in training mode: it
calls ``model.train()`` and puts those layers back in ``eval()``, so BatchNorm running
statistics of frozen parts stay put. A stage with ``frozen_norm = "train"`` opts out.
"""

from __future__ import annotations

from typing import Sequence

from torch import nn

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


def apply_freeze(model: nn.Module, stage: StagePlan) -> None:
    """Set ``requires_grad``: the parameters `stage.trainable` names train, every other one is frozen.

    The plan decided the set (and that it fits this model); nothing is checked again here.
    """
    trains = set(stage.trainable)
    for name, param in model.named_parameters():
        param.requires_grad_(name in trains)


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
