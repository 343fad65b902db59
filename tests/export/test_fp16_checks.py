"""The fp16 check fits the model: errors relative to the output's scale, and a classifier judged by its
classes and its metric; a failure names the check and by how much; a run is re-exported without retraining."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stagedsl.errors import ExportError, UsageError
from stagedsl.export.checks import Agreement, Parity, fp16_checks
from stagedsl.export.runner import export_run
from stagedsl.plan.model import PieceRef


def _classifier(make_run, root, **model_args):
    model = PieceRef("export_scaled", {"features": 6, "classes": 3, **model_args})
    data = PieceRef("export_table", {"features": 6, "classes": 3, "n_val": 40})
    return make_run(root, (model, data), metrics=(PieceRef("accuracy", {"num_classes": 3}),))


def test_a_classifier_with_large_logits_passes_fp16_when_its_classes_agree(tmp_path, make_run, export_registry, capsys):
    run_dir = _classifier(make_run, tmp_path / "run", scale=40.0)
    report = export_run(run_dir, registry=export_registry, formats=["onnx-fp16"])
    fp16 = report.formats["onnx-fp16"]
    assert report.passed and fp16.passed
    assert fp16.max_abs > 0.01  # the old absolute rule (atol 0.01) would have failed it
    assert fp16.agreement == 1.0 and fp16.agreement_rows == 40
    checks = {c["name"]: c for c in fp16.checks}
    assert checks["argmax agreement"]["passed"] and checks["argmax agreement"]["decides"]
    assert checks["metric accuracy"]["passed"] and not checks["elementwise"]["decides"]
    from stagedsl.cli.export_commands import render_report

    text = render_report(report)
    assert "ok   argmax agreement 100.00% >= 99.00% (0 of 40 rows pick another class)" in text
    assert "ok   accuracy " in text and "info largest error" in text
    saved = json.loads((run_dir / "export" / "report.json").read_text())["formats"]["onnx-fp16"]
    assert saved["agreement"] == 1.0 and [c["name"] for c in saved["checks"]][:2] == ["elementwise", "argmax agreement"]


def test_a_failure_says_which_check_failed_and_by_how_much(tmp_path, make_run, export_registry):
    # class offsets stored beside 1000, where float16's spacing (0.5) rounds them all to one value
    run_dir = _classifier(make_run, tmp_path / "run", scale=0.01, offset=1000.0)
    with pytest.raises(ExportError) as caught:
        export_run(run_dir, registry=export_registry)
    fp16 = caught.value.report.formats["onnx-fp16"]
    assert not fp16.passed and fp16.agreement < 0.99
    assert "argmax agreement" in fp16.error and "< 99.00%" in fp16.error and "rows pick another class" in fp16.error
    problems = {p.message.split("`")[1]: p for p in caught.value.problems}
    assert "--set export.fp16_min_agreement=" in problems["onnx-fp16"].hint  # what decides for a classifier
    package = problems["package"]
    assert "skipped" in package.message and "--format onnx,package" in package.hint
    assert fp16.metric_before and fp16.metric_after  # the metric before -> after is there exactly when it fails


def test_a_regressor_is_judged_elementwise_relative_to_its_scale():
    ref = np.array([[100.0, -50.0, 0.5]], dtype=np.float32)
    close = Parity(0.01, 0.0, scaled=True)
    close.update([ref], [ref + np.float32(0.9)])  # 0.9 <= 0.01 * 100
    assert close.passed and abs(close.max_scaled - 0.009) < 1e-6
    far = Parity(0.01, 0.0, scaled=True)
    far.update([ref], [ref + np.float32(1.5)])
    assert not far.passed
    checks = fp16_checks(far, Agreement(), {"mse": 1.0}, {"mse": 1.2}, min_agreement=0.99, metric_tol=0.01)
    assert [c.name for c in checks] == ["elementwise"] and checks[0].decides and not checks[0].passed
    assert "1.5% of the output's scale" in checks[0].detail and "(> 1)" in checks[0].detail


def test_export_set_and_profile_re_export_without_retraining(tmp_path, make_run, process_registry, capsys):
    from stagedsl.cli.app import run_cli

    run_dir = _classifier(make_run, tmp_path / "run", scale=0.01, offset=1000.0)
    assert run_cli(["export", str(run_dir)]) == 1
    capsys.readouterr()
    weights = (run_dir / "stages" / "fit" / "best.safetensors").read_bytes()
    assert run_cli(["export", str(run_dir), "--set", "export.fp16_min_agreement=0", "--set", "export.fp16_metric_tol=1"]) == 0
    out = capsys.readouterr().out
    assert "PASSED" in out and (run_dir / "export" / "package").is_dir()
    assert (run_dir / "stages" / "fit" / "best.safetensors").read_bytes() == weights
    assert run_cli(["export", str(run_dir), "--set", "stage.fit.lr=1"]) == 2
    assert "only export.* keys" in capsys.readouterr().err
    assert run_cli(["export", str(run_dir), "--set", "export.fp16_atoll=1"]) == 2
    assert 'did you mean "fp16_atol"' in capsys.readouterr().err
    assert run_cli(["export", str(run_dir), "--profile", "strict"]) == 2  # this run has no spec file to take a profile from
    assert "error[E530]" in capsys.readouterr().err


def test_export_profile_takes_the_export_section_of_the_runs_spec(tmp_path, registry, capsys):
    from pathlib import Path

    from stagedsl.cli.app import run_cli

    spec = tmp_path / "pde.toml"
    spec.write_text((Path(__file__).resolve().parents[2] / "specs" / "pde.toml").read_text()
                    + '\n[profile.onnx_only]\nexport = { formats = ["onnx"] }\n')
    run_dir = tmp_path / "run"
    assert run_cli(["run", str(spec), "--profile", "tiny", "--out", str(run_dir),
                    "--set", "stage.warmup_encdec.steps=2", "--set", "stage.transformer.steps=2", "--set", "stage.finetune.steps=2"]) == 0
    capsys.readouterr()
    assert run_cli(["export", str(run_dir), "--profile", "onnx_only", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert list(report["formats"]) == ["onnx"] and report["passed"]


def test_predict_on_a_package_the_export_skipped_says_why(tmp_path, make_run, process_registry, capsys):
    from stagedsl.cli.app import run_cli
    from stagedsl.export.package import load_package

    run_dir = _classifier(make_run, tmp_path / "run", scale=0.01, offset=1000.0)
    assert run_cli(["export", str(run_dir)]) == 1
    np.savez(tmp_path / "x.npz", np.zeros((2, 6), dtype=np.float32))
    capsys.readouterr()
    assert run_cli(["predict", str(run_dir / "export" / "package"), str(tmp_path / "x.npz"), "--out", str(tmp_path / "y.npz")]) == 2
    err = capsys.readouterr().err
    assert "does not exist: the export skipped the package (it would hold the failed format(s) onnx-fp16" in err
    assert f"staged export {run_dir} --format onnx,package" in err
    with pytest.raises(UsageError) as caught:
        load_package(tmp_path / "nowhere")
    assert "<spec>" not in str(caught.value) and "-->" not in str(caught.value)
