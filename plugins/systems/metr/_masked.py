"""Mean absolute error over observed readings only: METR-LA stores a missing reading as 0.

`MaskedMAE` is the loss, `MaskedMeanAbsoluteError` the torchmetrics metric.
"""

from __future__ import annotations

import torch
from torch import nn
from torchmetrics import Metric


class MaskedMAE(nn.Module):
    """Mean absolute error over the entries whose target is not `null_value` (METR-LA: 0 = missing).

    A batch with no observed target gives 0 (and no gradient), without a host sync.
    """

    def __init__(self, null_value: float = 0.0):
        super().__init__()
        self.null_value = null_value

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Masked mean absolute error."""
        observed = (target != self.null_value).to(prediction.dtype)
        return ((prediction - target).abs() * observed).sum() / observed.sum().clamp_min(1.0)


class MaskedMeanAbsoluteError(Metric):
    """Mean absolute error over the entries whose target is not `null_value` (NaN if none were seen)."""

    is_differentiable = True
    higher_is_better = False
    full_state_update = False

    def __init__(self, null_value: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.null_value = null_value
        self.add_state("abs_error", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("observed", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """Add the absolute errors and the count of observed targets."""
        mask = target != self.null_value
        self.abs_error += ((preds.double() - target.double()).abs() * mask).sum()
        self.observed += mask.sum()

    def compute(self) -> torch.Tensor:
        """Sum of absolute errors / number of observed targets."""
        return (self.abs_error / self.observed).float()
