"""Loss modules the built-in loss factories return. Each is called ``loss(prediction, target)``."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F


class BCEWithLogits(nn.Module):
    """Binary cross-entropy on logits; the target is cast to the logits' dtype and shape."""

    def __init__(self, pos_weight: Optional[Sequence[float]] = None):
        super().__init__()
        self.register_buffer("pos_weight", None if pos_weight is None else torch.tensor(pos_weight, dtype=torch.float32))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean BCE over every element."""
        target = target.to(logits.dtype).reshape(logits.shape)
        return F.binary_cross_entropy_with_logits(logits, target, pos_weight=self.pos_weight)


class FocalLoss(nn.Module):
    """Multi-class focal loss on logits [B, C, ...]: ``alpha_t * (1 - p_t)^gamma * -log p_t``, averaged.

    `alpha` None weighs nothing; a float scales every sample (as most multi-class focal
    implementations do); a list gives one weight per class. With ``gamma = 0`` and
    ``alpha = None`` this is cross-entropy. `label_smoothing` smooths the cross-entropy
    term as `F.cross_entropy` does; the focusing factor uses the unsmoothed ``p_t``.
    """

    def __init__(self, gamma: float = 2.0, alpha: float | Sequence[float] | None = 0.25, label_smoothing: float = 0.0):
        super().__init__()
        self.gamma = gamma
        self.label_smoothing = label_smoothing
        self.scalar_alpha = float(alpha) if isinstance(alpha, (int, float)) else None
        per_class = None if alpha is None or self.scalar_alpha is not None else torch.tensor(alpha, dtype=torch.float32)
        self.register_buffer("class_alpha", per_class)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean focal loss over samples (and any extra dimensions)."""
        logits = logits.float()
        nll = F.cross_entropy(logits, target, reduction="none")
        ce = F.cross_entropy(logits, target, reduction="none", label_smoothing=self.label_smoothing) if self.label_smoothing else nll
        loss = (1.0 - torch.exp(-nll)).pow(self.gamma) * ce if self.gamma else ce
        if self.class_alpha is not None:
            loss = loss * self.class_alpha[target]
        elif self.scalar_alpha is not None:
            loss = loss * self.scalar_alpha
        return loss.mean()


class RelativeL1(nn.Module):
    """Mean of ``|prediction - target| / (|target| + eps)``."""

    def __init__(self, eps: float = 1e-8):
        super().__init__()
        self.eps = eps

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean relative absolute error."""
        return ((prediction - target).abs() / (target.abs() + self.eps)).mean()


class NRMSE(nn.Module):
    """RMSE per channel (dim 1, pooled over the batch and every other dim) divided by ``sigma[c]``, averaged over channels.

    ``eps`` is added under the square root (a finite gradient at zero error) and bounds
    ``sigma`` from below.
    """

    def __init__(self, sigma: Sequence[float], eps: float = 1e-8):
        super().__init__()
        self.register_buffer("sigma", torch.tensor(list(sigma), dtype=torch.float32))
        self.eps = eps

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean over channels of RMSE_c / sigma_c."""
        if prediction.shape[1] != len(self.sigma):
            raise ValueError(f"nrmse has {len(self.sigma)} sigma values but the prediction has {prediction.shape[1]} channels")
        dims = [d for d in range(prediction.dim()) if d != 1]
        mse = (prediction.float() - target.float()).pow(2).mean(dim=dims)
        return (torch.sqrt(mse + self.eps) / self.sigma.clamp_min(self.eps)).mean()
