"""Seed 002's system as built-in pieces: pairs of handwritten digits and a siamese classifier.

- dataset ``digit_pairs``: pairs of scikit-learn's bundled digit scans (no download),
  label 1 when both show the same digit, balanced and deterministic from ``seed``; or the
  seed team's ``train.npz`` / ``val.npz`` / ``test_public.npz`` (``xa``, ``xb``, ``y``)
  from ``folder``. Inputs ``(xa, xb)``, each ``[N, 1, 8, 8]``; target int64;
- model ``pair_classifier``: a ResNet encoder with SE attention shared by both images,
  the six-way adaptive fusion head (``fusion = true``) or the plain one, two logits.

The heavy code lives in ``_pairs`` and ``_network``, imported only when a factory is called.
"""

from stagedsl import DataSplits, TensorSplit, hookimpl


def digit_pairs_sizes(n_train: int = 4000, n_val: int = 1000, n_test: int = 1000, seed: int = 0, folder: str | None = None) -> dict:
    """Split lengths of `digit_pairs` (from the files' headers when `folder` is given; nothing drawn)."""
    if folder is not None:
        from stagedsl_plugins._npz_files import array_length
        from stagedsl_plugins.systems.compare._pairs import file_paths

        return {split: array_length(path, "y") for split, path in file_paths(folder).items()}
    _check_counts(n_train, n_val, n_test)
    return {split: count for split, count in (("train", n_train), ("val", n_val), ("test", n_test)) if count}


def _check_counts(n_train: int, n_val: int, n_test: int) -> None:
    if n_train < 2:
        raise ValueError(f"n_train must be at least 2, found {n_train}")
    if n_val < 0 or n_test < 0:
        raise ValueError(f"n_val and n_test cannot be negative, found {n_val} and {n_test}")


def digit_pairs(n_train: int = 4000, n_val: int = 1000, n_test: int = 1000, seed: int = 0, folder: str | None = None):
    """Pairs of 8x8 digit scans (sklearn load_digits), label 1 when both show the same digit; or xa/xb/y .npz files from `folder`."""
    import torch

    from stagedsl_plugins.systems.compare import _pairs as pairs

    if folder is not None:
        arrays = {split: pairs.read_file(path) for split, path in pairs.file_paths(folder).items()}
        source = f"{folder}: " + ", ".join(pairs.FILES[s] for s in arrays)
    else:
        _check_counts(n_train, n_val, n_test)
        arrays = pairs.pair_arrays({"train": n_train, "val": n_val, "test": n_test}, seed)
        source = "sklearn.datasets.load_digits"
    splits = {split: TensorSplit((torch.from_numpy(xa), torch.from_numpy(xb)), torch.from_numpy(y)) for split, (xa, xb, y) in arrays.items()}
    return DataSplits(train=splits["train"], val=splits.get("val"), test=splits.get("test"), stats=pairs.stats(arrays, source, folder))


def pair_classifier(in_channels: int = 1, width: int = 16, layers: list[int] = (2, 2, 2), feat_dim: int = 64, fusion: bool = False,
                    se_reduction: int = 4, dropout: float = 0.1):
    """Siamese pair classifier: SE-ResNet encoder (`layers` blocks per stage), fusion head (six-way adaptive when `fusion`), two logits."""
    from stagedsl_plugins.systems.compare._network import PairClassifier

    if not layers or any(int(b) < 1 for b in layers):
        raise ValueError(f"layers must list at least one stage of at least one block, found {list(layers)}")
    return PairClassifier(in_channels, width, tuple(int(b) for b in layers), feat_dim, fusion, se_reduction, dropout)


@hookimpl
def register_models(register):
    """Register seed 002's model."""
    register("pair_classifier", pair_classifier)


@hookimpl
def register_datasets(register):
    """Register seed 002's dataset with its `sizes` function."""
    register("digit_pairs", digit_pairs, sizes=digit_pairs_sizes)
