"""The trainer state file (tensors + JSON, no pickle), RNG round trips, optimizer state mapped by name,
and which checkpoint counts as the newest."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import torch

from stagedsl.engine.checkpointing import resume_point, trainer_checkpoints, trainer_payload
from stagedsl.engine.run_state import RunState


def _equal(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return type(b) is dict and list(a) == list(b) and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return a == b and type(a) is type(b)


def test_the_trainer_file_round_trips_everything_an_optimizer_and_the_rngs_hold(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 1))
    optimizer = torch.optim.AdamW([{"params": list(model[0].parameters()), "name": "a"},
                                   {"params": list(model[1].parameters()), "lr": 0.1, "name": "b"}])
    model(torch.randn(5, 3)).sum().backward()
    optimizer.step()
    payload = {
        "optimizer": optimizer.state_dict(), "rng": trainer_payload.rng_state(), "scalar": torch.tensor(2.5),
        "empty": torch.empty(0, 3), "flags": torch.tensor([True, False]), "half": torch.ones(2, dtype=torch.bfloat16),
        "nested": (1, [2.0, (None, "x")], {3: "int key", "__odd__": 4}), "inf": float("inf"), "nan": float("nan"),
        "view": torch.arange(10.0)[::2],
    }
    trainer_payload.write(str(tmp_path / "t.safetensors"), payload)
    back = trainer_payload.read(str(tmp_path / "t.safetensors"))
    assert _equal(payload, back)
    back["optimizer"]["state"][0]["exp_avg"].add_(1)  # a copy, not the file's memory
    assert not torch.equal(back["optimizer"]["state"][0]["exp_avg"], payload["optimizer"]["state"][0]["exp_avg"])
    # the bytes are deterministic
    trainer_payload.write(str(tmp_path / "u.safetensors"), payload)
    assert (tmp_path / "t.safetensors").read_bytes() == (tmp_path / "u.safetensors").read_bytes()


def test_rng_states_come_back_exactly(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    np.random.randn()  # a cached Gaussian in NumPy's state
    state = trainer_payload.rng_state()
    expected = (random.random(), np.random.randn(), torch.rand(3))
    trainer_payload.write(str(tmp_path / "r.safetensors"), {"rng": state})
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    trainer_payload.set_rng_state(trainer_payload.read(str(tmp_path / "r.safetensors"))["rng"])
    again = (random.random(), np.random.randn(), torch.rand(3))
    assert expected[:2] == again[:2] and torch.equal(expected[2], again[2])


def test_optimizer_state_follows_parameter_names_when_the_trainable_set_changes():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    before = torch.optim.AdamW(model[1].parameters(), lr=0.1)  # only the head trained
    model(torch.randn(3, 2)).sum().backward()
    before.step()
    saved = {"optimizer": before.state_dict(), "optimizer_params": trainer_payload.optimizer_param_names(before, model)}
    after = torch.optim.AdamW(model.parameters(), lr=0.01)  # everything thawed, another LR
    how = resume_point.restore_optimizer(after, model, saved, same_settings=True, same_optimizer=True)
    assert how == "state"
    state = after.state_dict()["state"]
    assert sorted(state) == [2, 3]  # the head's two tensors keep their moments; the thawed ones start fresh
    assert torch.equal(state[2]["exp_avg"], before.state_dict()["state"][0]["exp_avg"])
    assert after.param_groups[0]["lr"] == 0.01
    assert resume_point.restore_optimizer(torch.optim.SGD(model.parameters(), lr=0.1), model, saved,
                                           same_settings=False, same_optimizer=False) == "fresh"


def test_the_newest_checkpoint_is_ordered_by_global_step_then_stage(tmp_path):
    model = torch.nn.Linear(2, 2)
    made = []
    for stage, index, step, global_step in [("a", 0, 4, 4), ("a", 0, 8, 8), ("b", 1, 0, 8), ("a", 0, 2, 2)]:
        state = RunState(stage_name=stage, stage_index=index, stage_step=step, global_step=global_step)
        made.append(trainer_checkpoints.save_state(trainer_checkpoints.state_path(tmp_path, stage, step), state=state, model=model))
    (tmp_path / "stages/a/state/step_000000099").mkdir()  # no manifest: never the newest
    order = [p.relative_to(tmp_path).as_posix() for p in trainer_checkpoints.newest_first(trainer_checkpoints.list_states(tmp_path))]
    assert order == ["stages/b/state/step_000000000", "stages/a/state/step_000000008", "stages/a/state/step_000000004",
                     "stages/a/state/step_000000002", "stages/a/state/step_000000099"]
    manifest = json.loads((made[0] / "manifest.json").read_text())
    assert manifest["files"]["model.safetensors"]["sha256"] == trainer_checkpoints.sha256_file(made[0] / "model.safetensors")
