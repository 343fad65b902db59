"""`EnsembleTask`: what an ensemble (and a meta-learner) is told about the problem it combines.

It lives with scoring (`stagedsl.eval.task`), which the ensembles build on.
"""

from stagedsl.eval.task import CLASSIFICATION, REGRESSION, EnsembleTask

__all__ = ["CLASSIFICATION", "REGRESSION", "EnsembleTask"]
