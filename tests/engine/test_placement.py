"""Placement under torchrun, without starting processes: each process's share of the data, the device
of a local rank, what a plan for N processes refuses to run as, and metrics that cannot be reduced."""

from __future__ import annotations

import attrs
import pytest
import torch

from stagedsl import hookimpl
from stagedsl.engine.distributed import Processes, from_environment
from stagedsl.engine.evaluation import build_metrics
from stagedsl.engine.placement import ShardSampler, resolve_device, shard
from stagedsl.engine.plan_diff import compare
from stagedsl.engine.runner import run_plan
from stagedsl.errors import RunError
from stagedsl.plan.model import DistributedPlan, DistributedStagePlan, PieceRef

from .conftest import make_plan, make_stage


@pytest.mark.parametrize("n", [12, 13, 7])
def test_the_processes_kth_batches_together_are_the_kth_global_batch(n):
    order = torch.randperm(n, generator=torch.Generator().manual_seed(n))
    world, batch = 3, 2
    shares = [shard(order, rank, world, pad=True) for rank in range(world)]
    assert len({len(s) for s in shares}) == 1  # as many for each process: none waits in a collective
    padded = torch.cat([order, order[: (-n) % world]])
    for k in range(len(shares[0]) // batch):
        together = sorted(i for s in shares for i in s[k * batch:(k + 1) * batch].tolist())
        assert together == sorted(padded[k * batch * world:(k + 1) * batch * world].tolist())


def test_validation_is_split_without_counting_a_sample_twice():
    shares = [list(ShardSampler(torch.utils.data.SequentialSampler(range(7)), rank, 3, pad=False)) for rank in range(3)]
    assert sorted(i for s in shares for i in s) == list(range(7))
    assert [len(ShardSampler(torch.utils.data.SequentialSampler(range(7)), r, 3, pad=False)) for r in range(3)] == [3, 2, 2]
    assert len(ShardSampler(torch.utils.data.SequentialSampler(range(7)), 2, 3, pad=True)) == 3


def test_each_process_takes_the_device_of_its_local_rank_and_no_named_gpu():
    two = Processes(rank=1, world_size=2, local_rank=1)
    assert resolve_device("cpu", two) == torch.device("cpu")
    if not torch.cuda.is_available():
        assert resolve_device("auto", two) == torch.device("cpu")
    with pytest.raises(RunError) as info:
        resolve_device("cuda:1", two)
    assert info.value.problems[0].code == "E483" and "local rank" in info.value.problems[0].message


def test_the_torchrun_environment_is_read_without_torch_distributed():
    assert from_environment({}).world_size == 1
    seen = from_environment({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "GROUP_RANK": "1"})
    assert (seen.rank, seen.world_size, seen.local_rank, seen.node_rank, seen.is_writer) == (3, 4, 1, 1, False)
    with pytest.raises(RunError) as info:
        from_environment({"WORLD_SIZE": "2"})
    assert info.value.problems[0].code == "E482"


def _for_two(plan):
    stages = tuple(DistributedStagePlan(s.name, False) for s in plan.stages)
    return attrs.evolve(plan, distributed=DistributedPlan(2, plan.data.batch_size * 2, stages))


def test_a_plan_for_two_processes_does_not_run_in_one(engine_registry, tmp_path):
    plan = _for_two(make_plan(make_stage("s"), out=tmp_path / "run"))
    with pytest.raises(RunError) as info:
        run_plan(plan, registry=engine_registry)
    assert info.value.problems[0].code == "E482" and "2 processes" in info.value.problems[0].message
    assert not (tmp_path / "run").exists()


class PlainMetric:
    """A metric with update/compute/reset but no torchmetrics state."""

    def update(self, output, target):
        pass

    def compute(self):
        return torch.tensor(0.0)

    def reset(self):
        pass


class PlainMetricPlugin:
    @hookimpl
    def register_metrics(self, register):
        register("plain_metric", PlainMetric, mode="min")


def test_a_metric_without_reducible_state_is_refused_for_several_processes(registry, register_plugin):
    register_plugin(PlainMetricPlugin(), name="plain-metric")
    refs = (PieceRef("mae", {}), PieceRef("plain_metric", {}))
    assert [name for name, _ in build_metrics(refs, registry, torch.device("cpu"))] == ["mae", "plain_metric"]
    with pytest.raises(RunError) as info:
        build_metrics(refs, registry, torch.device("cpu"), at="stage[0].metrics", distributed=True)
    problem = info.value.problems[0]
    assert problem.code == "E484" and problem.path == "stage[0].metrics[1]" and "torchmetrics" in problem.message


def test_a_resume_may_change_the_processes_when_the_global_batch_stays(engine_registry, tmp_path):
    one = make_plan(make_stage("s"), out=tmp_path, data={"batch_size": 16})
    two = _for_two(attrs.evolve(one, data=attrs.evolve(one.data, batch_size=8)))
    kept = compare(one, two, stage="s", stage_step=4, ended=False)
    assert [(c.key, c.old, c.new, c.refused) for c in kept.changes] == [("processes", 1, 2, None),
                                                                       ("data.batch_size", 16, 8, None)]
    bigger = _for_two(one)  # 16 a process: a global batch of 32
    refused = compare(one, bigger, stage="s", stage_step=4, ended=False).refused
    assert [c.key for c in refused] == ["processes"] and "from 16 to 32" in refused[0].refused
