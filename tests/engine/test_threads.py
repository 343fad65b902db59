"""`run.threads = "auto"`: the rule (one place), the spec default, and the run applying it."""

from __future__ import annotations

import pytest
import torch

from stagedsl.engine.threads import SMALL_MODEL, choose_threads
from stagedsl.errors import SpecError
from stagedsl.spec.loader import loads_spec

SPEC = """\
[run]
device = "cpu"
{threads}

[model]
use = "mlp"
in_features = 8
hidden = [16]
out_features = 2

[data]
use = "toy_regression"

[[stage]]
name = "a"
steps = 2
lr = 0.1
loss = "mse"
"""


def test_a_small_model_gets_one_thread_whatever_the_machine():
    for cores, load in ((2, 0.0), (64, 0.0), (2, 3.0)):
        assert choose_threads("auto", SMALL_MODEL - 1, torch_default=cores, cores=cores, load=load).threads == 1


def test_a_large_model_gets_the_cores_nobody_else_is_using():
    big = SMALL_MODEL * 5
    assert choose_threads("auto", big, torch_default=8, cores=8, load=0.2).threads == 8
    assert choose_threads("auto", big, torch_default=8, cores=8, load=2.6).threads == 5  # three cores busy
    assert choose_threads("auto", big, torch_default=2, cores=2, load=1.0).threads == 1  # one busy process on 2 cores
    assert choose_threads("auto", big, torch_default=2, cores=2, load=7.0).threads == 1  # never fewer than one
    assert choose_threads("auto", big, torch_default=4, cores=16, load=0.0).threads == 4  # never more than torch's own


def test_a_number_is_taken_as_written_and_none_leaves_torch_alone():
    assert choose_threads(3, 10, torch_default=2).threads == 3
    assert choose_threads(None, 10, torch_default=2).threads is None


def test_auto_is_the_spec_default_and_anything_else_is_refused():
    assert loads_spec(SPEC.format(threads="")).run.threads == "auto"
    assert loads_spec(SPEC.format(threads="threads = 2")).run.threads == 2
    with pytest.raises(SpecError) as caught:
        loads_spec(SPEC.format(threads='threads = "two"'))
    problem = caught.value.problems[0]
    assert problem.path == "run.threads" and 'a number of threads or "auto"' in problem.message and problem.line == 3


def test_the_plan_carries_auto_and_the_run_applies_the_rule(engine_registry, tmp_path, capsys):
    from stagedsl.engine.runner import run_plan
    from stagedsl.plan.compile import compile_plan
    from stagedsl.plan.model import Plan

    plan = compile_plan(loads_spec(SPEC.format(threads=""), registry=engine_registry), engine_registry)
    assert plan.run.threads == "auto" and Plan.from_json(plan.to_json()).run.threads == "auto"
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        run_plan(plan, registry=engine_registry, out=tmp_path / "run")
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert "note: 1 CPU thread (auto: " in capsys.readouterr().err
