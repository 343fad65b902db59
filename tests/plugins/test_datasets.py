"""Built-in datasets: deterministic per seed, `sizes` equal to the real lengths, sensible content."""


import numpy as np
import pytest
import torch

from stagedsl import DataSplits, Registry, TensorSplit

SMALL = {
    "pde_synthetic": {"n_train": 24, "n_val": 8, "size": 16},
    "ocec_eyes": {"n_train": 64, "n_val": 16},
    "metr_synthetic": {"num_nodes": 6, "days": 3},
}


@pytest.fixture(scope="module")
def registry():
    return Registry.load(autoload=False)


def build(registry, name, **args):
    entry = registry.get("datasets", name)
    return entry.factory(**args), entry.meta["sizes"](**args)


def same(a: TensorSplit, b: TensorSplit) -> bool:
    return torch.equal(a.inputs, b.inputs) and torch.equal(a.target, b.target)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_deterministic_per_seed_and_sizes_match(registry, name):
    data, sizes = build(registry, name, **SMALL[name])
    assert isinstance(data, DataSplits) and isinstance(data.train, TensorSplit) and data.test is None
    assert sizes == {"train": len(data.train), "val": len(data.val)}
    again, _ = build(registry, name, **SMALL[name])
    assert same(data.train, again.train) and same(data.val, again.val)
    other, _ = build(registry, name, **SMALL[name], seed=1)
    assert not same(data.train, other.train)
    assert data.train.inputs.dtype == torch.float32
    inputs, target = data.train.__getitems__([0, 2, 3])
    assert len(inputs) == 3 and len(target) == 3


@pytest.mark.parametrize("name", sorted(SMALL))
def test_default_sizes_match_default_lengths(registry, name):
    data, sizes = build(registry, name)
    assert sizes == {"train": len(data.train), "val": len(data.val)}


def test_npz_loads_arrays_and_sizes_reads_only_headers(registry, tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    train, val = tmp_path / "train.npz", tmp_path / "val.npz"
    np.savez(train, a=rng.random((10, 3)), b=rng.random((10, 2)).astype(np.float16), y=np.arange(10, dtype=np.int32))
    np.savez_compressed(val, a=rng.random((4, 3)), b=rng.random((4, 2)), y=np.arange(4, dtype=np.int32))
    entry = registry.get("datasets", "npz")

    def no_data(*args, **kwargs):
        raise AssertionError("sizes must not load arrays")

    with monkeypatch.context() as patch:
        patch.setattr(np, "load", no_data)
        assert entry.meta["sizes"](str(train), str(val), inputs=["a", "b"]) == {"train": 10, "val": 4}

    data = entry.factory(str(train), str(val), inputs=["a", "b"])
    (a, b), y = data.train[[0, 1]]
    assert a.dtype == b.dtype == torch.float32 and y.dtype == torch.int64
    assert len(data.val) == 4 and data.test is None and data.stats["num_classes"] == 10
    single = entry.factory(str(train), inputs="a", target="a")
    assert isinstance(single.train.inputs, torch.Tensor) and single.val is None
    with pytest.raises(KeyError, match="has no array 'x'"):
        entry.factory(str(train))
    with pytest.raises(KeyError, match="has no array 'x'"):
        entry.meta["sizes"](str(train), target="x")
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        entry.meta["sizes"](str(tmp_path / "missing.npz"))
