"""On CUDA: models train under bf16 autocast, losses and metrics follow `.to(device)`, Adam(W) fuses."""

import pytest
import torch

from stagedsl import Registry

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

MODELS = {
    "mlp": ({"in_features": 12, "hidden": [16], "out_features": 3}, (8, 12)),
    "pde_transformer": ({}, (8, 2, 32, 32)),
    "ocec_net": ({}, (8, 1, 24, 24)),
    "metr_forecaster": ({}, (8, 12, 16)),
}


@pytest.fixture(scope="module")
def registry():
    return Registry.load(autoload=False)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_models_train_under_bf16_autocast_with_fused_adamw(registry, name):
    args, shape = MODELS[name]
    with torch.device("cuda"):
        model = registry.get("models", name).factory(**args)
    x = torch.rand(shape, device="cuda") + 0.5
    groups = [{"params": list(model.parameters()), "lr": 1e-3, "weight_decay": None, "name": "all"}]
    optimizer = registry.get("optimizers", "adamw").factory(groups, lr=1e-3)
    assert optimizer.defaults["fused"] is True
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = model(x)
    loss = out.float().square().mean()
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss) and all(torch.isfinite(p).all() for p in model.parameters())


def test_losses_follow_the_device(registry):
    device = "cuda"
    logits, labels = torch.randn(16, 3, device=device), torch.randint(0, 3, (16,), device=device)
    field, target = torch.randn(4, 2, 8, 8, device=device), torch.randn(4, 2, 8, 8, device=device)
    pieces = {
        ("cross_entropy", (logits, labels)): {"weight": [1.0, 2.0, 0.5], "label_smoothing": 0.1},
        ("focal", (logits, labels)): {"alpha": [1.0, 2.0, 0.5]},
        ("cosface", (logits, labels)): {},
        ("bce_with_logits", (logits[:, 0], labels.clamp(max=1))): {"pos_weight": 2.0},
        ("nrmse", (field, target)): {"sigma": [1.0, 0.1]},
        ("masked_mae", (field, target)): {},
        ("relative_l1", (field, target)): {},
    }
    for (name, inputs), args in pieces.items():
        loss = registry.get("losses", name).factory(**args).to(device)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            value = loss(*inputs)
        assert value.device.type == "cuda" and torch.isfinite(value), name


def test_metrics_follow_the_device(registry):
    logits, labels = torch.randn(32, 2, device="cuda"), torch.randint(0, 2, (32,), device="cuda")
    field, target = torch.randn(4, 2, 8, device="cuda"), torch.randn(4, 2, 8, device="cuda")
    for name, args, batch in [
        ("f1", {}, (logits, labels)),
        ("accuracy", {"num_classes": 3}, (torch.randn(32, 3, device="cuda"), labels)),
        ("auroc", {}, (logits, labels)),
        ("nrmse", {"sigma": [1.0, 2.0]}, (field, target)),
        ("nrmse", {}, (field, target)),
        ("masked_mae", {}, (field, target)),
        ("rmse", {}, (field, target)),
    ]:
        metric = registry.get("metrics", name).factory(**args).to("cuda")
        metric.update(*batch)
        metric.update(*batch)
        assert torch.isfinite(metric.compute()), name
