"""The Charbonnier loss module (imports torch: loaded only when the loss is built)."""

from __future__ import annotations

import torch
from torch import nn


class CharbonnierLoss(nn.Module):
    """mean(sqrt((prediction - target)^2 + eps^2)): L2 near zero, L1 far from it."""

    def __init__(self, eps: float = 1e-3):
        super().__init__()
        self.eps = float(eps)

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The mean Charbonnier penalty of the element-wise error."""
        diff = prediction - target.to(prediction.dtype)
        return torch.sqrt(diff * diff + self.eps * self.eps).mean()
