"""Seed 002's PDE pieces: the pde_synthetic solver and dataset, the pde_transformer model."""

import numpy as np
import pytest
import torch
from torch import nn

from stagedsl import TensorSplit


def same(a: TensorSplit, b: TensorSplit) -> bool:
    return torch.equal(a.inputs, b.inputs) and torch.equal(a.target, b.target)


def test_pde_synthetic_is_a_real_solver_with_distinct_channel_scales(dataset):
    data, _ = dataset("pde_synthetic")
    x, y = data.train.inputs, data.train.target
    assert x.shape == y.shape == (256, 2, 32, 32)
    assert torch.isfinite(y).all()
    change = (y - x).std(dim=(0, 2, 3)) / y.std(dim=(0, 2, 3))
    assert (change > 0.05).all() and (change < 0.6).all()  # the target is later, not the same field
    std = torch.tensor(data.stats["std"])
    assert std[0] / std[1] > 3.0
    torch.testing.assert_close(std, y.double().std(dim=(0, 2, 3), correction=0).float())
    # the n_val stream is independent of the training set
    bigger, _ = dataset("pde_synthetic", n_train=24, n_val=16, size=16)
    small, _ = dataset("pde_synthetic", n_train=24, n_val=8, size=16)
    assert same(bigger.train, small.train)


def test_pde_laplacian_is_second_order_accurate():
    from stagedsl_plugins.systems.pde._solver import laplacian

    errors = []
    for size in (32, 64):
        grid = np.linspace(-1, 1, size, endpoint=False)
        xs, ys = np.meshgrid(grid, grid, indexing="ij")
        field = np.sin(np.pi * xs) * np.cos(2 * np.pi * ys)  # periodic on [-1, 1)^2
        exact = -5 * np.pi**2 * field
        errors.append(np.abs(laplacian(field, 2.0 / size) - exact).max() / np.abs(exact).max())
    assert errors[0] < 0.02
    assert 3.5 < errors[0] / errors[1] < 4.5  # halving the spacing quarters the error


def test_pde_transformer_parts_and_size(piece):
    model = piece("models", "pde_transformer")
    assert [n for n, _ in model.named_children()] == ["encoder_2d", "transformer", "decoder_2d"]
    assert isinstance(model.transformer.layers, nn.TransformerEncoder)
    assert any(n.startswith("transformer.position") for n, _ in model.named_parameters())
    assert 50_000 <= sum(p.numel() for p in model.parameters()) <= 150_000
    with pytest.raises(ValueError, match="multiple of patch"):
        piece("models", "pde_transformer", size=30, patch=4)
