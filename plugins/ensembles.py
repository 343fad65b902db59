"""Built-in ensembles: mean, weighted, vote, greedy (Caruana) and stacking.

Each factory returns an object with ``fit(outputs, target, task)`` and
``predict(outputs)`` over member outputs ``[members, samples, width]`` (class
probabilities for classifiers, values for regressors); see the `register_ensembles`
hook for the whole contract and `stagedsl_plugins._ensemble_methods` for the objects.
Fitted ensembles are cross-fitted by stagedsl over k folds of the validation split, so
their reported scores are out-of-fold.
"""

from __future__ import annotations

from typing import Any

from stagedsl import hookimpl


# -- factories ----------------------------------------------------------------------------
def mean():
    """Mean of the members' probabilities (classification) or outputs (regression)."""
    from stagedsl_plugins._ensemble_methods import Mean

    return Mean()


def weighted(weights: list[float] | None = None, metric: str = "auto"):
    """Weighted mean: the given weights (normalised), or weights fitted on the validation split (log loss / MSE)."""
    import numpy as np

    from stagedsl_plugins._ensemble_methods import FittedWeights, WeightedAverage

    if weights is None:
        return FittedWeights(metric)
    array = np.asarray(weights, dtype=np.float64)
    if array.ndim != 1 or len(array) == 0 or (array < 0).any() or array.sum() <= 0:
        raise ValueError(f"weights must be non-negative numbers with a positive sum, found {weights}")
    return WeightedAverage(array / array.sum())


def vote():
    """Majority vote of the members' predicted classes (classification)."""
    from stagedsl_plugins._ensemble_methods import Vote

    return Vote()


def greedy(rounds: int = 25, metric: str = "auto"):
    """Caruana's forward selection with replacement over `rounds` (AutoGluon's weighted ensemble); metric log_loss, error or mse."""
    from stagedsl_plugins._ensemble_methods import Greedy

    return Greedy(rounds, metric)


def stacking(meta: Any = "logistic"):
    """A meta-learner (`meta`: lightgbm, logistic, ridge) fitted on the members' out-of-fold outputs."""
    from stagedsl_plugins._ensemble_methods import Stacking

    return Stacking(meta)


@hookimpl
def register_ensembles(register):
    """Register the built-in ensembles."""
    register("mean", mean)
    register("weighted", weighted)
    register("vote", vote)
    register("greedy", greedy)
    register("stacking", stacking, pieces={"meta": "meta_learners"})
