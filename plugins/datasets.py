"""Generic datasets. Each factory returns `DataSplits` of in-memory `TensorSplit`s.

Every dataset has a ``sizes`` function taking the same arguments that returns the
split lengths without building anything (``{"train": n, "val": m}``; a split that is
not produced is left out), so the planner can turn epochs into steps. The seed
systems' synthetic datasets live with their models in `stagedsl_plugins.systems`.
"""

from stagedsl import DataSplits, TensorSplit, hookimpl


def _input_names(inputs) -> list:
    return [inputs] if isinstance(inputs, str) else list(inputs)


def npz_sizes(train: str, val: str | None = None, test: str | None = None, inputs: str | list[str] = "x", target: str = "y") -> dict:
    """Split lengths of `npz`, read from the arrays' headers only."""
    from stagedsl_plugins._npz_files import array_length

    files = {"train": train, "val": val, "test": test}
    return {split: array_length(path, target) for split, path in files.items() if path is not None}


def npz(train: str, val: str | None = None, test: str | None = None, inputs: str | list[str] = "x", target: str = "y"):
    """Arrays from .npz files (inputs may name several arrays); floats -> float32, integers -> int64."""
    from stagedsl_plugins._npz_files import load_arrays

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


@hookimpl
def register_datasets(register):
    """Register the generic datasets with their `sizes` functions."""
    register("npz", npz, sizes=npz_sizes)
