"""Generic metrics: torchmetrics `Metric`s whose ``update(output, target)`` takes the model's raw output.

Classification metrics accept logits ``[B, C]`` (argmax) or one logit per sample
(``> 0``). With ``num_classes == 2`` they are *binary* metrics of the positive class 1
(``average`` is then ignored); with more classes, multi-class metrics averaged by
``average`` (``"micro"``, ``"macro"`` or ``"weighted"``).
"""

from stagedsl import hookimpl

AVERAGES = ("micro", "macro", "weighted")


def _classification(binary_name: str, multiclass_name: str, num_classes: int, average: str):
    from stagedsl_plugins import _metric_classes as metric_classes

    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, found {num_classes}")
    if num_classes == 2:
        return getattr(metric_classes, binary_name)()
    if average not in AVERAGES:
        raise ValueError(f"average must be one of {list(AVERAGES)}, found {average!r}")
    return getattr(metric_classes, multiclass_name)(num_classes=num_classes, average=average)


def accuracy(num_classes: int = 2, average: str = "micro"):
    """Accuracy from logits (micro = fraction correct; binary when num_classes is 2)."""
    return _classification("BinaryAccuracyFromLogits", "MulticlassAccuracyFromLogits", num_classes, average)


def f1(num_classes: int = 2, average: str = "macro"):
    """F1 score from logits (of class 1 when num_classes is 2)."""
    return _classification("BinaryF1FromLogits", "MulticlassF1FromLogits", num_classes, average)


def precision(num_classes: int = 2, average: str = "macro"):
    """Precision from logits (of class 1 when num_classes is 2)."""
    return _classification("BinaryPrecisionFromLogits", "MulticlassPrecisionFromLogits", num_classes, average)


def recall(num_classes: int = 2, average: str = "macro"):
    """Recall from logits (of class 1 when num_classes is 2)."""
    return _classification("BinaryRecallFromLogits", "MulticlassRecallFromLogits", num_classes, average)


def auroc(num_classes: int = 2, average: str = "macro"):
    """Area under the ROC curve from logits (softmax probabilities; of class 1 when num_classes is 2)."""
    from stagedsl_plugins import _metric_classes as metric_classes

    if num_classes == 2:
        return metric_classes.BinaryAUROCFromLogits()
    if average not in ("macro", "weighted"):
        raise ValueError(f"average must be 'macro' or 'weighted' for auroc, found {average!r}")
    return metric_classes.MulticlassAUROCFromLogits(num_classes=num_classes, average=average)


def mae():
    """Mean absolute error."""
    from torchmetrics.regression import MeanAbsoluteError

    return MeanAbsoluteError()


def mse():
    """Mean squared error."""
    from torchmetrics.regression import MeanSquaredError

    return MeanSquaredError()


def rmse():
    """Root mean squared error (over every element seen)."""
    from torchmetrics.regression import MeanSquaredError

    return MeanSquaredError(squared=False)


def nrmse(sigma: list[float] | None = None, eps: float = 1e-8):
    """Mean over channels of RMSE_c / s_c; s_c = sigma[c], or the std of the channel's targets seen."""
    from stagedsl_plugins._metric_classes import ChannelNRMSE

    return ChannelNRMSE(sigma, eps)


@hookimpl
def register_metrics(register):
    """Register the generic metrics with whether larger or smaller is better."""
    for name, factory in (("accuracy", accuracy), ("f1", f1), ("precision", precision), ("recall", recall), ("auroc", auroc)):
        register(name, factory, mode="max")
    for name, factory in (("mae", mae), ("mse", mse), ("rmse", rmse), ("nrmse", nrmse)):
        register(name, factory, mode="min")
