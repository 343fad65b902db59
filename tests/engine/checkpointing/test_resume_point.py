"""Putting a checkpoint back: optimizer state follows parameter names when the trainable set changes."""

from __future__ import annotations

import torch

from stagedsl.engine.checkpointing import resume_point, trainer_payload


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
