"""Stage-prefix reuse: a stage whose stage hash a finished run already has is adopted, not trained,
and what follows is bit-identical to training everything from scratch (CPU)."""

from __future__ import annotations

import re

from stagedsl.cli.app import run_cli
from stagedsl.engine.runner import run_plan
from stagedsl.plan.model import Plan
from stagedsl.search.runner import run_search
from stagedsl.spec.loader import load_spec

from .conftest import StageCounter, events, read_json, same_weights, weights


def test_a_grid_over_the_last_stage_trains_the_first_two_once_and_matches_each_trial_from_scratch(write_spec, tmp_path, registry):
    spec = load_spec(write_spec(), registry=registry)
    counter = StageCounter()
    result = run_search(spec, registry=registry, out=tmp_path / "study", callbacks=[counter], say=lambda _: None)

    assert counter.starts == {"warmup": 1, "middle": 1, "finetune": 3}
    summary = result.summary
    assert summary["counts"]["complete"] == 3 and summary["counts"]["stages_trained"] == 5 and summary["counts"]["stages_reused"] == 4
    assert [row["params"]["stage.finetune.lr"] for row in summary["trials"]] == [1e-3, 3e-4, 1e-4]
    for number in (1, 2):
        trial = tmp_path / "study" / "trials" / str(number)
        stages = read_json(trial / "summary.json")["stages"]
        assert stages["warmup"]["reused"] == {"from": "trials/0", "stage": "warmup", "hash": stages["warmup"]["reused"]["hash"]}
        assert stages["middle"]["reused"]["from"] == "trials/0" and stages["finetune"]["reused"] is None
        assert [e["stage"] for e in events(trial, "stage_start")] == ["warmup", "middle", "finetune"]  # its log is whole
        plan = Plan.from_json((trial / "plan.json").read_text())
        scratch = tmp_path / f"scratch{number}"
        run_plan(plan, registry=registry, out=scratch)
        for which in ("best", "last"):
            assert same_weights(weights(trial, "finetune", which), weights(scratch, "finetune", which)), (number, which)
        assert read_json(trial / "summary.json")["global_steps"] == read_json(scratch / "summary.json")["global_steps"] == 12
        assert [e["val/mse"] for e in events(trial, "eval")] == [e["val/mse"] for e in events(scratch, "eval")]


def test_run_with_reuse_trains_only_the_edited_stage_and_matches_a_run_from_scratch(write_spec, tmp_path, registry, capsys):
    spec = write_spec()
    assert run_cli(["run", str(spec), "--out", str(tmp_path / "first")]) == 0
    edited = ["--set", "stage.finetune.lr=3e-4", "--set", "stage.finetune.steps=6"]
    capsys.readouterr()
    assert run_cli(["plan", str(spec), "--no-chart", "--reuse", str(tmp_path / "first"), *edited]) == 0
    shown = capsys.readouterr().out
    assert "reused  warmup" in shown and "reused  middle" in shown and "trains  finetune" in shown

    assert run_cli(["run", str(spec), "--out", str(tmp_path / "second"), "--reuse", str(tmp_path / "first"), *edited]) == 0
    table = capsys.readouterr().out  # the end table says which stages were adopted, not trained
    assert re.search(r"^warmup +reused +4 +- ", table, re.M) and re.search(r"^finetune +completed +6 +\S+s ", table, re.M)
    assert [e["stage"] for e in events(tmp_path / "second", "stage_start")] == ["warmup", "middle", "finetune"]
    second = read_json(tmp_path / "second" / "summary.json")["stages"]
    assert second["warmup"]["reused"]["from"] == str(tmp_path / "first") and second["finetune"]["reused"] is None
    assert second["finetune"]["steps"] == 6
    assert run_cli(["run", str(spec), "--out", str(tmp_path / "scratch"), *edited]) == 0
    assert same_weights(weights(tmp_path / "second", "finetune"), weights(tmp_path / "scratch", "finetune"))
    # only the edited stage trained: the reused stages' weights are the first run's, file for file
    assert (tmp_path / "second/stages/middle/best.safetensors").read_bytes() == (tmp_path / "first/stages/middle/best.safetensors").read_bytes()


def test_reuse_takes_nothing_when_the_first_stage_differs(write_spec, tmp_path, registry, capsys):
    spec = write_spec()
    assert run_cli(["run", str(spec), "--out", str(tmp_path / "first")]) == 0
    capsys.readouterr()
    assert run_cli(["run", str(spec), "--out", str(tmp_path / "second"), "--reuse", str(tmp_path / "first"), "--set", "run.seed=1"]) == 0
    assert "trains  warmup" in capsys.readouterr().err
    assert all(r["reused"] is None for r in read_json(tmp_path / "second" / "summary.json")["stages"].values())


def test_reuse_of_the_run_directory_itself_is_refused(write_spec, tmp_path, registry, capsys):
    spec = write_spec()
    assert run_cli(["run", str(spec), "--out", str(tmp_path / "first")]) == 0
    assert run_cli(["run", str(spec), "--out", str(tmp_path / "first"), "--reuse", str(tmp_path / "first"), "--overwrite"]) == 2
    assert "error[E806]" in capsys.readouterr().err


def test_a_gate_that_fails_prunes_its_trial_and_the_trials_that_share_its_stage(write_spec, tmp_path, registry):
    spec = load_spec(write_spec(middle_extra='\ngate = { when = "val/loss < 0.0001", on_fail = "stop" }'), registry=registry)
    counter = StageCounter()
    result = run_search(spec, registry=registry, out=tmp_path / "study", callbacks=[counter], say=lambda _: None)

    rows = result.summary["trials"]
    assert [r["state"] for r in rows] == ["pruned"] * 3 and result.summary["best"] is None
    assert all(r["pruned_by"]["by"] == "gate" and "val/loss < 0.0001" in r["pruned_by"]["message"] for r in rows)
    assert counter.starts == {"warmup": 1, "middle": 1}  # the later trials adopt the stopped stage: nothing trains again
    later = read_json(tmp_path / "study" / "trials" / "2" / "summary.json")
    assert later["status"] == "stopped_by_gate" and later["stages"]["finetune"]["status"] == "not_run"
    assert later["stages"]["middle"]["reused"]["from"] == "trials/0"
