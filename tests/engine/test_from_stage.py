"""Starting a run at a later stage reuses the run directory's earlier checkpoints and records."""

from __future__ import annotations

import pytest
import torch

from stagedsl.engine.checkpointing.weights import read_weights
from stagedsl.engine.runner import run_plan
from stagedsl.errors import CheckpointError, UsageError

from .conftest import Recorder, make_plan, make_stage, read_jsonl


def test_from_stage_continues_from_the_previous_stage_last_weights(engine_registry, tmp_path):
    plan = make_plan(make_stage("a", steps=4), make_stage("b", steps=4), out=tmp_path)
    first = run_plan(plan, registry=engine_registry)
    recorder = Recorder()
    again = run_plan(plan, registry=engine_registry, from_stage="b", callbacks=[recorder])
    last_a = read_weights(tmp_path / "stages/a/last.safetensors")
    assert all(torch.equal(recorder.snapshots["b"][k], v) for k, v in last_a.items())
    assert "a" not in recorder.snapshots
    assert again.stages["a"] == first.stages["a"]  # carried over from summary.json
    assert again.summary["global_steps"] == 12
    stage_starts = [r["stage"] for r in read_jsonl(tmp_path / "metrics.jsonl") if r["event"] == "stage_start"]
    assert stage_starts == ["a", "b", "b"]  # appended, not overwritten


def test_from_stage_errors(engine_registry, tmp_path):
    plan = make_plan(make_stage("a", steps=1), make_stage("b", steps=1), out=tmp_path)
    with pytest.raises(UsageError, match='no stage named `bb`') as caught:
        run_plan(plan, registry=engine_registry, from_stage="bb")
    assert 'did you mean "b"' in str(caught.value.problems[0].hint)
    with pytest.raises(CheckpointError):
        run_plan(plan, registry=engine_registry, from_stage="b")  # stage a never ran here
