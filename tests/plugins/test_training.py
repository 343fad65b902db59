"""The built-in pieces learn together: a few epochs of plain training reach sensible scores."""

import pytest
import torch

from stagedsl import Registry


@pytest.fixture(scope="module")
def registry():
    return Registry.load(autoload=False)


@pytest.fixture(autouse=True)
def one_thread():
    """Small convolutions gain nothing from threads, and on a busy machine they spin-wait."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def fit(registry, model, data, loss, epochs, lr, batch=64):
    groups = [{"params": list(model.parameters()), "lr": None, "weight_decay": None, "name": "all"}]
    optimizer = registry.get("optimizers", "adamw").factory(groups, lr=lr)
    generator = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        model.train()
        for indices in torch.randperm(len(data.train), generator=generator).split(batch):
            inputs, target = data.train.__getitems__(indices.tolist())
            value = loss(model(inputs), target)
            optimizer.zero_grad()
            value.backward()
            optimizer.step()
    return model.eval()


def score(registry, name, model, split, **args):
    metric = registry.get("metrics", name).factory(**args)
    with torch.no_grad():
        metric.update(model(split.inputs), split.target)
    return metric.compute().item()


@pytest.mark.slow
def test_ocec_net_with_cosface_learns_eye_state_but_not_perfectly(registry):
    torch.manual_seed(0)
    data = registry.get("datasets", "ocec_eyes").factory()
    model = registry.get("models", "ocec_net").factory()
    fit(registry, model, data, registry.get("losses", "cosface").factory(margin=0.2), epochs=4, lr=2e-3)
    assert 0.7 <= score(registry, "f1", model, data.val) <= 0.97  # about 0.8-0.9: ambiguous crops exist


@pytest.mark.slow
def test_metr_forecaster_with_masked_mae_learns_the_traffic(registry):
    torch.manual_seed(0)
    data = registry.get("datasets", "metr_synthetic").factory(days=7)
    model = registry.get("models", "metr_forecaster").factory(hidden=16)
    before = score(registry, "masked_mae", model, data.val)
    fit(registry, model, data, registry.get("losses", "masked_mae").factory(), epochs=3, lr=3e-3)
    after = score(registry, "masked_mae", model, data.val)
    assert after < 0.6 * before and after < 3.0  # mph
