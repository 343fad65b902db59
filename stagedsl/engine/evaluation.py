"""Evaluation on the validation split: ``val/loss`` and ``val/<metric>`` for the stage's metrics.

Metrics are built once per stage from the registered factories (torchmetrics), moved to
the device and updated with ``metric.update(model_output, target)`` (with the batch's
inputs as a third argument for a metric with ``needs_inputs = True``); the loss sum stays
on the device, so one evaluation syncs with the host once, at the end. ``val/loss`` is
the sample-weighted mean of the objective over batches (objectives are batch means).

Under torchrun each process evaluates its share of the split; the loss sum and count are
summed over the processes, torchmetrics reduces its metrics' states itself (every state
declares its ``dist_reduce_fx``) when `compute` is called, and every process then takes
rank 0's values, so best checkpoints, early stopping, schedulers and gates decide alike.
A metric that is not a torchmetrics `Metric` has no reducible state and is refused there (E484).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch
from torch import nn

from stagedsl.data import call_model
from stagedsl.engine.objective import needs_inputs
from stagedsl.engine.placement import Placement
from stagedsl.errors import Problem, RunError
from stagedsl.plan.model import PieceRef
from stagedsl.registry import Registry
from stagedsl.registry.import_path import short_name


def build_metrics(refs: tuple[PieceRef, ...], registry: Registry, device: torch.device, *, at: str = "metrics",
                  distributed: bool = False) -> list[tuple[str, Any]]:
    """``(name, metric)`` pairs for the stage's metrics, on the device (`at`: their key path, for errors);
    `distributed`: each must be a torchmetrics `Metric`, whose state can be reduced over the processes."""
    metrics = []
    names = [short_name(ref.name) for ref in refs]  # an import path logs as its attribute: val/MulticlassF1Score
    for index, ref in enumerate(refs):
        metric = registry.build("metrics", ref.name, ref.args, at=f"{at}[{index}]")
        if distributed:
            _check_reducible(metric, ref.name, f"{at}[{index}]")
        if isinstance(metric, nn.Module):
            metric = metric.to(device)
        name = names[index] if names.count(names[index]) == 1 else f"{names[index]}#{index}"
        metrics.append((name, metric))
    return metrics


def _check_reducible(metric: Any, name: str, at: str) -> None:
    from torchmetrics import Metric

    if not isinstance(metric, Metric):
        raise RunError([Problem(code="E484", message=f"metric `{name}` is a {type(metric).__name__}, not a torchmetrics Metric: "
                                "its state cannot be reduced over the processes of a distributed run", path=at,
                                hint="register the metric as a torchmetrics.Metric (add_state with dist_reduce_fx), "
                                     "or run in one process")])


def _batch_size(target: Any) -> int:
    if isinstance(target, torch.Tensor):
        return int(target.shape[0]) if target.dim() else 1
    if isinstance(target, (tuple, list)) and target:
        return _batch_size(target[0])
    return 1


class Evaluator:
    """Runs the model over the validation loader and returns ``val/*`` values."""

    def __init__(
        self,
        loader: Optional[torch.utils.data.DataLoader],
        objective: Callable,
        metrics: list[tuple[str, Any]],
        placement: Placement,
    ):
        self.loader = loader
        self.objective = objective
        self.metrics = metrics
        self.placement = placement
        self.move = placement.batch_mover()

    @property
    def available(self) -> bool:
        """Whether there is a validation split to evaluate on."""
        return self.loader is not None

    def evaluate(self, forward: Callable, model: nn.Module) -> dict[str, float]:
        """Evaluate in eval mode without gradients; the caller restores training mode."""
        if self.loader is None:
            return {}
        model.eval()
        device = self.placement.device
        total = torch.zeros((), device=device, dtype=torch.float32 if device.type == "mps" else torch.float64)
        count = 0
        move, autocast = self.move, self.placement.autocast()
        metrics = [(name, metric, needs_inputs(metric)) for name, metric in self.metrics]
        with torch.no_grad():
            for batch in self.loader:
                if move is not None:
                    batch = move(batch)
                inputs, target = batch
                with autocast:
                    output = call_model(forward, inputs)
                    loss = self.objective(output, target, inputs)
                if isinstance(output, torch.Tensor) and not output.is_contiguous():
                    output = output.contiguous()  # torchmetrics' regression metrics call .view(-1)
                size = _batch_size(target)
                total += loss.detach().to(total.dtype) * size
                count += size
                for _, metric, with_inputs in metrics:
                    if with_inputs:
                        metric.update(output, target, inputs)
                    else:
                        metric.update(output, target)
        if self.placement.distributed:  # every process's share: one sum over the processes
            sums = self.placement.sum_across(torch.stack([total.double(), torch.tensor(count, dtype=torch.float64,
                                                                                        device=total.device)]))
            total, count = sums[0], int(sums[1].item())
        if count == 0:
            raise RunError("the validation split is empty", code="E405")
        values = {"val/loss": float(total.item()) / count}
        for name, metric in self.metrics:
            result = metric.compute()  # a torchmetrics Metric reduces its state over the processes here
            metric.reset()
            values.update(_flatten(f"val/{name}", result))
        return self.placement.agree(values)


def _flatten(prefix: str, result: Any) -> dict[str, float]:
    if isinstance(result, dict):
        out: dict[str, float] = {}
        for key, value in result.items():
            out.update(_flatten(f"{prefix}/{key}", value))
        return out
    if isinstance(result, torch.Tensor):
        if result.numel() == 1:
            return {prefix: float(result.item())}
        return {f"{prefix}/{i}": float(v) for i, v in enumerate(result.flatten().tolist())}
    return {prefix: float(result)}
