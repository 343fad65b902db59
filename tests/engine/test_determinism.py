"""Two identical CPU runs give bit-identical weights; a different seed does not."""

from __future__ import annotations

import pytest
import torch

from stagedsl.engine.checkpointing.weights import read_weights
from stagedsl.engine.runner import run_plan
from stagedsl.plan.model import EvalPlan, InitPlan

from .conftest import make_plan, make_stage


def _plan(out, dataset, seed=0, workers=0):
    return make_plan(
        make_stage("a", steps=10, eval=EvalPlan(every=5)),
        make_stage("b", steps=10, init=InitPlan(source="stage", stage="a", which="best"), accumulate=2, grad_clip=1.0),
        out=out, data={"name": dataset, "workers": workers}, seed=seed,
    )


@pytest.mark.parametrize("dataset, workers", [("toy_regression", 0), ("toy_plain", 0), ("toy_plain", 2)])
def test_two_identical_runs_give_bit_identical_weights(engine_registry, tmp_path, dataset, workers):
    runs = [tmp_path / "one", tmp_path / "two", tmp_path / "other_seed"]
    for run, seed in zip(runs, (0, 0, 1)):
        run_plan(_plan(run, dataset, seed, workers), registry=engine_registry)
    one, two, other = (read_weights(r / "stages/b/last.safetensors") for r in runs)
    assert all(torch.equal(one[k], two[k]) for k in one)
    assert not all(torch.equal(one[k], other[k]) for k in one)
