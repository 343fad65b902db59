"""The Python API a notebook uses: `stagedsl.plan` / `stagedsl.run` with a path or a loaded Spec, a
live model and overrides, writing the run directory `staged run` writes; errors are the CLI's
typed errors and read as the CLI prints them."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

import stagedsl
from stagedsl.cli.app import run_cli
from stagedsl.diagnostics import render_problems

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "own-model"
OVERRIDES = ["stage.head.lr=0.1", "run.seed=3"]

pytestmark = pytest.mark.usefixtures("isolated_imports")


@pytest.fixture
def project(tmp_path) -> Path:
    folder = tmp_path / "project"
    shutil.copytree(EXAMPLE, folder)
    return folder


def _blobnet(project: Path):
    spec = importlib.util.spec_from_file_location("own_model_for_test", project / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.BlobNet


def _files(run_dir: Path) -> set[str]:
    # TensorBoard names its event files by time and host, plans/ by the plan's hash (the model's name is in it)
    def name(path: Path) -> str:
        if "tfevents" in path.name:
            return f"{path.parent.relative_to(run_dir)}/<events>"
        return "plans/<hash>.json" if path.parent.name == "plans" else str(path.relative_to(run_dir))

    return {name(p) for p in run_dir.rglob("*") if p.is_file()}


def _keys(value, prefix="") -> set[str]:
    if isinstance(value, dict):
        return {f"{prefix}{k}" for k in value} | {key for k, v in value.items() for key in _keys(v, f"{prefix}{k}.")}
    return set()


def test_run_with_a_live_module_and_overrides_writes_what_the_cli_writes(project, registry, tmp_path, capsys):
    spec = project / "spec.toml"
    cli_dir, api_dir = tmp_path / "cli", tmp_path / "api"
    args = [a for o in OVERRIDES for a in ("--set", o)]
    assert run_cli(["run", str(spec), "--profile", "tiny", *args, "--out", str(cli_dir)]) == 0
    live = _blobnet(project)(width=32)
    before = {k: v.clone() for k, v in live.state_dict().items()}
    result = stagedsl.run(spec, profile="tiny", set=OVERRIDES, model=live, out=api_dir)

    assert result.run_dir == api_dir and result.status == "completed"
    assert set(result.best) == {"head", "all"} and result.best["all"]["monitor"] == "val/accuracy"
    assert result.best["all"]["value"] == result.summary["stages"]["all"]["best_value"]
    assert any(not v.equal(before[k]) for k, v in live.state_dict().items() if v.is_floating_point())  # trained in place
    assert _files(api_dir) == _files(cli_dir)
    summaries = [json.loads((d / "summary.json").read_text()) for d in (cli_dir, api_dir)]
    assert _keys(summaries[0]) == _keys(summaries[1])
    plans = [json.loads((d / "plan.json").read_text()) for d in (cli_dir, api_dir)]
    assert {k for k in _keys(plans[0]) if not k.startswith("model.args.")} == _keys(plans[1])  # the live model takes no arguments
    assert plans[1]["model"] == {"name": "<live:BlobNet>", "args": {}}
    assert plans[0]["parameters"] == plans[1]["parameters"]
    assert plans[0]["stages"] == plans[1]["stages"] and plans[1]["stages"][0]["lr"] == 0.1 and plans[1]["run"]["seed"] == 3
    lines = [[json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()] for d in (cli_dir, api_dir)]
    assert [sorted(r) for r in lines[0]] == [sorted(r) for r in lines[1]]
    assert 'use = "<live:BlobNet>"' in (api_dir / "spec.toml").read_text()


def test_plan_takes_a_path_or_a_loaded_spec_and_records_a_live_model_by_name(project, registry):
    spec = project / "spec.toml"
    from_path = stagedsl.plan(spec, profile="tiny")
    loaded = stagedsl.load_spec(spec, profile="tiny", registry=registry)
    assert stagedsl.plan(loaded).to_dict() == from_path.to_dict()
    live = stagedsl.plan(loaded, model=_blobnet(project)(width=8), set=["stage.all.lr=0.5"])
    assert live.model.name == "<live:BlobNet>" and live.model.args == {}
    assert live.stages[0].trainable == ("head.weight", "head.bias") and live.stages[1].lr == 0.5
    assert json.loads(live.to_json())["model"] == {"name": "<live:BlobNet>", "args": {}}  # the plan stays pure data


def test_errors_are_the_typed_errors_and_read_as_the_cli_prints_them(project, registry, capsys):
    spec = project / "spec.toml"
    with pytest.raises(stagedsl.SpecError) as caught:
        stagedsl.plan(spec, set=["stage.head.lrr=0.1"])
    assert run_cli(["plan", str(spec), "--set", "stage.head.lrr=0.1"]) == 2
    printed = capsys.readouterr().err
    assert str(caught.value) == render_problems(caught.value.problems) == printed.rstrip("\n")
    assert "\x1b[" not in str(caught.value)


def test_a_live_run_cannot_be_rebuilt_from_its_plan_alone(project, registry, tmp_path, capsys):
    run_dir = tmp_path / "live"
    stagedsl.run(project / "spec.toml", profile="tiny", model=_blobnet(project)(), out=run_dir)
    (run_dir / "summary.json").unlink()
    with pytest.raises(stagedsl.PluginError) as caught:  # no trainer checkpoint was kept to resume: it starts over, and needs the model
        stagedsl.resume_run(run_dir)
    assert caught.value.problems[0].code == "E086" and "<live:BlobNet>" in caught.value.problems[0].message
    with pytest.raises(stagedsl.PlanError) as missing:
        stagedsl.plan(stagedsl.load_spec(run_dir / "spec.toml", registry=registry))
    assert missing.value.problems[0].code == "E086" and missing.value.problems[0].path == "model"
