"""Built-in models build on the meta device and run real forwards with the right shapes."""

import pytest
import torch
from torch import nn

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


def test_pde_transformer_parts_and_size(registry):
    model = build(registry, "pde_transformer")
    assert [n for n, _ in model.named_children()] == ["encoder_2d", "transformer", "decoder_2d"]
    assert isinstance(model.transformer.layers, nn.TransformerEncoder)
    assert any(n.startswith("transformer.position") for n, _ in model.named_parameters())
    assert 50_000 <= sum(p.numel() for p in model.parameters()) <= 150_000
    with pytest.raises(ValueError, match="multiple of patch"):
        build(registry, "pde_transformer", size=30, patch=4)


def test_ocec_net_parts_and_cosine_logits(registry):
    model = build(registry, "ocec_net").eval()
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


def test_metr_forecaster_handles_missing_readings_and_works_in_input_units(registry):
    torch.manual_seed(0)
    model = build(registry, "metr_forecaster", num_nodes=5, history=6, horizon=2)
    x = 30 + 30 * torch.rand(3, 6, 5)
    x[0, :, 2] = 0.0  # a sensor missing for the whole window
    x[1] = 0.0  # every reading missing
    out = model(x)
    assert out.shape == (3, 2, 5) and torch.isfinite(out).all()
    assert [n for n, _ in model.named_children()] == ["temporal", "spatial", "readout"]
    shifted = x.clone()
    shifted[2] += 100.0  # normalised per window: a shift of observed readings shifts the forecast
    torch.testing.assert_close(model(shifted)[2], out[2] + 100.0, rtol=1e-4, atol=1e-3)
