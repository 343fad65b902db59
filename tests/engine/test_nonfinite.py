"""A NaN injected into the loss stops the run (on_nonfinite = "stop") naming stage, step and the last good
checkpoint, which stays intact and resumable; or is skipped ("skip"), at most max_nonfinite steps in a row."""

from __future__ import annotations

import pytest
import torch

from stagedsl import hookimpl
from stagedsl.api import resume_run
from stagedsl.engine.checkpointing import trainer_checkpoints
from stagedsl.engine.checkpointing.weights import non_finite, read_weights
from stagedsl.engine.events import Callback
from stagedsl.engine.runner import run_plan
from stagedsl.errors import RunError
from stagedsl.plan.model import CheckpointPlan, LossPlan, LossTerm

from .conftest import make_plan, make_stage, read_summary


class NanAt(torch.nn.Module):
    """MSE, but NaN on the training calls numbered in `calls` (1-based; evaluation calls are not counted)."""

    def __init__(self, calls=()):
        super().__init__()
        self.calls, self.count = set(calls), 0

    def forward(self, prediction, target):
        loss = torch.nn.functional.mse_loss(prediction, target)
        if torch.is_grad_enabled():
            self.count += 1
            if self.count in self.calls:
                return loss * float("nan")
        return loss


class NanPieces:
    @hookimpl
    def register_losses(self, register):
        register("nan_at", NanAt)


@pytest.fixture
def nan_registry(engine_registry, register_plugin):
    register_plugin(NanPieces(), name="nan-pieces")
    return engine_registry


def _stage(calls, **fields):
    defaults = dict(steps=12, loss=LossPlan("sum", (LossTerm("nan_at", {"calls": list(calls)}),)),
                    checkpoint=CheckpointPlan(every=3, keep_last=5), log_every=5)
    return make_stage("s", **{**defaults, **fields})


def _states(run_dir):
    return sorted(p.name for p in (run_dir / "stages/s/state").iterdir())


@pytest.mark.parametrize("log_every, caught_at", [(5, 9), (2, 8)])  # caught at a checkpoint, or at a log
def test_a_nan_loss_stops_the_run_naming_stage_step_and_the_last_good_checkpoint(nan_registry, tmp_path, log_every, caught_at):
    plan = make_plan(_stage([7], log_every=log_every), out=tmp_path)
    with pytest.raises(RunError) as caught:
        run_plan(plan, registry=nan_registry)
    problem = caught.value.problems[0]
    assert problem.code == "E401"
    assert "stage `s`: the training loss became" in problem.message and f"by step {caught_at}" in problem.message
    assert "the last good checkpoint is `stages/s/state/step_000000006`" in problem.message
    assert _states(tmp_path) == ["step_000000003", "step_000000006"]  # nothing written after the NaN
    good = tmp_path / "stages/s/state/step_000000006"
    assert trainer_checkpoints.verify_state(good) is None
    assert non_finite(trainer_checkpoints.load_state(good)["model"]) is None
    assert read_summary(tmp_path)["status"] == "failed"
    result = resume_run(tmp_path, registry=nan_registry)  # a fresh loss counts from 1 again: steps 7-12 are finite
    assert result.status == "completed" and result.summary["resumes"][0]["checkpoint"].endswith("step_000000006")


def test_skip_drops_non_finite_steps_and_stops_after_max_nonfinite_in_a_row(nan_registry, tmp_path):
    result = run_plan(make_plan(_stage([4, 5, 9], on_nonfinite="skip", max_nonfinite=2), out=tmp_path / "ok"),
                      registry=nan_registry)
    assert result.stages["s"]["skipped_steps"] == 3 and result.stages["s"]["status"] == "completed"
    weights = read_weights(tmp_path / "ok/stages/s/last.safetensors")
    assert non_finite(weights) is None

    with pytest.raises(RunError) as caught:
        run_plan(make_plan(_stage([4, 5, 6], on_nonfinite="skip", max_nonfinite=2), out=tmp_path / "bad"),
                 registry=nan_registry)
    message = caught.value.problems[0].message
    assert "3 steps in a row" in message and "max_nonfinite = 2" in message and "the last at step 6" in message
    assert "the last good checkpoint is `stages/s/state/step_000000003`" in message
    assert trainer_checkpoints.verify_state(tmp_path / "bad/stages/s/state/step_000000003") is None


class PoisonWeights(Callback):
    def step_end(self, state):
        if state.stage_step == 5:
            with torch.no_grad():
                next(state.live.model.parameters()).fill_(float("nan"))


def test_non_finite_weights_are_never_checkpointed(nan_registry, tmp_path):
    stage = _stage([], on_nonfinite="skip", max_nonfinite=100, log_every=5)
    with pytest.raises(RunError, match=r"the weights became non-finite \(`layers.0.weight`\) by step 6") as caught:
        run_plan(make_plan(stage, out=tmp_path), registry=nan_registry, callbacks=[PoisonWeights()])
    assert "step_000000003" in caught.value.problems[0].message
    assert _states(tmp_path) == ["step_000000003"]
