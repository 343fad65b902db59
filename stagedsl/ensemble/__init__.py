"""Ensembles of a matrix's members: cached member predictions, cross-fitted ensembles, their export.

Above the engine: this room reads member run directories and the matrix folder, never
the inside of a run. Light at import: torch, numpy-heavy and scikit-learn code load on use.
"""

from stagedsl.ensemble.task import CLASSIFICATION, REGRESSION, EnsembleTask

__all__ = ["CLASSIFICATION", "REGRESSION", "EnsembleTask"]
