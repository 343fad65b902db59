"""A user's own model, data, optimizer and scheduler named by import path, end to end through the
CLI: the example in examples/own-model validates, plans (its freezes resolved to parameter names)
and runs; a misspelt argument of the user's class is a located spec error with a did-you-mean."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stagedsl.cli.app import run_cli

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "own-model"

pytestmark = pytest.mark.usefixtures("isolated_imports")


@pytest.fixture
def example(tmp_path) -> Path:
    """The example project copied into a fresh folder: spec.toml beside model.py and data.py."""
    folder = tmp_path / "project"
    shutil.copytree(EXAMPLE, folder)
    return folder / "spec.toml"


def test_validate_plan_and_run_the_example(example, registry, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative paths in the spec are read from its folder, not from here
    assert run_cli(["validate", str(example)]) == 0
    assert capsys.readouterr().out.strip() == f"{example}: ok (2 stages: head, all)"
    assert run_cli(["plan", str(example), "--profile", "tiny", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["model"]["name"] == f"{example.parent}/model.py:BlobNet"
    head, everything = plan["stages"]
    assert head["trainable"] == ["head.weight", "head.bias"]
    assert everything["frozen"] == ["encoder.1.weight", "encoder.1.bias"]  # modules_of_type BatchNorm1d
    assert head["optimizer"] == {"name": "torch.optim:SGD", "args": {"momentum": 0.9}}
    assert plan["data"]["sizes"] == {"train": 128, "val": 64} and plan["data"]["sizes_from"] == "built"
    assert run_cli(["run", str(example), "--profile", "tiny", "--out", str(tmp_path / "run")]) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert [s["status"] for s in summary["stages"].values()] == ["completed", "completed"]
    assert summary["stages"]["all"]["monitor"] == "val/accuracy" and summary["stages"]["all"]["best_value"] is not None
    copy = tmp_path / "run" / "spec.toml"  # the effective spec records where its relative paths are read from
    assert f'paths_from = "{example.parent}"' in copy.read_text()
    capsys.readouterr()
    assert run_cli(["plan", str(copy), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["stages"] == plan["stages"]


def test_a_misspelt_argument_of_the_users_class_exits_2_with_a_did_you_mean(example, registry, capsys):
    example.write_text(example.read_text().replace("width = 32", "widht = 32"))
    assert run_cli(["validate", str(example)]) == 2
    err = capsys.readouterr().err
    assert "error[E021]: model `./model.py:BlobNet` has no argument `widht`" in err
    assert f"--> {example}:11:1" in err and "11 | widht = 32" in err and "= at: model.widht" in err and '= help: did you mean "width"?' in err
    assert "Traceback" not in err


def test_a_misspelt_class_says_what_the_file_defines(example, registry, capsys):
    example.write_text(example.read_text().replace("./model.py:BlobNet", "./model.py:BlobNett"))
    assert run_cli(["plan", str(example)]) == 2
    err = capsys.readouterr().err
    assert "error[E084]: module `./model.py` has no attribute `BlobNett`" in err
    assert 'did you mean "BlobNet"? it defines: BlobNet' in err and "= at: model.use" in err


def test_validate_imports_the_users_module_only_when_the_spec_names_one(tmp_path):
    (tmp_path / "light.py").write_text("import sys\nIMPORTED = True\n\ndef make(width: int = 2):\n    '''A model, built lazily.'''\n"
                                       "    import torch\n    return torch.nn.Linear(width, 1)\n")
    spec = tmp_path / "spec.toml"
    spec.write_text('[model]\nuse = "./light.py:make"\nwidth = 3\n\n[data]\nuse = "npz"\ntrain = "train.npz"\n\n'
                    '[[stage]]\nname = "a"\nsteps = 1\nlr = 0.1\nloss = "mse"\n')
    code = (f"import sys; from stagedsl.cli.app import run_cli; rc = run_cli(['validate', {str(spec)!r}]); assert rc == 0, rc; "
            "assert any(getattr(m, 'IMPORTED', False) for m in list(sys.modules.values())), 'light.py not imported'; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    env = {**os.environ, "STAGEDSL_DISABLE_PLUGIN_AUTOLOAD": "1"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
