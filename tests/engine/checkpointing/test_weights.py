"""Checkpoint files: weights formats, atomic writes, the trainer-state seam and its rotation."""

from __future__ import annotations

import pytest
import torch

from stagedsl.engine.checkpointing.weights import read_weights, save_weights
from stagedsl.errors import CheckpointError


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
