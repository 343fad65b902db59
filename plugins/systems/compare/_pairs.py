"""Pairs of handwritten digits: label 1 when both images show the same digit.

The images are scikit-learn's bundled `load_digits` (1,797 real 8x8 scans, no download).
They are first split, class by class, into disjoint pools for train / val / test (60 /
20 / 20 %), so no image of a validation or test pair was seen in training; each split's
pairs are then drawn from its own pool: half of them positive (two different images of
one digit), half negative (two digits that differ), shuffled. Everything follows from
`seed` (`numpy.random.default_rng([seed, split])`). The same pairs can be read from the
seed team's files instead: ``train.npz`` / ``val.npz`` / ``test_public.npz`` holding
``xa``, ``xb`` (images, ``[N, H, W]`` or ``[N, 1, H, W]``) and ``y`` (0 / 1).
"""

from __future__ import annotations

import os
from typing import Optional

import numpy as np

POOLS = {"train": 0.6, "val": 0.2, "test": 0.2}
FILES = {"train": "train.npz", "val": "val.npz", "test": "test_public.npz"}
CLASSES = ["different", "same"]


def image_pools(seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``split -> (images float32 [n, 1, 8, 8] in [0, 1], digits [n])``, disjoint, every digit in every pool."""
    from stagedsl import import_optional

    datasets = import_optional("sklearn.datasets", extra="ensemble", purpose="the `digit_pairs` dataset (scikit-learn's load_digits)")
    digits = datasets.load_digits()
    images = (digits.images.astype(np.float32) / 16.0)[:, None]
    labels = digits.target.astype(np.int64)
    rng = np.random.default_rng([seed, 99])
    chosen: dict[str, list[np.ndarray]] = {split: [] for split in POOLS}
    for digit in range(10):
        rows = rng.permutation(np.flatnonzero(labels == digit))
        cut_train = int(round(POOLS["train"] * len(rows)))
        cut_val = cut_train + int(round(POOLS["val"] * len(rows)))
        for split, part in zip(POOLS, (rows[:cut_train], rows[cut_train:cut_val], rows[cut_val:])):
            chosen[split].append(part)
    return {split: (images[np.sort(np.concatenate(parts))], labels[np.sort(np.concatenate(parts))]) for split, parts in chosen.items()}


def draw_pairs(images: np.ndarray, labels: np.ndarray, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`count` pairs from one pool: ``count // 2`` positive, the rest negative, shuffled."""
    by_digit = [np.flatnonzero(labels == d) for d in range(10)]
    first, second = np.empty(count, dtype=np.int64), np.empty(count, dtype=np.int64)
    same = np.zeros(count, dtype=np.int64)
    positives = count // 2
    for i in range(count):
        if i < positives:
            rows = by_digit[rng.integers(10)]
            first[i], second[i] = rng.choice(rows, size=2, replace=False)
            same[i] = 1
        else:
            a, b = rng.choice(10, size=2, replace=False)
            first[i], second[i] = rng.choice(by_digit[a]), rng.choice(by_digit[b])
    order = rng.permutation(count)
    return images[first[order]], images[second[order]], same[order]


def pair_arrays(counts: dict[str, int], seed: int) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``split -> (xa, xb, y)`` for each split with a positive count."""
    pools = image_pools(seed)
    out = {}
    for index, (split, count) in enumerate(counts.items()):
        if count > 0:
            images, labels = pools[split]
            out[split] = draw_pairs(images, labels, count, np.random.default_rng([seed, index]))
    return out


def file_paths(folder: str) -> dict[str, str]:
    """The seed team's files in `folder` (the test file is optional)."""
    base = os.path.expanduser(folder)
    paths = {split: os.path.join(base, name) for split, name in FILES.items()}
    for split in ("train", "val"):
        if not os.path.isfile(paths[split]):
            raise FileNotFoundError(f"no {FILES[split]} in {folder!r} (expected {', '.join(FILES.values())} with arrays xa, xb, y)")
    return {split: path for split, path in paths.items() if os.path.isfile(path)}


def read_file(path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(xa, xb, y)`` from one file: images as float32 ``[N, C, H, W]`` (a channel added to ``[N, H, W]``)."""
    with np.load(path, allow_pickle=False) as archive:
        missing = [k for k in ("xa", "xb", "y") if k not in archive.files]
        if missing:
            raise KeyError(f"{path!r} has no array(s) {missing}; it holds {sorted(archive.files)}")
        xa, xb, y = (archive[k] for k in ("xa", "xb", "y"))
    images = []
    for x in (xa, xb):
        x = x.astype(np.float32)
        if x.ndim == 3:
            x = x[:, None]
        if x.max(initial=0.0) > 1.0:
            x = x / 255.0 if x.max() > 16.0 else x / 16.0
        images.append(x)
    return images[0], images[1], y.astype(np.int64).reshape(-1)


def stats(arrays: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], source: str, folder: Optional[str]) -> dict:
    """What an exporter or user needs later: classes, input shape, where the data came from."""
    train = arrays["train"]
    return {
        "classes": CLASSES,
        "image_shape": list(train[0].shape[1:]),
        "positive_fraction": {split: float(y.mean()) for split, (_, _, y) in arrays.items()},
        "source": source,
        "folder": folder,
    }
