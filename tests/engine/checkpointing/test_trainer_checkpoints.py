"""The trainer checkpoint folders: saved at cadence, rotated, ordered newest first."""

from __future__ import annotations

import json

import torch

from stagedsl.engine.checkpointing import trainer_checkpoints
from stagedsl.engine.checkpointing.weights import read_weights
from stagedsl.engine.run_state import RunState
from stagedsl.engine.runner import run_plan
from stagedsl.plan.model import CheckpointPlan, EvalPlan, PieceRef
from stagedsl.run_dir import RunDir

from ..conftest import make_plan, make_stage


class Tied(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Linear(3, 3)
        self.b = torch.nn.Linear(3, 3)
        self.b.weight = self.a.weight


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


def test_the_newest_checkpoint_is_ordered_by_global_step_then_stage(tmp_path):
    model = torch.nn.Linear(2, 2)
    made = []
    for stage, index, step, global_step in [("a", 0, 4, 4), ("a", 0, 8, 8), ("b", 1, 0, 8), ("a", 0, 2, 2)]:
        state = RunState(stage_name=stage, stage_index=index, stage_step=step, global_step=global_step)
        made.append(trainer_checkpoints.save_state(RunDir(tmp_path).trainer_state(stage, step), state=state, model=model))
    (tmp_path / "stages/a/state/step_000000099").mkdir()  # no manifest: never the newest
    order = [p.relative_to(tmp_path).as_posix() for p in trainer_checkpoints.newest_first(trainer_checkpoints.list_states(RunDir(tmp_path)))]
    assert order == ["stages/b/state/step_000000000", "stages/a/state/step_000000008", "stages/a/state/step_000000004",
                     "stages/a/state/step_000000002", "stages/a/state/step_000000099"]
    manifest = json.loads((made[0] / "manifest.json").read_text())
    assert manifest["files"]["model.safetensors"]["sha256"] == trainer_checkpoints.sha256_file(made[0] / "model.safetensors")
