"""A plan for N processes: each process's batch, the global batch, epochs in global batches, and each
stage's DDP graph check (find_unused_parameters only where a trainable parameter reaches no output)."""

from __future__ import annotations

import attrs
import pytest
import torch
from torch import nn

from stagedsl import DataSplits, TensorSplit, hookimpl
from stagedsl.errors import PlanError, UsageError
from stagedsl.plan.compile import compile_plan
from stagedsl.plan.distributed import for_world_size
from stagedsl.plan.model import Plan
from stagedsl.plan.render import render_plan
from stagedsl.spec.loader import loads_spec

SPEC = """
[model]
use = "{model}"

[data]
use = "eight_features"
n = 100
batch_size = 5

[defaults]
lr = 1e-3
loss = "mse"

[[stage]]
name = "all"
epochs = 2

[[stage]]
name = "head"
epochs = 1
train = ["head.**"]
"""


class WithSpareHead(nn.Module):
    """A body and a head on the output; `spare` is never called, and the `head` stage freezes the body."""

    def __init__(self):
        super().__init__()
        self.body = nn.Linear(8, 8)
        self.head = nn.Linear(8, 2)
        self.spare = nn.Linear(8, 2)

    def forward(self, x):
        return self.head(torch.relu(self.body(x)))


class ReadsValues(nn.Module):
    """A forward that reads a value into Python: impossible on the meta device."""

    def __init__(self):
        super().__init__()
        self.body = nn.Linear(8, 8)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        scale = float(x.abs().max())
        return self.head(self.body(x)) * scale


def eight_features(n: int = 100):
    """n samples of 8 features, 2 targets."""
    x = torch.randn(n, 8)
    return DataSplits(train=TensorSplit(x, x[:, :2].clone()))


class Pieces:
    @hookimpl
    def register_models(self, register):
        register("spare_head", WithSpareHead)
        register("reads_values", ReadsValues)

    @hookimpl
    def register_datasets(self, register):
        register("eight_features", eight_features, sizes=lambda n=100: {"train": n})


@pytest.fixture
def pieces(register_plugin):
    return register_plugin(Pieces(), name="distributed-plan-pieces")


def _compile(registry, model: str = "spare_head", world_size: int = 1, **fields) -> Plan:
    return compile_plan(loads_spec(SPEC.format(model=model), registry=registry), registry, world_size=world_size)


def test_the_batch_is_each_process_and_an_epoch_counts_global_batches(pieces):
    one = _compile(pieces)
    two = _compile(pieces, world_size=2)
    assert one.distributed is None and one.world_size == 1
    assert two.world_size == 2 and two.data.batch_size == 5 and two.distributed.global_batch == 10
    assert two.data.batches_per_epoch == 10  # ceil(ceil(100 / 2) / 5): what one process with a batch of 10 takes
    assert [s.steps for s in two.stages] == [20, 10]
    doubled = compile_plan(loads_spec(SPEC.format(model="spare_head"), registry=pieces, overrides=["data.batch_size=10"]), pieces)
    assert [s.steps for s in doubled.stages] == [s.steps for s in two.stages]


def test_find_unused_parameters_only_where_a_trainable_parameter_reaches_no_output(pieces):
    plan = _compile(pieces, world_size=2)
    every, head = plan.distributed.stages
    assert every.find_unused and set(every.unused) == {"spare.weight", "spare.bias"} and every.check == "traced"
    assert not head.find_unused and head.unused == ()  # the body is frozen there: DDP does not hold it
    text = render_plan(plan)
    assert "batch 5 per process x 2 processes = 10 a step" in text
    assert "DDP: find_unused_parameters on: trainable but not reaching the output: spare.weight, spare.bias" in text
    assert "DDP: find_unused_parameters off" in text


def test_a_forward_the_meta_device_cannot_run_gets_find_unused_and_says_why(pieces):
    plan = _compile(pieces, model="reads_values", world_size=2)
    assert all(s.find_unused and s.check.startswith("not traced: the model's forward failed on the meta device")
               for s in plan.distributed.stages)
    assert "not traced" in render_plan(plan)


def test_a_distributed_plan_round_trips_and_a_one_process_plan_has_no_distributed_key(pieces):
    two = _compile(pieces, world_size=2)
    assert Plan.from_json(two.to_json()) == two and Plan.from_json(two.to_json()).hash == two.hash
    one = _compile(pieces)
    assert "distributed" not in one.to_dict() and two.hash != one.hash
    with pytest.raises(PlanError) as info:  # a plan is consistent: the global batch is the batch x processes
        attrs.evolve(two, distributed=attrs.evolve(two.distributed, global_batch=12))
    assert info.value.problems[0].code == "E066"


def test_another_number_of_processes_keeps_the_global_batch(pieces):
    two = _compile(pieces, world_size=2)
    one = for_world_size(two, 1, pieces)
    assert one.distributed is None and one.data.batch_size == 10
    assert [s.steps for s in one.stages] == [s.steps for s in two.stages]
    again = for_world_size(one, 2, pieces)
    assert again.data.batch_size == 5 and again.distributed.stages == two.distributed.stages
    with pytest.raises(UsageError) as info:
        for_world_size(two, 3, pieces)
    assert info.value.problems[0].code == "E485" and "10" in info.value.problems[0].message
