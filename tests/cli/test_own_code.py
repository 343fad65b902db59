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


PIECES = '''
from pathlib import Path

from torch import nn

import stagedsl


class Tiny(nn.Module):
    """stem (Linear) -> act (ReLU, no parameters) -> head (Linear)."""

    def __init__(self, features: int = 16, classes: int = 3):
        super().__init__()
        self.stem, self.act, self.head = nn.Linear(features, 8), nn.ReLU(), nn.Linear(8, classes)

    def forward(self, x):
        return self.head(self.act(self.stem(x)))


def first_child(names: list, modules: list) -> list:
    """The parameters of the model's first child, found in its module tree."""
    first = next(m for m in modules if m.depth == 1)
    return [n for n in names if n.startswith(first.name + ".")]


class EventLog(stagedsl.Callback):
    """Appends every event's name to `log`."""

    def __init__(self, log: Path):
        self.log = log

    def on_event(self, event, state):
        with open(self.log, "a") as out:
            out.write(event.value + "\\n")
'''

EVERY_KIND = '''
[model]
use = "./pieces.py:Tiny"

[data]
use = "./data.py:blobs"
n_train = 64
n_val = 32
batch_size = 32

[[callbacks]]
use = "./pieces.py:EventLog"
log = "{log}"

[[stage]]
name = "a"
steps = 4
lr = 0.05
optimizer = { use = "torch.optim:SGD", momentum = 0.5 }
scheduler = { use = "torch.optim.lr_scheduler:StepLR", step_size = 2 }
loss = { use = "torch.nn:CrossEntropyLoss", label_smoothing = 0.1 }
metrics = [{ use = "torchmetrics.classification:MulticlassAccuracy", num_classes = 3 }]
eval = { every = 2, monitor = "val/MulticlassAccuracy" }
freeze = [{ use = "./pieces.py:first_child" }]
'''


def test_every_kind_of_piece_by_import_path_runs(registry, tmp_path, capsys, monkeypatch):
    project = tmp_path / "kinds"
    project.mkdir()
    shutil.copy(EXAMPLE / "data.py", project / "data.py")
    (project / "pieces.py").write_text(PIECES)
    spec = project / "spec.toml"
    spec.write_text(EVERY_KIND.replace("{log}", str(tmp_path / "events.txt")))
    monkeypatch.chdir(tmp_path)
    assert run_cli(["plan", str(spec), "--json"]) == 0
    stage = json.loads(capsys.readouterr().out)["stages"][0]
    assert stage["frozen"] == ["stem.weight", "stem.bias"] and stage["trainable"] == ["head.weight", "head.bias"]
    assert [t["name"] for t in stage["loss"]["terms"]] == ["torch.nn:CrossEntropyLoss"]
    assert run_cli(["run", str(spec), "--out", str(tmp_path / "run")]) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["stages"]["a"]["monitor"] == "val/MulticlassAccuracy"
    assert 0.0 <= summary["stages"]["a"]["last_values"]["val/MulticlassAccuracy"] <= 1.0
    events = (tmp_path / "events.txt").read_text().split()
    assert events[0] == "run_start" and events[-1] == "run_end" and events.count("eval_end") == 2


def _contained(part, whole) -> bool:
    """Whether every key and value of `part` is in `whole` (tables compared key by key, arrays item by item)."""
    if isinstance(part, dict):
        return isinstance(whole, dict) and all(k in whole and _contained(v, whole[k]) for k, v in part.items())
    if isinstance(part, list):
        return isinstance(whole, list) and len(part) == len(whole) and all(_contained(p, w) for p, w in zip(part, whole))
    return part == whole


def test_the_readme_quick_start_shows_the_example_as_it_runs(example, registry, monkeypatch, tmp_path):
    import re
    import shlex
    import tomllib

    readme = (ROOT / "README.md").read_text(encoding="utf-8").split("## Quick start\n", 1)[1].split("\n## ", 1)[0]
    shown = tomllib.loads(re.search(r"```toml\n(.*?)```", readme, flags=re.S).group(1))
    assert shown["model"]["use"].startswith("./model.py:")  # the user's own model, by import path
    assert _contained(shown, tomllib.loads(example.read_text()))  # what the README shows is the example's spec
    block = next(b for b in re.findall(r"```bash\n(.*?)```", readme, flags=re.S) if "examples/own-model" in b)
    commands = [shlex.split(line, comments=True) for line in block.splitlines() if line.strip()]
    assert [c[:2] for c in commands] == [["staged", "validate"], ["staged", "plan"], ["staged", "run"]]
    (tmp_path / "examples").mkdir()
    shutil.copytree(example.parent, tmp_path / "examples" / "own-model")
    monkeypatch.chdir(tmp_path)
    for command in commands:
        assert run_cli(command[1:]) == 0, shlex.join(command)
    assert json.loads((tmp_path / "runs" / "own-model" / "summary.json").read_text())["status"] == "completed"
