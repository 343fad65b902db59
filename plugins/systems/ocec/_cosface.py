"""The CosFace loss of the eye-state classifier's margin head."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class CosFaceLoss(nn.Module):
    """Cross-entropy over ``scale * cos`` logits with ``scale * margin`` taken from the target class.

    The model returns ``scale * cos(theta)``; this subtracts ``scale * margin`` from the
    target logit only, so `scale` must equal the model's (CosFace, Wang et al. 2018).
    """

    def __init__(self, margin: float = 0.35, scale: float = 16.0, label_smoothing: float = 0.0):
        super().__init__()
        self.margin, self.scale, self.label_smoothing = margin, scale, label_smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean CosFace loss over the batch."""
        margin = F.one_hot(target, logits.shape[1]).to(logits.dtype) * (self.scale * self.margin)
        return F.cross_entropy(logits - margin, target, label_smoothing=self.label_smoothing)
