"""Killing a run at any moment costs only the work since the last checkpoint, never correctness.

A child process runs the `staged` CLI on a three-stage spec and is killed with SIGKILL at
a chosen point (`kill_switch.py`): inside an epoch, during an evaluation, at stage
boundaries, while a checkpoint is being written. `staged resume` then continues it, and
every stage's best and last weights must equal, byte for byte, those of a run that was
never stopped; so must the run log, apart from the resume record and timings. One more
run is stopped with SIGTERM (it saves and says how to resume), one more resumes with
``--set`` a new LR.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from stagedsl.cli.app import run_cli
from stagedsl.registry import Registry, set_registry

from .kill_switch import ENV, KillSwitchPlugin

HELPER = Path(__file__).with_name("kill_switch.py")

SPEC = """\
callbacks = ["kill_switch"]

[run]
name = "killed"
seed = 0
device = "cpu"

[model]
use = "mlp"
in_features = 8
hidden = [16]
out_features = 2

[data]
use = "kill_toy"
batch_size = 16          # 96 samples: 6 batches an epoch

[defaults]
lr = 1e-2
loss = "mse"
metrics = ["mae"]
log_every = "1 steps"
checkpoint = { every = "4 steps", keep_last = 2 }

[[stage]]
name = "a"
steps = 20
scheduler = { use = "cosine", warmup = 3 }
eval = { every = "8 steps" }

[[stage]]
name = "b"
steps = 20
init = { stage = "a", which = "best" }
accumulate = 2
eval = { every = "6 steps" }

[[stage]]
name = "c"
steps = 16
optimizer = { use = "sgd", momentum = 0.9 }
eval = { every = "5 steps" }
early_stop = { patience = 10 }
"""

KILL_POINTS = {
    "step_end:a:5": "inside stage a's first epoch, a step after its checkpoint",
    "eval_end:a:16": "during stage a's evaluation, before its best weights and checkpoint",
    "stage_end:a:20": "at the boundary from a to b (after a's last weights)",
    "stage_start:b:0": "as stage b starts, after its init loaded",
    "write:b:12": "while stage b's checkpoint of step 12 is being written",
    "step_end:b:15": "inside an epoch of b, accumulating micro-batches",
    "eval_end:c:10": "during stage c's evaluation",
}

WEIGHTS = [f"stages/{stage}/{which}.safetensors" for stage in "abc" for which in ("best", "last")]
VOLATILE = {"steps_per_s", "wall_time_s"}


def _child(args: list[str], at: str | None, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "STAGEDSL_DISABLE_PLUGIN_AUTOLOAD": "1"}
    env.pop(ENV, None)
    if at:
        env[ENV] = at
    return subprocess.run([sys.executable, str(HELPER), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def _log(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in VOLATILE} for row in rows if row["event"] != "resume"]


def _stages(run_dir: Path) -> dict:
    summary = json.loads((run_dir / "summary.json").read_text())
    stages = {name: {k: v for k, v in record.items() if k not in VOLATILE} for name, record in summary["stages"].items()}
    for record in stages.values():
        if record.get("init"):
            record["init"]["path"] = Path(record["init"]["path"]).name  # the run folders differ
    return stages


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The run never stopped (in this process: same code, same plugin, no kill switch set)."""
    root = tmp_path_factory.mktemp("reference")
    (root / "spec.toml").write_text(SPEC)
    set_registry(Registry.load(autoload=False, plugins=[("kill-switch", KillSwitchPlugin())]))
    try:
        assert run_cli(["run", str(root / "spec.toml"), "--out", str(root / "run")]) == 0
    finally:
        set_registry(None)
    return root / "run"


@pytest.fixture
def kill_registry(registry, register_plugin):
    register_plugin(KillSwitchPlugin(), name="kill-switch")
    return registry


def _killed_run(tmp_path: Path, at: str) -> Path:
    (tmp_path / "spec.toml").write_text(SPEC)
    child = _child(["run", "spec.toml", "--out", "run"], at, tmp_path)
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    return tmp_path / "run"


def _assert_same_as(reference: Path, run_dir: Path) -> None:
    for name in WEIGHTS:
        assert (run_dir / name).read_bytes() == (reference / name).read_bytes(), f"{name} differs from the uninterrupted run"
    assert _log(run_dir) == _log(reference)
    assert _stages(run_dir) == _stages(reference)


@pytest.mark.slow
@pytest.mark.parametrize("at", list(KILL_POINTS), ids=[k.replace(":", "-") for k in KILL_POINTS])
def test_a_run_killed_anywhere_resumes_bit_identical(at, reference, kill_registry, tmp_path, capsys):
    run_dir = _killed_run(tmp_path, at)
    assert run_cli(["resume", str(run_dir)]) == 0, capsys.readouterr().err
    _assert_same_as(reference, run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and len(summary["resumes"]) == 1
    assert not list(run_dir.glob("stages/*/state/.*")), "a half-written checkpoint was left behind"


@pytest.mark.slow
def test_sigterm_finishes_the_step_saves_and_prints_the_resume_command(reference, kill_registry, tmp_path, capsys):
    (tmp_path / "spec.toml").write_text(SPEC)
    child = _child(["run", "spec.toml", "--out", "run"], "sigterm:b:9", tmp_path)
    assert child.returncode == 128 + signal.SIGTERM, child.stderr[-2000:]
    assert "error[E440]" in child.stderr and "SIGTERM" in child.stderr
    assert "staged resume run" in child.stderr
    run_dir = tmp_path / "run"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["stages"]["b"]["status"] == "interrupted"
    assert summary["last_checkpoint"] == "stages/b/state/step_000000009"  # the step it was in, finished and saved
    assert run_cli(["resume", str(run_dir)]) == 0, capsys.readouterr().err
    _assert_same_as(reference, run_dir)


@pytest.mark.slow
def test_resume_with_a_new_lr_applies_from_the_resume_step_and_is_recorded(kill_registry, tmp_path, capsys):
    run_dir = _killed_run(tmp_path, "step_end:b:10")  # newest checkpoint: b, step 8

    # what has run cannot change: refused (exit 2) with the reason, unless --force
    assert run_cli(["resume", str(run_dir), "--set", "stage.a.lr=0.5"]) == 2
    err = capsys.readouterr().err
    assert "error[E431]" in err and "stage `a` has finished" in err and "--force" in err
    assert run_cli(["resume", str(run_dir), "--set", "model.activation=\"tanh\""]) == 2
    assert "the model changed" in capsys.readouterr().err

    assert run_cli(["resume", str(run_dir), "--set", "stage.b.lr=0.003"]) == 0, capsys.readouterr().err
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    lrs = {(r["stage"], r["stage_step"]): r["lr/default"] for r in rows if r["event"] == "train"}
    assert all(lrs[("b", step)] == pytest.approx(1e-2) for step in range(1, 9))
    assert all(lrs[("b", step)] == pytest.approx(3e-3) for step in range(9, 21))
    assert all(lrs[("c", step)] == pytest.approx(1e-2) for step in range(1, 17))
    resume = [r for r in rows if r["event"] == "resume"]
    expected = [{"key": "stage.b.lr", "old": 0.01, "new": 0.003, "status": "applied"}]  # (its default group follows)
    assert len(resume) == 1 and resume[0]["changes"] == expected and resume[0]["at"]["stage_step"] == 8
    assert resume[0]["overrides"] == ["stage.b.lr=0.003"]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["resumes"][0]["changes"] == expected
    assert json.loads((run_dir / "plan.json").read_text())["stages"][1]["lr"] == 0.003
    assert "lr = 0.003" in (run_dir / "spec.toml").read_text()
