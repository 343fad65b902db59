"""A real spec, run by the real engine, exported: the run-directory contract end to end."""

from __future__ import annotations

import json

import pytest

import stagedsl
from stagedsl.export.runner import export_run

from .conftest import SPECS


@pytest.mark.slow
def test_the_ocec_spec_runs_and_exports(tmp_path, export_registry):
    from stagedsl.engine.runner import run_plan
    from stagedsl.plan.compile import compile_plan
    from stagedsl.spec.loader import load_spec

    spec = load_spec(SPECS / "ocec.toml", profile="tiny", overrides=["data.n_train=128", "data.n_val=64"], registry=export_registry)
    plan = compile_plan(spec, export_registry)
    result = run_plan(plan, registry=export_registry, out=tmp_path / "run", device="cpu")
    report = export_run(result.run_dir, registry=export_registry)
    assert report.passed and report.stage == plan.stages[-1].name
    assert set(report.formats["onnx-fp16"].metric_before) == {m.name for m in plan.stages[-1].metrics}
    package = stagedsl.load_package(result.run_dir / "export" / "package", registry=export_registry)
    monitor = plan.stages[-1].eval.monitor
    assert monitor in package.metrics["metrics"]  # the run's own record of the exported checkpoint
    assert json.loads((result.run_dir / "export" / "report.json").read_text())["passed"] is True
