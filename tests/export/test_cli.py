"""`staged export` and `staged predict`: data on stdout, diagnostics on stderr, exit codes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stagedsl.plan.model import PieceRef


@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory, make_run):
    return make_run(tmp_path_factory.mktemp("cli") / "run", "mlp")


def _cli(argv, capsys):
    from stagedsl.cli.app import run_cli

    code = run_cli([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_export_prints_a_json_report(mlp_run, process_registry, capsys):
    code, out, err = _cli(["export", mlp_run, "--json"], capsys)
    assert code == 0, err
    report = json.loads(out)
    assert report["passed"] and set(report["formats"]) == {"onnx", "onnx-fp16", "package"}
    assert "exported stage `fit` (best)" in err and "[torch.onnx]" not in out


def test_export_prints_a_table_for_the_formats_asked(mlp_run, process_registry, capsys, tmp_path):
    code, out, err = _cli(["export", mlp_run, "--format", "onnx", "--which", "last", "--out", tmp_path / "x"], capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["format", "status", "max", "abs"]
    assert lines[1].split()[:2] == ["onnx", "passed"] and lines[-1] == "PASSED"
    assert (tmp_path / "x" / "model.onnx").is_file() and not (tmp_path / "x" / "package").exists()


def test_a_failed_export_exits_1_with_the_report_on_stdout(tmp_path, make_run, process_registry, capsys):
    run_dir = make_run(tmp_path / "run", (PieceRef("export_drifting", {"features": 6}), PieceRef("export_table", {"features": 6, "outputs": 6})))
    code, out, err = _cli(["export", run_dir, "--format", "onnx", "--json"], capsys)
    assert code == 1
    assert json.loads(out)["passed"] is False
    assert "error[E512]" in err and "does not match PyTorch" in err
    code, out, err = _cli(["export", run_dir, "--which", "worst"], capsys)
    assert code == 2 and "E530" in err


def test_predict_writes_the_outputs(mlp_run, process_registry, capsys, tmp_path):
    import stagedsl

    package = mlp_run / "export" / "package"
    if not package.exists():
        assert _cli(["export", mlp_run, "--format", "onnx,package"], capsys)[0] == 0  # --onnx below needs the ONNX model
    x = np.random.default_rng(0).standard_normal((7, 6)).astype(np.float32)
    np.savez(tmp_path / "in.npz", input=x)
    code, out, err = _cli(["predict", package, tmp_path / "in.npz", "--out", tmp_path / "out.npz"], capsys)
    assert code == 0, err
    expected = stagedsl.load_package(package).predict(x)
    with np.load(tmp_path / "out.npz") as result:
        np.testing.assert_array_equal(result["output"], expected)
    assert "(7, 3)" in out

    np.savez(tmp_path / "two.npz", features=x, other=x[:, :2])
    code, out, err = _cli(["predict", package, tmp_path / "two.npz", "--out", tmp_path / "onnx.npz", "-k", "features", "--onnx", "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["backend"] == "onnx"
    with np.load(tmp_path / "onnx.npz") as result:
        np.testing.assert_allclose(result["output"], expected, atol=1e-4, rtol=1e-4)

    code, out, err = _cli(["predict", package, tmp_path / "two.npz", "--out", tmp_path / "no.npz"], capsys)
    assert code == 2 and "--input-key" in err and not (tmp_path / "no.npz").exists()


def _package(mlp_run, capsys):
    package = mlp_run / "export" / "package"
    if not package.exists():
        assert _cli(["export", mlp_run, "--format", "onnx,package"], capsys)[0] == 0
    return package


@pytest.mark.parametrize("kind", ["object", "string", "complex"])
def test_predict_refuses_inputs_that_are_not_real_numbers_naming_the_dtype_and_shape_it_expects(kind, mlp_run, process_registry,
                                                                                                capsys, tmp_path):
    package = _package(mlp_run, capsys)
    x = np.random.default_rng(0).standard_normal((4, 6))
    arrays = {"object": np.array([[object()] * 6] * 4, dtype=object), "string": x.astype(str), "complex": x + 1j * x}
    path = tmp_path / "in.npz"
    np.savez(path, input=arrays[kind])  # an object array is pickled inside the .npz: it must never be unpickled
    code, out, err = _cli(["predict", package, path, "--out", tmp_path / "out.npz"], capsys)
    assert code == 2 and "Traceback" not in err, err
    assert "error[E522]" in err and "float32 [batch, 6]" in err, err
    assert {"object": "Python objects", "string": "text", "complex": "imaginary part"}[kind] in err
    assert not (tmp_path / "out.npz").exists()


def test_predict_says_an_npy_named_npz_is_one_array_and_prints_the_path_it_wrote(mlp_run, process_registry, capsys, tmp_path):
    package = _package(mlp_run, capsys)
    x = np.random.default_rng(0).standard_normal((5, 6)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "x.npy").rename(tmp_path / "renamed.npz")
    code, out, err = _cli(["predict", package, tmp_path / "renamed.npz", "--out", tmp_path / "o.npz"], capsys)
    assert code == 2 and "Traceback" not in err
    assert "error[E524]" in err and "a single .npy array, not an .npz archive" in err and "float32 [batch, 6]" in err

    np.savez(tmp_path / "in.npz", input=x.astype(np.int64))  # integers are numbers: converted to the model's float32
    code, out, err = _cli(["predict", package, tmp_path / "in.npz", "--out", tmp_path / "preds"], capsys)
    assert code == 0, err
    written = tmp_path / "preds.npz"
    assert written.is_file() and not (tmp_path / "preds").exists()
    assert out.startswith(f"{written}:")  # the path printed is the one written
    code, out, err = _cli(["predict", package, tmp_path / "in.npz", "--out", tmp_path / "preds", "--json"], capsys)
    assert json.loads(out)["out"] == str(written)
