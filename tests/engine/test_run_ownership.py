"""One owner per run directory, and nothing of a run lost to the next command.

Child processes run the `staged` CLI on the three-stage spec of `test_resume_kill` and are
killed or paused at a chosen point (`kill_switch.py`); the parent then does what a user
(or a second terminal) would: `staged run` into the same folder, a second `staged resume`,
an edited ``plan.json``, a second SIGTERM.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stagedsl.cli.app import run_cli
from stagedsl.plan.model import Plan
from stagedsl.run_lock import holder

from .kill_switch import ENV, PAUSE_DIR
from .test_resume_kill import HELPER, SPEC, _assert_same_as, _killed_run, kill_registry, reference  # noqa: F401 - fixtures


def _snapshot(folder: Path) -> dict[str, str]:
    """Every file below `folder` (the lock file aside) with its SHA-256."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"}


def _train_steps(run_dir: Path) -> list[tuple[str, int]]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["stage"], r["stage_step"]) for r in rows if r["event"] == "train"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
def test_a_run_killed_before_its_first_stage_ended_is_kept_until_overwrite_says_what_it_deletes(kill_registry, tmp_path, capsys):
    run_dir = _killed_run(tmp_path, "step_end:a:5")  # a checkpoint at step 4, no summary.json yet
    assert (run_dir / "stages/a/state/step_000000004/manifest.json").is_file() and not (run_dir / "summary.json").exists()
    before = _snapshot(run_dir)

    assert run_cli(["run", str(tmp_path / "spec.toml"), "--out", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert "error[E442]" in err and "stopped before its first stage ended" in err and f"staged resume {run_dir}" in err
    assert _snapshot(run_dir) == before, "a refused run deleted or changed files of the run that was there"

    assert run_cli(["run", str(tmp_path / "spec.toml"), "--out", str(run_dir), "--overwrite"]) == 0
    err = capsys.readouterr().err
    assert f"--overwrite: deleting plan.json, plans/, spec.toml, metrics.jsonl, tb/, stages/ in {run_dir}" in err
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "completed"


def test_a_folder_holding_other_files_is_refused_and_overwrite_deletes_none_of_them(kill_registry, tmp_path, capsys):
    (tmp_path / "spec.toml").write_text(SPEC.replace("steps = 20", "steps = 4").replace("steps = 16", "steps = 4"))
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert run_cli(["run", str(tmp_path / "spec.toml"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "error[E443]" in err and "notes.txt" in err and "deletes none of them" in err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert run_cli(["run", str(tmp_path / "spec.toml"), "--out", str(out), "--overwrite"]) == 0
    assert (out / "notes.txt").read_text() == "mine" and (out / "summary.json").is_file()
    assert "--overwrite: deleting" not in capsys.readouterr().err  # there was nothing of a run to delete


@pytest.mark.slow
def test_two_resumes_of_one_run_at_once_one_is_refused_and_the_log_has_no_duplicate_step(kill_registry, tmp_path, capsys):
    run_dir = _killed_run(tmp_path, "step_end:a:5")
    dead = holder(run_dir)["pid"]  # the killed run's lock file stays behind, naming a process that is gone
    assert not _alive(dead)
    pause = tmp_path / "pause"
    pause.mkdir()
    env = {**os.environ, "STAGEDSL_DISABLE_PLUGIN_AUTOLOAD": "1", ENV: "pause:a:6", PAUSE_DIR: str(pause)}
    first = subprocess.Popen([sys.executable, str(HELPER), "resume", str(run_dir)], cwd=tmp_path, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (pause / "paused").exists():  # the first resume holds the run (a stale lock blocked it not)
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()[1][-3000:]
            time.sleep(0.05)
        held = _snapshot(run_dir)

        assert run_cli(["resume", str(run_dir)]) == 1
        err = capsys.readouterr().err
        assert "error[E441]" in err and f"in use by process {first.pid} (`staged resume`" in err, err
        assert run_cli(["run", str(tmp_path / "spec.toml"), "--out", str(run_dir), "--overwrite"]) == 1
        assert f"process {first.pid}" in capsys.readouterr().err
        assert run_cli(["export", str(run_dir)]) == 1
        assert "error[E441]" in capsys.readouterr().err
        assert _snapshot(run_dir) == held, "a refused command touched the run"
    finally:
        (pause / "go").write_text("")
        _, stderr = first.communicate(timeout=120)
    assert first.returncode == 0, stderr[-3000:]

    steps = _train_steps(run_dir)
    assert len(steps) == len(set(steps)) == 20 + 20 + 16
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and len(summary["resumes"]) == 1
    assert holder(run_dir)["pid"] == first.pid and not _alive(first.pid)  # released with its process
    assert run_cli(["export", str(run_dir), "--format", "package"]) == 0, capsys.readouterr().err


@pytest.mark.slow
def test_an_edited_plan_is_refused_naming_what_changed_and_only_resume_set_changes_a_run(kill_registry, tmp_path, capsys):
    run_dir = _killed_run(tmp_path, "step_end:b:10")
    plan_file = run_dir / "plan.json"
    original = plan_file.read_text()
    data = json.loads(original)
    data["stages"][2]["lr"] = 0.5  # a future stage's LR, edited by hand
    plan_file.write_text(json.dumps(data, indent=2))
    before = _snapshot(run_dir)
    del before["plan.json"]

    for extra in ([], ["--set", "stage.c.lr=0.25"]):
        assert run_cli(["resume", str(run_dir), *extra]) == 2
        err = capsys.readouterr().err
        assert "error[E444]" in err and "stages.c.lr 0.01 -> 0.5" in err and "restore it from plans/" in err, err
        assert "--set changes" not in err
    data["hash"] = Plan.from_dict(data).hash  # a forged hash that fits the edit: still no plan this run wrote
    plan_file.write_text(json.dumps(data, indent=2))
    assert run_cli(["resume", str(run_dir)]) == 2
    assert "is not a plan this run wrote" in capsys.readouterr().err
    plan_file.write_text(original)
    after = _snapshot(run_dir)
    del after["plan.json"]
    assert after == before, "a refused resume wrote into the run"

    assert run_cli(["resume", str(run_dir), "--set", "stage.c.lr=0.25"]) == 0, capsys.readouterr().err
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    used = {r["lr/default"] for r in rows if r["event"] == "train" and r["stage"] == "c"}
    assert used == {0.25}  # what the record says was applied is what trained
    record = json.loads((run_dir / "summary.json").read_text())["resumes"][0]
    assert {"key": "stage.c.lr", "old": 0.01, "new": 0.25, "status": "applied"} in record["changes"]


@pytest.mark.slow
def test_a_second_sigterm_stops_at_once_with_143_and_says_which_checkpoint_is_left(reference, kill_registry, tmp_path, capsys):
    (tmp_path / "spec.toml").write_text(SPEC)
    env = {**os.environ, "STAGEDSL_DISABLE_PLUGIN_AUTOLOAD": "1", ENV: "sigterm2:b:10"}
    child = subprocess.run([sys.executable, str(HELPER), "run", "spec.toml", "--out", "run"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120)
    assert child.returncode == 128 + signal.SIGTERM, child.stderr[-3000:]
    assert "error[E440]" in child.stderr and "stopped at once by a second SIGTERM" in child.stderr, child.stderr[-3000:]
    assert "the last checkpoint `stages/b/state/step_000000008` is intact" in child.stderr
    assert "staged resume run" in child.stderr and "Traceback" not in child.stderr
    run_dir = tmp_path / "run"
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "interrupted"
    assert run_cli(["resume", str(run_dir)]) == 0, capsys.readouterr().err
    _assert_same_as(reference, run_dir)


@pytest.mark.parametrize("processes, told", [(1, "continue with: staged resume runs/x"), (2, "continue with: staged resume runs/x --nproc 2")])
def test_a_second_signal_tells_how_to_resume_with_as_many_processes(processes, told):
    from stagedsl.engine.signals import StoppedAtOnce

    error = StoppedAtOnce(signal.SIGTERM).error("stage `a` step 3", "stages/a/resume/step_2", "runs/x", processes=processes)
    problem = error.problems[0]
    assert problem.code == "E440" and "the last checkpoint `stages/a/resume/step_2` is intact" in problem.message
    assert problem.hint == told
