"""Built-in datasets: deterministic per seed, `sizes` equal to the real lengths, sensible content."""

import time

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


def test_pde_synthetic_is_a_real_solver_with_distinct_channel_scales(registry):
    start = time.perf_counter()
    data, _ = build(registry, "pde_synthetic")
    assert time.perf_counter() - start < 4.0  # about 0.3 s on two cores
    x, y = data.train.inputs, data.train.target
    assert x.shape == y.shape == (256, 2, 32, 32)
    assert torch.isfinite(y).all()
    change = (y - x).std(dim=(0, 2, 3)) / y.std(dim=(0, 2, 3))
    assert (change > 0.05).all() and (change < 0.6).all()  # the target is later, not the same field
    std = torch.tensor(data.stats["std"])
    assert std[0] / std[1] > 3.0
    torch.testing.assert_close(std, y.double().std(dim=(0, 2, 3), correction=0).float())
    # the n_val stream is independent of the training set
    bigger, _ = build(registry, "pde_synthetic", n_train=24, n_val=16, size=16)
    small, _ = build(registry, "pde_synthetic", **SMALL["pde_synthetic"])
    assert same(bigger.train, small.train)


def test_pde_laplacian_is_second_order_accurate():
    from stagedsl_plugins.systems.pde._solver import laplacian

    errors = []
    for size in (32, 64):
        grid = np.linspace(-1, 1, size, endpoint=False)
        xs, ys = np.meshgrid(grid, grid, indexing="ij")
        field = np.sin(np.pi * xs) * np.cos(2 * np.pi * ys)  # periodic on [-1, 1)^2
        exact = -5 * np.pi**2 * field
        errors.append(np.abs(laplacian(field, 2.0 / size) - exact).max() / np.abs(exact).max())
    assert errors[0] < 0.02
    assert 3.5 < errors[0] / errors[1] < 4.5  # halving the spacing quarters the error


def test_ocec_eyes_are_balanced_images_with_int_labels(registry):
    data, _ = build(registry, "ocec_eyes", n_train=512, n_val=64)
    x, y = data.train.inputs, data.train.target
    assert x.shape == (512, 1, 24, 24) and y.dtype == torch.int64
    assert set(y.unique().tolist()) == {0, 1} and 0.4 < y.float().mean() < 0.6
    assert 0.0 <= x.min() and x.max() <= 1.0
    open_eyes, closed_eyes = x[y == 1], x[y == 0]
    # open eyes show a bright sclera and a dark iris: more contrast at the centre
    assert open_eyes[..., 8:16, 6:18].std(dim=(-1, -2)).mean() > closed_eyes[..., 8:16, 6:18].std(dim=(-1, -2)).mean()
    assert data.stats["classes"] == ["closed", "open"]


def test_metr_synthetic_windows_are_chronological_with_missing_zeros(registry):
    data, _ = build(registry, "metr_synthetic")
    x, y = data.train.inputs, data.train.target
    assert x.shape[1:] == (12, 16) and y.shape[1:] == (3, 16)
    # consecutive windows slide by one reading; targets follow the history
    assert torch.equal(x[1, :-1], x[0, 1:])
    assert torch.equal(y[0], x[1:4, -1])  # x[k] holds readings k..k+11, y[0] readings 12..14
    missing = (x == 0).float().mean().item()
    assert 0.02 < missing < 0.15
    observed = x[x != 0]
    assert 3.0 <= observed.min() and observed.max() <= 75.0
    assert 40 < data.stats["mean"] < 70 and data.stats["std"] > 3 and data.stats["units"] == "mph"
    # rush hour (08:00) is slower than the night (03:00) on weekdays, at 5-minute readings
    series = torch.cat([x[:, 0], x[-1, 1:]])  # the training period, reading by reading
    day = 288
    rush = series[[d * day + 8 * 12 for d in range(5)]]
    night = series[[d * day + 3 * 12 for d in range(5)]]
    assert rush[rush > 0].mean() < night[night > 0].mean() - 5.0
    # the series is cut (3226 / 806 readings) before windowing, so no window straddles the cut
    assert (len(data.train), len(data.val)) == (3226 - 14, 806 - 14)


def test_metr_synthetic_rejects_impossible_splits(registry):
    entry = registry.get("datasets", "metr_synthetic")
    with pytest.raises(ValueError, match="val_fraction"):
        entry.meta["sizes"](val_fraction=1.0)
    with pytest.raises(ValueError, match="too few"):
        entry.factory(days=1, history=200)


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
