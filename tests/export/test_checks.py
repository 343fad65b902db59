"""Parity figures and the metric fallback, on hand-made arrays."""

from __future__ import annotations

import math

import numpy as np
import torch

from stagedsl.export.checks import MetricSet, Parity
from stagedsl.plan.model import PieceRef


def test_parity_uses_the_allclose_rule():
    ref = np.array([[1.0, 100.0], [0.0, -2.0]], dtype=np.float32)
    parity = Parity(atol=1e-3, rtol=1e-2)
    parity.update([ref], [ref + np.array([[0.0105, 1.0], [0.0, 0.0]], dtype=np.float32)])
    assert parity.passed  # 0.0105 <= 1e-3 + 1e-2 * 1; 1.0 <= 1e-3 + 1e-2 * 100
    assert math.isclose(parity.max_abs, 1.0, rel_tol=1e-5)
    assert math.isclose(parity.max_rel, 0.0105, rel_tol=1e-3)
    assert 0.9 < parity.worst <= 1.0
    parity.update([ref], [ref + np.array([[0.0, 0.0], [0.002, 0.0]], dtype=np.float32)])
    assert not parity.passed and parity.worst > 1.0  # 0.002 > 1e-3 + 1e-2 * 0
    assert parity.batches == 2 and parity.samples == 4


def test_zero_tolerance_passes_only_identical_outputs():
    ref = np.linspace(-1, 1, 10, dtype=np.float32)[None]
    exact = Parity(0.0, 0.0)
    exact.update([ref], [ref.copy()])
    assert exact.passed and exact.worst == 0.0
    off = Parity(0.0, 0.0)
    off.update([ref], [np.nextafter(ref, np.float32(2))])
    assert not off.passed and math.isinf(off.worst)


def test_non_finite_outputs_and_shape_mismatches_fail():
    ref = np.ones((2, 3), dtype=np.float32)
    nan = Parity(1.0, 1.0)
    nan.update([ref], [np.full((2, 3), np.nan, dtype=np.float32)])
    assert not nan.passed and "not finite" in nan.describe()
    shape = Parity(1.0, 1.0)
    shape.update([ref], [np.ones((2, 4), dtype=np.float32)])
    assert not shape.passed and "shape" in shape.describe()
    count = Parity(1.0, 1.0)
    count.update([ref], [ref, ref])
    assert not count.passed


def test_metric_fallback_is_accuracy_for_labels_and_mse_for_values(builtin_registry):
    notices: list[str] = []
    accuracy = MetricSet([PieceRef("missing")], builtin_registry, notices)
    accuracy.update(torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]]), torch.tensor([1, 1, 1]))
    assert accuracy.compute() == {"accuracy": 2 / 3}
    assert notices and "missing" in notices[0]
    mse = MetricSet([], builtin_registry)
    mse.update(torch.tensor([[1.0, 2.0]]), torch.tensor([[1.0, 4.0]]))
    assert mse.compute() == {"mse": 2.0}
