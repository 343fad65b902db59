"""Metrics of predictions held as arrays: classification and regression, the same for
members, ensembles and single runs.

Classification (integer targets): accuracy, F1, precision, recall (of class 1 when
there are two classes, else macro-averaged; accuracy is the fraction correct), ROC-AUC
for two classes, and log loss. Regression (float targets): MAE, RMSE and nRMSE (RMSE
over the targets' standard deviation, per output column, averaged). The numbers come
from torchmetrics' functional API. A model's raw outputs become *scores* first
(`scores_of`): class probabilities (softmax of ``[N, C]`` logits, sigmoid of one logit)
or the values themselves, flattened per sample.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from stagedsl.eval.task import CLASSIFICATION, REGRESSION, EnsembleTask

CLASSIFICATION_METRICS = ("accuracy", "f1", "precision", "recall", "roc_auc", "log_loss")
REGRESSION_METRICS = ("mae", "rmse", "nrmse")
LOWER_IS_BETTER = frozenset({"log_loss", "mae", "rmse", "nrmse", "mse", "loss"})
DEFAULT_MONITOR = {CLASSIFICATION: "accuracy", REGRESSION: "rmse"}


def task_of(outputs: np.ndarray, target: np.ndarray, seed: int = 0) -> EnsembleTask:
    """Classification when the target holds integers, else regression; with the width of the scores."""
    if np.issubdtype(target.dtype, np.integer) or target.dtype == np.bool_:
        logits = outputs.shape[1] if outputs.ndim == 2 else 1
        classes = max(2, logits if logits >= 2 else 2, int(target.max(initial=0)) + 1)
        return EnsembleTask(CLASSIFICATION, classes, classes, seed)
    width = int(np.prod(outputs.shape[1:])) if outputs.ndim > 1 else 1
    return EnsembleTask(REGRESSION, 0, width, seed)


def scores_of(outputs: np.ndarray, task: EnsembleTask) -> np.ndarray:
    """Raw outputs -> float64 ``[N, width]``: class probabilities, or values flattened per sample."""
    outputs = np.asarray(outputs, dtype=np.float64)
    if not task.is_classification:
        return outputs.reshape(len(outputs), -1)
    if outputs.ndim == 2 and outputs.shape[1] >= 2:
        shifted = outputs - outputs.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        probabilities = exp / exp.sum(axis=1, keepdims=True)
    else:
        positive = 1.0 / (1.0 + np.exp(-outputs.reshape(len(outputs))))
        probabilities = np.stack([1.0 - positive, positive], axis=1)
    if probabilities.shape[1] < task.classes:
        probabilities = np.pad(probabilities, ((0, 0), (0, task.classes - probabilities.shape[1])))
    return probabilities


def score(scores: np.ndarray, target: np.ndarray, task: EnsembleTask) -> dict[str, float]:
    """Every metric of the task for ``scores`` (see `scores_of`) against ``target``."""
    if task.is_classification:
        return _classification(scores, target, task.classes)
    return _regression(scores, target)


def _classification(probabilities: np.ndarray, target: np.ndarray, classes: int) -> dict[str, float]:
    import torch
    from torchmetrics.functional import classification as tmf

    preds = torch.from_numpy(np.ascontiguousarray(probabilities)).float()
    labels = torch.from_numpy(np.asarray(target, dtype=np.int64).reshape(-1))
    picked = probabilities[np.arange(len(labels)), labels.numpy()]
    values = {"log_loss": float(-np.mean(np.log(np.clip(picked, 1e-15, 1.0))))}
    if classes == 2:
        positive = preds[:, 1]
        values.update(
            accuracy=tmf.binary_accuracy(positive, labels), f1=tmf.binary_f1_score(positive, labels),
            precision=tmf.binary_precision(positive, labels), recall=tmf.binary_recall(positive, labels),
            roc_auc=tmf.binary_auroc(positive, labels) if labels.unique().numel() == 2 else float("nan"),
        )
    else:
        values.update(
            accuracy=tmf.multiclass_accuracy(preds, labels, num_classes=classes, average="micro"),
            f1=tmf.multiclass_f1_score(preds, labels, num_classes=classes, average="macro"),
            precision=tmf.multiclass_precision(preds, labels, num_classes=classes, average="macro"),
            recall=tmf.multiclass_recall(preds, labels, num_classes=classes, average="macro"),
        )
    ordered = {name: float(values[name]) for name in CLASSIFICATION_METRICS if name in values}
    return ordered


def _regression(values: np.ndarray, target: np.ndarray) -> dict[str, float]:
    import torch
    from torchmetrics.functional import mean_absolute_error, mean_squared_error

    target = np.asarray(target, dtype=np.float64).reshape(values.shape)
    preds, truth = torch.from_numpy(values), torch.from_numpy(target)
    per_column = np.sqrt(np.mean((values - target) ** 2, axis=0))
    spread = np.std(target, axis=0)
    return {
        "mae": float(mean_absolute_error(preds, truth)),
        "rmse": float(mean_squared_error(preds, truth, squared=False)),
        "nrmse": float(np.mean(per_column / np.maximum(spread, 1e-12))),
    }


def monitor_of(metric: Optional[str], task: EnsembleTask) -> str:
    """The metric a table is sorted by: the run's monitored one when `score` computes it, else the task's default."""
    name = (metric or "").split("/", 1)[-1]
    known = CLASSIFICATION_METRICS if task.is_classification else REGRESSION_METRICS
    aliases = {"auroc": "roc_auc"}
    name = aliases.get(name, name)
    return name if name in known else DEFAULT_MONITOR[task.kind]


def better(metric: str) -> str:
    """"max" or "min": which way `metric` improves."""
    return "min" if metric in LOWER_IS_BETTER else "max"


__all__ = ["CLASSIFICATION_METRICS", "REGRESSION_METRICS", "better", "monitor_of", "score", "scores_of", "task_of"]
