"""Your own data: a function returning stagedsl.DataSplits, named in the spec by import path.

The team's real code would read its files here (a path argument annotated `Path` is read
relative to the spec's folder); this one draws Gaussian blobs, one per class.
"""

import torch

from stagedsl import DataSplits, TensorSplit


def blobs(n_train: int = 512, n_val: int = 128, features: int = 16, classes: int = 3, seed: int = 0) -> DataSplits:
    """`classes` Gaussian blobs in `features` dimensions: (x float32 [N, features], y int64 [N])."""
    if n_train < 1 or n_val < 0:
        raise ValueError(f"n_train must be at least 1 and n_val at least 0, found {n_train} and {n_val}")
    generator = torch.Generator().manual_seed(seed)
    centres = 2.0 * torch.randn(classes, features, generator=generator)

    def draw(count: int) -> TensorSplit:
        labels = torch.randint(classes, (count,), generator=generator)
        return TensorSplit(centres[labels] + torch.randn(count, features, generator=generator), labels)

    return DataSplits(train=draw(n_train), val=draw(n_val) if n_val else None, stats={"num_classes": classes})
