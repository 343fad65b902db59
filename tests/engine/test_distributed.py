"""Two processes (torchrun, gloo on the CPU) train like one process with the same global batch.

`staged run SPEC --nproc 2` through `ddp_probe.py`, a `staged` program whose every process
records what it decided and what it touched. The spec has a stage boundary that changes
the trainable set (DDP wrapped again after the freeze), an init hand-off, a gate at every
evaluation and one at the end. Against the same spec run in one process with twice the
batch: the same train and validation loss curve within floating-point tolerance, the same
gate decisions in both processes, only rank 0 touched the run directory. Then a process
is killed: the group stops with an error naming it, the last checkpoint is intact, and
`staged resume` ends like the run that was never stopped, in two processes, in one, and
from one into two.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from stagedsl.cli.app import run_cli
from stagedsl.engine.checkpointing import trainer_checkpoints
from stagedsl.engine.checkpointing.weights import read_weights
from stagedsl.registry import Registry, set_registry
from stagedsl.run_dir import RunDir

from .ddp_probe import KILL, PROBE, ProbePlugin

pytestmark = pytest.mark.slow

HELPER = Path(__file__).with_name("ddp_probe.py")
PER_PROCESS = 4  # x 2 processes = the one-process run's batch of 8

SPEC = """\
callbacks = ["ddp_probe"]

[run]
name = "ddp"
seed = 3
device = "cpu"

[model]
use = "mlp"
in_features = 8
hidden = [16]
out_features = 2

[data]
use = "npz"
train = "{root}/train.npz"
val = "{root}/val.npz"
batch_size = {batch}

[defaults]
lr = 1e-2
loss = "mse"
metrics = ["mae", "rmse"]
log_every = "2 steps"
eval = {{ every = "4 steps" }}
checkpoint = {{ every = "4 steps", keep_last = 2 }}

[[stage]]
name = "a"
epochs = 2
gate = {{ when = "val/loss < 0.0", on_fail = "warn" }}

[[stage]]
name = "b"
steps = 12
freeze = ["layers.0.*"]
init = {{ stage = "a", which = "best" }}
gate = {{ when = "val/mae < 100.0", on_fail = "stop", check = "eval" }}
"""


def _write_data(root: Path) -> None:
    rng = np.random.default_rng(0)
    for name, n in (("train", 64), ("val", 22)):  # 22: the processes' validation shares differ in size
        x = rng.normal(size=(n, 8)).astype("float32")
        y = np.tanh(x @ np.linspace(-1, 1, 16).reshape(8, 2)).astype("float32")
        np.savez(root / f"{name}.npz", x=x, y=y)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    _write_data(tmp_path)
    for name, batch in (("one.toml", 2 * PER_PROCESS), ("two.toml", PER_PROCESS)):
        (tmp_path / name).write_text(SPEC.format(root=tmp_path, batch=batch))
    (tmp_path / "probe").mkdir()
    return tmp_path


def _staged(args: list[str], cwd: Path, *, torchrun: bool = False, **env: str) -> subprocess.CompletedProcess:
    """The probe program with `args`; with `torchrun`, started by torchrun itself (2 processes) instead of --nproc."""
    environment = {**os.environ, "STAGEDSL_DISABLE_PLUGIN_AUTOLOAD": "1", PROBE: str(cwd / "probe"), **env}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"] if torchrun else [sys.executable]
    return subprocess.run([*launcher, str(HELPER), *args], cwd=cwd, env=environment, capture_output=True, text=True, timeout=600)


def _in_process(args: list[str]) -> int:
    set_registry(Registry.load(autoload=False, plugins=[("ddp-probe", ProbePlugin())]))
    try:
        return run_cli(args)
    finally:
        set_registry(None)


def _curve(run_dir: Path) -> list[tuple]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["event"], r["stage"], r["stage_step"], r.get("train/loss"), r.get("val/loss"), r.get("val/mae"))
            for r in rows if r["event"] in ("train", "eval")]


def _assert_close_curves(a: list[tuple], b: list[tuple]) -> None:
    assert [row[:3] for row in a] == [row[:3] for row in b]
    for x, y in zip(a, b):
        for u, v in zip(x[3:], y[3:]):
            assert (u is None) == (v is None)
            if u is not None:
                assert v == pytest.approx(u, rel=1e-5, abs=1e-6), (x, y)


def _assert_close_weights(reference: Path, run_dir: Path) -> None:
    for stage in ("a", "b"):
        for which in ("best", "last"):
            mine, theirs = read_weights(run_dir / f"stages/{stage}/{which}.safetensors"), read_weights(
                reference / f"stages/{stage}/{which}.safetensors")
            for name, tensor in theirs.items():
                torch.testing.assert_close(mine[name], tensor, rtol=1e-5, atol=1e-6, msg=f"{stage}/{which}: {name}")


def _assert_one_table(stdout: str, run_dir: Path) -> None:
    """Rank 0 alone showed the end-of-run table: one header, one run directory line."""
    lines = stdout.splitlines()
    assert sum(line.startswith("stage ") and "status" in line for line in lines) == 1, stdout
    assert [line for line in lines if line.startswith("run directory:")] == [f"run directory: {run_dir}"], stdout


def test_two_processes_train_like_one_with_the_same_global_batch(workdir):
    assert _in_process(["run", str(workdir / "one.toml"), "--out", str(workdir / "one")]) == 0
    child = _staged(["run", "two.toml", "--nproc", "2", "--out", str(workdir / "two")], workdir)
    assert child.returncode == 0, child.stderr[-3000:]
    _assert_one_table(child.stdout, workdir / "two")

    summary = json.loads((workdir / "two" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["status"] == "completed"
    plan = json.loads((workdir / "two" / "plan.json").read_text())
    assert plan["distributed"]["global_batch"] == 8 and plan["data"]["batch_size"] == PER_PROCESS
    assert [s["find_unused"] for s in plan["distributed"]["stages"]] == [False, False]
    _assert_close_curves(_curve(workdir / "one"), _curve(workdir / "two"))
    _assert_close_weights(workdir / "one", workdir / "two")

    ranks = [[json.loads(line) for line in (workdir / "probe" / f"rank{r}.jsonl").read_text().splitlines()] for r in (0, 1)]
    gates = [[(e["stage"], e["step"], e["gate"]["passed"], e["gate"]["action"], e["gate"]["values"]) for e in rank
              if e["event"] == "gate_decided"] for rank in ranks]
    assert gates[0] == gates[1]
    assert [g[2:4] for g in gates[0]] == [(False, "warn")] + [(True, "continue")] * 3  # a's end gate, b's three evaluations
    assert [e["values"] for e in ranks[0] if e["event"] == "eval_end"] == [e["values"] for e in ranks[1] if e["event"] == "eval_end"]

    assert json.loads((workdir / "probe" / "touched-rank1.json").read_text()) == []  # rank 1 never touched the run dir
    assert not (workdir / "probe" / "touched-rank0.json").exists()  # (the watch is on the other ranks only)


def test_stagedsl_run_in_a_script_torchrun_started_trains_like_one_process(workdir):
    assert _in_process(["run", str(workdir / "one.toml"), "--out", str(workdir / "one")]) == 0
    child = _staged(["api", "two.toml", "--out", str(workdir / "api")], workdir, torchrun=True)
    assert child.returncode == 0, child.stderr[-3000:]
    assert json.loads((workdir / "api" / "summary.json").read_text())["world_size"] == 2
    _assert_close_curves(_curve(workdir / "one"), _curve(workdir / "api"))
    assert json.loads((workdir / "probe" / "touched-rank1.json").read_text()) == []


def test_a_killed_process_stops_the_group_and_resume_ends_like_the_uninterrupted_run(workdir):
    assert _in_process(["run", str(workdir / "one.toml"), "--out", str(workdir / "one")]) == 0
    killed = _staged(["run", "two.toml", "--nproc", "2", "--out", str(workdir / "two")], workdir, **{KILL: "1:b:6"})
    assert killed.returncode == 1, killed.stderr[-3000:]
    assert "error[E480]: process 1 of 2" in killed.stderr and "SIGKILL" in killed.stderr, killed.stderr[-1500:]
    assert "staged resume" in killed.stderr and "Traceback" not in killed.stderr
    layout = RunDir(workdir / "two")
    states = trainer_checkpoints.newest_first(trainer_checkpoints.list_states(layout))
    assert states and trainer_checkpoints.verify_state(states[0]) is None  # the last good checkpoint is intact
    assert json.loads(layout.summary.read_text())["status"] == "failed"
    shutil.copytree(workdir / "two", workdir / "two-then-one")

    resumed = _staged(["resume", str(workdir / "two")], workdir, torchrun=True)  # `torchrun ... resume` works too
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _assert_one_table(resumed.stdout, workdir / "two")
    _assert_close_weights(workdir / "one", workdir / "two")
    _assert_close_curves(_curve(workdir / "one"), _curve(workdir / "two"))

    assert _in_process(["resume", str(workdir / "two-then-one")]) == 0  # the same global batch in one process
    summary = json.loads((workdir / "two-then-one" / "summary.json").read_text())
    assert summary["world_size"] == 1 and summary["resumes"][-1]["changes"][0] == {
        "key": "processes", "old": 2, "new": 1, "status": "applied"}
    _assert_close_weights(workdir / "one", workdir / "two-then-one")


def test_a_run_of_one_process_goes_on_in_two(workdir):
    assert _in_process(["run", str(workdir / "one.toml"), "--out", str(workdir / "one")]) == 0
    killed = _staged(["run", "one.toml", "--out", str(workdir / "killed")], workdir, **{KILL: "0:b:6"})
    assert killed.returncode == -9, killed.stderr[-3000:]
    resumed = _staged(["resume", str(workdir / "killed"), "--nproc", "2"], workdir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    plan = json.loads((workdir / "killed" / "plan.json").read_text())
    assert plan["data"]["batch_size"] == PER_PROCESS and plan["distributed"]["world_size"] == 2
    _assert_close_weights(workdir / "one", workdir / "killed")
