"""RunState: every mutable fact of a run, round-tripped through JSON."""

from __future__ import annotations

import torch

from stagedsl.engine.run_state import RunState, StageRecord


class Tied(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Linear(3, 3)
        self.b = torch.nn.Linear(3, 3)
        self.b.weight = self.a.weight


def test_run_state_round_trips_through_json():
    state = RunState(run_name="r", global_step=7, values={"val/f1": 0.5}, retries={"a": 1})
    state.stages["a"] = StageRecord(name="a", index=0, status="completed", gate={"passed": True})
    state.live = object()
    again = RunState.from_dict(state.to_dict())
    assert again == state and again.live is None and isinstance(again.stages["a"], StageRecord)
