"""The run directory: plan, spec, metrics.jsonl, TensorBoard, summary, weights; auto loss args recorded."""

from __future__ import annotations

import json

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from stagedsl.engine.runner import run_plan
from stagedsl.plan.model import EvalPlan, LossPlan, LossTerm, Plan

from .conftest import make_plan, make_stage, read_jsonl, read_summary


def test_run_directory_layout_and_files(engine_registry, tmp_path):
    plan = make_plan(make_stage("a", steps=8, eval=EvalPlan(every=4)), make_stage("b", steps=4), out=tmp_path / "run")
    result = run_plan(plan, registry=engine_registry, spec_text="[run]\nname = 'test'\n")
    run = tmp_path / "run"
    assert result.run_dir == run
    assert Plan.from_json((run / "plan.json").read_text()) == plan
    assert json.loads((run / "plan.json").read_text())["hash"] == plan.hash
    assert (run / "spec.toml").read_text() == "[run]\nname = 'test'\n"
    for stage in ("a", "b"):
        assert (run / "stages" / stage / "best.safetensors").is_file()
        assert (run / "stages" / stage / "last.safetensors").is_file()
    assert not list(run.rglob("*.tmp"))
    summary = read_summary(run)
    assert summary == json.loads(json.dumps(result.summary))
    assert summary["status"] == "completed" and summary["plan_hash"] == plan.hash and summary["world_size"] == 1
    assert summary["global_steps"] == 12
    a = summary["stages"]["a"]
    assert a["steps"] == 8 and a["wall_time_s"] > 0 and a["best_step"] in (4, 8) and a["monitor"] == "val/loss"
    assert a["best_value"] == min(r["val/loss"] for r in read_jsonl(run / "metrics.jsonl") if r["event"] == "eval" and r["stage"] == "a")


def test_metrics_jsonl_and_tensorboard_hold_loss_lr_and_val_metrics(engine_registry, tmp_path):
    plan = make_plan(make_stage("a", steps=8, log_every=2, eval=EvalPlan(every=4)), make_stage("b", steps=4, log_every=2), out=tmp_path)
    run_plan(plan, registry=engine_registry)
    records = read_jsonl(tmp_path / "metrics.jsonl")
    train = [r for r in records if r["event"] == "train"]
    assert [r["step"] for r in train] == [2, 4, 6, 8, 10, 12]
    assert all({"stage", "step", "epoch", "train/loss", "lr/default"} <= set(r) for r in train)
    evals = [r for r in records if r["event"] == "eval"]
    assert [(r["stage"], r["step"]) for r in evals] == [("a", 4), ("a", 8), ("b", 12)]
    assert all("val/loss" in r and "val/mae" in r for r in evals)
    assert [r["event"] for r in records if r["event"].startswith("stage")] == ["stage_start", "stage_end"] * 2

    events = EventAccumulator(str(tmp_path / "tb"), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    scalars = events.Tags()["scalars"]
    assert {"train/loss", "lr/default", "val/loss", "val/mae"} <= set(scalars)
    losses = events.Scalars("train/loss")
    assert [e.step for e in losses] == [2, 4, 6, 8, 10, 12]
    assert losses[0].value == pytest.approx(train[0]["train/loss"], rel=1e-6)
    assert [e.value for e in events.Scalars("lr/default")] == pytest.approx([1e-2] * 6)
    assert {"stages/text_summary", "gates/text_summary"} & set(events.Tags()["tensors"])


def test_auto_loss_argument_is_resolved_once_and_recorded(engine_registry, tmp_path):
    from stagedsl_plugins.losses import per_channel_std

    from .conftest import toy_regression

    blend = LossPlan("blend", (LossTerm("mse"), LossTerm("nrmse", {"sigma": "auto"})), alpha=0.5)
    plan = make_plan(make_stage("a", steps=3, loss=blend), make_stage("b", steps=3, loss=LossPlan("sum", (LossTerm("nrmse", {"sigma": "auto"}),))),
                     out=tmp_path)
    result = run_plan(plan, registry=engine_registry)
    sigma = per_channel_std(toy_regression().train)
    assert len(sigma) == 2 and sigma[1] > 2 * sigma[0]
    assert result.stages["a"]["auto_loss_args"] == {"nrmse": {"sigma": pytest.approx(sigma)}}
    assert result.stages["b"]["auto_loss_args"] == {"nrmse": {"sigma": pytest.approx(sigma)}}
    assert result.summary["auto_loss_args"] == {"nrmse": {"sigma": pytest.approx(sigma)}}
    assert result.state.auto_loss_args == result.summary["auto_loss_args"]
    start = [r for r in read_jsonl(tmp_path / "metrics.jsonl") if r["event"] == "stage_start"]
    assert start[0]["auto_loss_args"]["nrmse"]["sigma"] == pytest.approx(sigma)


def test_weights_files_use_the_model_state_dict_names(engine_registry, tmp_path):
    from safetensors.torch import load_file

    run_plan(make_plan(make_stage("a", steps=2), out=tmp_path), registry=engine_registry)
    weights = load_file(str(tmp_path / "stages/a/last.safetensors"))
    assert sorted(weights) == ["layers.0.bias", "layers.0.weight", "layers.2.bias", "layers.2.weight"]
    assert weights["layers.0.weight"].dtype == torch.float32
