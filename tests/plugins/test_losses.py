"""Built-in losses compute what they say, checked against hand computations."""

import numpy as np
import pytest
import torch
from torch.nn import functional as F
from torch.utils.data import Subset

from stagedsl import Registry, TensorSplit


@pytest.fixture(scope="module")
def registry():
    return Registry.load(autoload=False)


def loss(registry, name, **args):
    return registry.get("losses", name).factory(**args)


def test_nrmse_auto_sigma_is_the_per_channel_std_of_training_targets(registry):
    rng = np.random.default_rng(0)
    target = rng.normal(0.0, 1.0, (20, 3, 4, 5)) * np.array([1.0, 10.0, 0.1])[None, :, None, None] + 7.0
    split = TensorSplit(torch.randn(20, 1), torch.tensor(target, dtype=torch.float32))
    derive = registry.get("losses", "nrmse").meta["auto"]["sigma"]
    hand = [float(np.sqrt(((target[:, c] - target[:, c].mean()) ** 2).mean())) for c in range(3)]

    assert derive(split) == pytest.approx(hand, rel=1e-5)
    as_samples = [(split.inputs[i], split.target[i]) for i in range(20)]  # a dataset with no `.target`
    assert derive(as_samples) == pytest.approx(hand, rel=1e-5)
    subset = Subset(split, range(0, 20, 2))
    assert derive(subset) == pytest.approx(np.asarray(target[::2]).transpose(1, 0, 2, 3).reshape(3, -1).std(axis=1), rel=1e-5)


def test_nrmse_is_per_channel_rmse_over_sigma_averaged(registry):
    torch.manual_seed(0)
    pred, target = torch.randn(6, 2, 8, 8), torch.randn(6, 2, 8, 8)
    sigma = [0.5, 4.0]
    value = loss(registry, "nrmse", sigma=sigma)(pred, target)
    rmse = [float(torch.sqrt(((pred[:, c] - target[:, c]) ** 2).mean())) for c in range(2)]
    assert value.item() == pytest.approx((rmse[0] / 0.5 + rmse[1] / 4.0) / 2, rel=1e-5)
    with pytest.raises(ValueError, match="auto"):
        loss(registry, "nrmse")
    with pytest.raises(ValueError, match="3 channels"):
        loss(registry, "nrmse", sigma=sigma)(torch.zeros(1, 3, 2), torch.zeros(1, 3, 2))


def test_focal_with_gamma_zero_is_cross_entropy_and_down_weights_easy_samples(registry):
    torch.manual_seed(0)
    logits, target = torch.randn(16, 4) * 3, torch.randint(0, 4, (16,))
    ce = F.cross_entropy(logits, target)
    torch.testing.assert_close(loss(registry, "focal", gamma=0.0, alpha=None)(logits, target), ce)
    torch.testing.assert_close(loss(registry, "focal", gamma=0.0, alpha=0.25)(logits, target), 0.25 * ce)
    assert loss(registry, "focal", gamma=2.0, alpha=None)(logits, target) < ce
    weights = [1.0, 2.0, 0.5, 3.0]
    per_sample = F.cross_entropy(logits, target, reduction="none") * torch.tensor(weights)[target]
    torch.testing.assert_close(loss(registry, "focal", gamma=0.0, alpha=weights)(logits, target), per_sample.mean())


def test_simple_losses_match_torch(registry):
    torch.manual_seed(0)
    pred, target = torch.randn(10, 3), torch.randn(10, 3)
    torch.testing.assert_close(loss(registry, "mse")(pred, target), F.mse_loss(pred, target))
    torch.testing.assert_close(loss(registry, "l1")(pred, target), F.l1_loss(pred, target))
    torch.testing.assert_close(loss(registry, "huber", delta=0.5)(pred, target), F.huber_loss(pred, target, delta=0.5))
    torch.testing.assert_close(loss(registry, "smooth_l1", beta=0.5)(pred, target), F.smooth_l1_loss(pred, target, beta=0.5))
    torch.testing.assert_close(loss(registry, "relative_l1", eps=1e-3)(pred, target), ((pred - target).abs() / (target.abs() + 1e-3)).mean())
    labels = torch.tensor([0, 1, 2, 1, 0, 0, 2, 1, 1, 0])
    ce = loss(registry, "cross_entropy", label_smoothing=0.1, weight=[1.0, 2.0, 0.5])
    torch.testing.assert_close(ce(pred, labels), F.cross_entropy(pred, labels, weight=torch.tensor([1.0, 2.0, 0.5]), label_smoothing=0.1))
    logits, flags = torch.randn(10, 1), torch.randint(0, 2, (10,))
    bce = loss(registry, "bce_with_logits", pos_weight=2.0)(logits, flags)
    torch.testing.assert_close(bce, F.binary_cross_entropy_with_logits(logits, flags.float()[:, None], pos_weight=torch.tensor([2.0])))
