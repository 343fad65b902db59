"""Helpers the built-in synthetic datasets share: split lengths and per-channel statistics."""

from __future__ import annotations


def split_counts(n_train: int, n_val: int) -> dict:
    """``{"train": n_train, "val": n_val}`` (no "val" when it is 0), after checking both."""
    if n_train < 1:
        raise ValueError(f"n_train must be at least 1, found {n_train}")
    if n_val < 0:
        raise ValueError(f"n_val cannot be negative, found {n_val}")
    return {"train": n_train, "val": n_val} if n_val else {"train": n_train}


def channel_stats(target) -> dict:
    """Per-channel (dim 1) mean and population std of a target tensor, as lists of floats."""
    dims = [d for d in range(target.dim()) if d != 1]
    values = target.double()
    return {"mean": values.mean(dim=dims).tolist(), "std": values.std(dim=dims, correction=0).tolist()}
