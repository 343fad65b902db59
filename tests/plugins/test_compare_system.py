"""Seed 002's pieces: digit pairs (real scans, balanced, deterministic, disjoint image
pools; or the team's npz files), the siamese classifier, and focal loss with label smoothing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F


def _pairs(registry, **args):
    return registry.get("datasets", "digit_pairs").factory(**args)


def test_digit_pairs_are_balanced_deterministic_and_sized(builtin_registry):
    one = _pairs(builtin_registry, n_train=200, n_val=60, n_test=40, seed=3)
    two = _pairs(builtin_registry, n_train=200, n_val=60, n_test=40, seed=3)
    other = _pairs(builtin_registry, n_train=200, n_val=60, n_test=40, seed=4)
    assert (len(one.train), len(one.val), len(one.test)) == (200, 60, 40)
    for split in ("train", "val", "test"):
        a, b = getattr(one, split), getattr(two, split)
        assert torch.equal(a.inputs[0], b.inputs[0]) and torch.equal(a.target, b.target)
        assert a.target.dtype == torch.int64 and a.target.float().mean().item() == 0.5
        assert a.inputs[0].shape[1:] == (1, 8, 8) and 0.0 <= a.inputs[0].min() and a.inputs[0].max() <= 1.0
    assert not torch.equal(one.train.inputs[0], other.train.inputs[0])
    sizes = builtin_registry.get("datasets", "digit_pairs").meta["sizes"](n_train=200, n_val=60, n_test=0)
    assert sizes == {"train": 200, "val": 60}


def test_positive_pairs_show_the_same_digit_and_val_images_are_unseen_in_training(builtin_registry):
    from stagedsl_plugins.systems.compare._pairs import image_pools

    pools = image_pools(0)
    flat = {split: {images.tobytes() for images in pools[split][0]} for split in pools}
    assert not flat["train"] & flat["val"] and not flat["train"] & flat["test"]
    digit_of = {img.tobytes(): d for split in pools for img, d in zip(*pools[split])}
    data = _pairs(builtin_registry, n_train=100, n_val=50, n_test=50, seed=0)
    for split in ("train", "val"):
        s = getattr(data, split)
        for xa, xb, y in zip(s.inputs[0].numpy(), s.inputs[1].numpy(), s.target.numpy()):
            assert (digit_of[xa.tobytes()] == digit_of[xb.tobytes()]) == bool(y)
    val_images = {x.tobytes() for x in data.val.inputs[0].numpy()} | {x.tobytes() for x in data.val.inputs[1].numpy()}
    assert val_images <= flat["val"]


def test_the_teams_npz_files_are_read_from_a_folder(tmp_path, builtin_registry):
    rng = np.random.default_rng(0)
    for name, n in (("train", 12), ("val", 6), ("test_public", 4)):
        np.savez(tmp_path / f"{name}.npz", xa=rng.integers(0, 256, (n, 28, 28)).astype(np.uint8),
                 xb=rng.integers(0, 256, (n, 28, 28)).astype(np.uint8), y=np.arange(n) % 2)
    data = _pairs(builtin_registry, folder=str(tmp_path))
    assert (len(data.train), len(data.val), len(data.test)) == (12, 6, 4)
    assert data.train.inputs[0].shape == (12, 1, 28, 28) and data.train.inputs[0].max() <= 1.0
    sizes = builtin_registry.get("datasets", "digit_pairs").meta["sizes"](folder=str(tmp_path))
    assert sizes == {"train": 12, "val": 6, "test": 4}
    model = builtin_registry.get("models", "pair_classifier").factory(width=4, layers=[1, 1], feat_dim=8, fusion=True)
    assert model(*data.val.inputs).shape == (6, 2)  # any image size: the encoder pools globally
    (tmp_path / "val.npz").unlink()
    with pytest.raises(FileNotFoundError, match="val.npz"):
        _pairs(builtin_registry, folder=str(tmp_path))


@pytest.mark.parametrize("fusion", [False, True])
def test_the_pair_classifier_is_siamese_and_named_for_freezing(builtin_registry, fusion):
    torch.manual_seed(0)
    model = builtin_registry.get("models", "pair_classifier").factory(width=4, layers=[1, 2], feat_dim=8, fusion=fusion).eval()
    names = [n for n, _ in model.named_parameters()]
    assert any(n.startswith("encoder.layer2.1.se.") for n in names) and not any(n.startswith("encoder.layer3") for n in names)
    assert any(n.startswith("fusion.attention") for n in names) == fusion
    xa, xb = torch.rand(5, 1, 8, 8), torch.rand(5, 1, 8, 8)
    with torch.no_grad():
        out = model(xa, xb)
        solo = torch.cat([model(xa[i:i + 1], xb[i:i + 1]) for i in range(5)])
    assert out.shape == (5, 2) and torch.allclose(out, solo, atol=1e-5)  # eval mode: samples do not interact
    if fusion:
        projected = [torch.ones(5, 8)] * 6
        weights = model.fusion.weights(projected)
        assert weights.shape == (5, 6) and torch.allclose(weights.sum(dim=1), torch.ones(5))


def test_focal_loss_with_label_smoothing(builtin_registry):
    logits, target = torch.tensor([[2.0, -1.0], [0.5, 0.3], [-1.0, 1.5]]), torch.tensor([0, 1, 1])
    focal = builtin_registry.get("losses", "focal").factory
    nll = F.cross_entropy(logits, target, reduction="none")
    smooth = F.cross_entropy(logits, target, reduction="none", label_smoothing=0.1)
    expected = ((1 - torch.exp(-nll)) ** 2 * smooth).mean()
    assert torch.allclose(focal(gamma=2.0, alpha=1.0, label_smoothing=0.1)(logits, target), expected)
    assert torch.allclose(focal(gamma=0.0, alpha=None, label_smoothing=0.1)(logits, target), smooth.mean())
    with pytest.raises(ValueError):
        focal(label_smoothing=1.0)
