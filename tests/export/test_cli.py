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
