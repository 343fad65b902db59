"""Seed 002's PDE surrogate: the `pde_transformer` model and the `pde_synthetic` dataset.

The network (``_network``) and the solver that makes the data (``_solver``) are
imported only when a factory is called.
"""

from stagedsl import DataSplits, TensorSplit, hookimpl
from stagedsl_plugins._splits import channel_stats, split_counts


def pde_transformer(
    channels: int = 2,
    size: int = 32,
    patch: int = 4,
    dim: int = 64,
    depth: int = 2,
    heads: int = 4,
    mlp_ratio: float = 2.0,
    dropout: float = 0.0,
    residual: bool = True,
):
    """Patch transformer PDE surrogate: encoder_2d -> transformer -> decoder_2d, [B,C,H,W] -> same shape."""
    from stagedsl_plugins.systems.pde._network import PDETransformer

    return PDETransformer(channels, size, patch, dim, depth, heads, mlp_ratio, dropout, residual)


def pde_synthetic_sizes(n_train: int = 256, n_val: int = 64, size: int = 32, channels: int = 2, dt_steps: int = 10, seed: int = 0) -> dict:
    """Split lengths of `pde_synthetic` (no simulation)."""
    return split_counts(n_train, n_val)


def pde_synthetic(n_train: int = 256, n_val: int = 64, size: int = 32, channels: int = 2, dt_steps: int = 10, seed: int = 0):
    """2D FitzHugh-Nagumo reaction-diffusion fields: state at t -> state dt_steps solver steps later.

    Deterministic given ``seed``; train and validation samples come from independent
    random streams, so changing ``n_val`` does not change the training set.
    """
    import numpy as np
    import torch

    from stagedsl_plugins.systems.pde import _solver

    counts = split_counts(n_train, n_val)
    splits = {}
    for index, (split, count) in enumerate(counts.items()):
        inputs, target = _solver.simulate_pairs(count, size, channels, dt_steps, np.random.default_rng([seed, index]))
        splits[split] = TensorSplit(torch.from_numpy(inputs), torch.from_numpy(target))
    stats = {
        **channel_stats(splits["train"].target),
        "channels": ["u", "v"][:channels],
        "system": "FitzHugh-Nagumo" if channels == 2 else "Allen-Cahn",
        "time_between": _solver.DT * dt_steps,
    }
    return DataSplits(train=splits["train"], val=splits.get("val"), stats=stats)


@hookimpl
def register_models(register):
    """Register `pde_transformer`."""
    register("pde_transformer", pde_transformer)


@hookimpl
def register_datasets(register):
    """Register `pde_synthetic` with its `sizes` function."""
    register("pde_synthetic", pde_synthetic, sizes=pde_synthetic_sizes)
