"""`staged report` of a matrix run and of a search: what their pages hold, the figures beside
them, parameter importance from the study (and the plain reason when there is none), and that
reading a search changes nothing in it."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from stagedsl.cli.app import run_cli
from stagedsl.report.matrix import BEST_EDGE
from stagedsl.report.search import STATE_COLOR, Trial, importance
from stagedsl.search.layout import SearchDir

from .composed import WRITTEN, matrix_report, matrix_run, search_report, search_run  # noqa: F401  (fixtures)
from .conftest import assert_not_blank, pixels_near, summary


def _written(folder: Path) -> dict:
    return json.loads((folder / WRITTEN).read_text())


def _images(folder: Path) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', (folder / "index.html").read_text())


def test_a_matrix_report_compares_then_shows_every_member(matrix_report, matrix_run):
    written = _written(matrix_report)
    members = list(summary(matrix_run)["members"])
    assert written["sections"][:3] == ["Members and ensembles", "Bar chart", "Ensembles"]
    for name in members:
        at = written["sections"].index(f"Member {name}")
        assert written["sections"][at + 1:at + 3] == [f"Run · member {name}", f"Diagnosis · member {name}"]
    assert _images(matrix_report) == ["comparison.png"] + [f"members/{m}/{f}.png" for m in members for f in ("loss", "metrics", "lr")]
    assert sorted(written["figures"]) == sorted(str(matrix_report / f) for f in _images(matrix_report))
    bars = matrix_report / "comparison.png"
    assert_not_blank(bars)
    assert pixels_near(bars, BEST_EDGE, tolerance=25) > 50  # the best bar of each panel has a gold edge


def test_a_member_that_has_not_run_is_named_not_drawn(matrix_run, tmp_path):
    import shutil

    run = tmp_path / "matrix"
    shutil.copytree(matrix_run, run)
    shutil.rmtree(run / "members" / "fused-s1")
    assert run_cli(["report", str(run), "--out", str(tmp_path / "page")]) == 0
    html = (tmp_path / "page" / "index.html").read_text()
    section = re.search(r'<section id="member-fused-s1">(.*?)</section>', html, flags=re.S).group(1)
    assert "no plan.json, so there is nothing to draw" in section
    assert "members/plain-s1/loss.png" in html and "members/fused-s1/" not in html


def test_a_search_report_shows_trials_importance_and_the_best_trial(search_report, search_run):
    written = _written(search_report)
    results = summary(search_run)
    best = results["best"]["trial"]
    assert written["sections"][:4] == ["Objective per trial", "Objective against each parameter", "Trials", "Parameter importance"]
    assert written["sections"][4] == f"Best trial: {best}"
    images = _images(search_report)
    assert images[:2] == ["objective.png", "params.png"]
    assert images[-3:] == [f"trials/{best}/{f}.png" for f in ("loss", "metrics", "lr")]
    objective = search_report / "objective.png"
    assert_not_blank(objective)
    for state in ("complete", "pruned", "failed"):  # every state has its colour in the figure
        assert pixels_near(objective, STATE_COLOR[state], tolerance=25) > 20, state
    html = (search_report / "index.html").read_text()
    section = re.search(r'<section id="importance">(.*?)</section>', html, flags=re.S).group(1)
    # two axes, but only one varies among the complete trials (the gate axis decides complete or pruned)
    assert "importance.png" in section or "Optuna could not compute" in section or "nothing to attribute" in section


def _study(tmp_path: Path, trials: list[tuple[dict, float | None]], name: str = "s") -> tuple[SearchDir, dict, list[Trial]]:
    """An Optuna study in tmp_path/study.db with the given (params, value) trials (None: failed), as a search keeps it."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name=name, storage=storage, direction="minimize")
    distributions = {"lr": FloatDistribution(1e-4, 1e-2, log=True), "width": CategoricalDistribution([4, 8, 16])}
    rows = []
    for number, (params, value) in enumerate(trials):
        state = optuna.trial.TrialState.COMPLETE if value is not None else optuna.trial.TrialState.FAIL
        study.add_trial(optuna.trial.create_trial(params=params, distributions={k: distributions[k] for k in params}, value=value,
                                                  state=state))
        rows.append(Trial(number, "complete" if value is not None else "failed", value, params))
    return SearchDir(tmp_path), {"storage": storage, "study": name}, rows


def test_importance_comes_from_the_study_and_ranks_the_parameter_that_matters(tmp_path):
    points = [({"lr": lr, "width": w}, (lr * 1e3 - 3) ** 2 + 0.001 * w) for lr in (1e-4, 3e-4, 1e-3, 3e-3, 1e-2) for w in (4, 8, 16)]
    search_dir, summary_, trials = _study(tmp_path, points)
    before = hashlib.sha256((tmp_path / "study.db").read_bytes()).hexdigest()
    found, why = importance(search_dir, summary_, trials)
    assert why == "From 15 complete trials." and set(found) == {"lr", "width"}
    assert found["lr"] > found["width"] and abs(sum(found.values()) - 1.0) < 1e-6
    assert hashlib.sha256((tmp_path / "study.db").read_bytes()).hexdigest() == before  # read only


def test_a_parameter_that_improves_every_pair_of_grid_trials_gets_a_share(tmp_path):
    # the mesh grid's shape: width matters most, but the larger lr is better in every pair too
    points = [({"lr": lr, "width": w}, 1.5 - 0.1 * (w == 16) - 0.05 * (lr == 1e-3)) for w in (8, 16) for lr in (3e-4, 1e-3)
              for _ in range(2)]
    search_dir, summary_, trials = _study(tmp_path, points)
    found, _ = importance(search_dir, summary_, trials)
    assert found["width"] > found["lr"] > 0.01  # PED-ANOVA ranked lr first (0.99) here


def test_importance_says_plainly_when_it_cannot_be_computed(tmp_path):
    one_axis = [Trial(i, "complete", float(i), {"lr": 10.0 ** -i}) for i in range(3)]
    found, why = importance(SearchDir(tmp_path), {"storage": f"sqlite:///{tmp_path / 'study.db'}"}, one_axis)
    assert found is None and "this search has one (lr)" in why
    few = [Trial(0, "complete", 1.0, {"lr": 1e-3, "width": 4}), Trial(1, "failed", None, {"lr": 1e-4, "width": 8})]
    found, why = importance(SearchDir(tmp_path), {}, few)
    assert found is None and "at least two complete trials; this search has 1" in why
    two = [Trial(0, "complete", 1.0, {"lr": 1e-3, "width": 4}), Trial(1, "complete", 2.0, {"lr": 1e-4, "width": 8})]
    found, why = importance(SearchDir(tmp_path), {"storage": "postgresql://db.example/study"}, two)
    assert found is None and "reads only a SQLite study file" in why


def test_without_optuna_the_page_says_which_extra_computes_the_importance(tmp_path, monkeypatch):
    import sys

    points = [({"lr": lr, "width": w}, lr * w) for lr, w in ((1e-4, 4), (1e-3, 8), (1e-2, 16))]
    search_dir, summary_, trials = _study(tmp_path, points)
    monkeypatch.setitem(sys.modules, "optuna", None)  # `import optuna` now raises ImportError
    found, why = importance(search_dir, summary_, trials)
    assert found is None and "pip install 'stagedsl[search]'" in why


def test_a_gate_threshold_far_off_the_values_is_named_not_drawn():
    from stagedsl.report.figures import _on_scale

    seen = [0.08, 0.09, 0.085]
    assert _on_scale(0.1, seen) and _on_scale(0.0, seen) and _on_scale(0.8, [0.5, 0.52])  # near the curve: drawn as a line
    assert not _on_scale(1e9, seen) and not _on_scale(-5.0, seen)  # would flatten the curve to a line at the bottom


def test_a_folder_with_a_broken_matrix_or_search_index_exits_2(tmp_path, capsys):
    for index, code, says in (("matrix.json", "E702", "is not a matrix run directory"), ("search.json", "E802", "is not a search run directory")):
        folder = tmp_path / index.split(".")[0]
        folder.mkdir()
        (folder / index).write_text("{}")
        assert run_cli(["report", str(folder)]) == 2
        err = capsys.readouterr().err
        assert f"error[{code}]" in err and says in err and "Traceback" not in err


def test_a_trial_names_the_trial_its_reused_stages_came_from(search_run, tmp_path):
    trial = summary(search_run)["trials"][2]
    assert trial["reused"] == {"warmup": {"from": "trials/0", "stage": "warmup", "hash": trial["reused"]["warmup"]["hash"]}}
    assert run_cli(["report", str(search_run / "trials" / "2"), "--out", str(tmp_path / "page")]) == 0
    stages = re.search(r'<section id="stages">(.*?)</section>', (tmp_path / "page" / "index.html").read_text(), flags=re.S).group(1)
    rows = re.findall(r"<tr>(.*?)</tr>", stages)[1:]
    assert "<td>from trials/0</td>" in rows[0] and "<td>from trials/0</td>" not in rows[1]  # warmup adopted, finetune trained


def test_a_search_or_matrix_without_its_summary_yet_still_renders_and_says_so(search_run, matrix_run, tmp_path):
    import shutil

    for run, says in ((search_run, ["No trial has finished yet: nothing to draw.", "there is no best trial yet"]),
                      (matrix_run, ["no summary.json yet", "No member or ensemble has validation metrics to draw yet."])):
        copy = tmp_path / run.parent.name
        shutil.copytree(run, copy)
        (copy / "summary.json").unlink()
        assert run_cli(["report", str(copy), "--out", str(tmp_path / f"{copy.name}-page")]) == 0
        html = (tmp_path / f"{copy.name}-page" / "index.html").read_text()
        assert all(text in html for text in says), copy.name


def test_the_search_page_reads_files_not_the_search_runner(search_run, tmp_path):
    """Drawn from plain data: only the search's folder layout is imported, not its runner, study or trials (nor torch)."""
    import subprocess
    import sys

    code = ("import sys; from stagedsl.report.build import write_report; "
            f"write_report({str(search_run)!r}, {str(tmp_path / 'page')!r}); "
            "print(sorted(m for m in sys.modules if m.startswith(('stagedsl.search', 'stagedsl.matrix')) or m == 'torch'))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[-2] == str(["stagedsl.matrix", "stagedsl.matrix.layout", "stagedsl.search", "stagedsl.search.layout"])
