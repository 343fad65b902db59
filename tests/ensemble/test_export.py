"""`staged export RUN_DIR --ensemble NAME`: one ONNX graph, checked in onnxruntime against
PyTorch and against the fitted ensemble's own predictions."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stagedsl.cli.app import run_cli

from ..matrix.fixtures import compare_run  # noqa: F401  (a fixture)


def _val_inputs(registry):
    splits = registry.get("datasets", "digit_pairs").factory(n_train=256, n_val=200, n_test=100, seed=0)
    return [x.numpy() for x in splits.val.inputs]


def test_the_mean_ensemble_exports_as_one_graph_that_matches(compare_run, registry, capsys):
    assert run_cli(["export", str(compare_run), "--ensemble", "mean", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] and report["graph"] == "weighted average" and len(report["members"]) == 4
    assert report["torch_max_abs"] <= 1e-4 and report["ensemble_max_abs"] <= 1e-4 and report["samples"] > 0
    model = compare_run / "ensembles" / "mean" / "export" / "model.onnx"
    assert report["files"] == [str(model)]
    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input_0", "input_1"] and session.get_outputs()[0].name == "probabilities"
    xa, xb = _val_inputs(registry)
    probabilities = session.run(None, {"input_0": xa, "input_1": xb})[0]
    with np.load(compare_run / "ensembles" / "mean" / "predictions.npz") as cached:
        np.testing.assert_allclose(probabilities, cached["val_scores"], atol=1e-5)  # the whole validation split, any batch size


@pytest.mark.slow
def test_the_stacking_ensemble_composes_the_members_and_lightgbm_into_one_graph(compare_run, registry, capsys):
    assert run_cli(["export", str(compare_run), "--ensemble", "stacking", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] and report["graph"] == "composed", report
    assert report["ensemble_max_abs"] <= 1e-4
    import onnxruntime as ort

    session = ort.InferenceSession(report["files"][0], providers=["CPUExecutionProvider"])
    xa, xb = _val_inputs(registry)
    probabilities = session.run(None, {"input_0": xa, "input_1": xb})[0]
    with np.load(compare_run / "predictions" / "resnet-s1.npz") as member:
        assert probabilities.shape == (len(member["val_target"]), 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_exporting_a_matrix_run_needs_an_ensemble_name(compare_run, registry, capsys):
    assert run_cli(["export", str(compare_run)]) == 2
    err = capsys.readouterr().err
    assert "error[E712]" in err and "--ensemble mean" in err and "Traceback" not in err
    assert run_cli(["export", str(compare_run), "--ensemble", "meen"]) == 2
    assert 'did you mean "mean"?' in capsys.readouterr().err


@pytest.mark.slow
def test_when_the_graphs_do_not_compose_both_parts_are_written_and_checked(compare_run, registry, monkeypatch, capsys):
    import onnx

    def refuse(*args, **kwargs):
        raise ValueError("opset mismatch")

    monkeypatch.setattr(onnx.compose, "merge_models", refuse)
    assert run_cli(["export", str(compare_run), "--ensemble", "stacking", "--json", "--out", str(compare_run / "side")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] and report["graph"] == "side by side"
    assert [f.rsplit("/", 1)[-1] for f in report["files"]] == ["members.onnx", "meta.onnx"]
    assert "do not compose" in report["notices"][-1] and report["ensemble_max_abs"] <= 1e-4
    import onnxruntime as ort

    members, meta = (ort.InferenceSession(f, providers=["CPUExecutionProvider"]) for f in report["files"])
    xa, xb = _val_inputs(registry)
    features = members.run(None, {"input_0": xa, "input_1": xb})[0]
    probabilities = meta.run(None, {"features": features})[0]
    assert features.shape == (len(xa), 8) and probabilities.shape == (len(xa), 2)
