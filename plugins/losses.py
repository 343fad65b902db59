"""Built-in losses. Each factory returns a module called ``loss(prediction, target) -> scalar``."""

from stagedsl import hookimpl
from stagedsl_plugins.channel_stats import per_channel_std


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

    return nn.HuberLoss(delta=delta)


def smooth_l1(beta: float = 1.0):
    """Smooth L1 loss (Huber divided by beta)."""
    from torch import nn

    return nn.SmoothL1Loss(beta=beta)


def cross_entropy(label_smoothing: float = 0.0, weight: list[float] | None = None):
    """Cross-entropy on logits [B, C, ...] with integer targets; optional class weights and label smoothing."""
    import torch
    from torch import nn

    class_weight = None if weight is None else torch.tensor(weight, dtype=torch.float32)
    return nn.CrossEntropyLoss(weight=class_weight, label_smoothing=label_smoothing)


def bce_with_logits(pos_weight: float | list[float] | None = None):
    """Binary cross-entropy on logits; target cast to the logits' shape and dtype."""
    from stagedsl_plugins.loss_functions import BCEWithLogits

    return BCEWithLogits(None if pos_weight is None else [pos_weight] if isinstance(pos_weight, (int, float)) else pos_weight)


def focal(gamma: float = 2.0, alpha: float | list[float] | None = 0.25, label_smoothing: float = 0.0):
    """Multi-class focal loss on logits; alpha a scale, per-class weights or None; optional label smoothing (gamma=0, alpha=None is CE)."""
    from stagedsl_plugins.loss_functions import FocalLoss

    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), found {label_smoothing}")
    return FocalLoss(gamma, alpha, label_smoothing)


def cosface(margin: float = 0.35, scale: float = 16.0, label_smoothing: float = 0.0):
    """CosFace: CE after subtracting scale*margin from the target's scale*cos logit (scale must match the model's)."""
    from stagedsl_plugins.loss_functions import CosFaceLoss

    return CosFaceLoss(margin, scale, label_smoothing)


def relative_l1(eps: float = 1e-8):
    """Mean of |prediction - target| / (|target| + eps)."""
    from stagedsl_plugins.loss_functions import RelativeL1

    return RelativeL1(eps)


def masked_mae(null_value: float = 0.0):
    """Mean absolute error ignoring entries whose target equals null_value (METR-LA's missing 0)."""
    from stagedsl_plugins.loss_functions import MaskedMAE

    return MaskedMAE(null_value)


def nrmse(sigma: list[float] | str = "auto", eps: float = 1e-8):
    """Per-channel RMSE / sigma[c], averaged over channels; sigma="auto" is the train targets' per-channel std."""
    if isinstance(sigma, str):
        raise ValueError(
            f'nrmse got sigma={sigma!r}: "auto" is replaced by the engine with the training targets\' '
            "per-channel std before the loss is built; pass a list of floats when calling the factory directly"
        )
    from stagedsl_plugins.loss_functions import NRMSE

    return NRMSE(sigma, eps)


@hookimpl
def register_losses(register):
    """Register the built-in losses."""
    register("mse", mse)
    register("l1", l1)
    register("huber", huber)
    register("smooth_l1", smooth_l1)
    register("cross_entropy", cross_entropy)
    register("bce_with_logits", bce_with_logits)
    register("focal", focal)
    register("cosface", cosface)
    register("relative_l1", relative_l1)
    register("masked_mae", masked_mae)
    register("nrmse", nrmse, auto={"sigma": per_channel_std})
