"""A stage's init loads the named checkpoint: an earlier stage's best or last, or the newest glob match."""

from __future__ import annotations

import os

import pytest
import torch

from stagedsl.engine.checkpointing.weights import read_weights, save_weights
from stagedsl.engine.runner import run_plan
from stagedsl.errors import CheckpointError
from stagedsl.plan.model import EvalPlan, InitPlan

from ..conftest import Recorder, make_plan, make_stage, read_summary


def _weights(path):
    return read_weights(path)


@pytest.mark.parametrize("which", ["best", "last"])
def test_init_from_an_earlier_stage_loads_best_or_last(engine_registry, tmp_path, which):
    # mode "max" on a falling val/loss makes the first evaluation the best, so best != last
    first = make_stage("first", steps=12, eval=EvalPlan(every=3, monitor="val/loss", mode="max"))
    second = make_stage("second", steps=2, init=InitPlan(source="stage", stage="first", which=which))
    recorder = Recorder()
    result = run_plan(make_plan(first, second, out=tmp_path), registry=engine_registry, callbacks=[recorder])
    assert result.stages["first"]["best_step"] == 3
    best = _weights(tmp_path / "stages/first/best.safetensors")
    last = _weights(tmp_path / "stages/first/last.safetensors")
    assert not all(torch.equal(best[k], last[k]) for k in best)
    loaded = recorder.snapshots["second"]
    chosen = best if which == "best" else last
    assert all(torch.equal(loaded[k], chosen[k]) for k in chosen)
    assert result.stages["second"]["init"]["path"].endswith(f"stages/first/{which}.safetensors")


def test_init_from_a_glob_takes_the_newest_match_in_any_format(engine_registry, tmp_path):
    from stagedsl_plugins._mlp import MLP

    older, newer = MLP(8, [16], 2), MLP(8, [16], 2)
    torch.save({"state_dict": older.state_dict(), "epoch": 3}, tmp_path / "ckpt_a.pt")
    torch.save(newer.state_dict(), tmp_path / "ckpt_b.pth")
    os.utime(tmp_path / "ckpt_a.pt", (1_000_000, 1_000_000))
    stage = make_stage("s", steps=1, init=InitPlan(source="path", path=str(tmp_path / "ckpt_*")))
    recorder = Recorder()
    run_plan(make_plan(stage, out=tmp_path / "run"), registry=engine_registry, callbacks=[recorder])
    loaded = recorder.snapshots["s"]
    assert all(torch.equal(loaded[k], v) for k, v in newer.state_dict().items())

    os.utime(tmp_path / "ckpt_a.pt", None)  # now the .pt file with a "state_dict" key is the newest
    os.utime(tmp_path / "ckpt_b.pth", (1_000_000, 1_000_000))
    recorder = Recorder()
    run_plan(make_plan(stage, out=tmp_path / "run2"), registry=engine_registry, callbacks=[recorder])
    assert all(torch.equal(recorder.snapshots["s"][k], v) for k, v in older.state_dict().items())


def test_strict_init_with_different_keys_fails_and_lenient_init_reports_them(engine_registry, tmp_path):
    from stagedsl_plugins._mlp import MLP

    state = MLP(8, [16], 2).state_dict()
    state["extra.weight"] = torch.zeros(1)
    del state["layers.2.bias"]
    save_weights(_Holder(state), tmp_path / "w.safetensors")
    strict = make_stage("s", steps=1, init=InitPlan(source="path", path=str(tmp_path / "w.safetensors")))
    with pytest.raises(CheckpointError, match="1 missing key.*layers.2.bias.*1 unexpected key.*extra.weight"):
        run_plan(make_plan(strict, out=tmp_path / "run"), registry=engine_registry)
    assert read_summary(tmp_path / "run")["status"] == "failed"

    lenient = make_stage("s", steps=1, init=InitPlan(source="path", path=str(tmp_path / "w.safetensors"), strict=False))
    result = run_plan(make_plan(lenient, out=tmp_path / "run2"), registry=engine_registry)
    assert result.stages["s"]["init"]["missing"] == ["layers.2.bias"]
    assert result.stages["s"]["init"]["unexpected"] == ["extra.weight"]


def test_init_from_a_stage_that_never_ran_is_a_checkpoint_error(engine_registry, tmp_path):
    stage = make_stage("s", steps=1, init=InitPlan(source="stage", stage="nowhere"))
    with pytest.raises(CheckpointError, match="does not exist"):
        run_plan(make_plan(stage, out=tmp_path), registry=engine_registry)
    with pytest.raises(CheckpointError, match="matches no file"):
        run_plan(make_plan(make_stage("s", init=InitPlan(source="path", path=str(tmp_path / "*.nothing"))), out=tmp_path),
                 registry=engine_registry)


class _Holder(torch.nn.Module):
    """A module whose state_dict is a given dict (to write arbitrary weight files)."""

    def __init__(self, tensors):
        super().__init__()
        self.tensors = tensors

    def state_dict(self, *args, **kwargs):
        return dict(self.tensors)
