"""Built-in metrics take logits and targets and agree with hand computations."""

import pytest
import torch

from stagedsl import Registry


@pytest.fixture(scope="module")
def registry():
    return Registry.load(autoload=False)


def metric(registry, name, **args):
    return registry.get("metrics", name).factory(**args)


def run(m, *batches):
    for pred, target in batches:
        m.update(pred, target)
    return m.compute().item()


def test_binary_scores_from_two_logits_are_of_the_positive_class(registry):
    logits = torch.tensor([[2.0, -1.0], [0.0, 1.0], [1.0, 3.0], [3.0, 0.0], [0.0, 2.0]])
    target = torch.tensor([0, 1, 0, 1, 1])  # predicted: 0 1 1 0 1 -> tp 2, fp 1, fn 1
    assert run(metric(registry, "precision"), (logits, target)) == pytest.approx(2 / 3)
    assert run(metric(registry, "recall"), (logits, target)) == pytest.approx(2 / 3)
    assert run(metric(registry, "f1"), (logits, target)) == pytest.approx(2 / 3)
    assert run(metric(registry, "accuracy"), (logits[:2], target[:2]), (logits[2:], target[2:])) == pytest.approx(3 / 5)
    one_logit = logits[:, 1] - logits[:, 0]  # the same decisions from a single logit
    assert run(metric(registry, "f1"), (one_logit, target)) == pytest.approx(2 / 3)
    # positive-class margins: positives 1, -3, 2 vs negatives -3, 2 -> wins 2, ties 2 of 6 pairs
    assert run(metric(registry, "auroc"), (logits, target)) == pytest.approx(3 / 6)


def test_multiclass_scores(registry):
    logits = torch.eye(3)[[0, 1, 2, 2, 1]] * 5
    target = torch.tensor([0, 1, 2, 1, 1])
    assert run(metric(registry, "accuracy", num_classes=3), (logits, target)) == pytest.approx(4 / 5)
    f1_per_class = [1.0, 2 * 2 / (2 * 2 + 0 + 1), 2 * 1 / (2 * 1 + 1 + 0)]
    assert run(metric(registry, "f1", num_classes=3), (logits, target)) == pytest.approx(sum(f1_per_class) / 3)
    with pytest.raises(ValueError, match="average"):
        metric(registry, "f1", num_classes=3, average="none")


def test_regression_metrics(registry):
    torch.manual_seed(0)
    pred, target = torch.randn(8, 2, 5), torch.randn(8, 2, 5)
    assert run(metric(registry, "mae"), (pred, target)) == pytest.approx((pred - target).abs().mean().item(), rel=1e-5)
    assert run(metric(registry, "mse"), (pred, target)) == pytest.approx((pred - target).square().mean().item(), rel=1e-5)
    assert run(metric(registry, "rmse"), (pred, target)) == pytest.approx((pred - target).square().mean().sqrt().item(), rel=1e-5)
    target[0, 0] = 0.0
    mask = target != 0
    value = run(metric(registry, "masked_mae"), (pred[:4], target[:4]), (pred[4:], target[4:]))
    assert value == pytest.approx((pred - target).abs()[mask].mean().item(), rel=1e-5)


def test_nrmse_pools_every_batch_per_channel(registry):
    torch.manual_seed(0)
    pred = torch.randn(10, 2, 6)
    target = torch.randn(10, 2, 6) * torch.tensor([1.0, 20.0])[None, :, None]
    rmse = (pred - target).square().mean(dim=(0, 2)).sqrt()
    std = target.transpose(0, 1).reshape(2, -1).std(dim=1, correction=0)
    seen = run(metric(registry, "nrmse"), (pred[:3], target[:3]), (pred[3:], target[3:]))
    assert seen == pytest.approx((rmse / std).mean().item(), rel=1e-5)
    fixed = run(metric(registry, "nrmse", sigma=[2.0, 5.0]), (pred, target))
    assert fixed == pytest.approx((rmse / torch.tensor([2.0, 5.0])).mean().item(), rel=1e-5)
