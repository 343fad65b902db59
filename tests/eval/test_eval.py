"""`staged eval`: the metrics of a run on a split, for a matrix run (every member and
ensemble) and for a single-plan run (classification and regression)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stagedsl.cli.app import run_cli
from stagedsl.eval.metrics import score, scores_of, task_of
from stagedsl.eval.predictions import predict_run

from ..matrix.fixtures import compare_run  # noqa: F401  (a fixture)

MEMBERS = ["resnet-s1", "resnet-s2", "fusion-s1", "fusion-s2"]


def _eval(capsys, *args) -> dict:
    assert run_cli(["eval", *map(str, args), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("split", ["val", "test"])
def test_eval_json_on_the_compare_run_scores_every_member_and_ensemble(compare_run, registry, capsys, split):
    result = _eval(capsys, compare_run, "--split", split)
    assert result["kind"] == "matrix" and result["split"] == split and result["monitor"] == "accuracy"
    names = [row["name"] for row in result["rows"]]
    assert sorted(names) == sorted(MEMBERS + ["mean", "stacking"])
    for row in result["rows"]:
        assert set(row["metrics"]) == {"accuracy", "f1", "precision", "recall", "roc_auc", "log_loss"}, row
    accuracies = [row["metrics"]["accuracy"] for row in result["rows"]]
    assert accuracies == sorted(accuracies, reverse=True)
    summary = json.loads((compare_run / "summary.json").read_text())
    for row in result["rows"]:
        table = summary["members"] if row["kind"] == "member" else summary["ensembles"]
        assert row["metrics"] == pytest.approx(table[row["name"]]["metrics"][split])


def test_eval_table_is_sorted_and_notes_the_cv_score(compare_run, registry, capsys):
    assert run_cli(["eval", str(compare_run)]) == 0
    out = capsys.readouterr().out
    assert "sorted by accuracy (higher is better)" in out and "cv accuracy" in out
    assert all(name in out for name in MEMBERS)


def test_eval_json_on_a_single_plan_run(compare_run, registry, capsys):
    member = compare_run / "members" / "fusion-s2"  # an ordinary run directory
    result = _eval(capsys, member, "--split", "test")
    assert result["kind"] == "run" and [row["name"] for row in result["rows"]] == ["fusion-s2"]
    summary = json.loads((compare_run / "summary.json").read_text())
    assert result["rows"][0]["metrics"] == pytest.approx(summary["members"]["fusion-s2"]["metrics"]["test"])
    assert result["rows"][0]["stage"] == "resnet" and result["rows"][0]["which"] == "best"


REGRESSION = """\
[model]
use = "mlp"
in_features = 3
hidden = [8]
out_features = 2

[data]
use = "npz"
train = "{train}"
val = "{val}"
batch_size = 16

[[stage]]
name = "fit"
steps = 20
lr = 1e-2
loss = "mse"
metrics = ["mae"]
eval = {{ monitor = "val/mae" }}
"""


def test_eval_on_a_single_regression_run_gives_mae_rmse_nrmse(tmp_path, registry, capsys):
    rng = np.random.default_rng(0)
    for name, n in (("train", 64), ("val", 32)):
        x = rng.normal(size=(n, 3)).astype(np.float32)
        np.savez(tmp_path / f"{name}.npz", x=x, y=np.stack([x.sum(1), x[:, 0]], axis=1).astype(np.float32))
    spec = tmp_path / "reg.toml"
    spec.write_text(REGRESSION.format(train=tmp_path / "train.npz", val=tmp_path / "val.npz"))
    assert run_cli(["run", str(spec), "--out", str(tmp_path / "run")]) == 0
    capsys.readouterr()
    result = _eval(capsys, tmp_path / "run")
    metrics = result["rows"][0]["metrics"]
    assert result["task"] == "regression" and result["monitor"] == "mae" and set(metrics) == {"mae", "rmse", "nrmse"}
    predictions = predict_run(tmp_path / "run", registry=registry, splits=("val",))
    outputs, target = predictions.outputs["val"], predictions.targets["val"]
    assert metrics["mae"] == pytest.approx(float(np.abs(outputs - target).mean()), rel=1e-5)
    assert metrics["rmse"] == pytest.approx(float(np.sqrt(((outputs - target) ** 2).mean())), rel=1e-5)
    per_column = np.sqrt(((outputs - target) ** 2).mean(axis=0)) / target.std(axis=0)
    assert metrics["nrmse"] == pytest.approx(float(per_column.mean()), rel=1e-5)
    assert run_cli(["eval", str(tmp_path / "run"), "--split", "test"]) == 2
    err = capsys.readouterr().err
    assert "error[E714]" in err and "Traceback" not in err


def test_classification_metrics_by_hand():
    target = np.array([1, 0, 1, 1])
    logits = np.log(np.array([[0.2, 0.8], [0.6, 0.4], [0.7, 0.3], [0.1, 0.9]]))
    task = task_of(logits, target)
    metrics = score(scores_of(logits, task), target, task)
    # predictions 1, 0, 0, 1: TP 2, FN 1, FP 0, TN 1
    assert metrics["accuracy"] == pytest.approx(0.75) and metrics["precision"] == pytest.approx(1.0)
    assert metrics["recall"] == pytest.approx(2 / 3) and metrics["f1"] == pytest.approx(0.8)
    assert metrics["roc_auc"] == pytest.approx(2 / 3)  # positives score 0.8, 0.3, 0.9 against the negative's 0.4
    one_logit = task_of(np.array([2.0, -1.0]), np.array([1, 0]))
    assert one_logit.classes == 2 and scores_of(np.array([0.0]), one_logit).tolist() == [[0.5, 0.5]]
