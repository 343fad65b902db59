"""What a finished search leaves: summary.json (best, counts, every trial), the table, `--json`,
trial folders that are complete runs with their parameters, and a `best.toml` that runs."""

from __future__ import annotations

import json
import tomllib

import pytest

from stagedsl.cli.app import run_cli

from .conftest import read_json, same_weights, weights


def test_a_finished_search_leaves_its_summary_table_and_a_best_spec_that_runs(write_spec, tmp_path, registry, capsys):
    path = write_spec()
    study = tmp_path / "study"
    assert run_cli(["search", str(path), "--out", str(study), "--json"]) == 0
    out, err = capsys.readouterr()
    summary = json.loads(out)
    assert summary == read_json(study / "summary.json")
    assert summary["kind"] == "search" and summary["status"] == "completed" and summary["trials_planned"] == 3
    values = {r["trial"]: r["value"] for r in summary["trials"]}
    best = min(values, key=values.get)
    assert summary["best"]["trial"] == best and summary["best"]["value"] == values[best]
    assert summary["best"]["params"] == {"stage.finetune.lr": [1e-3, 3e-4, 1e-4][best]}
    assert summary["counts"] == {"complete": 3, "pruned": 0, "failed": 0, "running": 0, "stages_reused": 4, "stages_trained": 5}
    header = err.splitlines()[err.splitlines().index(next(l for l in err.splitlines() if l.startswith("trial  ")))]
    assert header.split() == ["trial", "stage.finetune.lr", "val/mse", "state", "time", "reused"]
    assert f"best: trial {best}, val/mse = " in err
    for number in range(3):  # each trial is a complete run with its parameters recorded
        trial = study / "trials" / str(number)
        assert read_json(trial / "trial.json")["params"] == {"stage.finetune.lr": [1e-3, 3e-4, 1e-4][number]}
        assert read_json(trial / "plan.json")["stages"][2]["lr"] == [1e-3, 3e-4, 1e-4][number]
        assert tomllib.loads((trial / "spec.toml").read_text())["stage"][2]["lr"] == [1e-3, 3e-4, 1e-4][number]

    best_spec = study / "best.toml"
    document = tomllib.loads(best_spec.read_text())
    assert "search" not in document and document["stage"][2]["lr"] == [1e-3, 3e-4, 1e-4][best]
    assert run_cli(["run", str(best_spec), "--out", str(tmp_path / "best")]) == 0
    assert same_weights(weights(tmp_path / "best", "finetune"), weights(study / "trials" / str(best), "finetune"))


def test_search_again_on_its_folder_goes_on_and_trials_raises_the_count(write_spec, tmp_path, registry, capsys):
    path = write_spec(space='"stage.finetune.lr" = [1e-3, 3e-4, 1e-4, 3e-5]')
    study = tmp_path / "study"
    assert run_cli(["search", str(path), "--out", str(study), "--trials", "2"]) == 0
    assert [r["trial"] for r in read_json(study / "summary.json")["trials"]] == [0, 1]
    assert run_cli(["search", str(study)]) == 0  # nothing left to do
    assert len(read_json(study / "summary.json")["trials"]) == 2
    assert run_cli(["search", str(study), "--trials", "9"]) == 0  # the grid has 4 points
    summary = read_json(study / "summary.json")
    assert [r["params"]["stage.finetune.lr"] for r in summary["trials"]] == [1e-3, 3e-4, 1e-4, 3e-5]
    assert summary["counts"]["stages_trained"] == 2 + 4
    capsys.readouterr()
    assert run_cli(["search", str(path), "--out", str(study)]) == 2
    assert "error[E091]" in capsys.readouterr().err
    assert run_cli(["search", str(study), "--set", "run.seed=1"]) == 2


RELATIVE = """
[run]
name = "rel"
seed = 0
threads = 1

[model]
use = "mlp"
in_features = 4
hidden = [8]
out_features = 2

[data]
use = "npz"
train = "data/train.npz"
val = "data/train.npz"
batch_size = 4

[defaults]
loss = "mse"

[[stage]]
name = "first"
steps = 2
lr = 1e-3

[[stage]]
name = "second"
steps = 2
lr = 1e-3

[search]
metric = "val/loss"
sampler = "grid"

[search.space]
"stage.second.lr" = [1e-3, 1e-2]
"""


def test_a_spec_s_relative_paths_hold_in_its_trials_and_its_best_spec(tmp_path, registry, monkeypatch):
    import numpy as np

    folder = tmp_path / "project"
    (folder / "data").mkdir(parents=True)
    np.savez(folder / "data" / "train.npz", x=np.zeros((8, 4), "float32"), y=np.zeros((8, 2), "float32"))
    (folder / "spec.toml").write_text(RELATIVE)
    monkeypatch.chdir(tmp_path)  # not the spec's folder: `data/train.npz` is read from the spec's
    assert run_cli(["search", "project/spec.toml", "--out", "study"]) == 0
    assert read_json(tmp_path / "study" / "summary.json")["counts"]["complete"] == 2
    best = tmp_path / "study" / "best.toml"
    assert tomllib.loads(best.read_text())["paths_from"] == str(folder)
    monkeypatch.chdir(tmp_path / "study")
    assert run_cli(["run", "best.toml", "--out", str(tmp_path / "best")]) == 0


def test_resume_of_a_search_with_nproc_says_its_trials_run_one_process_each(tmp_path, registry, capsys):
    from stagedsl.cli.app import run_cli
    from stagedsl.search.layout import INDEX_FILE

    search_dir = tmp_path / "study"
    search_dir.mkdir()
    (search_dir / INDEX_FILE).write_text("{}")  # a search's folder as far as resume can tell
    assert run_cli(["resume", str(search_dir), "--nproc", "2"]) == 2
    err = capsys.readouterr().err
    assert "error[E090]" in err and "is a search: its trials run one process each, so --nproc does not apply" in err
    assert f"staged search {search_dir} --jobs N" in err and "Traceback" not in err


def test_a_search_and_a_matrix_claim_a_folder_alike(tmp_path):
    from stagedsl.errors import UsageError
    from stagedsl.matrix.layout import MatrixDir
    from stagedsl.search.layout import SearchDir, claim_folder

    said: list[str] = []
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(UsageError) as refused:  # other files: refused, whichever kind comes
        claim_folder(folder, overwrite=False, say=said.append, go_on="go on")
    assert refused.value.problems[0].code == "E443"
    search = SearchDir(folder)
    search.index_file.write_text("{}")
    (folder / "study.db").write_text("")
    (folder / "trials").mkdir()
    with pytest.raises(UsageError) as refused:  # a search is a run, for a matrix too
        claim_folder(folder, overwrite=False, say=said.append, go_on="go on")
    assert refused.value.problems[0].code == "E091"
    claim_folder(folder, overwrite=True, say=said.append, go_on="go on")  # a matrix run over a search: none of it stays
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"] and not MatrixDir(folder).holds_run()
    assert said == [f"--overwrite: deleting search.json, study.db, trials in {folder}"]
