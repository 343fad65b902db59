"""The study: TPE seeded and reproducible, resumed from its SQLite file after a kill; trials in worker
processes on one storage; a crashed trial failed and the study going on; a pruner stopping trials;
the grid without Optuna."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from stagedsl.cli.app import run_cli
from stagedsl.search.runner import run_search
from stagedsl.spec.loader import load_spec

from .conftest import StageCounter, read_json, same_weights, weights

TPE = 'sampler = "tpe"\ntrials = 4\nseed = 3'
LR_RANGE = '"stage.finetune.lr" = { low = 1e-4, high = 1e-2, log = true }'


def _quiet(_: str) -> None:
    pass


def _trials(summary: dict) -> list[tuple]:
    return [(r["trial"], r["state"], r["params"], r["value"]) for r in summary["trials"]]


@pytest.mark.slow
def test_a_tpe_study_is_reproducible_and_resumes_from_its_sqlite_file_after_a_kill(write_spec, tmp_path, registry):
    path = write_spec(search=TPE, space=LR_RANGE)
    spec = load_spec(path, registry=registry)
    first = run_search(spec, registry=registry, out=tmp_path / "a", say=_quiet).summary
    again = run_search(spec, registry=registry, out=tmp_path / "b", say=_quiet).summary
    assert _trials(first) == _trials(again)  # same seed, same trials, same values
    assert len({r["params"]["stage.finetune.lr"] for r in first["trials"]}) == 4

    env = {**os.environ, "STAGEDSL_DISABLE_PLUGIN_AUTOLOAD": "1"}
    killed = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "stagedsl", "search", str(path), "--out", str(killed)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (killed / "jobs" / "1.result.json").exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert (killed / "study.db").is_file()
    done = read_json(killed / "summary.json")["counts"]
    assert done["complete"] < 4

    assert run_cli(["search", str(killed)]) == 0  # goes on with the study in its SQLite file
    resumed = read_json(killed / "summary.json")
    assert _trials(resumed) == _trials(first)
    assert resumed["status"] == "completed" and resumed["counts"]["running"] == 0
    for number in range(4):
        assert same_weights(weights(killed / "trials" / str(number), "finetune"), weights(tmp_path / "a" / "trials" / str(number), "finetune"))


@pytest.mark.slow
def test_two_worker_processes_on_one_sqlite_storage_run_each_trial_once(write_spec, tmp_path, registry):
    import optuna

    path = write_spec(space='"stage.finetune.lr" = [1e-3, 3e-4, 1e-4, 3e-5]')
    assert run_cli(["search", str(path), "--out", str(tmp_path / "study"), "--jobs", "2"]) == 0
    summary = read_json(tmp_path / "study" / "summary.json")
    assert [r["trial"] for r in summary["trials"]] == [0, 1, 2, 3]
    assert sorted(r["params"]["stage.finetune.lr"] for r in summary["trials"]) == [3e-5, 1e-4, 3e-4, 1e-3]
    assert all(r["state"] == "complete" for r in summary["trials"])
    assert summary["counts"]["stages_trained"] == 2 + 4  # the shared stages once: the others waited for them
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path / 'study' / 'study.db'}")
    assert len(study.trials) == 4 and len({t.number for t in study.trials}) == 4
    assert all((tmp_path / "study" / "logs" / f"{n}.log").is_file() for n in range(4))


def test_a_crashed_trial_is_recorded_failed_and_the_study_goes_on(write_spec, tmp_path, registry):
    spec = load_spec(write_spec(space='"stage.finetune.lr" = [1e-3, 1e30, 1e-4]'), registry=registry)
    summary = run_search(spec, registry=registry, out=tmp_path / "study", say=_quiet).summary
    assert [r["state"] for r in summary["trials"]] == ["complete", "failed", "complete"]
    assert "E401" in summary["trials"][1]["error"]
    assert summary["best"]["trial"] in (0, 2) and summary["counts"]["failed"] == 1


def test_a_pruner_stops_trials_on_their_intermediate_values(write_spec, tmp_path, registry):
    spec = load_spec(write_spec(search='sampler = "grid"\npruner = { use = "threshold", upper = 0.0, n_warmup_steps = 9 }'),
                     registry=registry)
    counter = StageCounter()
    summary = run_search(spec, registry=registry, out=tmp_path / "study", callbacks=[counter], say=_quiet).summary
    assert [r["state"] for r in summary["trials"]] == ["pruned"] * 3
    assert all(r["pruned_by"]["by"] == "pruner" and "step 10" in r["pruned_by"]["message"] for r in summary["trials"])
    assert counter.starts == {"warmup": 1, "middle": 1, "finetune": 3}
    trial = read_json(tmp_path / "study" / "trials" / "1" / "summary.json")
    assert trial["status"] == "stopped_by_callback" and trial["stopped_by"]["code"] == "E808"
    assert trial["stages"]["finetune"]["status"] == "stopped_by_callback"


def test_the_grid_runs_without_optuna(write_spec, tmp_path, registry, monkeypatch):
    import stagedsl.search.study as study

    monkeypatch.setattr(study, "_has_optuna", lambda: False)
    monkeypatch.setattr(study, "_optuna", lambda: pytest.fail("the plain grid imported Optuna"))
    spec = load_spec(write_spec(), registry=registry)
    summary = run_search(spec, registry=registry, out=tmp_path / "study", say=_quiet).summary
    assert not (tmp_path / "study" / "study.db").exists()
    plain = read_json(tmp_path / "study" / "study.json")
    assert [t["state"] for t in plain["trials"]] == ["complete"] * 3
    assert summary["counts"]["stages_reused"] == 4 and summary["best"] is not None


def test_a_study_that_needs_optuna_says_which_extra_before_it_writes_anything(write_spec, tmp_path, registry, monkeypatch, capsys):
    import stagedsl.search.study as study
    from stagedsl.errors import PluginError, Problem

    def missing():
        raise PluginError([Problem(code="E103", message="a search with the random or tpe sampler needs `optuna`, which is not installed",
                                   hint="pip install 'stagedsl[search]'")])

    monkeypatch.setattr(study, "_optuna", missing)
    path = write_spec(search=TPE, space=LR_RANGE)
    assert run_cli(["search", str(path), "--out", str(tmp_path / "study")]) == 2
    assert "stagedsl[search]" in capsys.readouterr().err and not (tmp_path / "study").exists()


def test_staged_resume_of_a_search_goes_on_with_its_study(write_spec, tmp_path, registry, capsys):
    path = write_spec()
    assert run_cli(["search", str(path), "--out", str(tmp_path / "study"), "--trials", "1"]) == 0
    assert run_cli(["resume", str(tmp_path / "study"), "--set", "run.seed=2"]) == 2
    assert run_cli(["search", str(tmp_path / "study"), "--trials", "2"]) == 0
    assert [r["state"] for r in read_json(tmp_path / "study" / "summary.json")["trials"]] == ["complete", "complete"]
    assert run_cli(["resume", str(tmp_path / "study")]) == 0
    assert capsys.readouterr().out.strip().endswith(str(tmp_path / "study"))


def test_a_trial_process_that_died_is_recorded_with_the_time_it_ran(tmp_path):
    from stagedsl.search.layout import SearchDir
    from stagedsl.search.trials import crashed_result

    search_dir = SearchDir(tmp_path / "study")
    search_dir.root.mkdir()
    result = crashed_result(search_dir, 3, {"stage.finetune.lr": 1e-3}, -9, wall_time_s=2.5)
    assert result["state"] == "failed" and result["error"][0]["code"] == "E803"
    assert 2.5 <= result["wall_time_s"] < 3.5  # the process's own time, not the moment it was recorded
