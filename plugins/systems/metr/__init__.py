"""Seed 003's traffic forecaster: the `metr_forecaster` model, the `metr_synthetic` dataset, and
`masked_mae` as a loss and a metric (METR-LA stores a missing reading as 0).

The network (``_network``), the traffic generator (``_traffic``) and the masked error
modules (``_masked``) are imported only when a factory is called.
"""

from stagedsl import DataSplits, TensorSplit, hookimpl


def metr_forecaster(num_nodes: int = 16, history: int = 12, horizon: int = 3, hidden: int = 32, node_embed: int = 8, eps: float = 1e-3):
    """Sensor-graph forecaster: [B, history, nodes] readings (0 = missing) -> [B, horizon, nodes]."""
    from stagedsl_plugins.systems.metr._network import METRForecaster

    return METRForecaster(num_nodes, history, horizon, hidden, node_embed, eps)


def metr_synthetic_sizes(
    num_nodes: int = 16,
    days: int = 14,
    history: int = 12,
    horizon: int = 3,
    interval_minutes: int = 5,
    seed: int = 0,
    missing: float = 0.05,
    val_fraction: float = 0.2,
) -> dict:
    """Window counts of `metr_synthetic` (nothing generated)."""
    from stagedsl_plugins.systems.metr._traffic import split_lengths

    _, _, train_windows, val_windows = split_lengths(days, history, horizon, interval_minutes, val_fraction)
    return {"train": train_windows, "val": val_windows}


def metr_synthetic(
    num_nodes: int = 16,
    days: int = 14,
    history: int = 12,
    horizon: int = 3,
    interval_minutes: int = 5,
    seed: int = 0,
    missing: float = 0.05,
    val_fraction: float = 0.2,
):
    """Sensor-network speeds (mph, 0 = missing) with rush hours and incidents: [history, nodes] -> [horizon, nodes]."""
    import numpy as np
    import torch

    from stagedsl_plugins.systems.metr._traffic import speeds, split_lengths, windows

    train_steps, _, _, _ = split_lengths(days, history, horizon, interval_minutes, val_fraction)
    series, adjacency = speeds(num_nodes, days * 24 * 60 // interval_minutes, interval_minutes, missing, np.random.default_rng(seed))
    splits = {}
    for split, part in {"train": series[:train_steps], "val": series[train_steps:]}.items():
        inputs, target = windows(part, history, horizon)
        splits[split] = TensorSplit(torch.from_numpy(inputs), torch.from_numpy(target))
    observed = series[:train_steps][series[:train_steps] != 0]
    stats = {
        "mean": float(observed.mean()),
        "std": float(observed.std()),
        "missing_value": 0.0,
        "missing_fraction": float((series == 0).mean()),
        "units": "mph",
        "interval_minutes": interval_minutes,
        "adjacency": adjacency.astype(int).tolist(),
    }
    return DataSplits(train=splits["train"], val=splits["val"], stats=stats)


def masked_mae_loss(null_value: float = 0.0):
    """Mean absolute error ignoring entries whose target equals null_value (METR-LA's missing 0)."""
    from stagedsl_plugins.systems.metr._masked import MaskedMAE

    return MaskedMAE(null_value)


def masked_mae_metric(null_value: float = 0.0):
    """Mean absolute error over entries whose target is not null_value (METR-LA's missing 0)."""
    from stagedsl_plugins.systems.metr._masked import MaskedMeanAbsoluteError

    return MaskedMeanAbsoluteError(null_value)


@hookimpl
def register_models(register):
    """Register `metr_forecaster`."""
    register("metr_forecaster", metr_forecaster)


@hookimpl
def register_datasets(register):
    """Register `metr_synthetic` with its `sizes` function."""
    register("metr_synthetic", metr_synthetic, sizes=metr_synthetic_sizes)


@hookimpl
def register_losses(register):
    """Register the `masked_mae` loss."""
    register("masked_mae", masked_mae_loss)


@hookimpl
def register_metrics(register):
    """Register the `masked_mae` metric (smaller is better)."""
    register("masked_mae", masked_mae_metric, mode="min")
