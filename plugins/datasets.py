"""Generic datasets: arrays from ``.npz`` files (in memory) and image folders (read lazily).

Each has a ``sizes`` function that returns the split lengths without loading the data
(``{"train": n, "val": m}``; a split that is not produced is left out), so the planner
can turn epochs into steps; it takes the arguments it needs and ignores the rest. Path
arguments (annotated `Path`) are read relative to the spec's folder. The seed systems'
synthetic datasets live with their models in `stagedsl_plugins.systems`.
"""

from pathlib import Path
from typing import Literal

from stagedsl import DataSplits, TensorSplit, hookimpl


def _input_names(inputs) -> list:
    return [inputs] if isinstance(inputs, str) else list(inputs)


def npz_sizes(train: Path, val: Path | None = None, test: Path | None = None, target: str = "y", **_) -> dict:
    """Split lengths of `npz`, read from the arrays' headers only."""
    from stagedsl_plugins._npz_files import array_length

    files = {"train": train, "val": val, "test": test}
    return {split: array_length(path, target) for split, path in files.items() if path is not None}


def npz(train: Path, val: Path | None = None, test: Path | None = None, inputs: str | list[str] = "x", target: str = "y"):
    """Arrays from .npz files (inputs may name several arrays); floats -> float32, integers -> int64."""
    from stagedsl_plugins._npz_files import load_arrays

    names = _input_names(inputs)
    files = {split: path for split, path in {"train": train, "val": val, "test": test}.items() if path is not None}
    splits = {}
    for split, path in files.items():
        *features, labels = load_arrays(path, [*names, target])
        splits[split] = TensorSplit(features if isinstance(inputs, list) else features[0], labels)
    stats = {"inputs": names, "target": target, "files": {split: str(path) for split, path in files.items()}}
    labels = splits["train"].target
    if not labels.is_floating_point():
        stats["num_classes"] = int(labels.max()) + 1 if labels.numel() else 0
    return DataSplits(train=splits["train"], val=splits.get("val"), test=splits.get("test"), stats=stats)


def image_folder_sizes(root: Path, val_fraction: float = 0.2, test_fraction: float = 0.0, seed: int = 0,
                       extensions: list[str] = (".png", ".jpg", ".jpeg"), **_) -> dict:
    """Split lengths of `image_folder`, from the file listing alone."""
    from stagedsl_plugins._image_folder import discover

    _, splits, _ = discover(Path(root), val_fraction, test_fraction, seed, extensions)
    return {split: len(items) for split, items in splits.items()}


def image_folder(
    root: Path,
    size: int | list[int] | None = None,
    mode: Literal["RGB", "L"] = "RGB",
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    seed: int = 0,
    normalize: bool = True,
    stats_samples: int = 2048,
    extensions: list[str] = (".png", ".jpg", ".jpeg"),
):
    """Images in root/<class>/ (or root/train|val|test/<class>/), read lazily with Pillow; resized, normalised by training statistics."""
    from stagedsl_plugins._image_folder import ImageFiles, _size, channel_statistics, discover

    if stats_samples < 1:
        raise ValueError(f"stats_samples must be at least 1, found {stats_samples}")
    shape = _size(size)
    classes, items, layout = discover(Path(root), val_fraction, test_fraction, seed, extensions)
    mean = std = None
    if normalize:
        mean, std = channel_statistics(ImageFiles(items["train"], shape, mode), stats_samples, seed)
    splits = {split: ImageFiles(files, shape, mode, mean, std) for split, files in items.items()}
    if shape is None:
        first = splits["train"].pixels(0)
        shape = (int(first.shape[1]), int(first.shape[2]))
    stats = {"classes": classes, "num_classes": len(classes), "mode": mode, "size": list(shape), "layout": layout,
             "mean": mean, "std": std, "counts": {split: len(part) for split, part in splits.items()}}
    return DataSplits(train=splits["train"], val=splits.get("val"), test=splits.get("test"), stats=stats)


@hookimpl
def register_datasets(register):
    """Register the generic datasets with their `sizes` functions."""
    register("npz", npz, sizes=npz_sizes)
    register("image_folder", image_folder, sizes=image_folder_sizes)
