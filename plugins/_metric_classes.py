"""torchmetrics metrics that take the model's raw output (logits) and the target.

Classification metrics turn logits into class indices first: ``argmax`` over dim 1
when the output has one more dimension than the target (``[B, C]`` against ``[B]``),
else ``logit > 0`` (one logit per sample). Integer predictions pass through unchanged.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torchmetrics import Metric
from torchmetrics.classification import (
    BinaryAccuracy,
    BinaryAUROC,
    BinaryF1Score,
    BinaryPrecision,
    BinaryRecall,
    MulticlassAccuracy,
    MulticlassAUROC,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)


def logits_to_labels(preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Class indices from logits ([B, C, ...] -> argmax over dim 1; one logit -> logit > 0)."""
    if not preds.is_floating_point():
        return preds
    if preds.dim() == target.dim() + 1:
        return preds.argmax(dim=1)
    return (preds.reshape(target.shape) > 0).long()


def logits_to_probabilities(preds: torch.Tensor, target: torch.Tensor, binary: bool) -> torch.Tensor:
    """Class probabilities from logits: softmax over dim 1, for binary the positive class's (or sigmoid of one logit)."""
    if preds.dim() == target.dim() + 1:
        probabilities = preds.float().softmax(dim=1)
        return probabilities[:, 1] if binary else probabilities
    return preds.float().reshape(target.shape).sigmoid()


class LabelsFromLogits:
    """Mixin: ``update(logits, target)`` forwards class indices to the torchmetrics base."""

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """Convert `preds` with `logits_to_labels`, then update the base metric."""
        super().update(logits_to_labels(preds, target), target)  # type: ignore[misc]


class BinaryAccuracyFromLogits(LabelsFromLogits, BinaryAccuracy):
    """Binary accuracy (positive class 1) from logits."""


class BinaryF1FromLogits(LabelsFromLogits, BinaryF1Score):
    """Binary F1 of the positive class 1 from logits."""


class BinaryPrecisionFromLogits(LabelsFromLogits, BinaryPrecision):
    """Binary precision of the positive class 1 from logits."""


class BinaryRecallFromLogits(LabelsFromLogits, BinaryRecall):
    """Binary recall of the positive class 1 from logits."""


class MulticlassAccuracyFromLogits(LabelsFromLogits, MulticlassAccuracy):
    """Multi-class accuracy from logits."""


class MulticlassF1FromLogits(LabelsFromLogits, MulticlassF1Score):
    """Multi-class F1 from logits."""


class MulticlassPrecisionFromLogits(LabelsFromLogits, MulticlassPrecision):
    """Multi-class precision from logits."""


class MulticlassRecallFromLogits(LabelsFromLogits, MulticlassRecall):
    """Multi-class recall from logits."""


class BinaryAUROCFromLogits(BinaryAUROC):
    """Binary AUROC from logits (probability of class 1)."""

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """Convert logits to the positive class's probability, then update."""
        super().update(logits_to_probabilities(preds, target, binary=True), target)


class MulticlassAUROCFromLogits(MulticlassAUROC):
    """One-vs-rest multi-class AUROC from logits (softmax probabilities)."""

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """Convert logits to probabilities, then update."""
        super().update(logits_to_probabilities(preds, target, binary=False), target)


class ChannelNRMSE(Metric):
    """Per-channel RMSE normalised per channel, averaged over channels.

    ``nrmse = mean_c sqrt(SSE_c / n_c) / s_c`` where channel c is dim 1 of the
    prediction, ``SSE_c`` and ``n_c`` pool every other dimension over all batches
    since the last reset, and ``s_c`` is ``sigma[c]`` when given, else the population
    standard deviation of every target value of channel c seen since the last reset.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, sigma: Optional[Sequence[float]] = None, eps: float = 1e-8, **kwargs):
        super().__init__(**kwargs)
        self.sigma = None if sigma is None else torch.tensor(list(sigma), dtype=torch.float64)
        self.eps = eps
        self.add_state("sums", default=[], dist_reduce_fx="cat")  # per batch: [1, 4, C] (sse, n, sum t, sum t^2)

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """Record this batch's per-channel sums."""
        dims = [d for d in range(preds.dim()) if d != 1]
        error, values = (preds.double() - target.double()), target.double()
        count = torch.full_like(values.sum(dim=dims), values.numel() / values.shape[1])
        sums = torch.stack([(error * error).sum(dim=dims), count, values.sum(dim=dims), (values * values).sum(dim=dims)])
        self.sums.append(sums[None])

    def compute(self) -> torch.Tensor:
        """Mean over channels of RMSE_c / s_c."""
        sse, count, total, squares = torch.cat(self.sums).sum(dim=0)
        rmse = torch.sqrt(sse / count)
        if self.sigma is not None:
            scale = self.sigma.to(rmse.device)
        else:
            mean = total / count
            scale = torch.sqrt((squares / count - mean * mean).clamp_min(0.0))
        return (rmse / scale.clamp_min(self.eps)).mean().float()
