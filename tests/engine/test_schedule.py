"""The learning rate per step equals torch's own scheduler with the same settings."""

from __future__ import annotations

import torch

from stagedsl.engine.runner import run_plan
from stagedsl.plan.model import EvalPlan, GroupPlan, PieceRef

from .conftest import MLP_PARAMS, make_plan, make_stage, read_jsonl


def test_multistep_lr_per_step_matches_torch(engine_registry, tmp_path):
    groups = (GroupPlan("body", MLP_PARAMS[:2], lr=0.1), GroupPlan("head", MLP_PARAMS[2:], lr=0.01))
    stage = make_stage("s", steps=12, lr=0.1, groups=groups, trainable=MLP_PARAMS, log_every=1,
                       scheduler=PieceRef("multistep", {"milestones": [3, 7], "gamma": 0.5}), optimizer=PieceRef("sgd", {}))
    run_plan(make_plan(stage, out=tmp_path), registry=engine_registry)
    logged = [r for r in read_jsonl(tmp_path / "metrics.jsonl") if r["event"] == "train"]
    assert [r["stage_step"] for r in logged] == list(range(1, 13))

    params = [torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))]
    optimizer = torch.optim.SGD([{"params": [params[0]], "lr": 0.1}, {"params": [params[1]], "lr": 0.01}], lr=0.1)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[3, 7], gamma=0.5)
    expected = []
    for _ in range(12):
        expected.append([g["lr"] for g in optimizer.param_groups])  # the rate this step uses
        optimizer.step()
        scheduler.step()
    assert [[r["lr/body"], r["lr/head"]] for r in logged] == expected


def test_monitored_scheduler_steps_with_the_metric_after_each_evaluation(engine_registry, tmp_path):
    # val/loss falls, so in mode "max" plateau sees no improvement and halves the LR after each patience+1 evals
    stage = make_stage("s", steps=12, lr=0.1, eval=EvalPlan(every=2), log_every=2, scheduler_monitor="val/loss",
                       scheduler=PieceRef("plateau", {"mode": "max", "patience": 0, "factor": 0.5}))
    run_plan(make_plan(stage, out=tmp_path), registry=engine_registry)
    rates = [r["lr/default"] for r in read_jsonl(tmp_path / "metrics.jsonl") if r["event"] == "train"]
    assert rates[0] == 0.1
    assert rates[-1] < 0.1 / 8
    assert all(later <= earlier for earlier, later in zip(rates, rates[1:]))
