"""Built-in optimizers honour per-group LR and weight decay and keep group names."""

import pytest
import torch

from stagedsl import Registry


@pytest.fixture(scope="module")
def registry():
    return Registry.load(autoload=False)


def groups():
    torch.manual_seed(0)
    backbone, head = torch.nn.Linear(3, 3), torch.nn.Linear(3, 1)
    return [
        {"params": list(backbone.parameters()), "lr": 5e-6, "weight_decay": None, "name": "backbone"},
        {"params": list(head.parameters()), "lr": None, "weight_decay": 0.0, "name": "head"},
    ]


@pytest.mark.parametrize("name", ["adamw", "adam", "sgd", "rmsprop"])
def test_group_values_override_the_factory_defaults(registry, name):
    optimizer = registry.get("optimizers", name).factory(groups(), lr=1e-3, weight_decay=0.05)
    backbone, head = optimizer.param_groups
    assert (backbone["name"], head["name"]) == ("backbone", "head")
    assert (backbone["lr"], head["lr"]) == (5e-6, 1e-3)
    assert (backbone["weight_decay"], head["weight_decay"]) == (0.05, 0.0)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    before = [p.detach().clone() for p in params]
    sum(p.sum() for p in params).backward()
    optimizer.step()
    assert all(not torch.equal(a, p) for a, p in zip(before, params))


def test_adamw_arguments_reach_torch(registry):
    optimizer = registry.get("optimizers", "adamw").factory(groups(), lr=1e-3, betas=[0.8, 0.9], eps=1e-6)
    assert isinstance(optimizer, torch.optim.AdamW)
    assert optimizer.defaults["betas"] == (0.8, 0.9) and optimizer.defaults["eps"] == 1e-6
    assert optimizer.param_groups[0]["weight_decay"] == 0.01
    assert not optimizer.defaults.get("fused")  # fused=None means "on CUDA only"; these are CPU tensors
    sgd = registry.get("optimizers", "sgd").factory(groups(), lr=0.1, momentum=0.5, nesterov=True)
    assert sgd.defaults["momentum"] == 0.5 and sgd.defaults["nesterov"] is True
