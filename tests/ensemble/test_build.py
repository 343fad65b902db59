"""Building ensembles from a matrix folder's cached predictions: cross-fitting keeps every
sample out of the fit that predicts it, stacking beats its best member where the members
are complementary, and `mean` is the hand-computed average."""

from __future__ import annotations

import numpy as np
import pytest

from stagedsl import EnsembleTask
from stagedsl.ensemble.build import build_ensembles, cross_fit, fold_indices
from stagedsl.eval.predictions import RunPredictions
from stagedsl.matrix.layout import INDEX_FORMAT, MatrixDir


def make_matrix(root, outputs: dict, target: np.ndarray, ensembles: list, *, test: dict | None = None, test_target=None) -> MatrixDir:
    """A matrix folder holding only an index and members' predictions (logits `outputs`)."""
    folder = MatrixDir(root)
    root.mkdir(parents=True, exist_ok=True)
    members = [{"name": n, "variant": n.split("-")[0], "seed": 0, "layer": {}, "plan_hash": "-", "steps": 1} for n in outputs]
    folder.write_json(folder.index_file, {"format": INDEX_FORMAT, "name": "made", "seed": 3, "jobs": 1, "monitor": "val/accuracy",
                                          "members": members, "ensembles": ensembles})
    for name, logits in outputs.items():
        splits = {"val": logits}
        targets = {"val": target}
        if test is not None:
            splits["test"], targets["test"] = test[name], test_target
        RunPredictions(splits, targets, {"format": 1}).save(folder.predictions(name))
    return folder


def entry(name, use, folds=3, **args):
    return {"name": name, "use": use, "members": ["*"], "folds": folds, "args": args}


def complementary(n: int, seed: int):
    """Two members each right on the half of the samples where the other is confidently wrong."""
    rng = np.random.default_rng(seed)
    y = np.tile([0, 1], n // 2)
    group = rng.permutation(np.repeat([0, 1], n // 2))
    mild = np.where(y == 1, 0.7, 0.3) + rng.normal(0, 0.02, n)
    wrong = np.where(y == 1, 0.05, 0.95) + rng.normal(0, 0.02, n)
    probabilities = [np.clip(np.where(group == 0, mild, wrong), 0.01, 0.99), np.clip(np.where(group == 0, wrong, mild), 0.01, 0.99)]
    return {f"m{i}-s0": np.log(np.stack([1 - p, p], axis=1)).astype(np.float32) for i, p in enumerate(probabilities)}, y


def test_stacking_beats_the_best_member_on_complementary_members(tmp_path, registry):
    outputs, y = complementary(300, 0)
    folder = make_matrix(tmp_path / "run", outputs, y, [entry("mean", "mean"), entry("stack", "stacking", folds=5, meta={"use": "lightgbm", "num_leaves": 4}),
                                                        entry("stack_lr", "stacking")])  # the default meta-learner: logistic
    records = build_ensembles(folder.root, registry=registry)
    best_member = max(float(((o.argmax(axis=1)) == y).mean()) for o in outputs.values())
    assert best_member < 0.6
    for name in ("stack", "stack_lr"):
        assert records[name]["status"] == "completed"
        assert records[name]["metrics"]["val"]["accuracy"] > 0.95 > best_member  # out-of-fold accuracy
        assert records[name]["cv"]["folds"] == (5 if name == "stack" else 3) and records[name]["cv"]["metric"] == "accuracy"
    assert records["mean"]["metrics"]["val"]["accuracy"] < 0.6 and "cv" not in records["mean"]


def test_mean_ensemble_equals_the_hand_computation(tmp_path, registry):
    p = {"a-s0": np.array([[0.1, 0.9], [0.8, 0.2], [0.4, 0.6], [0.3, 0.7]]), "b-s0": np.array([[0.5, 0.5], [0.6, 0.4], [0.8, 0.2], [0.7, 0.3]])}
    y = np.array([1, 0, 1, 0])
    folder = make_matrix(tmp_path / "run", {k: np.log(v) for k, v in p.items()}, y, [entry("mean", "mean")])
    record = build_ensembles(folder.root, registry=registry)["mean"]
    # mean P(1) = 0.7, 0.3, 0.4, 0.5 -> classes 1, 0, 0, 0 (argmax takes class 0 at a tie): 3 of 4 right
    with np.load(folder.ensemble_file("mean", "predictions.npz")) as saved:
        np.testing.assert_allclose(saved["val_scores"][:, 1], [0.7, 0.3, 0.4, 0.5])
    assert record["metrics"]["val"]["accuracy"] == pytest.approx(0.75)
    assert record["metrics"]["val"]["log_loss"] == pytest.approx(-np.mean(np.log([0.7, 0.7, 0.4, 0.5])))
    assert record["fitted"]["weights"] == [0.5, 0.5]


class _Spy:
    """An ensemble that remembers the sample ids it was fitted on (ids are its members' outputs)."""

    fits: list = []

    def fit(self, outputs, target, task):
        self.seen = set(outputs[0, :, 0].astype(int).tolist())
        _Spy.fits.append(self.seen)

    def predict(self, outputs):
        ids = outputs[0, :, 0].astype(int)
        return np.array([[float(i in self.seen), float(i)] for i in ids])


def test_out_of_fold_predictions_never_come_from_a_fit_that_saw_the_sample():
    n = 103
    ids = np.arange(n, dtype=np.float64)
    outputs = np.stack([np.stack([ids, 1 - ids], axis=1)] * 2)
    target = np.arange(n) % 3
    task = EnsembleTask("classification", 3, 2, seed=5)
    folds = fold_indices(target, 5, 5, stratified=True)
    _Spy.fits = []
    oof = cross_fit(_Spy, outputs, target, task, folds)
    assert len(_Spy.fits) == 5
    assert oof[:, 0].tolist() == [0.0] * n  # no sample was in the fit that predicted it
    assert oof[:, 1].tolist() == ids.tolist()  # and every sample was predicted once, in place
    held = np.concatenate([h for _, h in folds])
    assert sorted(held.tolist()) == list(range(n))
    for fit, h in folds:  # stratified: every fold holds each class in proportion
        assert set(fit) | set(h) == set(range(n)) and not set(fit) & set(h)
        assert all(abs((target[h] == c).mean() - 1 / 3) < 0.05 for c in range(3))
    again = fold_indices(target, 5, 5, stratified=True)
    assert all((a[1] == b[1]).all() for a, b in zip(folds, again))  # seeded
    other = fold_indices(target, 5, 6, stratified=True)
    assert not all((a[1] == b[1]).all() for a, b in zip(folds, other))


def test_an_ensemble_over_members_scored_on_other_samples_fails_cleanly(tmp_path, registry):
    outputs, y = complementary(40, 1)
    folder = make_matrix(tmp_path / "run", outputs, y, [entry("mean", "mean")])
    name = next(iter(outputs))
    RunPredictions({"val": outputs[name]}, {"val": y[::-1].copy()}, {"format": 1}).save(folder.predictions(name))
    record = build_ensembles(folder.root, registry=registry)["mean"]
    assert record["status"] == "failed" and record["error"][0]["code"] == "E705"


def test_too_few_samples_per_class_for_the_folds_is_a_clear_error(tmp_path, registry):
    outputs, y = complementary(6, 2)
    folder = make_matrix(tmp_path / "run", outputs, y, [entry("stack", "stacking", folds=5, meta="logistic")])
    record = build_ensembles(folder.root, registry=registry)["stack"]
    assert record["status"] == "failed" and record["error"][0]["code"] == "E706"


def test_test_predictions_come_from_the_ensemble_fitted_on_the_whole_validation_split(tmp_path, registry):
    outputs, y = complementary(200, 3)
    test_outputs, test_y = complementary(100, 4)
    test = {name: test_outputs[name] for name in outputs}
    folder = make_matrix(tmp_path / "run", outputs, y, [entry("stack", "stacking", meta="logistic")], test=test, test_target=test_y)
    record = build_ensembles(folder.root, registry=registry)["stack"]
    assert record["metrics"]["test"]["accuracy"] > 0.95


def test_a_missing_optional_dependency_names_the_extra(tmp_path, registry, monkeypatch):
    import sys

    from stagedsl import PluginError, import_optional

    with pytest.raises(PluginError) as caught:
        import_optional("no_such_module_here", extra="ensemble", purpose="the test")
    assert caught.value.problems[0].code == "E103" and caught.value.problems[0].hint == "pip install 'stagedsl[ensemble]'"
    monkeypatch.setitem(sys.modules, "lightgbm", None)  # as if it were not installed
    outputs, y = complementary(60, 5)
    folder = make_matrix(tmp_path / "run", outputs, y, [entry("stack", "stacking", meta="lightgbm"), entry("mean", "mean")])
    records = build_ensembles(folder.root, registry=registry)
    assert records["stack"]["status"] == "failed" and records["stack"]["error"][0]["code"] == "E103"
    assert "pip install 'stagedsl[ensemble]'" in records["stack"]["error"][0]["message"]
    assert records["mean"]["status"] == "completed"
