"""Generic losses. Each factory returns a module called ``loss(prediction, target) -> scalar``.

The modules themselves (``_loss_modules``) are imported only when a factory is called.
`per_channel_std` is how `nrmse` derives ``sigma = "auto"`` from the training split.
The seed systems' own losses live in `stagedsl_plugins.systems`.
"""

from typing import Any

from stagedsl import hookimpl


def mse():
    """Mean squared error."""
    from torch import nn

    return nn.MSELoss()


def l1():
    """Mean absolute error."""
    from torch import nn

    return nn.L1Loss()


def huber(delta: float = 1.0):
    """Huber loss: quadratic below delta, linear above."""
    from torch import nn

    if not delta > 0:
        raise ValueError(f"delta must be positive, found {delta}")
    return nn.HuberLoss(delta=delta)


def smooth_l1(beta: float = 1.0):
    """Smooth L1 loss (Huber divided by beta)."""
    from torch import nn

    if beta < 0:
        raise ValueError(f"beta cannot be negative, found {beta}")
    return nn.SmoothL1Loss(beta=beta)


def cross_entropy(label_smoothing: float = 0.0, weight: list[float] | None = None):
    """Cross-entropy on logits [B, C, ...] with integer targets; optional class weights and label smoothing."""
    import torch
    from torch import nn

    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), found {label_smoothing}")
    if weight is not None and any(w < 0 for w in weight):
        raise ValueError(f"class weights cannot be negative, found {weight}")
    class_weight = None if weight is None else torch.tensor(weight, dtype=torch.float32)
    return nn.CrossEntropyLoss(weight=class_weight, label_smoothing=label_smoothing)


def bce_with_logits(pos_weight: float | list[float] | None = None):
    """Binary cross-entropy on logits; target cast to the logits' shape and dtype."""
    from stagedsl_plugins._loss_modules import BCEWithLogits

    return BCEWithLogits(None if pos_weight is None else [pos_weight] if isinstance(pos_weight, (int, float)) else pos_weight)


def focal(gamma: float = 2.0, alpha: float | list[float] | None = 0.25, label_smoothing: float = 0.0):
    """Multi-class focal loss on logits; alpha a scale, per-class weights or None; optional label smoothing (gamma=0, alpha=None is CE)."""
    from stagedsl_plugins._loss_modules import FocalLoss

    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), found {label_smoothing}")
    return FocalLoss(gamma, alpha, label_smoothing)


def relative_l1(eps: float = 1e-8):
    """Mean of |prediction - target| / (|target| + eps)."""
    from stagedsl_plugins._loss_modules import RelativeL1

    return RelativeL1(eps)


def nrmse(sigma: list[float] | str = "auto", eps: float = 1e-8):
    """Per-channel RMSE / sigma[c], averaged over channels; sigma="auto" is the train targets' per-channel std."""
    if isinstance(sigma, str):
        raise ValueError(
            f'nrmse got sigma={sigma!r}: "auto" is replaced by the engine with the training targets\' '
            "per-channel std before the loss is built; pass a list of floats when calling the factory directly"
        )
    from stagedsl_plugins._loss_modules import NRMSE

    return NRMSE(sigma, eps)


# -- derived arguments ("auto") --------------------------------------------------------
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


@hookimpl
def register_losses(register):
    """Register the generic losses; nrmse derives sigma = "auto" from the training targets."""
    register("mse", mse)
    register("l1", l1)
    register("huber", huber)
    register("smooth_l1", smooth_l1)
    register("cross_entropy", cross_entropy)
    register("bce_with_logits", bce_with_logits)
    register("focal", focal)
    register("relative_l1", relative_l1)
    register("nrmse", nrmse, auto={"sigma": per_channel_std})
