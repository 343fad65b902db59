"""`[search]` and its space are checked against the spec before anything runs: each mistake exits 2
with the axis's line in `[search.space]` and a did-you-mean; `validate` and `plan` show the space."""

from __future__ import annotations

import json
import re

import pytest

from stagedsl.cli.app import run_cli

from .conftest import spec_text


def _line_of(text: str, needle: str) -> int:
    return text[: text.index(needle)].count("\n") + 1


CASES = [
    ("missing-key", '"stage.finetune.lrr" = [1e-3, 1e-4]', "E076", '"stage.finetune.lrr"', 'did you mean "lr"?'),
    ("missing-stage", '"stage.finetnue.lr" = [1e-3, 1e-4]', "E076", '"stage.finetnue.lr"', 'did you mean "finetune"?'),
    ("missing-model-argument", '"model.dimm" = [8, 16]', "E076", '"model.dimm"', 'did you mean "dim"?'),
    ("not-a-key-path", '"stage..lr" = [1e-3]', "E076", '"stage..lr"', None),
    ("float-range-on-an-integer-key", '"model.depth" = { low = 0.5, high = 2.5 }', "E077", '"model.depth"', None),
    ("value-of-another-type", '"stage.finetune.lr" = [1e-3, "fast"]', "E077", '"fast"', None),
    ("empty-range", '"stage.finetune.lr" = { low = 1e-3, high = 1e-4 }', "E077", '"stage.finetune.lr"', "low < high"),
    ("log-range-from-zero", '"stage.finetune.lr" = { low = 0.0, high = 1e-3, log = true }', "E077", "low = 0.0", None),
    ("unknown-range-key", '"stage.finetune.lr" = { low = 1e-5, hihg = 1e-3 }', "E077", "hihg", 'did you mean "high"?'),
    ("grid-over-a-range", '"stage.finetune.lr" = { low = 1e-5, high = 1e-3 }', "E078", '"stage.finetune.lr"', "list its values"),
    ("search-varies-the-folder", '"run.out" = ["a", "b"]', "E079", '"run.out"', None),
]


@pytest.mark.parametrize("space, code, at, hint", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
@pytest.mark.parametrize("command", ["validate", "search"])
def test_a_wrong_axis_exits_2_with_its_line(space, code, at, hint, command, tmp_path, registry, capsys):
    text = spec_text(space=space)
    path = tmp_path / "spec.toml"
    path.write_text(text)
    assert run_cli([command, str(path), "--out", str(tmp_path / "out")] if command == "search" else [command, str(path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"error[{code}]" in err, err
    line = _line_of(text, at)
    assert re.search(rf"--> {re.escape(str(path))}:{line}:\d+", err), err
    assert f"{line} | {text.splitlines()[line - 1]}" in err
    if hint:
        assert re.search(r"= help: .*" + re.escape(hint), err), err
    assert not (tmp_path / "out").exists()  # nothing ran


def test_search_settings_are_checked(tmp_path, registry, capsys):
    path = tmp_path / "spec.toml"
    path.write_text(spec_text(search='sampler = "tpe"\npruner = "meidan"').replace('metric = "val/mse"', 'metric = "val/msee"'))
    assert run_cli(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert 'error[E078]: no pruner named `meidan`' in err and 'did you mean "median"?' in err
    assert 'error[E078]: sampler "tpe" needs `trials`' in err
    assert "error[E043]" in err and 'did you mean "val/mse"?' in err


@pytest.mark.parametrize("seed", ["-1", "99999999999999999999"])
def test_a_search_seed_is_a_seed_like_any_other(seed, tmp_path, registry, capsys):
    path = tmp_path / "spec.toml"
    path.write_text(spec_text(search=f'sampler = "random"\ntrials = 2\nseed = {seed}'))
    assert run_cli(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "error[E012]: a seed must be from 0 to 2**63 - 1" in err and "= at: search.seed" in err and "Traceback" not in err


def test_validate_and_plan_show_the_space_and_the_trial_count(tmp_path, registry, capsys):
    path = tmp_path / "spec.toml"
    path.write_text(spec_text(space='"stage.finetune.lr" = [1e-3, 1e-4]\n"model.dim" = [8, 16]'))
    assert run_cli(["validate", str(path)]) == 0
    assert "search of 4 trials (grid) over stage.finetune.lr [0.001, 0.0001], model.dim [8, 16]" in capsys.readouterr().out
    assert run_cli(["validate", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["search"]["trials"] == 4
    assert run_cli(["plan", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "search tiny: grid over 2 keys, 4 trials, minimize val/mse" in out
    assert re.search(r"warmup +2 different plans over 4 trials \(by model\.dim\): trained 2 times", out), out
    assert re.search(r"finetune +differs by stage\.finetune\.lr, model\.dim: trained in every trial", out), out
    assert run_cli(["plan", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["trials"] == 4 and data["shared"] == {"warmup": 2, "middle": 2, "finetune": 4}
    assert set(data["plan"]["stage_hashes"]) == {"warmup", "middle", "finetune"}


def test_an_integer_range_on_an_integer_key_is_an_integer_axis(tmp_path, registry, capsys):
    path = tmp_path / "spec.toml"
    path.write_text(spec_text(search='sampler = "random"\ntrials = 3', space='"stage.finetune.steps" = { low = 2, high = 6, step = 2 }'))
    assert run_cli(["validate", str(path)]) == 0
    assert "stage.finetune.steps int 2 .. 6 (step 2)" in capsys.readouterr().out


def test_validate_of_a_search_imports_neither_torch_nor_optuna(specs_dir):
    import os
    import subprocess
    import sys

    code = ("import sys; from stagedsl.cli.app import run_cli; "
            f"assert run_cli(['validate', {str(specs_dir / 'mesh.toml')!r}, '--profile', 'grid']) == 0; "
            "assert not [m for m in sys.modules if m.split('.')[0] in ('torch', 'optuna')]")
    env = {**os.environ, "STAGEDSL_DISABLE_PLUGIN_AUTOLOAD": "1"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "search of 16 trials (grid)" in result.stdout


def test_the_mesh_grid_profile_trains_its_first_stage_once_per_model(specs_dir, registry, capsys):
    assert run_cli(["plan", str(specs_dir / "mesh.toml"), "--profile", "grid", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["trials"] == 16 and data["sampler"] == "grid"
    assert data["shared"] == {"converge": 4, "refine": 16}
    assert data["depends"]["converge"] == ["model.hidden", "model.layers"]


def test_a_validation_objective_on_data_without_a_validation_split_fails_the_plan(tmp_path, registry, capsys):
    path = tmp_path / "spec.toml"
    text = spec_text().replace("n_val = 8", "n_val = 0")
    path.write_text(text)
    for command in (["plan", str(path), "--dry-run"], ["search", str(path), "--out", str(tmp_path / "out")]):
        assert run_cli(command) == 2
        err = capsys.readouterr().err
        assert "error[E809]" in err and "dataset `pde_synthetic` has none" in err and "Traceback" not in err
        assert f"{path}:{_line_of(text, 'metric = ')}:" in err and "search on `train/loss`" in err
    assert not (tmp_path / "out").exists()
