"""`EnsembleTask`: the problem a run's outputs solve, as scoring, ensembles and meta-learners are told it."""

from __future__ import annotations

import attrs

CLASSIFICATION = "classification"
REGRESSION = "regression"


@attrs.frozen
class EnsembleTask:
    """The problem an ensemble is fitted on.

    `kind` is "classification" (member outputs are class probabilities, targets int
    labels) or "regression" (outputs are values); `classes` the number of classes (0 for
    regression); `width` the members' output width per sample (classes, or the flattened
    regression output); `seed` seeds anything random in the fit (folds, a meta-learner).
    """

    kind: str
    classes: int
    width: int
    seed: int = 0

    @property
    def is_classification(self) -> bool:
        """Whether the members are classifiers."""
        return self.kind == CLASSIFICATION
