"""What `staged run` / `staged resume` say at the end, and what survives a closed pipe."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from stagedsl.cli.app import run_cli

ROOT = Path(__file__).resolve().parents[2]
PDE = ROOT / "specs" / "pde.toml"
OCEC = ROOT / "specs" / "ocec.toml"
LONG_FLOAT = re.compile(r"\d\.\d{6,}|\d{5,}\.\d")  # more digits than 4 significant ones print


@pytest.fixture(scope="module")
def pde_run(tmp_path_factory):
    """One tiny pde run through the CLI: its folder and what it printed."""
    from stagedsl.registry import Registry, set_registry

    set_registry(Registry.load(autoload=False))
    run_dir = tmp_path_factory.mktemp("pde") / "run"
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run_cli(["run", str(PDE), "--profile", "tiny", "--out", str(run_dir)])
    set_registry(None)
    assert code == 0, err.getvalue()
    return run_dir, out.getvalue(), err.getvalue()


def test_the_end_of_a_run_is_a_table_with_the_total_the_folder_and_tensorboard(pde_run):
    run_dir, out, _ = pde_run
    lines = out.splitlines()
    assert lines[0].split() == ["stage", "status", "steps", "time", "best", "gate"]
    rows = {line.split()[0]: line for line in lines[1:4]}
    assert set(rows) == {"warmup_encdec", "transformer", "finetune"}
    assert all(" completed " in row and " 20 " in row for row in rows.values())
    # which metric is which: pde's finetune monitors val/loss under nRMSE, after MSE
    assert "(mse)" in rows["warmup_encdec"] and "(mse)" in rows["transformer"] and "(nrmse)" in rows["finetune"]
    assert "note: val/loss is each stage's own loss, so compare it within a stage only:\n" \
           "      mse in warmup_encdec, transformer; nrmse in finetune\n" in out
    assert re.search(r"^completed in \S+ \(60 steps\)$", out, flags=re.M)
    assert f"run directory: {run_dir}" in lines and lines[-1] == f"TensorBoard:   tensorboard --logdir {run_dir / 'tb'}"


def test_numbers_on_screen_have_four_significant_digits_and_json_keeps_them_all(pde_run):
    run_dir, out, err = pde_run
    assert not LONG_FLOAT.search(out), out
    assert not LONG_FLOAT.search(err), err
    summary = json.loads((run_dir / "summary.json").read_text())
    best = summary["stages"]["finetune"]["best_value"]
    assert len(repr(best)) > 8  # full precision in the file
    assert f"{best:.4g}" in out


def test_piped_progress_has_elapsed_time_and_eta(pde_run):
    _, _, err = pde_run
    progress = [line for line in err.splitlines() if line.startswith("[warmup_encdec] step")]
    assert progress and all(re.search(r"elapsed \S+  ETA \S+$", line) for line in progress)
    assert "note: 1 CPU thread (auto: " in err


def test_an_init_from_an_earlier_stage_is_named_inside_the_run_directory(pde_run):
    run_dir, _, err = pde_run
    assert "note: stage transformer: loaded init `stages/warmup_encdec/best.safetensors`\n" in err
    assert str(run_dir) not in "".join(line for line in err.splitlines() if "loaded init" in line)


def test_run_json_prints_the_summary(tmp_path, registry, capsys):
    assert run_cli(["run", str(PDE), "--profile", "tiny", "--out", str(tmp_path / "run"), "--json",
                    "--set", "stage.warmup_encdec.steps=2", "--set", "stage.transformer.steps=2", "--set", "stage.finetune.steps=2"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["run_dir"] == str(tmp_path / "run") and data["status"] == "completed"
    assert list(data["stages"]) == ["warmup_encdec", "transformer", "finetune"]


def test_resume_of_a_finished_run_says_it_is_complete_and_trains_nothing(pde_run, registry, capsys):
    run_dir, _, _ = pde_run
    before = {name: (run_dir / name).read_bytes() for name in ("metrics.jsonl", "summary.json")}
    assert run_cli(["resume", str(run_dir)]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines()[0] == f"{run_dir} is already complete: nothing to resume, nothing trained"
    assert "finetune" in captured.out and "resuming" not in captured.err
    assert {name: (run_dir / name).read_bytes() for name in before} == before


def test_a_gate_stop_still_shows_the_table(tmp_path, registry, capsys):
    code = run_cli(["run", str(OCEC), "--profile", "tiny", "--out", str(tmp_path / "run"),
                    "--set", 'stage.heads.gate.when="val/f1 >= 2"'])
    captured = capsys.readouterr()
    assert code == 3
    rows = {line.split()[0]: line for line in captured.out.splitlines()[1:4]}
    assert rows["heads"].endswith("failed -> stop")
    assert re.search(r"^gate of heads: val/f1 = 0\.\d{1,4}, needs val/f1 >= 2$", captured.out, flags=re.M)
    assert " not run " in rows["unfreeze"]
    assert "stopped by a gate at stage `heads`" in captured.out and "error[E420]" in captured.err


def _shell(command: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "STAGEDSL_DISABLE_PLUGIN_AUTOLOAD": "1", "PYTHON": sys.executable}
    return subprocess.run(["bash", "-c", f"set -o pipefail; {command}"], cwd=cwd, env=env, capture_output=True, text=True)


@pytest.mark.slow
def test_a_closed_pipe_never_kills_or_fails_a_run(tmp_path):
    staged = f'"$PYTHON" -m stagedsl'
    run_dir = tmp_path / "run"
    done = _shell(f"{staged} run {PDE} --profile tiny --out {run_dir} 2>&1 | head -n 1", tmp_path)
    assert done.returncode == 0, done.stderr  # pipefail: staged's own exit code counts
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "completed"
    done = _shell(f"{staged} run {PDE} --profile tiny --out {run_dir} --overwrite | head -n 1", tmp_path)
    assert done.returncode == 0 and done.stdout.startswith("stage"), done.stderr
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr
    done = _shell(f"{staged} resume {run_dir} | head -n 1", tmp_path)
    assert done.returncode == 0 and "already complete" in done.stdout, done.stderr
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "completed"


@pytest.mark.parametrize("spec", ["mesh.toml --profile grid", "compare.toml --profile tiny"])  # a search, a matrix
def test_a_closed_pipe_never_fails_the_plan_of_a_search_or_a_matrix(spec, tmp_path):
    done = _shell(f'"$PYTHON" -m stagedsl plan {ROOT / "specs"}/{spec} --json | (exec 0<&-)', tmp_path)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr


BAD_SPEC = """\
[model]
use = "mlp"
in_features = 4
out_features = 1

[data]
use = "npz"
path = "missing.npz"

[[stage]]
name = "a"
stepz = 10
lr = 0.1
loss = "mse"
"""


@pytest.mark.parametrize("command", ["validate", "plan"])
def test_json_on_a_bad_spec_prints_the_errors_on_stdout(command, tmp_path, registry, capsys):
    spec = tmp_path / "bad.toml"
    spec.write_text(BAD_SPEC)
    assert run_cli([command, str(spec), "--json"]) == 2
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert data["ok"] is False and data["errors"]
    first = data["errors"][0]
    assert set(first) >= {"code", "message", "file", "line", "column", "path", "hint"}
    assert first["file"] == str(spec) and first["line"] == 12 and first["path"] == "stage[0].stepz"
    assert 'did you mean "steps"' in (first["hint"] or "")
    assert "error[" in captured.err  # people still get the rendered message


def test_json_errors_carry_the_span_and_the_set_argument(tmp_path, registry, capsys):
    spec = tmp_path / "bad.toml"
    spec.write_text(BAD_SPEC.replace("stepz = 10", "steps = 10"))
    assert run_cli(["validate", str(spec), "--json", "--set", "stage[0].steps=ten"]) == 2
    error = json.loads(capsys.readouterr().out)["errors"][0]
    assert error["argument"] == "--set stage[0].steps=ten" and error["argument_index"] == 0
    assert error["argument"][error["column"] - 1:error["end_column"] - 1] == "ten"
