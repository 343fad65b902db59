"""Statistics derived from a training split, for arguments a spec writes as ``"auto"``."""

from __future__ import annotations

from typing import Any


def _targets(dataset: Any):
    """The whole target tensor of an in-memory split (or a `Subset` of one), else None."""
    target = getattr(dataset, "target", None)
    if target is not None and hasattr(target, "dim"):
        return target
    inner, indices = getattr(dataset, "dataset", None), getattr(dataset, "indices", None)
    if inner is not None and indices is not None:
        whole = _targets(inner)
        if whole is not None:
            import torch

            return whole[torch.as_tensor(list(indices), dtype=torch.long)]
    return None


def per_channel_std(train_dataset: Any) -> list[float]:
    """Population standard deviation of the training *targets* per channel (dim 1 of a batch).

    Uses ``train_dataset.target`` at once when the split holds its targets in memory
    (`TensorSplit`, or a `Subset` of one); otherwise makes one pass over the samples
    ``(input, target)``, where the channel is dim 0 of each sample's target. Sums are
    accumulated in float64. A target with no channel dimension counts as one channel.
    """
    import torch

    target = _targets(train_dataset)
    if target is not None:
        values = target.double()
        if values.dim() < 2:
            return [float(values.std(correction=0))]
        dims = [d for d in range(values.dim()) if d != 1]
        return values.std(dim=dims, correction=0).tolist()

    total = squares = count = None
    for _, sample_target in train_dataset:
        values = torch.as_tensor(sample_target).double()
        values = values.reshape(1, -1) if values.dim() == 0 else values.reshape(values.shape[0], -1)
        if total is None:
            total, squares, count = values.sum(1), (values * values).sum(1), values.shape[1]
        else:
            total, squares, count = total + values.sum(1), squares + (values * values).sum(1), count + values.shape[1]
    if total is None:
        raise ValueError("cannot compute per-channel statistics of an empty training split")
    mean = total / count
    return torch.sqrt((squares / count - mean * mean).clamp_min(0.0)).tolist()
