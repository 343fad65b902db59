"""Reading named arrays from ``.npz`` files, and their shapes without reading the data."""

from __future__ import annotations

import os
import zipfile
from typing import Sequence

import numpy as np


def resolve(path: str) -> str:
    """`path` with ``~`` expanded; a FileNotFoundError naming it if there is no such file."""
    full = os.path.expanduser(str(path))
    if not os.path.isfile(full):
        raise FileNotFoundError(f"no .npz file at {str(path)!r} (a relative path in a spec is read from the spec's folder)")
    return full


def _member(archive: zipfile.ZipFile, path: str, name: str) -> str:
    members = {m[:-4] if m.endswith(".npy") else m: m for m in archive.namelist()}
    if name not in members:
        raise KeyError(f"{str(path)!r} has no array {name!r}; it holds {sorted(members)}")
    return members[name]


def array_length(path: str, name: str) -> int:
    """The first dimension of array `name` in the ``.npz`` at `path`, read from its header only."""
    full = resolve(path)
    with zipfile.ZipFile(full) as archive:
        with archive.open(_member(archive, path, name)) as stream:
            version = np.lib.format.read_magic(stream)
            if version == (1, 0):
                shape, _, _ = np.lib.format.read_array_header_1_0(stream)
            else:
                shape, _, _ = np.lib.format.read_array_header_2_0(stream)
    if not shape:
        raise ValueError(f"array {name!r} in {str(path)!r} is a scalar, not a list of samples")
    return int(shape[0])


def as_tensor(array: np.ndarray):
    """A torch tensor for a loaded array: floats become float32, integers int64, booleans float32."""
    import torch

    if array.dtype == np.bool_ or np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float32, copy=False)
    elif np.issubdtype(array.dtype, np.integer):
        array = array.astype(np.int64, copy=False)
    else:
        raise TypeError(f"cannot train on an array of dtype {array.dtype}")
    return torch.from_numpy(np.ascontiguousarray(array))


def load_arrays(path: str, names: Sequence[str]) -> list:
    """The arrays `names` of the ``.npz`` at `path`, as tensors (see `as_tensor`)."""
    full = resolve(path)
    with np.load(full, allow_pickle=False) as archive:
        missing = [n for n in names if n not in archive.files]
        if missing:
            raise KeyError(f"{str(path)!r} has no array {missing[0]!r}; it holds {sorted(archive.files)}")
        return [as_tensor(archive[n]) for n in names]
