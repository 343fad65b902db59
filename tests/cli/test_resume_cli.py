"""`staged resume`: its options, exit codes, and a refused model change (with and without --force)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from stagedsl.cli.app import run_cli

ROOT = Path(__file__).resolve().parents[2]

SPEC = """\
[run]
name = "tiny"
device = "cpu"

[model]
use = "mlp"
in_features = 8
hidden = [16]
out_features = 2

[data]
use = "kill_toy"
batch_size = 32

[[stage]]
name = "only"
steps = 6
lr = 1e-2
loss = "mse"
checkpoint = { every = "2 steps" }
"""


@pytest.fixture
def toy_registry(registry, register_plugin):
    spec = importlib.util.spec_from_file_location("kill_switch_for_cli", ROOT / "tests/engine/kill_switch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    register_plugin(module.KillSwitchPlugin(), name="kill-switch")
    return registry


def test_resume_help_names_its_options(registry, capsys):
    assert run_cli(["resume", "--help"]) == 0
    out = capsys.readouterr().out
    for option in ("--set", "--force", "--device"):
        assert option in out


def test_resume_of_a_folder_that_is_not_a_run_exits_2(registry, tmp_path, capsys):
    assert run_cli(["resume", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert "error[E415]" in captured.err and "not a run directory" in captured.err and captured.out == ""


def test_a_changed_model_is_refused_without_force_and_tried_with_it(toy_registry, tmp_path, capsys):
    (tmp_path / "spec.toml").write_text(SPEC)
    run_dir = tmp_path / "run"
    assert run_cli(["run", str(tmp_path / "spec.toml"), "--out", str(run_dir)]) == 0
    capsys.readouterr()

    assert run_cli(["resume", str(run_dir), "--set", "model.hidden=[32]"]) == 2
    err = capsys.readouterr().err
    assert "error[E431]" in err and "`model.args.hidden`" in err and "the model changed since the run started" in err
    assert "--force" in err

    assert run_cli(["resume", str(run_dir), "--set", "model.hidden=[32]", "--force"]) == 1  # forced, but it cannot fit
    assert "error[E411]" in capsys.readouterr().err

    assert run_cli(["resume", str(run_dir), "--set", 'model.activation="tanh"', "--force"]) == 0  # same parameters
    out = capsys.readouterr().out
    assert f"run directory: {run_dir}" in out.splitlines()
    record = json.loads((run_dir / "summary.json").read_text())["resumes"][-1]
    assert record["forced"] and record["changes"][0]["key"] == "model.args.activation"
    assert record["changes"][0]["status"] == "forced"
