"""The model package: loads back without the spec or run, gives the run's outputs, refuses tampering."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

import stagedsl
from stagedsl.errors import CheckpointError, UsageError
from stagedsl.export.runner import export_run

from .conftest import MODELS


@pytest.fixture(scope="module")
def packaged(tmp_path_factory, exported):
    """For each model: its package copied away from the run, and the run's best weights."""
    from safetensors.torch import load_file

    done = {}

    def get(key: str):
        if key not in done:
            run_dir, _ = exported(key)
            path = tmp_path_factory.mktemp(f"pkg-{key}") / "package"
            shutil.copytree(run_dir / "export" / "package", path)
            done[key] = (path, load_file(run_dir / "stages" / "fit" / "best.safetensors"))
        return done[key]

    return get


def _batch(export_registry, key, rows=5):
    data = MODELS[key][1]
    splits = export_registry.get("datasets", data.name).factory(**data.args)
    inputs, _ = splits.val[list(range(rows))]
    return inputs


@pytest.mark.parametrize("key", ["mlp", "pde_transformer", "ocec_net"])
def test_round_trip_gives_the_runs_best_weights_outputs(packaged, export_registry, key):
    path, best = packaged(key)
    package = stagedsl.load_package(path, registry=export_registry)
    assert not package.model.training
    model_ref = MODELS[key][0]
    reference = export_registry.get("models", model_ref.name).factory(**model_ref.args)
    reference.load_state_dict(best)
    reference.eval()
    inputs = _batch(export_registry, key)
    with torch.no_grad():
        expected = reference(inputs).numpy()
    np.testing.assert_array_equal(package.predict(inputs.numpy()), expected)
    np.testing.assert_array_equal(package.predict(inputs), expected)  # a tensor works too
    by_two = package.predict({"input": inputs.numpy()}, batch_size=2)  # other batch sizes: other BLAS blocking
    np.testing.assert_allclose(by_two, expected, atol=1e-6, rtol=1e-5)
    np.testing.assert_allclose(package.predict(inputs.numpy(), onnx=True), expected, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(package.predict(inputs.numpy(), fp16=True), expected, atol=2e-2, rtol=2e-2)
    assert package.config["model"] == {"name": model_ref.name, "args": model_ref.args}
    assert package.config["inputs"][0]["shape"][0] is None
    assert list(package.config["inputs"][0]["shape"][1:]) == list(inputs.shape[1:])
    assert package.metrics["stage"] == "fit" and package.metrics["metrics"] == {"val/loss": 0.5, "step": 4}
    assert package.metrics["export_check"]["metrics"]


def test_preprocessing_holds_the_datasets_stats_as_lists(packaged):
    path, _ = packaged("mlp")
    preprocessing = json.loads((path / "preprocessing.json").read_text())
    assert preprocessing["dataset"]["name"] == "export_table"
    assert isinstance(preprocessing["stats"]["mean"], list) and len(preprocessing["stats"]["mean"]) == 6
    assert sorted(p.name for p in path.iterdir()) == [
        "config.json", "metrics.json", "model.fp16.onnx", "model.onnx", "model.safetensors", "preprocessing.json"]


def test_the_process_registry_is_the_default(packaged, process_registry):
    path, _ = packaged("mlp")
    assert stagedsl.load_package(path).predict(np.zeros((2, 6), dtype=np.float32)).shape == (2, 3)


def test_a_modified_file_or_a_missing_one_is_refused(packaged, export_registry, tmp_path):
    path, _ = packaged("mlp")
    copy = tmp_path / "package"
    shutil.copytree(path, copy)
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as caught:
        stagedsl.load_package(copy, registry=export_registry)
    assert caught.value.problems[0].code == "E521"
    (copy / "model.onnx").unlink()
    with pytest.raises(CheckpointError):
        stagedsl.load_package(copy, registry=export_registry, verify=False)
    with pytest.raises(UsageError):
        stagedsl.load_package(tmp_path / "nowhere", registry=export_registry)


def test_inputs_of_the_wrong_shape_are_a_usage_error(packaged, export_registry):
    path, _ = packaged("mlp")
    package = stagedsl.load_package(path, registry=export_registry)
    with pytest.raises(UsageError) as caught:
        package.predict(np.zeros((2, 5), dtype=np.float32))
    assert "[batch, 6]" in caught.value.problems[0].message
    with pytest.raises(UsageError):
        package.predict({"x": np.zeros((2, 6))})


def test_a_model_with_several_inputs(tmp_path, make_run, export_registry):
    from stagedsl.plan.model import PieceRef

    run_dir = make_run(tmp_path / "run", (MODELS["mlp"][0], PieceRef("export_table", {"features": 6, "parts": 2})))
    report = export_run(run_dir, registry=export_registry)
    assert report.passed
    package = stagedsl.load_package(run_dir / "export" / "package", registry=export_registry)
    assert package.input_names == ["input_0", "input_1"]
    assert [spec["shape"] for spec in package.config["inputs"]] == [[None, 3], [None, 3]]
    a, b = np.ones((2, 3), dtype=np.float32), np.zeros((2, 3), dtype=np.float32)
    expected = package.predict((a, b))
    np.testing.assert_array_equal(package.predict({"input_1": b, "input_0": a}), expected)
    np.testing.assert_allclose(package.predict([a, b], onnx=True), expected, atol=1e-5)
    import onnx

    graph = onnx.load(str(run_dir / "export" / "package" / "model.onnx")).graph
    assert [i.type.tensor_type.shape.dim[0].dim_param for i in graph.input] == ["batch", "batch"]


def test_the_package_needs_neither_the_spec_nor_the_run(tmp_path, make_run, export_registry):
    run_dir = make_run(tmp_path / "run", "mlp")
    export_run(run_dir, registry=export_registry, formats=["package"])
    shutil.move(str(run_dir / "export" / "package"), str(tmp_path / "shipped"))
    shutil.rmtree(run_dir)
    package = stagedsl.load_package(tmp_path / "shipped", registry=export_registry)
    assert package.predict(np.ones((4, 6), dtype=np.float32)).shape == (4, 3)
    assert sorted(p.name for p in (tmp_path / "shipped").iterdir()) == [
        "config.json", "metrics.json", "model.safetensors", "preprocessing.json"]  # no ONNX asked for, none shipped
    with pytest.raises(UsageError):
        package.predict(np.ones((4, 6), dtype=np.float32), onnx=True)
