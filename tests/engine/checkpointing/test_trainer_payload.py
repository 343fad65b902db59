"""The trainer state file (tensors + JSON, no pickle), RNG round trips, optimizer state mapped by name,
and which checkpoint counts as the newest."""

from __future__ import annotations

import math
import random

import numpy as np
import torch

from stagedsl.engine.checkpointing import trainer_payload


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
