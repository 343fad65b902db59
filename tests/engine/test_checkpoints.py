"""Checkpoint files: weights formats, atomic writes, the trainer-state seam and its rotation."""

from __future__ import annotations

import pytest
import torch

from stagedsl.engine.checkpointing import trainer_checkpoints
from stagedsl.engine.checkpointing.weights import read_weights, save_weights
from stagedsl.engine.run_state import RunState, StageRecord
from stagedsl.engine.runner import run_plan
from stagedsl.errors import CheckpointError
from stagedsl.plan.model import CheckpointPlan, EvalPlan, PieceRef

from .conftest import make_plan, make_stage


class Tied(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Linear(3, 3)
        self.b = torch.nn.Linear(3, 3)
        self.b.weight = self.a.weight


def test_weights_round_trip_with_tied_parameters(tmp_path):
    model = Tied()
    path = save_weights(model, tmp_path / "w.safetensors")
    loaded = read_weights(path)
    assert sorted(loaded) == sorted(model.state_dict())
    assert torch.equal(loaded["b.weight"], model.a.weight)
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]


@pytest.mark.parametrize("key", [None, "state_dict", "model", "model_state"])
def test_torch_files_load_raw_or_under_a_usual_key(tmp_path, key):
    state = torch.nn.Linear(2, 2).state_dict()
    torch.save(state if key is None else {key: state, "step": 1}, tmp_path / "w.pt")
    loaded = read_weights(tmp_path / "w.pt")
    assert all(torch.equal(loaded[k], v) for k, v in state.items())


def test_unsafe_or_empty_torch_files_are_checkpoint_errors(tmp_path):
    torch.save({"optimizer": {"lr": 1}}, tmp_path / "w.pt")
    with pytest.raises(CheckpointError, match="holds no state_dict"):
        read_weights(tmp_path / "w.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        read_weights(tmp_path / "bad.pt")


def test_run_state_round_trips_through_json():
    state = RunState(run_name="r", global_step=7, values={"val/f1": 0.5}, retries={"a": 1})
    state.stages["a"] = StageRecord(name="a", index=0, status="completed", gate={"passed": True})
    state.live = object()
    again = RunState.from_dict(state.to_dict())
    assert again == state and again.live is None and isinstance(again.stages["a"], StageRecord)


def test_trainer_state_is_saved_at_cadence_and_rotated(engine_registry, tmp_path):
    stage = make_stage("s", steps=10, eval=EvalPlan(every=None), checkpoint=CheckpointPlan(every=3, keep_last=2),
                       scheduler=PieceRef("cosine", {}))
    run_plan(make_plan(stage, out=tmp_path), registry=engine_registry)
    saved = sorted(p.name for p in (tmp_path / "stages/s/state").iterdir())
    assert saved == ["step_000000009", "step_000000010"]
    loaded = trainer_checkpoints.load_state(tmp_path / "stages/s/state/step_000000010")
    state = loaded["state"]
    assert state.stage_name == "s" and state.stage_step == 10 and state.global_step == 10
    assert loaded["trainer"]["optimizer"]["state"] and loaded["trainer"]["scheduler"] is not None
    assert set(loaded["trainer"]["rng"]) >= {"python", "numpy", "torch"}
    assert set(loaded["trainer"]["data"]) == {"generator", "epoch_start"}
    last = read_weights(tmp_path / "stages/s/last.safetensors")
    assert all(torch.equal(loaded["model"][k], last[k]) for k in last)
