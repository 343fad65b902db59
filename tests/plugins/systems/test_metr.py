"""Seed 003's traffic pieces: the metr_synthetic dataset, the metr_forecaster model, masked_mae."""

import pytest
import torch


def test_metr_synthetic_windows_are_chronological_with_missing_zeros(dataset):
    data, _ = dataset("metr_synthetic")
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


def test_metr_forecaster_handles_missing_readings_and_works_in_input_units(piece):
    torch.manual_seed(0)
    model = piece("models", "metr_forecaster", num_nodes=5, history=6, horizon=2)
    x = 30 + 30 * torch.rand(3, 6, 5)
    x[0, :, 2] = 0.0  # a sensor missing for the whole window
    x[1] = 0.0  # every reading missing
    out = model(x)
    assert out.shape == (3, 2, 5) and torch.isfinite(out).all()
    assert [n for n, _ in model.named_children()] == ["temporal", "spatial", "readout"]
    shifted = x.clone()
    shifted[2] += 100.0  # normalised per window: a shift of observed readings shifts the forecast
    torch.testing.assert_close(model(shifted)[2], out[2] + 100.0, rtol=1e-4, atol=1e-3)


def test_masked_mae_ignores_missing_targets(piece):
    pred = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    target = torch.tensor([[0.0, 2.5, 1.0], [0.0, 0.0, 7.0]])
    assert piece("losses", "masked_mae")(pred, target).item() == pytest.approx((0.5 + 2.0 + 1.0) / 3)
    assert piece("losses", "masked_mae")(pred, torch.zeros_like(pred)).item() == 0.0
