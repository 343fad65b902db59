"""`staged run` on a matrix spec: every member trained as its own run, the summary, a crash
that leaves the others and the summary intact and that `staged resume` finishes, and
`--jobs 2` (members in their own processes) giving the members `--jobs 1` gives."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from stagedsl import Callback, hookimpl
from stagedsl.cli.app import run_cli

from .fixtures import PAIRS

MEMBERS = ["plain-s1", "plain-s2", "fused-s1", "fused-s2"]


def _summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def _weights(run: Path, member: str) -> dict:
    return load_file(str(run / "members" / member / "stages" / "all" / "last.safetensors"))


@pytest.fixture(scope="module")
def matrix_run(tmp_path_factory) -> Path:
    """PAIRS trained once, in this process (`--jobs 1`)."""
    from stagedsl.registry import Registry, set_registry

    folder = tmp_path_factory.mktemp("matrix")
    spec = folder / "pairs.toml"
    spec.write_text(PAIRS)
    set_registry(Registry.load(autoload=False))
    try:
        assert run_cli(["run", str(spec), "--out", str(folder / "run"), "--jobs", "1"]) == 0
    finally:
        set_registry(None)
    return folder / "run"


def test_every_member_is_an_ordinary_run_and_the_summary_names_their_metrics(matrix_run):
    summary = _summary(matrix_run)
    assert summary["kind"] == "matrix" and summary["status"] == "completed" and summary["failed"] == []
    assert list(summary["members"]) == MEMBERS
    for name, member in summary["members"].items():
        run = matrix_run / "members" / name
        assert (run / "plan.json").is_file() and (run / "stages" / "all" / "best.safetensors").is_file()
        assert json.loads((run / "summary.json").read_text())["status"] == "completed"
        assert json.loads((run / "plan.json").read_text())["run"]["seed"] == member["seed"]
        assert {"accuracy", "f1", "precision", "recall", "roc_auc"} <= set(member["metrics"]["val"])
        assert set(member["metrics"]) == {"val", "test"}
        with np.load(matrix_run / "predictions" / f"{name}.npz") as cached:
            assert cached["val_outputs"].shape == (80, 2) and cached["val_target"].shape == (80,)
    for name in ("mean", "stack"):
        ensemble = summary["ensembles"][name]
        assert ensemble["status"] == "completed" and ensemble["members"] == MEMBERS
        assert {"accuracy", "f1"} <= set(ensemble["metrics"]["val"])
    assert summary["ensembles"]["stack"]["cv"]["folds"] == 3
    assert summary["best_member"] in MEMBERS and summary["monitor"] == "accuracy"
    index = json.loads((matrix_run / "matrix.json").read_text())
    assert [m["name"] for m in index["members"]] == MEMBERS and (matrix_run / "spec.toml").is_file()


def test_members_differ_by_variant_and_seed(matrix_run):
    plain1, plain2, fused1 = (_weights(matrix_run, m) for m in ("plain-s1", "plain-s2", "fused-s1"))
    assert not torch.equal(plain1["classifier.1.weight"], plain2["classifier.1.weight"])
    assert any(k.startswith("fusion.attention") for k in fused1) and not any(k.startswith("fusion.attention") for k in plain1)


def test_a_run_refuses_to_mix_into_an_earlier_one(matrix_run, registry, capsys):
    spec = matrix_run.parent / "pairs.toml"
    assert run_cli(["run", str(spec), "--out", str(matrix_run)]) == 2
    assert "error[E091]" in capsys.readouterr().err


def test_jobs_2_gives_the_members_jobs_1_gives(matrix_run, tmp_path, registry, capsys):
    spec = matrix_run.parent / "pairs.toml"
    chosen = ["plain-s2", "fused-s1"]
    assert run_cli(["run", str(spec), "--out", str(tmp_path / "run"), "--jobs", "2", "--member", "plain-s2", "--member", "fused-s1"]) == 0
    err = capsys.readouterr().err
    assert "in its own process" in err
    summary = _summary(tmp_path / "run")
    assert [n for n, m in summary["members"].items() if m["status"] == "completed"] == chosen
    assert summary["members"]["plain-s1"]["status"] == "pending"
    for name in chosen:
        one, two = _weights(matrix_run, name), _weights(tmp_path / "run", name)
        assert one.keys() == two.keys() and all(torch.equal(one[k], two[k]) for k in one), name
        with np.load(matrix_run / "predictions" / f"{name}.npz") as a, np.load(tmp_path / "run" / "predictions" / f"{name}.npz") as b:
            assert np.array_equal(a["val_outputs"], b["val_outputs"]) and np.array_equal(a["test_outputs"], b["test_outputs"])
        assert (tmp_path / "run" / "logs" / f"{name}.log").read_text().strip()
    assert summary["ensembles"]["mean"]["members"] == chosen and summary["ensembles"]["mean"]["missing"] == ["plain-s1", "fused-s2"]
    assert summary["pending"] == ["plain-s1", "fused-s2"] and summary["failed"] == []
    # the rest is trained by resume, in this process
    assert run_cli(["resume", str(tmp_path / "run"), "--jobs", "1"]) == 0
    assert _summary(tmp_path / "run")["status"] == "completed"
    assert torch.equal(_weights(matrix_run, "plain-s1")["classifier.1.weight"], _weights(tmp_path / "run", "plain-s1")["classifier.1.weight"])


class CrashOnce(Callback):
    """Raises at stage `all`'s evaluation at step 4, unless the `marker` file exists."""

    def __init__(self, marker: str):
        self.marker = marker

    def eval_end(self, state):
        if state.stage_name == "all" and state.stage_step == 4 and not os.path.exists(self.marker):
            raise RuntimeError("the GPU fell off the bus")


class CrashPlugin:
    @hookimpl
    def register_callbacks(self, register):
        register("crash_once", CrashOnce)


def test_a_crashing_member_leaves_the_others_and_the_summary_intact_and_resume_finishes_it(tmp_path, register_plugin, capsys):
    register_plugin(CrashPlugin(), name="crash")
    marker = tmp_path / "fixed"
    text = PAIRS.replace("model = { fusion = true }", f'model = {{ fusion = true }}\ncallbacks = [{{ use = "crash_once", marker = "{marker}" }}]')
    spec = tmp_path / "pairs.toml"
    spec.write_text(text)
    run = tmp_path / "run"
    assert run_cli(["run", str(spec), "--out", str(run)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "error[E711]" in err and "the GPU fell off the bus" in err
    summary = _summary(run)
    assert summary["status"] == "incomplete" and summary["failed"] == ["fused-s1", "fused-s2"]
    assert [summary["members"][m]["status"] for m in MEMBERS] == ["completed", "completed", "failed", "failed"]
    assert "the GPU fell off the bus" in summary["members"]["fused-s1"]["error"]
    assert summary["members"]["plain-s1"]["metrics"]["val"]["accuracy"] >= 0.0
    assert summary["ensembles"]["mean"]["members"] == ["plain-s1", "plain-s2"]
    assert summary["ensembles"]["mean"]["missing"] == ["fused-s1", "fused-s2"]
    assert (run / "members" / "fused-s1" / "stages" / "head" / "best.safetensors").is_file()  # its last good checkpoints stay
    plain_before = (run / "members" / "plain-s1" / "stages" / "all" / "last.safetensors").stat().st_mtime_ns

    marker.write_text("")
    assert run_cli(["resume", str(run)]) == 0
    err = capsys.readouterr().err
    assert "member plain-s1: completed, skipped" in err and "member fused-s1 (1/2): resuming" in err
    summary = _summary(run)
    assert summary["status"] == "completed" and summary["failed"] == []
    assert summary["ensembles"]["stack"]["members"] == MEMBERS and summary["ensembles"]["stack"]["missing"] == []
    resumed = json.loads((run / "members" / "fused-s1" / "summary.json").read_text())
    assert resumed["status"] == "completed" and resumed["resumes"] and resumed["resumes"][0]["at"]["stage"] == "all"
    assert (run / "members" / "plain-s1" / "stages" / "all" / "last.safetensors").stat().st_mtime_ns == plain_before


def test_member_globs_that_match_nothing_are_refused(matrix_run, tmp_path, registry, capsys):
    spec = matrix_run.parent / "pairs.toml"
    assert run_cli(["run", str(spec), "--out", str(tmp_path / "x"), "--member", "fusd-*"]) == 2
    err = capsys.readouterr().err
    assert "error[E709]" in err and 'did you mean "fused-s' in err


def test_a_member_process_that_dies_is_recorded_and_the_other_members_go_on(matrix_run, tmp_path, registry, monkeypatch, capsys):
    import shutil
    import sys

    from stagedsl.matrix import jobs

    run = tmp_path / "run"
    shutil.copytree(matrix_run, run)
    for name in ("plain-s1", "plain-s2"):
        shutil.rmtree(run / "members" / name)
        (run / "predictions" / f"{name}.npz").unlink()
    real = jobs.worker_command

    def command(matrix_dir, name, resume, device, *nproc):
        if name == "plain-s2":  # this member's process is killed as the OOM killer would
            return [sys.executable, "-c", "import os, signal; print('allocating...', flush=True); os.kill(os.getpid(), signal.SIGKILL)"]
        return real(matrix_dir, name, resume, device, *nproc)

    monkeypatch.setattr(jobs, "worker_command", command)
    assert run_cli(["resume", str(run), "--jobs", "2"]) == 1
    err = capsys.readouterr().err
    assert "error[E711]" in err and "killed by signal 9" in err and "allocating..." in err
    summary = _summary(run)
    assert summary["failed"] == ["plain-s2"] and summary["members"]["plain-s1"]["status"] == "completed"
    assert summary["members"]["plain-s2"]["status"] == "failed" and "E703" in summary["members"]["plain-s2"]["error"]
    assert summary["ensembles"]["mean"]["missing"] == ["plain-s2"]
    monkeypatch.setattr(jobs, "worker_command", real)
    assert run_cli(["resume", str(run), "--jobs", "2"]) == 0
    assert _summary(run)["status"] == "completed"


def test_an_ensemble_added_to_a_finished_run_needs_no_training(matrix_run, tmp_path, registry, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(matrix_run, run)
    before = {p: p.stat().st_mtime_ns for p in (run / "members").rglob("*.safetensors")}
    spec = tmp_path / "pairs.toml"
    spec.write_text(PAIRS + '\n[[ensemble]]\nname = "greedy"\nuse = "greedy"\nmembers = ["plain-*"]\nrounds = 4\n')
    assert run_cli(["ensemble", str(run), "--spec", str(spec), "--name", "greedy", "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert list(records) == ["greedy"] and records["greedy"]["members"] == ["plain-s1", "plain-s2"]
    assert sum(records["greedy"]["fitted"]["weights"]) == pytest.approx(1.0) and len(records["greedy"]["fitted"]["chosen"]) == 4
    summary = _summary(run)
    assert set(summary["ensembles"]) == {"mean", "stack", "greedy"} and summary["status"] == "completed"
    assert {p: p.stat().st_mtime_ns for p in (run / "members").rglob("*.safetensors")} == before
    assert run_cli(["eval", str(run), "--json"]) == 0
    assert "greedy" in [row["name"] for row in json.loads(capsys.readouterr().out)["rows"]]
    other = tmp_path / "other.toml"
    other.write_text(PAIRS.replace("seeds = [1, 2]", "seeds = [1, 3]"))
    assert run_cli(["ensemble", str(run), "--spec", str(other)]) == 2
    assert "error[E702]" in capsys.readouterr().err
