"""Images on disk, one folder per class: read lazily with Pillow, sample by sample.

Two layouts (seed 004's ``--data_root``):

- ``root/train/<class>/*.png`` with ``root/val/<class>/...`` (and ``root/test/...``) beside
  it: the split folders are the splits;
- ``root/<class>/*.png``: one pool, split into train / val / test by a seeded,
  per-class shuffle (`val_fraction`, `test_fraction`).

Classes are the sorted folder names of the training split. Only the file list is held
in memory; each image is opened when the DataLoader asks for it (so DataLoader workers
read in parallel and a dataset larger than memory trains). Per-channel mean and std are
computed from (at most `stats_samples` of) the training images and kept in the
dataset's `stats`, which the export package writes to ``preprocessing.json``.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from stagedsl import import_optional

SPLITS = ("train", "val", "test")


def _image_module():
    return import_optional("PIL.Image", extra="images", purpose="the image_folder dataset")


def _files(folder: Path, extensions: Sequence[str]) -> list[Path]:
    wanted = {e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions}
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in wanted)


def _class_folders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def discover(root: Path, val_fraction: float, test_fraction: float, seed: int,
             extensions: Sequence[str]) -> tuple[list[str], dict[str, list[tuple[Path, int]]], str]:
    """``(classes, {split: [(file, label)]}, layout)`` of an image folder (see the module docstring)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"no folder at {str(root)!r} (a relative `root` is read from the spec's folder)")
    if not 0.0 <= val_fraction < 1.0 or not 0.0 <= test_fraction < 1.0 or val_fraction + test_fraction >= 1.0:
        raise ValueError(f"val_fraction and test_fraction must be in [0, 1) and leave a training split, found {val_fraction} and {test_fraction}")
    if (root / "train").is_dir():
        classes = [p.name for p in _class_folders(root / "train")]
        splits: dict[str, list[tuple[Path, int]]] = {}
        for split in SPLITS:
            folder = root / split
            if not folder.is_dir():
                continue
            extra = [p.name for p in _class_folders(folder) if p.name not in classes]
            if extra:
                raise ValueError(f"{folder} has class folders the training split lacks: {', '.join(extra)}")
            splits[split] = [(f, classes.index(c.name)) for c in _class_folders(folder) for f in _files(c, extensions)]
        layout = "split folders"
    else:
        classes = [p.name for p in _class_folders(root)]
        rng = random.Random(seed)
        splits = {split: [] for split in SPLITS}
        for label, folder in enumerate(_class_folders(root)):
            files = _files(folder, extensions)
            rng.shuffle(files)
            n_val, n_test = round(len(files) * val_fraction), round(len(files) * test_fraction)
            splits["val"] += [(f, label) for f in files[:n_val]]
            splits["test"] += [(f, label) for f in files[n_val:n_val + n_test]]
            splits["train"] += [(f, label) for f in files[n_val + n_test:]]
        splits = {split: sorted(items) for split, items in splits.items() if items or split == "train"}
        layout = "seeded split"
    if not classes:
        raise ValueError(f"{root} holds no class folders (expected {root}/<class>/*.png or {root}/train/<class>/*.png)")
    if not splits.get("train"):
        raise ValueError(f"{root} holds no training image with an extension among {', '.join(extensions)}")
    return classes, splits, layout


def _size(size: Optional[int | Sequence[int]]) -> Optional[tuple[int, int]]:
    if size is None:
        return None
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    if height < 1 or width < 1:
        raise ValueError(f"size must be positive, found {size}")
    return int(height), int(width)


class ImageFiles(torch.utils.data.Dataset):
    """``[(file, label)]`` read one at a time: ``split[i] -> (float32 [C, H, W], int64 label)``."""

    def __init__(self, items: list[tuple[Path, int]], size: Optional[tuple[int, int]], mode: str,
                 mean: Optional[list[float]] = None, std: Optional[list[float]] = None):
        self.items, self.size, self.mode = items, size, mode
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1) if mean is not None else None
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1) if std is not None else None

    def __len__(self) -> int:
        return len(self.items)

    def pixels(self, index: int) -> torch.Tensor:
        """The image at `index` as float32 [C, H, W] in [0, 1], before normalisation."""
        image_module = _image_module()
        path = self.items[index][0]
        with image_module.open(path) as image:
            image = image.convert(self.mode)
            if self.size is not None and image.size != (self.size[1], self.size[0]):
                image = image.resize((self.size[1], self.size[0]), image_module.Resampling.BILINEAR)
            array = np.asarray(image, dtype=np.float32) / 255.0
        tensor = torch.from_numpy(array)
        return tensor.unsqueeze(0) if tensor.dim() == 2 else tensor.permute(2, 0, 1).contiguous()

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        tensor = self.pixels(index)
        if self.mean is not None:
            tensor = (tensor - self.mean) / self.std
        return tensor, torch.tensor(self.items[index][1], dtype=torch.long)


def channel_statistics(split: ImageFiles, samples: int, seed: int) -> tuple[list[float], list[float]]:
    """Per-channel mean and (population) std over at most `samples` images of `split`, chosen by `seed`."""
    indices = list(range(len(split)))
    if len(indices) > samples:
        indices = sorted(random.Random(seed).sample(indices, samples))
    total = square = None
    count = 0
    for index in indices:
        pixels = split.pixels(index).double().flatten(1)
        total = pixels.sum(1) if total is None else total + pixels.sum(1)
        square = (pixels ** 2).sum(1) if square is None else square + (pixels ** 2).sum(1)
        count += pixels.shape[1]
    mean = total / count
    std = (square / count - mean ** 2).clamp_min(0).sqrt().clamp_min(1e-6)
    return mean.tolist(), std.tolist()
