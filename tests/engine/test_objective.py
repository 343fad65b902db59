"""The objective: weighted sums, blends, losses and metrics that ask for the batch's inputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from stagedsl import hookimpl
from stagedsl.engine.objective import AutoArgs, build_objective
from stagedsl.engine.runner import run_plan
from stagedsl.plan.model import LossPlan, LossTerm, PieceRef

from .conftest import make_plan, make_stage

SEEN: dict[str, list] = {"loss": [], "metric": []}


class InputsLoss(nn.Module):
    """MSE plus zero times the inputs' mean: checks it is handed the batch's inputs."""

    needs_inputs = True

    def forward(self, prediction, target, inputs):
        SEEN["loss"].append(tuple(inputs.shape))
        return nn.functional.mse_loss(prediction, target) + 0.0 * inputs.mean()


class InputsMetric(torch.nn.Module):
    needs_inputs = True

    def update(self, output, target, inputs):
        SEEN["metric"].append((tuple(inputs.shape), output.is_contiguous()))

    def compute(self):
        return torch.tensor(1.0)

    def reset(self):
        pass


class TransposedOut(nn.Module):
    """A model whose output is a non-contiguous view (as some forecasting models return)."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(8, 2)

    def forward(self, x):
        return self.linear(x).t().contiguous().t()


class InputPieces:
    @hookimpl
    def register_losses(self, register):
        register("with_inputs", InputsLoss)

    @hookimpl
    def register_metrics(self, register):
        register("inputs_metric", InputsMetric, mode="max")

    @hookimpl
    def register_models(self, register):
        register("transposed", TransposedOut)


def test_weighted_sum_and_blend(engine_registry):
    prediction, target = torch.randn(5, 2), torch.randn(5, 2)
    mse, l1 = nn.functional.mse_loss(prediction, target), nn.functional.l1_loss(prediction, target)
    auto = AutoArgs({})
    summed, _ = build_objective(LossPlan("sum", (LossTerm("mse", weight=2.0), LossTerm("l1", weight=0.5))),
                                engine_registry, None, auto, torch.device("cpu"))
    assert summed(prediction, target, None) == pytest.approx(float(2 * mse + 0.5 * l1))
    blend, _ = build_objective(LossPlan("blend", (LossTerm("mse"), LossTerm("l1")), alpha=0.25), engine_registry, None, auto,
                               torch.device("cpu"))
    assert blend(prediction, target, None) == pytest.approx(float(0.75 * mse + 0.25 * l1))


def test_losses_and_metrics_with_needs_inputs_get_the_batch_inputs(engine_registry, register_plugin, tmp_path):
    register_plugin(InputPieces(), name="input-pieces")
    SEEN["loss"].clear()
    SEEN["metric"].clear()
    stage = make_stage("s", steps=3, loss=LossPlan("sum", (LossTerm("mse"), LossTerm("with_inputs", weight=0.5))),
                       metrics=(PieceRef("mae", {}), PieceRef("inputs_metric", {})))
    result = run_plan(make_plan(stage, out=tmp_path, model=PieceRef("transposed", {})), registry=engine_registry)
    assert SEEN["loss"][0] == (16, 8)
    assert SEEN["metric"] and all(shape[1] == 8 and contiguous for shape, contiguous in SEEN["metric"])
    assert result.stages["s"]["last_values"]["val/inputs_metric"] == 1.0
    assert result.stages["s"]["last_values"]["val/mae"] > 0
