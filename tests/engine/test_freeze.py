"""Freezing: frozen parameters and frozen norm statistics do not move; the optimizer never sees them."""

from __future__ import annotations

import torch
from torch import nn

from stagedsl.engine.freeze import frozen_norms, set_train_mode
from stagedsl.engine.runner import run_plan
from stagedsl.plan.model import GroupPlan, PieceRef

from .conftest import MLP_PARAMS, BNNet, Recorder, make_plan, make_stage, read_jsonl


def test_frozen_parameters_are_bit_identical_and_never_reach_the_optimizer(engine_registry, tmp_path):
    head = ("layers.2.weight", "layers.2.bias")
    plan = make_plan(
        make_stage("heads", trainable=head, frozen=MLP_PARAMS[:2], steps=10),
        make_stage("all", trainable=MLP_PARAMS, steps=5),
        out=tmp_path,
    )
    recorder = Recorder()
    result = run_plan(plan, registry=engine_registry, callbacks=[recorder])
    assert result.status == "completed"
    before = recorder.snapshots["heads"]
    after = recorder.snapshots["all"]  # the model as the first stage left it
    for name in MLP_PARAMS[:2]:
        assert torch.equal(before[name], after[name]), name
    for name in head:
        assert not torch.equal(before[name], after[name]), name
    assert sorted(recorder.optimizer_params["heads"]) == sorted(head)
    assert sorted(recorder.optimizer_params["all"]) == sorted(MLP_PARAMS)


def test_the_optimizer_gets_the_plans_groups_as_they_are(engine_registry, tmp_path):
    groups = (GroupPlan("head", ("layers.2.weight", "layers.2.bias"), lr=1e-3, weight_decay=0.0),
              GroupPlan("body", ("layers.0.weight", "layers.0.bias"), lr=5e-2), GroupPlan("empty", (), lr=1.0))
    plan = make_plan(make_stage("s", trainable=MLP_PARAMS, groups=groups, lr=5e-2, steps=4), out=tmp_path)
    assert [g.name for g in plan.stages[0].groups] == ["head", "body", "empty"]  # exhaustive: no default group needed
    recorder = Recorder()
    run_plan(plan, registry=engine_registry, callbacks=[recorder])
    train = [r for r in read_jsonl(tmp_path / "metrics.jsonl") if r["event"] == "train"]
    assert (train[-1]["lr/head"], train[-1]["lr/body"], train[-1]["lr/empty"]) == (1e-3, 5e-2, 1.0)
    assert "lr/default" not in train[-1]  # the engine invents no group the plan does not show
    assert recorder.optimizer_params["s"] == ["layers.2.weight", "layers.2.bias", "layers.0.weight", "layers.0.bias"]


def test_leftover_trainable_parameters_join_the_default_group_in_the_plan(engine_registry, tmp_path):
    groups = (GroupPlan("head", ("layers.2.weight", "layers.2.bias"), lr=1e-3, weight_decay=0.0),)
    plan = make_plan(make_stage("s", trainable=MLP_PARAMS, groups=groups, lr=5e-2, steps=4), out=tmp_path)
    assert [(g.name, g.params) for g in plan.stages[0].groups] == [("default", ("layers.0.weight", "layers.0.bias")),
                                                                    ("head", ("layers.2.weight", "layers.2.bias"))]
    run_plan(plan, registry=engine_registry)
    train = [r for r in read_jsonl(tmp_path / "metrics.jsonl") if r["event"] == "train"]
    assert train[-1]["lr/head"] == 1e-3 and train[-1]["lr/default"] == 5e-2


def test_batchnorm_statistics_in_frozen_modules_do_not_move(engine_registry, tmp_path):
    encoder = ("encoder.0.weight", "encoder.0.bias", "encoder.1.weight", "encoder.1.bias")
    head = ("head.weight", "head.bias")
    model = PieceRef("bn_net", {})
    frozen = make_stage("frozen", trainable=head, frozen=encoder, steps=8)
    opted_out = make_stage("train_norms", trainable=head, frozen=encoder, steps=8, frozen_norm="train")
    recorder = Recorder()
    run_plan(make_plan(frozen, opted_out, make_stage("end", steps=1), model=model, out=tmp_path),
             registry=engine_registry, callbacks=[recorder])
    first, second, third = (recorder.snapshots[n] for n in ("frozen", "train_norms", "end"))
    for key in ("encoder.1.running_mean", "encoder.1.running_var", "encoder.1.num_batches_tracked"):
        assert torch.equal(first[key], second[key]), key  # held in eval mode while frozen
        assert not torch.equal(second[key], third[key]), key  # frozen_norm = "train" lets them move
    for key in encoder:
        assert torch.equal(first[key], third[key])


def test_frozen_norms_finds_parameterless_norms_inside_frozen_parents():
    model = BNNet()
    for p in model.encoder.parameters():
        p.requires_grad_(False)
    held = frozen_norms(model)
    assert model.encoder[1] in held and model.encoder[3] in held and len(held) == 2
    set_train_mode(model, held)
    assert model.training and model.head.training and model.encoder[0].training
    assert not model.encoder[1].training and not model.encoder[3].training

    for p in model.parameters():
        p.requires_grad_(True)
    assert frozen_norms(model) == []
    partly = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    partly[1].weight.requires_grad_(False)  # a norm with one frozen and one trainable parameter trains
    assert frozen_norms(partly) == []
