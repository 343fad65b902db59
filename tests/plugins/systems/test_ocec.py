"""Seed 004's eye-state pieces: the ocec_eyes dataset, the ocec_net model and the cosface loss."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F


def test_ocec_eyes_are_balanced_images_with_int_labels(dataset):
    data, _ = dataset("ocec_eyes", n_train=512, n_val=64)
    x, y = data.train.inputs, data.train.target
    assert x.shape == (512, 1, 24, 24) and y.dtype == torch.int64
    assert set(y.unique().tolist()) == {0, 1} and 0.4 < y.float().mean() < 0.6
    assert 0.0 <= x.min() and x.max() <= 1.0
    open_eyes, closed_eyes = x[y == 1], x[y == 0]
    # open eyes show a bright sclera and a dark iris: more contrast at the centre
    assert open_eyes[..., 8:16, 6:18].std(dim=(-1, -2)).mean() > closed_eyes[..., 8:16, 6:18].std(dim=(-1, -2)).mean()
    assert data.stats["classes"] == ["closed", "open"]


def test_ocec_net_parts_and_cosine_logits(piece):
    model = piece("models", "ocec_net").eval()
    assert [n for n, _ in model.named_children()] == ["backbone", "head", "margin_head"]
    norms = [m for m in model.backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == 4 and any(isinstance(m, nn.BatchNorm1d) for m in model.head.modules())
    convs = [m for m in model.backbone.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 32, 32, 64]  # registered front to back
    logits = model(torch.rand(8, 1, 24, 24))
    assert logits.abs().max() <= 16.0 + 1e-4
    embedding = model.embed(torch.rand(8, 1, 24, 24))
    unit, weight = nn.functional.normalize(embedding, dim=1), nn.functional.normalize(model.margin_head.weight, dim=1)
    torch.testing.assert_close(model.margin_head(embedding), 16.0 * unit @ weight.T)
    torch.testing.assert_close(model.margin_head(3.0 * embedding), model.margin_head(embedding))  # scale-free


def test_cosface_subtracts_the_margin_from_the_target_logit_only(piece):
    torch.manual_seed(0)
    logits = 16.0 * torch.rand(5, 3).mul(2).sub(1)
    target = torch.tensor([0, 2, 1, 1, 0])
    value = piece("losses", "cosface", margin=0.35, scale=16.0)(logits, target)
    adjusted = logits.clone()
    adjusted[torch.arange(5), target] -= 16.0 * 0.35
    assert value.item() == pytest.approx(F.cross_entropy(adjusted, target).item(), rel=1e-6)
    assert value > F.cross_entropy(logits, target)
    assert piece("losses", "cosface", margin=0.0)(logits, target).item() == pytest.approx(F.cross_entropy(logits, target).item())
