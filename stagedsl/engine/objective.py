"""A stage's objective from its `LossPlan`, with ``"auto"`` arguments resolved once.

``kind = "sum"``: Σ weight·term(prediction, target). ``kind = "blend"``:
(1 − alpha)·terms[0] + alpha·terms[1] (term weights are not applied in a blend).
A loss argument written ``"auto"`` is computed once per run by the loss entry's
``meta.auto[arg](train_dataset)``, cached, and recorded (as JSON) in
``RunState.auto_loss_args`` and the stage's summary.

The objective is called ``objective(prediction, target, inputs)`` with the batch's model
inputs; a loss with ``needs_inputs = True`` receives them as a third argument (mesh
losses need the mesh), any other loss is called ``loss(prediction, target)``.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from stagedsl.errors import RunError
from stagedsl.plan.model import LossPlan, LossTerm
from stagedsl.registry import Registry

AUTO = "auto"
Objective = Callable[[Any, Any, Any], torch.Tensor]
"""``objective(prediction, target, inputs) -> scalar loss``."""


def json_value(value: Any) -> Any:
    """A resolved argument in JSON form (tensors and arrays as nested lists)."""
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 and value.dim() == 0 else value.tolist()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    return value


class AutoArgs:
    """The run's cache of resolved ``"auto"`` loss arguments: computed once, reused by every stage."""

    def __init__(self, recorded: dict[str, dict[str, Any]], preset: dict[tuple[str, str], Any] | None = None):
        self.recorded = recorded  # RunState.auto_loss_args: loss name -> {arg: JSON value}
        self._values: dict[tuple[str, str], Any] = dict(preset or {})  # a resumed run's saved values

    @property
    def values(self) -> dict[tuple[str, str], Any]:
        """The resolved values, keyed (loss, argument): what a checkpoint saves."""
        return self._values

    def resolve(self, registry: Registry, term: LossTerm, train_dataset: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """The term's arguments with every ``"auto"`` replaced; and the resolved ones (JSON form)."""
        args = dict(term.args)
        resolved: dict[str, Any] = {}
        derive_table = registry.get("losses", term.name).meta.auto
        for arg, value in term.args.items():
            if not (isinstance(value, str) and value == AUTO):
                continue
            key = (term.name, arg)
            if key not in self._values:
                derive = derive_table.get(arg)
                if derive is None:
                    raise RunError(f"loss `{term.name}` cannot compute `{arg}` automatically (it registers no auto rule for it)", code="E406")
                try:
                    self._values[key] = derive(train_dataset)
                except Exception as exc:
                    raise RunError(f"computing `{arg}` = \"auto\" for loss `{term.name}` failed: {type(exc).__name__}: {exc}", code="E406") from exc
            if arg not in self.recorded.get(term.name, {}):
                self.recorded.setdefault(term.name, {})[arg] = json_value(self._values[key])
            args[arg] = self._values[key]
            resolved[arg] = self.recorded[term.name][arg]
        return args, resolved


def needs_inputs(piece: Any) -> bool:
    """Whether a loss or metric asks for the batch's inputs (``needs_inputs = True``)."""
    return bool(getattr(piece, "needs_inputs", False))


def _with_inputs(loss: Callable) -> Callable[[Any, Any, Any], torch.Tensor]:
    """The loss as ``f(prediction, target, inputs)``."""
    if needs_inputs(loss):
        return loss

    def call(prediction: Any, target: Any, inputs: Any) -> torch.Tensor:
        return loss(prediction, target)

    return call


def _build_term(registry: Registry, term: LossTerm, args: dict[str, Any], device: torch.device, at: str) -> Callable:
    loss = registry.build("losses", term.name, args, at=at)
    if isinstance(loss, torch.nn.Module):
        loss = loss.to(device)
    return loss


def build_objective(
    loss: LossPlan, registry: Registry, train_dataset: Any, auto: AutoArgs, device: torch.device, *, at: str = "loss"
) -> tuple[Objective, dict[str, dict[str, Any]]]:
    """The stage's objective, and the auto arguments it used (term key -> {arg: value})."""
    if not loss.terms:
        raise RunError("the stage's loss has no terms", code="E406")
    terms: list[Callable] = []
    used: dict[str, dict[str, Any]] = {}
    for index, term in enumerate(loss.terms):
        args, resolved = auto.resolve(registry, term, train_dataset)
        if resolved:
            key = term.name if sum(t.name == term.name for t in loss.terms) == 1 else f"{term.name}#{index}"
            used[key] = resolved
        where = at if len(loss.terms) == 1 and loss.kind == "sum" else f"{at}.{loss.kind}[{index}]"
        terms.append(_with_inputs(_build_term(registry, term, args, device, where)))

    if loss.kind == "blend":
        if len(terms) != 2 or loss.alpha is None:
            raise RunError("a blend loss needs exactly two terms and an alpha", code="E406")
        first, second = terms
        alpha = float(loss.alpha)

        def blend(prediction: Any, target: Any, inputs: Any) -> torch.Tensor:
            return (1.0 - alpha) * first(prediction, target, inputs) + alpha * second(prediction, target, inputs)

        return blend, used
    if loss.kind != "sum":
        raise RunError(f"unknown loss kind `{loss.kind}`; expected sum or blend", code="E406")
    weights = [float(t.weight) for t in loss.terms]
    if len(terms) == 1 and weights[0] == 1.0:
        return terms[0], used  # the common case: the loss itself (behind a call adding `inputs`)
    pairs = list(zip(weights, terms))

    def weighted_sum(prediction: Any, target: Any, inputs: Any) -> torch.Tensor:
        total = None
        for weight, term in pairs:
            value = weight * term(prediction, target, inputs)
            total = value if total is None else total + value
        return total

    return weighted_sum, used
