"""Built-in models build on the meta device and run real forwards with the right shapes."""

import pytest
import torch

from stagedsl import Registry

CASES = {
    "mlp": ({"in_features": 12, "hidden": [16, 8], "out_features": 3}, lambda: torch.randn(5, 3, 4), (5, 3)),
    "pde_transformer": ({}, lambda: torch.randn(3, 2, 32, 32), (3, 2, 32, 32)),
    "ocec_net": ({}, lambda: torch.rand(4, 1, 24, 24), (4, 2)),
    "metr_forecaster": ({}, lambda: 40 + 20 * torch.rand(4, 12, 16), (4, 3, 16)),
}


@pytest.fixture(scope="module")
def registry():
    return Registry.load(autoload=False)


def build(registry, name, **args):
    return registry.get("models", name).factory(**args)


@pytest.mark.parametrize("name", sorted(CASES))
def test_builds_on_meta_and_runs_a_real_forward(registry, name):
    args, make_input, shape = CASES[name]
    with torch.device("meta"):
        meta_model = build(registry, name, **args)
    assert all(p.is_meta for p in meta_model.parameters())
    torch.manual_seed(0)
    model = build(registry, name, **args)
    assert [n for n, _ in model.named_parameters()] == [n for n, _ in meta_model.named_parameters()]
    x = make_input()
    out = model(x)
    assert out.shape == shape and torch.isfinite(out).all()
    out.float().square().mean().backward()
    assert all(p.grad is not None for p in model.parameters()), "every parameter takes part in the forward"


def test_mlp_concatenates_several_inputs(registry):
    model = build(registry, "mlp", in_features=7, hidden=[4], out_features=1, activation="gelu", dropout=0.1)
    assert model(torch.randn(2, 3), torch.randn(2, 2, 2)).shape == (2, 1)
    with pytest.raises(ValueError, match="unknown activation"):
        build(registry, "mlp", in_features=1, hidden=[], out_features=1, activation="swish")
