"""Built-in datasets. Each factory returns `DataSplits` of in-memory `TensorSplit`s.

Every dataset has a ``sizes`` function taking the same arguments that returns the
split lengths without building anything (``{"train": n, "val": m}``; a split that is
not produced is left out), so the planner can turn epochs into steps. Synthetic
datasets are deterministic given ``seed``; train and validation samples come from
independent random streams, so changing ``n_val`` does not change the training set.
"""

from stagedsl import DataSplits, TensorSplit, hookimpl


def _counts(n_train: int, n_val: int) -> dict:
    if n_train < 1:
        raise ValueError(f"n_train must be at least 1, found {n_train}")
    if n_val < 0:
        raise ValueError(f"n_val cannot be negative, found {n_val}")
    return {"train": n_train, "val": n_val} if n_val else {"train": n_train}


def _channel_stats(target) -> dict:
    """Per-channel (dim 1) mean and population std of a target tensor, as lists of floats."""
    dims = [d for d in range(target.dim()) if d != 1]
    values = target.double()
    return {"mean": values.mean(dim=dims).tolist(), "std": values.std(dim=dims, correction=0).tolist()}


# -- pde_synthetic --------------------------------------------------------------------
def pde_synthetic_sizes(n_train: int = 256, n_val: int = 64, size: int = 32, channels: int = 2, dt_steps: int = 10, seed: int = 0) -> dict:
    """Split lengths of `pde_synthetic` (no simulation)."""
    return _counts(n_train, n_val)


def pde_synthetic(n_train: int = 256, n_val: int = 64, size: int = 32, channels: int = 2, dt_steps: int = 10, seed: int = 0):
    """2D FitzHugh-Nagumo reaction-diffusion fields: state at t -> state dt_steps solver steps later."""
    import numpy as np
    import torch

    from stagedsl_plugins import pde_solver

    counts = _counts(n_train, n_val)
    splits = {}
    for index, (split, count) in enumerate(counts.items()):
        inputs, target = pde_solver.simulate_pairs(count, size, channels, dt_steps, np.random.default_rng([seed, index]))
        splits[split] = TensorSplit(torch.from_numpy(inputs), torch.from_numpy(target))
    stats = {
        **_channel_stats(splits["train"].target),
        "channels": ["u", "v"][:channels],
        "system": "FitzHugh-Nagumo" if channels == 2 else "Allen-Cahn",
        "time_between": pde_solver.DT * dt_steps,
    }
    return DataSplits(train=splits["train"], val=splits.get("val"), stats=stats)


# -- npz ------------------------------------------------------------------------------
def _input_names(inputs) -> list:
    return [inputs] if isinstance(inputs, str) else list(inputs)


def npz_sizes(train: str, val: str | None = None, test: str | None = None, inputs: str | list[str] = "x", target: str = "y") -> dict:
    """Split lengths of `npz`, read from the arrays' headers only."""
    from stagedsl_plugins.npz_files import array_length

    files = {"train": train, "val": val, "test": test}
    return {split: array_length(path, target) for split, path in files.items() if path is not None}


def npz(train: str, val: str | None = None, test: str | None = None, inputs: str | list[str] = "x", target: str = "y"):
    """Arrays from .npz files (inputs may name several arrays); floats -> float32, integers -> int64."""
    from stagedsl_plugins.npz_files import load_arrays

    names = _input_names(inputs)
    files = {split: path for split, path in {"train": train, "val": val, "test": test}.items() if path is not None}
    splits = {}
    for split, path in files.items():
        *features, labels = load_arrays(path, [*names, target])
        splits[split] = TensorSplit(features if isinstance(inputs, list) else features[0], labels)
    stats = {"inputs": names, "target": target, "files": files}
    labels = splits["train"].target
    if not labels.is_floating_point():
        stats["num_classes"] = int(labels.max()) + 1 if labels.numel() else 0
    return DataSplits(train=splits["train"], val=splits.get("val"), test=splits.get("test"), stats=stats)


# -- ocec_eyes ------------------------------------------------------------------------
def ocec_eyes_sizes(n_train: int = 2048, n_val: int = 512, size: int = 24, seed: int = 0, noise: float = 0.05, hard_fraction: float = 0.25) -> dict:
    """Split lengths of `ocec_eyes` (nothing drawn)."""
    return _counts(n_train, n_val)


def ocec_eyes(n_train: int = 2048, n_val: int = 512, size: int = 24, seed: int = 0, noise: float = 0.05, hard_fraction: float = 0.25):
    """Procedurally drawn grayscale eye crops [1, size, size]; target int64, 1 open / 0 closed."""
    import numpy as np
    import torch

    from stagedsl_plugins.eye_crops import THRESHOLD, draw_eyes

    counts = _counts(n_train, n_val)
    splits = {}
    for index, (split, count) in enumerate(counts.items()):
        images, labels = draw_eyes(count, size, np.random.default_rng([seed, index]), noise, hard_fraction)
        splits[split] = TensorSplit(torch.from_numpy(images), torch.from_numpy(labels))
    train = splits["train"]
    stats = {
        "classes": ["closed", "open"],
        "mean": float(train.inputs.mean()),
        "std": float(train.inputs.std()),
        "positive_fraction": float(train.target.float().mean()),
        "openness_threshold": THRESHOLD,
    }
    return DataSplits(train=train, val=splits.get("val"), stats=stats)


# -- metr_synthetic -------------------------------------------------------------------
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
    from stagedsl_plugins.traffic_synth import split_lengths

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

    from stagedsl_plugins.traffic_synth import speeds, split_lengths, windows

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


@hookimpl
def register_datasets(register):
    """Register the built-in datasets with their `sizes` functions."""
    register("pde_synthetic", pde_synthetic, sizes=pde_synthetic_sizes)
    register("npz", npz, sizes=npz_sizes)
    register("ocec_eyes", ocec_eyes, sizes=ocec_eyes_sizes)
    register("metr_synthetic", metr_synthetic, sizes=metr_synthetic_sizes)
