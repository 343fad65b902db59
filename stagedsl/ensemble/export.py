"""`export_ensemble`: a matrix run's ensemble as one ONNX graph, verified twice.

The ensemble is fitted again from the cached predictions (the fit is deterministic, so
no pickled object is ever stored or loaded), the members' best checkpoints are loaded,
and then:

- an averaging ensemble (it has ``weights``: mean, weighted, greedy) becomes one graph:
  every member inside, each output turned into probabilities (softmax, or sigmoid of one
  logit) or values, summed with the weights;
- an ensemble with ``to_onnx`` (stacking) becomes the members' graph, whose output
  ``features`` holds every member's probabilities side by side, composed with the
  meta-learner's graph (`onnx.compose.merge_models`) into one file. When composing fails,
  both graphs are written side by side (``members.onnx``, ``meta.onnx``), said in the report.

Each file is checked by the ONNX checker, run in a fresh onnxruntime process, and
compared on held-out batches with PyTorch (the same graph in eager mode) and with the
Python ensemble's own predictions. Files go to ``ensembles/<name>/export/`` with a
``report.json``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Optional

import attrs
import numpy as np

from stagedsl.errors import ExportError, Problem, StagedError, UsageError
from stagedsl.matrix.layout import MatrixDir


@attrs.define
class EnsembleExportReport:
    """What an ensemble export wrote and how it compared (``report.json``)."""

    run_dir: str
    ensemble: str
    use: str
    members: list
    out: str
    graph: str = ""  # "weighted average" | "composed" | "side by side"
    files: list = attrs.field(factory=list)
    torch_max_abs: Optional[float] = None
    ensemble_max_abs: Optional[float] = None
    atol: float = 1e-4
    samples: int = 0
    passed: bool = False
    notices: list = attrs.field(factory=list)
    error: Optional[str] = None
    seconds: float = 0.0

    def to_json(self) -> str:
        """The report as JSON text."""
        return json.dumps(attrs.asdict(self), indent=2, default=str)


def _torch_scores(output: Any, task: Any) -> Any:
    """The torch twin of `stagedsl.eval.metrics.scores_of`, inside the exported graph."""
    import torch

    if isinstance(output, (tuple, list)):
        output = output[0]
    output = output.float()
    if not task.is_classification:
        return output.flatten(1)
    if output.dim() == 2 and output.shape[1] >= 2:
        return output.softmax(dim=1)
    positive = torch.sigmoid(output.reshape(output.shape[0]))
    return torch.stack([1.0 - positive, positive], dim=1)


def _modules(models: list, weights: Optional[np.ndarray], task: Any) -> Any:
    import torch
    from torch import nn

    class MemberFeatures(nn.Module):
        """Every member's scores, side by side: ``[N, members * width]``."""

        def __init__(self):
            super().__init__()
            self.members = nn.ModuleList(models)

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            return torch.cat([_torch_scores(member(*inputs), task) for member in self.members], dim=1)

    class WeightedAverage(nn.Module):
        """Σ weights[m] · scores of member m."""

        def __init__(self):
            super().__init__()
            self.members = nn.ModuleList(models)
            self.register_buffer("weights", torch.tensor(weights, dtype=torch.float32))

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            stacked = torch.stack([_torch_scores(member(*inputs), task) for member in self.members], dim=0)
            return (stacked * self.weights[:, None, None]).sum(dim=0)

    return (WeightedAverage() if weights is not None else MemberFeatures()).eval()


def export_ensemble(run_dir: Path | str, name: str, *, out: Optional[Path | str] = None, registry: Any = None, opset: int = 18,
                    atol: float = 1e-4, check_batches: int = 4) -> EnsembleExportReport:
    """Export the ensemble `name` of the matrix run in `run_dir` (see the module docstring); an `ExportError` when a check fails."""
    from stagedsl.ensemble.build import load_scores, make_ensemble

    started = time.perf_counter()
    if registry is None:
        from stagedsl.registry import get_registry

        registry = get_registry()
    matrix_dir = MatrixDir(run_dir)
    index = matrix_dir.read_index()
    entry = _entry(index, name)
    record = matrix_dir.read_json(matrix_dir.ensemble_file(name, "ensemble.json")) or {}
    if record.get("status") != "completed":
        raise ExportError([Problem(code="E713", message=f"ensemble `{name}` has not been built ({record.get('status', 'never')})",
                                   hint=f"build it with `staged ensemble {run_dir}`")])
    scores = load_scores(matrix_dir, record["members"], int(index.get("seed") or 0))
    task = scores.task
    ensemble = make_ensemble(registry, entry)
    ensemble.fit(scores.scores["val"], scores.targets["val"], task)
    folder = Path(out) if out is not None else matrix_dir.ensemble_file(name, "export")
    folder.mkdir(parents=True, exist_ok=True)
    for stale in ("model.onnx", "model.onnx.partial", "members.onnx", "meta.onnx", "report.json"):
        (folder / stale).unlink(missing_ok=True)  # nothing from an earlier export may look valid
    report = EnsembleExportReport(str(run_dir), name, entry["use"], list(scores.names), str(folder), atol=atol)
    weights = getattr(ensemble, "weights", None)
    if weights is None and not callable(getattr(ensemble, "to_onnx", None)):
        raise ExportError([Problem(code="E713", message=f"ensemble `{name}` (`{entry['use']}`) is neither a weighted average nor has a meta-learner graph (`to_onnx`): it cannot be one ONNX graph",
                                   hint="export its members one by one: staged export RUN_DIR/members/<member>")])
    models, batches = _members_and_batches(matrix_dir, scores.names, registry, check_batches)
    module = _modules(models, None if weights is None else np.asarray(weights), task)
    try:
        if weights is not None:
            report.graph = "weighted average"
            _export_average(report, folder, module, batches, ensemble, task, opset)
        else:
            _export_stacked(report, folder, module, batches, ensemble, task, opset)
    except StagedError as exc:
        report.error = "; ".join(p.message for p in exc.problems)
    except Exception as exc:  # onnxruntime refusing the graph's inputs, and the like
        report.error = f"{type(exc).__name__}: {str(exc).strip()[:300]}"
    report.seconds = round(time.perf_counter() - started, 3)
    (folder / "report.json").write_text(report.to_json() + "\n", encoding="utf-8")
    if not report.passed:
        error = ExportError([Problem(code="E713", message=f"exporting ensemble `{name}` failed: {report.error}", hint=f"see {folder / 'report.json'}")])
        error.report = report
        raise error
    return report


def _entry(index: dict, name: str) -> dict:
    entries = {e["name"]: e for e in index.get("ensembles") or []}
    if name not in entries:
        from stagedsl.registry import did_you_mean

        raise UsageError([Problem(code="E708", message=f"the run has no ensemble `{name}` (ensembles: {', '.join(entries) or 'none'})",
                                  path="--ensemble", hint=did_you_mean(name, list(entries)))])
    return entries[name]


def _members_and_batches(matrix_dir: MatrixDir, names: tuple, registry: Any, count: int) -> tuple[list, list]:
    """Each member's model (best checkpoint of its last stage, eval, CPU) and held-out input batches."""
    from stagedsl.eval.predictions import source_of
    from stagedsl.export import source as src

    models = []
    for name in names:
        source = source_of(matrix_dir.member(name))
        model = src.build_model(source.plan.model, registry)
        src.load_weights(model, source.checkpoint)
        models.append(model)
        plan = source.plan
    splits = src.build_data(plan.data, registry)
    _, split = src.held_out_split(splits)
    size = plan.data.eval_batch_size or plan.data.batch_size
    batches = [src.fetch(split, a, b)[0] for a, b in src.batch_ranges(len(split), size, count, vary_last=True)]
    return models, batches


def _eager(module: Any, inputs: tuple) -> np.ndarray:
    import torch

    with torch.no_grad():
        return module(*inputs).numpy()


def _member_scores(module: Any, inputs: tuple, task: Any) -> np.ndarray:
    """``[members, N, width]`` in float64, as the cached predictions hold them."""
    import torch

    from stagedsl.eval.metrics import scores_of

    with torch.no_grad():
        outputs = [member(*inputs) for member in module.members]
    return np.stack([scores_of((o[0] if isinstance(o, (tuple, list)) else o).float().numpy(), task) for o in outputs])


def _runner(path: Path, first: tuple) -> Any:
    """The ONNX checker, one batch in a fresh onnxruntime process, then an in-process runner."""
    from stagedsl.export.onnx_io import OnnxRunner, check_onnx, probe_onnx

    check_onnx(path)
    probe_onnx(path, [x.numpy() for x in first])
    return OnnxRunner(path)


def _require(report: EnsembleExportReport, checks: dict) -> None:
    """Raise an `ExportError` naming every comparison (``what -> Parity``) that failed."""
    failures = [f"against {what}: {parity.describe()}" for what, parity in checks.items() if not parity.passed]
    if failures:
        raise ExportError("does not match " + "; ".join(failures), code="E713")


def _export_average(report: EnsembleExportReport, folder: Path, module: Any, batches: list, ensemble: Any, task: Any, opset: int) -> None:
    from stagedsl.export.checks import Parity
    from stagedsl.export.onnx_io import export_onnx, io_names

    final, partial = folder / "model.onnx", folder / "model.onnx.partial"
    _, notice = export_onnx(module, _sample(batches[0]), partial, input_names=io_names(len(batches[0]), "input"),
                            output_names=[_output_name(task)], opset=opset, dynamic_batch=True)
    if notice:
        report.notices.append(notice)
    runner = _runner(partial, batches[0])
    to_torch, to_ensemble = Parity(report.atol, 0.0), Parity(report.atol, 0.0)
    for inputs in batches:
        out = runner([x.numpy() for x in inputs])[0]
        to_torch.update([_eager(module, inputs)], [out])
        to_ensemble.update([np.asarray(ensemble.predict(_member_scores(module, inputs, task)))], [out])
    report.torch_max_abs, report.ensemble_max_abs, report.samples = to_torch.max_abs, to_ensemble.max_abs, to_ensemble.samples
    _require(report, {"PyTorch": to_torch, "the fitted ensemble": to_ensemble})
    partial.replace(final)
    report.files, report.passed = [str(final)], True


def _export_stacked(report: EnsembleExportReport, folder: Path, module: Any, batches: list, ensemble: Any, task: Any, opset: int) -> None:
    """Members' graph (checked against PyTorch), the meta-learner's graph, composed into one (checked against the
    fitted ensemble fed the same features); both parts side by side when they do not compose."""
    import onnx

    from stagedsl.export.checks import Parity
    from stagedsl.export.onnx_io import export_onnx, io_names

    members_path = folder / "members.onnx"
    _, notice = export_onnx(module, _sample(batches[0]), members_path, input_names=io_names(len(batches[0]), "input"),
                            output_names=["features"], opset=opset, dynamic_batch=True)
    if notice:
        report.notices.append(notice)
    members_runner = _runner(members_path, batches[0])
    to_torch, features = Parity(report.atol, 0.0), []
    for inputs in batches:
        features.append(members_runner([x.numpy() for x in inputs])[0])
        to_torch.update([_eager(module, inputs)], [features[-1]])
    report.torch_max_abs = to_torch.max_abs
    _require(report, {"PyTorch (the members' graph)": to_torch})
    try:
        meta = ensemble.to_onnx(opset, task.width)
    except StagedError:
        raise
    except Exception as exc:
        raise ExportError(f"the meta-learner could not be converted to ONNX: {type(exc).__name__}: {exc}", code="E713") from None
    members = len(module.members)
    expected = [np.asarray(ensemble.predict(f.reshape(len(f), members, -1).transpose(1, 0, 2).astype(np.float64))) for f in features]
    try:
        prefixed = onnx.compose.add_prefix(meta, "meta/", rename_inputs=False, rename_outputs=False)
        graph = onnx.load(str(members_path))
        prefixed.ir_version = graph.ir_version = max(graph.ir_version, prefixed.ir_version)
        composed = onnx.compose.merge_models(graph, prefixed, io_map=[("features", "features")])
        onnx.checker.check_model(composed)
    except Exception as exc:  # the converters' graphs do not always compose: keep both parts, say so
        meta_path = folder / "meta.onnx"
        onnx.save(meta, str(meta_path))
        meta_runner = _runner(meta_path, (_tensor(features[0]),))
        to_ensemble = Parity(report.atol, 0.0)
        for f, e in zip(features, expected):
            to_ensemble.update([e], [meta_runner([f])[0]])
        report.ensemble_max_abs, report.samples = to_ensemble.max_abs, to_ensemble.samples
        _require(report, {"the fitted ensemble (meta.onnx)": to_ensemble})
        report.graph = "side by side"
        report.notices.append(f"the members' graph and the meta-learner's do not compose into one ({type(exc).__name__}: {str(exc)[:200]}); "
                              "run members.onnx, then meta.onnx on its `features` output")
        report.files, report.passed = [str(members_path), str(meta_path)], True
        return
    path = folder / "model.onnx"
    onnx.save(composed, str(path))
    runner = _runner(path, batches[0])
    to_ensemble = Parity(report.atol, 0.0)
    for inputs, e in zip(batches, expected):
        to_ensemble.update([e], [runner([x.numpy() for x in inputs])[0]])
    report.ensemble_max_abs, report.samples = to_ensemble.max_abs, to_ensemble.samples
    _require(report, {"the fitted ensemble": to_ensemble})
    members_path.unlink()
    report.graph = "composed"
    report.files, report.passed = [str(path)], True


def _tensor(array: np.ndarray) -> Any:
    import torch

    return torch.from_numpy(np.ascontiguousarray(array))


def _sample(inputs: tuple) -> tuple:
    import torch

    return inputs if len(inputs[0]) >= 2 else tuple(torch.cat([x, x]) for x in inputs)


def _output_name(task: Any) -> str:
    return "probabilities" if task.is_classification else "values"


__all__ = ["EnsembleExportReport", "export_ensemble"]
