"""`export_run` on real built-in models and real files: parity, failures, choices."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from stagedsl.errors import CheckpointError, ExportError, UsageError
from stagedsl.export.runner import export_run

from .conftest import METRICS
from .conftest import MODELS as MODELS_REFS

MODELS = ("mlp", "pde_transformer", "ocec_net")
CHECK_BATCHES = {"mlp": 4, "pde_transformer": 2, "ocec_net": 3}  # check_batches = 4 of 8 rows, or the whole val split


@pytest.mark.parametrize("key", MODELS)
def test_fp32_and_fp16_onnx_match_pytorch_within_tolerance(exported, key):
    run_dir, report = exported(key)
    assert report.passed
    onnx32, onnx16 = report.formats["onnx"], report.formats["onnx-fp16"]
    assert onnx32.status == onnx16.status == "passed"
    assert onnx32.max_abs <= onnx32.atol + onnx32.rtol * 10 and onnx32.worst <= 1.0
    assert onnx16.worst <= 1.0 and onnx16.max_abs > 0  # it really is float16 arithmetic
    assert onnx32.batches == CHECK_BATCHES[key] and onnx16.batches == CHECK_BATCHES[key]
    assert onnx32.exporter == "dynamo"
    assert set(onnx16.metric_before) == set(onnx16.metric_after) == {m.name for m in METRICS[key]}  # the stage's metrics
    for name, before in onnx16.metric_before.items():
        assert abs(onnx16.metric_after[name] - before) <= 0.1 * max(abs(before), 1.0)  # 24 val rows: one flip is 4 %


@pytest.mark.parametrize("key", MODELS)
def test_files_have_a_dynamic_batch_axis_and_the_documented_names(exported, key):
    run_dir, report = exported(key)
    out = run_dir / "export"
    assert sorted(p.name for p in out.iterdir()) == ["model.fp16.onnx", "model.onnx", "model.pruned.safetensors", "package", "report.json"]
    for name in ("model.onnx", "model.fp16.onnx"):
        graph = onnx.load(str(out / name)).graph
        assert [i.name for i in graph.input] == ["input"] and [o.name for o in graph.output] == ["output"]
        assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
        assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # keep_io_types
    written = json.loads((out / "report.json").read_text())
    assert written["passed"] is True and written["formats"]["onnx"]["max_abs"] == report.formats["onnx"].max_abs
    assert set(report.files) == {str(out / n) for n in ("model.onnx", "model.fp16.onnx", "package", "model.pruned.safetensors")}


@pytest.mark.parametrize("key", MODELS)
def test_pruning_reaches_the_amount_and_reports_the_metric(exported, key):
    from safetensors.torch import load_file

    run_dir, report = exported(key)
    prune = report.prune
    assert prune.tensors > 0 and abs(prune.sparsity - 0.3) < 0.01 and prune.model_sparsity <= prune.sparsity
    assert prune.metric_before and set(prune.metric_after) == set(prune.metric_before)
    weights = load_file(prune.file)
    assert not any(name.endswith(("_orig", "_mask")) for name in weights)  # made permanent
    zeros = sum(int((t == 0).sum()) for n, t in weights.items() if n.endswith("weight") and t.dim() >= 2)
    assert zeros >= prune.pruned * 0.99


def test_a_model_that_traces_differently_fails_and_leaves_no_valid_looking_file(tmp_path, make_run, export_registry):
    from stagedsl.plan.model import PieceRef

    run_dir = make_run(tmp_path / "run", (PieceRef("export_drifting", {"features": 6}), PieceRef("export_table", {"features": 6, "outputs": 6})))
    with pytest.raises(ExportError) as caught:
        export_run(run_dir, registry=export_registry)
    report = caught.value.report
    assert not report.passed and report.formats["onnx"].status == "failed"
    assert "does not match PyTorch" in report.formats["onnx"].error
    assert report.formats["package"].status == "skipped"
    out = run_dir / "export"
    names = sorted(p.name for p in out.iterdir())
    assert "model.onnx" not in names and "package" not in names and "model.onnx.invalid" in names
    assert not any(n.endswith(".partial") for n in names)
    assert json.loads((out / "report.json").read_text())["passed"] is False
    assert caught.value.exit_code == 1 and "report.json" in caught.value.problems[0].hint


def test_a_model_casting_to_float_itself_converts_to_float16(tmp_path, make_run, export_registry):
    from stagedsl.plan.model import PieceRef

    run_dir = make_run(tmp_path / "run", (PieceRef("export_masked", {"features": 6}), PieceRef("export_table", {"features": 6})))
    report = export_run(run_dir, registry=export_registry, formats=["onnx-fp16"])
    assert report.passed and report.formats["onnx-fp16"].worst <= 1.0
    graph = onnx.load(str(run_dir / "export" / "model.fp16.onnx")).graph
    assert any(n.op_type == "Cast" and n.attribute[0].i == onnx.TensorProto.FLOAT16 for n in graph.node)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_the_torchscript_exporter_is_the_fallback_with_a_notice(tmp_path, make_run, export_registry, caplog):
    from stagedsl.plan.model import PieceRef

    run_dir = make_run(tmp_path / "run", (PieceRef("export_branching", {"features": 6}), PieceRef("export_table", {"features": 6})))
    report = export_run(run_dir, registry=export_registry, formats=["onnx"])
    assert report.passed and report.formats["onnx"].exporter == "torchscript"
    notice = next(n for n in report.notices if "fell back to the TorchScript exporter" in n)
    assert "\n" not in notice and notice in caplog.text


def test_the_file_has_the_opset_asked_for(tmp_path, make_run, export_registry):
    # torch.export's exporter writes opset 18 when its version converter gives up (ocec_net at
    # 17 does): that counts as a failure of that exporter, and the TorchScript one takes over
    run_dir = make_run(tmp_path / "run", "ocec_net")
    report = export_run(run_dir, registry=export_registry, formats=["onnx"], options={"opset": 17})
    model = onnx.load(str(run_dir / "export" / "model.onnx"))
    assert report.passed and [o.version for o in model.opset_import if o.domain == ""] == [17]
    if report.formats["onnx"].exporter == "torchscript":
        assert any("not the requested 17" in n for n in report.notices)


def test_a_fixed_batch_axis_is_checked_on_full_batches_only(tmp_path, make_run, export_registry):
    from stagedsl.plan.model import PieceRef

    run_dir = make_run(tmp_path / "run", (MODELS_REFS["mlp"][0], PieceRef("export_table", {"features": 6, "n_val": 12})))
    report = export_run(run_dir, registry=export_registry, formats=["onnx"], options={"dynamic_batch": False})
    assert report.passed and report.formats["onnx"].batches == 1 and report.formats["onnx"].samples == 8
    graph = onnx.load(str(run_dir / "export" / "model.onnx")).graph
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_value == 8


def test_an_impossible_fp16_tolerance_fails_fp16_only(tmp_path, make_run, export_registry):
    run_dir = make_run(tmp_path / "run", "mlp", export={"fp16_atol": 0.0, "fp16_rtol": 0.0})
    with pytest.raises(ExportError) as caught:
        export_run(run_dir, registry=export_registry)
    report = caught.value.report
    assert report.formats["onnx"].passed and not report.formats["onnx-fp16"].passed
    out = run_dir / "export"
    assert (out / "model.onnx").is_file() and (out / "model.fp16.onnx.invalid").is_file()
    assert not (out / "model.fp16.onnx").exists() and not (out / "package").exists()
    # a later export with sane settings replaces the invalid file
    report = export_run(run_dir, registry=export_registry, formats=["onnx-fp16"], options={"fp16_atol": 1e-2})
    assert report.passed and (out / "model.fp16.onnx").is_file() and not (out / "model.fp16.onnx.invalid").exists()
    assert not (out / ".model.onnx").exists()  # the fp32 graph behind it is not left behind


def test_stage_which_and_destination(tmp_path, make_run, export_registry):
    run_dir = make_run(tmp_path / "run", "mlp", stages=("warmup", "finetune"), checkpoints=("warmup",))
    report = export_run(run_dir, registry=export_registry, formats="onnx", which="last", out=tmp_path / "dest")
    assert report.stage == "warmup" and report.which == "last" and report.checkpoint.endswith("warmup/last.safetensors")
    assert [p.name for p in (tmp_path / "dest").iterdir()] != [] and not (run_dir / "export").exists()
    with pytest.raises(CheckpointError) as caught:
        export_run(run_dir, registry=export_registry, stage="finetune")
    assert "warmup" in caught.value.problems[0].hint
    with pytest.raises(UsageError) as caught:
        export_run(run_dir, registry=export_registry, stage="finetun")
    assert caught.value.problems[0].hint == 'did you mean "finetune"?'


def test_nothing_to_export(tmp_path, make_run, export_registry):
    with pytest.raises(UsageError):
        export_run(tmp_path, registry=export_registry)  # no plan.json
    run_dir = make_run(tmp_path / "run", "mlp", checkpoints=())
    with pytest.raises(CheckpointError):
        export_run(run_dir, registry=export_registry)
    with pytest.raises(UsageError) as caught:
        export_run(run_dir, registry=export_registry, formats=["onnx", "onx"])
    assert caught.value.problems[0].hint == 'did you mean "onnx"?'


def test_a_checkpoint_that_does_not_fit_is_a_checkpoint_error(tmp_path, make_run, export_registry):
    from safetensors.torch import load_file, save_file

    run_dir = make_run(tmp_path / "run", "mlp")
    path = run_dir / "stages" / "fit" / "best.safetensors"
    state = load_file(path)
    state.pop(sorted(state)[0])
    save_file(state, path)
    with pytest.raises(CheckpointError) as caught:
        export_run(run_dir, registry=export_registry)
    assert "missing" in caught.value.problems[0].message


def test_a_registered_exporter_runs_with_its_arguments(tmp_path, make_run, export_registry):
    run_dir = make_run(tmp_path / "run", "mlp", export={"formats": ["npz_weights"], "npz_weights": {"suffix": "w"}})
    report = export_run(run_dir, registry=export_registry)
    result = report.formats["npz_weights"]
    assert result.status == "unverified" and report.passed
    with np.load(result.files[0]) as data:
        assert "layers.0.weight" in data.files
