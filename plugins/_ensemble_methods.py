"""The objects the built-in ensembles' factories return (`stagedsl_plugins.ensembles`).

Each has ``fit(outputs, target, task)`` and ``predict(outputs)`` over member outputs
``[members, samples, width]`` (class probabilities for classifiers, values for
regressors); see the `register_ensembles` hook for the whole contract.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np

from stagedsl import import_optional

EPS = 1e-15


def log_loss(probabilities: np.ndarray, target: np.ndarray) -> float:
    """Mean negative log-probability of the true class."""
    picked = probabilities[np.arange(len(target)), target.astype(np.int64)]
    return float(-np.mean(np.log(np.clip(picked, EPS, 1.0))))


def error_rate(probabilities: np.ndarray, target: np.ndarray) -> float:
    """Fraction of samples whose most probable class is wrong."""
    return float(np.mean(probabilities.argmax(axis=1) != target))


def mean_squared_error(values: np.ndarray, target: np.ndarray) -> float:
    """Mean squared error over every element."""
    return float(np.mean((values - target.reshape(values.shape)) ** 2))


LOSSES = {"log_loss": log_loss, "error": error_rate, "mse": mean_squared_error}


def _loss_for(metric: str, task: Any) -> Callable[[np.ndarray, np.ndarray], float]:
    if metric == "auto":
        metric = "log_loss" if task.is_classification else "mse"
    if metric not in LOSSES:
        raise ValueError(f"unknown metric {metric!r}; use one of {', '.join(['auto', *LOSSES])}")
    if task.is_classification == (metric == "mse"):
        raise ValueError(f"metric {metric!r} does not fit a {task.kind} task")
    return LOSSES[metric]


class WeightedAverage:
    """A weighted average of the members' outputs (weights sum to 1)."""

    def __init__(self, weights: Optional[np.ndarray] = None):
        self.weights = None if weights is None else np.asarray(weights, dtype=np.float64)
        self.needs_fit = weights is None

    def fit(self, outputs: np.ndarray, target: np.ndarray, task: Any) -> None:
        """Nothing to fit when the weights are known."""

    def _check(self, outputs: np.ndarray) -> np.ndarray:
        if self.weights is None:
            raise RuntimeError("the ensemble is not fitted")
        if len(self.weights) != len(outputs):
            raise ValueError(f"{len(self.weights)} weights for {len(outputs)} members")
        return self.weights

    def predict(self, outputs: np.ndarray) -> np.ndarray:
        """Σ_m weights[m] · outputs[m]."""
        return np.tensordot(self._check(outputs), outputs, axes=1)

    def describe(self) -> dict:
        """The weights."""
        return {"weights": None if self.weights is None else [float(w) for w in self.weights]}


class Mean(WeightedAverage):
    """The plain mean: every member weighs the same."""

    def __init__(self):
        super().__init__(None)
        self.needs_fit = False

    def fit(self, outputs: np.ndarray, target: np.ndarray, task: Any) -> None:
        """Equal weights for the members it is given."""
        self.weights = np.full(len(outputs), 1.0 / len(outputs))

    def predict(self, outputs: np.ndarray) -> np.ndarray:
        """The mean over members."""
        self._check(outputs)
        return outputs.mean(axis=0)


class FittedWeights(WeightedAverage):
    """Weights on the simplex that minimise the validation loss (softmax-parametrised, L-BFGS)."""

    def __init__(self, metric: str):
        super().__init__(None)
        self.metric = metric

    def fit(self, outputs: np.ndarray, target: np.ndarray, task: Any) -> None:
        """Minimise the loss of the weighted average over the weights, starting from the mean."""
        optimize = import_optional("scipy.optimize", extra="ensemble", purpose="the fitted `weighted` ensemble")
        loss = _loss_for(self.metric, task)
        if loss is error_rate:
            raise ValueError('`weighted` fits smooth losses only: use metric "log_loss" or "mse" (or `greedy` for the error rate)')

        def objective(logits: np.ndarray) -> float:
            weights = np.exp(logits - logits.max())
            return loss(np.tensordot(weights / weights.sum(), outputs, axes=1), target)

        found = optimize.minimize(objective, np.zeros(len(outputs)), method="L-BFGS-B")
        weights = np.exp(found.x - found.x.max())
        self.weights = weights / weights.sum()

    def describe(self) -> dict:
        """The fitted weights and the loss they minimise."""
        return {**super().describe(), "metric": self.metric}


class Vote:
    """Majority vote of the members' predicted classes; ties go to the higher mean probability."""

    needs_fit = False
    TIE_BREAK = 1e-6

    def fit(self, outputs: np.ndarray, target: np.ndarray, task: Any) -> None:
        """Only checks that the members are classifiers."""
        if not task.is_classification:
            raise ValueError("`vote` combines classifiers; use `mean` for regression")

    def predict(self, outputs: np.ndarray) -> np.ndarray:
        """Vote fractions per class, nudged by the mean probability (still a distribution)."""
        members, samples, classes = outputs.shape
        votes = np.zeros((samples, classes))
        for member in outputs:
            votes[np.arange(samples), member.argmax(axis=1)] += 1.0
        return (votes + self.TIE_BREAK * outputs.mean(axis=0)) / (members + self.TIE_BREAK)


class Greedy(WeightedAverage):
    """Caruana et al.'s ensemble selection with replacement (AutoGluon's weighted ensemble).

    Each round adds the member (possibly again) whose addition gives the lowest loss of
    the average of the chosen bag; ties go to the earlier member. Weights are how often
    each member was chosen, over `rounds`.
    """

    def __init__(self, rounds: int, metric: str):
        super().__init__(None)
        if rounds < 1:
            raise ValueError(f"rounds must be at least 1, found {rounds}")
        self.rounds, self.metric = rounds, metric
        self.chosen: list[int] = []
        self.losses: list[float] = []

    def fit(self, outputs: np.ndarray, target: np.ndarray, task: Any) -> None:
        """Choose `rounds` members greedily."""
        loss = _loss_for(self.metric, task)
        total = np.zeros_like(outputs[0])
        self.chosen, self.losses = [], []
        for size in range(1, self.rounds + 1):
            scores = [loss((total + candidate) / size, target) for candidate in outputs]
            best = int(np.argmin(scores))
            self.chosen.append(best)
            self.losses.append(float(scores[best]))
            total = total + outputs[best]
        counts = np.bincount(self.chosen, minlength=len(outputs)).astype(np.float64)
        self.weights = counts / counts.sum()

    def describe(self) -> dict:
        """The weights, the order members were chosen in and the loss after each round."""
        return {**super().describe(), "chosen": self.chosen, "losses": self.losses, "metric": self.metric}


class Stacking:
    """A meta-learner fitted on the members' outputs (member-major features ``[samples, members * width]``)."""

    def __init__(self, make_meta: Callable[[Any], Any]):
        self.make_meta = make_meta
        self.estimator: Any = None
        self.task: Any = None

    @staticmethod
    def features(outputs: np.ndarray) -> np.ndarray:
        """``[members, samples, width]`` -> float32 ``[samples, members * width]``: the meta-learner sees the
        values an exported float32 graph feeds it, so tree thresholds split them the same way."""
        return np.ascontiguousarray(outputs.transpose(1, 0, 2).reshape(outputs.shape[1], -1), dtype=np.float32)

    def fit(self, outputs: np.ndarray, target: np.ndarray, task: Any) -> None:
        """Fit a fresh meta-learner on the features."""
        self.task = task
        self.estimator = self.make_meta(task)
        if task.is_classification:
            labels = target.astype(np.int64)
        else:
            labels = target.reshape(len(target), -1)
            labels = labels[:, 0] if labels.shape[1] == 1 else labels
        self.estimator.fit(self.features(outputs), labels)

    def predict(self, outputs: np.ndarray) -> np.ndarray:
        """The meta-learner's class probabilities (every class, even one a fold did not see) or values."""
        features = self.features(outputs)
        if not self.task.is_classification:
            return np.asarray(self.estimator.predict(features), dtype=np.float64).reshape(len(features), -1)
        probabilities = np.zeros((len(features), self.task.classes))
        probabilities[:, np.asarray(self.estimator.classes_, dtype=np.int64)] = self.estimator.predict_proba(features)
        return probabilities

    def describe(self) -> dict:
        """Which meta-learner, on how many features."""
        return {"meta": getattr(self.make_meta, "piece", None), "estimator": type(self.estimator).__name__,
                "features": int(getattr(self.estimator, "n_features_in_", 0))}

    def to_onnx(self, opset: int, width: int) -> Any:
        """The fitted meta-learner as ONNX: ``features`` -> ``probabilities`` / ``values``."""
        from stagedsl_plugins.meta_learners import estimator_to_onnx

        return estimator_to_onnx(self.estimator, self.task, opset)
