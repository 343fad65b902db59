"""`export_run`: from a run directory to verified ONNX, FP16 ONNX and a model package.

The steps, in order (each format is written under a ``.partial`` name, checked, and
only then given its real name; a format that fails is renamed ``*.invalid``)::

    plan.json ─▶ stage + checkpoint ─▶ model (eval, fp32) + held-out batches
      onnx       torch.onnx.export ─▶ onnx.checker ─▶ onnxruntime vs PyTorch (atol, rtol)
      onnx-fp16  float16 graph ─▶ onnxruntime vs PyTorch fp32 (fp16_atol x the output's scale, fp16_rtol)
                 + the stage's metric on the validation split, PyTorch vs fp16, and for a
                 classifier argmax agreement; the verdict (`checks.fp16_checks`) after both
      package    weights + config + preprocessing + metrics + the verified ONNX files,
                 loaded back with `load_package` and compared: outputs must be identical
      <name>     a registered exporter (unverified by stagedsl)
      prune      optional: L1-pruned weights, sparsity and the metric change

``export/report.json`` is always written, with ``"passed": false`` when anything
failed, and the failure is then raised as an `ExportError` (``error.report`` holds
the `ExportReport`).
"""

from __future__ import annotations

import copy
import logging
import shutil
import time
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import attrs

from stagedsl.errors import ExportError, Problem, StagedError
from stagedsl.export import source as src
from stagedsl.export.checks import Agreement, Parity, fp16_checks
from stagedsl.export.metric_pass import run_metric_pass, torch_outputs
from stagedsl.export.onnx_io import OnnxRunner, check_onnx, convert_fp16, export_onnx, io_names, probe_onnx
from stagedsl.export.options import BUILTIN_FORMATS, ONNX, ONNX_FP16, PACKAGE, ExportOptions, override_options, profile_options, resolve_options
from stagedsl.export.report import FAILED, PASSED, REPORT, SKIPPED, UNVERIFIED, ExportReport, FormatResult, PruneResult, failure_hint
from stagedsl.run_dir import RunDir

log = logging.getLogger("stagedsl.export")

FILES = {ONNX: "model.onnx", ONNX_FP16: "model.fp16.onnx", PACKAGE: "package"}
PRUNED = "model.pruned.safetensors"
INTERMEDIATE = ".model.onnx"  # the fp32 graph behind an fp16-only export, removed afterwards


@attrs.frozen
class ExportContext:
    """What a registered exporter receives: the model (eval, CPU, fp32), a sample batch and where to write."""

    model: Any
    sample: tuple
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    out: Path
    plan: Any
    stage: str
    options: ExportOptions


def export_run(
    run_dir: Path | str,
    *,
    stage: Optional[str] = None,
    which: Optional[str] = None,
    formats: Optional[Sequence[str] | str] = None,
    out: Optional[Path | str] = None,
    options: Optional[Mapping[str, Any]] = None,
    registry: Optional[Any] = None,
    profile: Optional[str] = None,
    overrides: Sequence[str] = (),
) -> ExportReport:
    """Export a run's checkpoint and verify every file against PyTorch.

    The settings, later winning: the plan's ``[export]`` section; with `profile`, that
    section of the run's spec file under the profile; `overrides` (``"export.key=value"``
    strings, as ``--set``); `options` (keys: `stagedsl.plan.model.ExportPlan`); `stage`,
    `which` ("best" | "last", default "best") and `formats`. So a finished run is exported
    again with other settings without retraining. Files go to `out` (default
    ``RUN_DIR/export``). Raises `ExportError` when a format fails, `CheckpointError` /
    `UsageError` when there is nothing sound to export. The run directory's lock is held
    meanwhile (E441 while another process writes the run).
    """
    run_dir = Path(run_dir)
    settings = dict(stage=stage, which=which, formats=formats, out=out, options=options, registry=registry, profile=profile,
                    overrides=overrides)
    if not run_dir.is_dir():  # no lock to take: reading it says what is wrong
        return _export_run(run_dir, **settings)
    with RunDir(run_dir).lock("export", required=False):  # a read-only run can still be exported elsewhere
        return _export_run(run_dir, **settings)


def _export_run(run_dir: Path, *, stage: Optional[str], which: Optional[str], formats: Optional[Sequence[str] | str],
                out: Optional[Path | str], options: Optional[Mapping[str, Any]], registry: Optional[Any],
                profile: Optional[str], overrides: Sequence[str]) -> ExportReport:
    started = time.perf_counter()
    if registry is None:
        from stagedsl.registry import get_registry

        registry = get_registry()
    plan = src.read_plan(run_dir)
    layers = [plan.export, profile_options(plan.spec_file, profile, registry) if profile else None, override_options(overrides)]
    opts = resolve_options(*layers, options, {"stage": stage, "which": which, "formats": formats}, registry=registry)
    source = src.open_run(run_dir, stage=opts.stage, which=opts.which)
    out = Path(out) if out is not None else RunDir(run_dir).export
    out.mkdir(parents=True, exist_ok=True)
    _clear_previous(out, opts)

    from stagedsl import __version__

    report = ExportReport(str(run_dir), str(out), source.stage.name, source.which, str(source.checkpoint), stagedsl_version=__version__)
    _, summary_notice = src.read_summary(run_dir)
    if summary_notice:
        _notice(report, summary_notice)

    model = src.build_model(plan.model, registry)
    src.load_weights(model, source.checkpoint)
    splits = src.build_data(plan.data, registry)
    split_name, split = src.held_out_split(splits)
    report.check_split = split_name
    batch_size = plan.data.eval_batch_size or plan.data.batch_size
    ranges = src.batch_ranges(len(split), batch_size, opts.check_batches, vary_last=opts.dynamic_batch)
    if not opts.dynamic_batch:  # a fixed batch axis takes batches of the traced size only
        ranges = [r for r in ranges if r[1] - r[0] == ranges[0][1] - ranges[0][0]]
    check = [src.fetch(split, a, b) for a, b in ranges]
    references = [torch_outputs(model, inputs) for inputs, _ in check]
    sample = _sample(check[0][0], opts.dynamic_batch)
    input_names = io_names(len(sample), "input")
    output_names = io_names(len(references[0]), "output")
    job = _Job(report, opts, out, model, check, references, sample, input_names, output_names)

    wanted = set(opts.formats)
    onnx_path = job.onnx(keep=ONNX in wanted) if wanted & {ONNX, ONNX_FP16} else None
    fp16_runner = job.fp16(onnx_path) if ONNX_FP16 in wanted else None
    metrics = {}
    if fp16_runner is not None or opts.prune is not None or PACKAGE in wanted:
        metrics = job.metrics(split, batch_size, source.stage.metrics, registry, fp16_runner, split_name)
    job.settle_fp16()
    if PACKAGE in wanted:
        job.package(source, plan, splits, registry, metrics)
    for name in opts.formats:
        if name not in BUILTIN_FORMATS:
            job.registered(name, registry, plan, source.stage.name)
    if ONNX not in wanted:  # the fp32 graph made only to derive the fp16 one
        for path in (out / INTERMEDIATE, out / f"{INTERMEDIATE}.invalid"):
            path.unlink(missing_ok=True)

    report.seconds = round(time.perf_counter() - started, 3)
    (out / REPORT).write_text(report.to_json() + "\n", encoding="utf-8")
    if not report.passed:
        problems = [Problem(code="E512", message=f"export format `{name}` {result.status}: {result.error}",
                            hint=failure_hint(name, report, run_dir, out))
                    for name, result in report.formats.items() if not result.passed]
        error = ExportError(problems)
        error.report = report
        raise error
    return report


def _clear_previous(out: Path, opts: ExportOptions) -> None:
    """Remove this export's earlier outputs, so nothing stale looks valid."""
    names = [FILES[f] for f in opts.formats if f in FILES] + [REPORT, PRUNED, INTERMEDIATE]
    for name in names:
        for path in (out / name, out / f"{name}.partial", out / f"{name}.invalid"):
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()


def _notice(report: ExportReport, text: str) -> None:
    report.notices.append(text)
    log.warning(text)


def _sample(inputs: tuple, dynamic_batch: bool) -> tuple:
    """The export's example batch: a dynamic batch axis needs at least two rows."""
    import torch

    if dynamic_batch and len(inputs[0]) < 2:
        return tuple(torch.cat([x, x]) for x in inputs)
    return inputs


def _move(path: Path, target: Path) -> None:
    if target.is_dir():
        shutil.rmtree(target)
    elif target.exists():
        target.unlink()
    path.rename(target)


@attrs.define
class _Job:
    """One export in progress: what every format step shares."""

    report: ExportReport
    opts: ExportOptions
    out: Path
    model: Any
    check: list
    references: list
    sample: tuple
    input_names: list
    output_names: list
    pending_fp16: Optional[tuple] = None  # (result, partial, final, parity, started): judged after the metric pass
    agreement: Agreement = attrs.field(factory=Agreement)

    def _compare(self, runner: Any, atol: float, rtol: float, scaled: bool = False) -> Parity:
        parity = Parity(atol, rtol, scaled=scaled)
        for (inputs, _), reference in zip(self.check, self.references):
            parity.update(reference, runner([x.numpy() for x in inputs]))
        return parity

    def _verify_onnx(self, path: Path, atol: float, rtol: float, scaled: bool = False) -> tuple[Parity, OnnxRunner]:
        """Checker, a fresh-process run of the first batch, then every check batch in process."""
        check_onnx(path)
        probed = probe_onnx(path, [x.numpy() for x in self.check[0][0]])
        runner = OnnxRunner(path)
        parity = self._compare(runner, atol, rtol, scaled)
        parity.update(self.references[0], probed, count=False)
        return parity, runner

    def _settle(self, result: FormatResult, partial: Path, final: Path, parity: Optional[Parity], started: float) -> bool:
        """Record the figures; give the file its real name if it passed, else ``*.invalid``."""
        if parity is not None:
            result.max_abs, result.max_rel, result.worst = parity.max_abs, parity.max_rel, parity.worst
            result.max_scaled = parity.max_scaled
            result.atol, result.rtol, result.batches, result.samples = parity.atol, parity.rtol, parity.batches, parity.samples
            if result.checks:
                failed = [c["detail"] for c in result.checks if c["decides"] and not c["passed"]]
                if parity.problem or failed:
                    result.error = "does not match PyTorch: " + "; ".join(([parity.problem] if parity.problem else []) + failed)
            elif not parity.passed:
                result.error = f"does not match PyTorch: {parity.describe()}"
        result.seconds = round(time.perf_counter() - started, 3)
        passed = result.error is None
        result.status = PASSED if passed else FAILED
        if partial.exists():
            target = final if passed else final.with_name(final.name + ".invalid")
            _move(partial, target)
            result.files = [str(target)] if passed else []
        return passed

    def onnx(self, *, keep: bool) -> Optional[Path]:
        """Export and verify the fp32 graph. Returns its path when it passed."""
        started = time.perf_counter()
        result = FormatResult(ONNX)
        final = self.out / (FILES[ONNX] if keep else INTERMEDIATE)
        partial = final.with_name(final.name + ".partial")
        parity = None
        try:
            result.exporter, notice = export_onnx(
                self.model, self.sample, partial, input_names=self.input_names, output_names=self.output_names,
                opset=self.opts.opset, dynamic_batch=self.opts.dynamic_batch,
            )
            if notice:
                _notice(self.report, notice)
            parity, _ = self._verify_onnx(partial, self.opts.atol, self.opts.rtol)
        except StagedError as exc:
            result.error = "; ".join(p.message for p in exc.problems)
        except Exception as exc:  # onnxruntime refusing the graph's inputs, and the like
            result.error = f"{type(exc).__name__}: {str(exc).strip()[:300]}"
        passed = self._settle(result, partial, final, parity, started)
        if keep:
            self.report.formats[ONNX] = result
        elif not passed:
            self.report.formats[ONNX_FP16] = attrs.evolve(result, format=ONNX_FP16, files=[],
                                                          error=f"the fp32 graph it derives from failed: {result.error}")
        return final if passed else None

    def fp16(self, onnx_path: Optional[Path]) -> Optional[OnnxRunner]:
        """Convert to float16 and compare with PyTorch fp32. Returns its runner when it runs; the verdict
        waits for the metric pass (`settle_fp16`)."""
        if ONNX_FP16 in self.report.formats:
            return None  # already failed with its fp32 source
        started = time.perf_counter()
        result = self.report.formats[ONNX_FP16] = FormatResult(ONNX_FP16)
        if onnx_path is None:
            result.error = "the fp32 ONNX export failed"
            result.status = SKIPPED
            return None
        final = self.out / FILES[ONNX_FP16]
        partial = final.with_name(final.name + ".partial")
        parity, runner = None, None
        try:
            notice = convert_fp16(onnx_path, partial, keep_io_types=self.opts.keep_io_types)
            if notice:
                _notice(self.report, notice)
            parity, runner = self._verify_onnx(partial, self.opts.fp16_atol, self.opts.fp16_rtol, scaled=True)
        except StagedError as exc:
            result.error = "; ".join(p.message for p in exc.problems)
        except Exception as exc:
            result.error = f"{type(exc).__name__}: {str(exc).strip()[:300]}"
        result.exporter = "float16"
        if result.error is not None or parity.problem is not None:
            self._settle(result, partial, final, parity, started)
            return None
        self.pending_fp16 = (result, partial, final, parity, started)
        return runner

    def settle_fp16(self) -> None:
        """The fp16 verdict, from the element-wise figures, argmax agreement and the metric before/after."""
        if self.pending_fp16 is None:
            return
        result, partial, final, parity, started = self.pending_fp16
        self.pending_fp16 = None
        result.agreement, result.agreement_rows = self.agreement.rate, self.agreement.rows
        checks = fp16_checks(parity, self.agreement, result.metric_before, result.metric_after,
                             min_agreement=self.opts.fp16_min_agreement, metric_tol=self.opts.fp16_metric_tol)
        result.checks = [c.to_dict() for c in checks]
        self._settle(result, partial, final, parity, started)

    def metrics(self, split: Any, batch_size: int, refs: Sequence[Any], registry: Any, fp16_runner: Any, split_name: str) -> dict:
        """The metric pass (`metric_pass`): PyTorch's metric, fp16's (and agreement), the pruned model's. Returns PyTorch's values."""
        started = time.perf_counter()
        pruned = None
        if self.opts.prune is not None:
            from stagedsl.export.prune import prune_model

            pruned = copy.deepcopy(self.model)
            counts = prune_model(pruned, self.opts.prune.amount)
            self.report.prune = PruneResult(amount=self.opts.prune.amount, **counts)
        measured = run_metric_pass(self.model, split, batch_size, refs, registry, samples=self.opts.metric_samples,
                                   fp16_runner=fp16_runner, pruned=pruned)
        for text in measured.notices:
            _notice(self.report, text)
        self.agreement = measured.agreement
        if measured.fp16 is not None:
            fp16 = self.report.formats[ONNX_FP16]
            fp16.metric_before, fp16.metric_after = measured.before, measured.fp16
        if pruned is not None:
            from safetensors.torch import save_model

            prune = self.report.prune
            prune.metric_before, prune.metric_after = measured.before, measured.pruned
            save_model(pruned, str(self.out / PRUNED), metadata={"format": "pt", "pruned_amount": str(prune.amount)})
            prune.file = str(self.out / PRUNED)
        log.info("metrics on the %s split (%d samples) in %.2fs", split_name, measured.samples, time.perf_counter() - started)
        return measured.before

    def package(self, source: Any, plan: Any, splits: Any, registry: Any, metrics: dict) -> None:
        """Write the package, load it back and require identical outputs."""
        from stagedsl.export.package import load_package, tensor_specs, write_package

        started = time.perf_counter()
        result = self.report.formats[PACKAGE] = FormatResult(PACKAGE)
        failed = [name for name in (ONNX, ONNX_FP16) if name in self.report.formats and not self.report.formats[name].passed]
        if failed:
            result.error = f"it would hold the failed format(s) {', '.join(failed)}; nothing was written"
            return
        final = self.out / FILES[PACKAGE]
        partial = final.with_name(final.name + ".partial")
        onnx_files = {kind: self.out / FILES[name] for kind, name in (("fp32", ONNX), ("fp16", ONNX_FP16)) if name in self.report.formats}
        outputs = [x for x in self.references[0]]
        import torch

        config = {
            "stagedsl_version": self.report.stagedsl_version,
            "torch_version": torch.__version__.split("+")[0],
            "model": {"name": plan.model.name, "args": plan.model.args},
            "inputs": tensor_specs(self.input_names, self.sample),
            "outputs": tensor_specs(self.output_names, [torch.from_numpy(o) for o in outputs]),
            "onnx": {"opset": self.opts.opset, "dynamic_batch": self.opts.dynamic_batch, "keep_io_types": self.opts.keep_io_types},
            "source": {"run": plan.run.name, "run_dir": str(source.run_dir), "stage": source.stage.name, "which": source.which,
                       "plan_hash": plan.hash, "spec_file": plan.spec_file},
        }
        preprocessing = {"dataset": {"name": plan.data.name, "args": plan.data.args}, "stats": splits.stats}
        metrics_doc = {"stage": source.stage.name, "which": source.which, "metrics": source.checkpoint_metrics, "summary": source.stage_summary,
                       "export_check": {"split": self.report.check_split, "metrics": metrics}}
        parity = None
        try:
            write_package(partial, model=self.model, config=config, preprocessing=preprocessing, metrics=metrics_doc, onnx_files=onnx_files)
            package = load_package(partial, registry=registry)
            parity = self._compare(lambda arrays: _as_list(package.predict(arrays)), 0.0, 0.0)
        except StagedError as exc:
            result.error = "; ".join(p.message for p in exc.problems)
        except Exception as exc:
            result.error = f"{type(exc).__name__}: {str(exc).strip()[:300]}"
        result.exporter = "safetensors"
        self._settle(result, partial, final, parity, started)

    def registered(self, name: str, registry: Any, plan: Any, stage: str) -> None:
        """Run a registered exporter; its files are recorded, not verified."""
        started = time.perf_counter()
        result = self.report.formats[name] = FormatResult(name)
        entry = registry.get("exporters", name)
        context = ExportContext(self.model, self.sample, tuple(self.input_names), tuple(self.output_names), self.out, plan, stage, self.opts)
        try:
            paths = registry.build("exporters", name, self.opts.exporters.get(name, {}), at=f"export.exporters.{name}", phase="export")(context)
            result.files = [str(p) for p in paths or []]
            result.status = UNVERIFIED
            result.exporter = entry.plugin
        except Exception as exc:
            result.status = FAILED
            result.error = f"exporter `{name}` (plugin `{entry.plugin}`) failed: {type(exc).__name__}: {exc}"
        result.seconds = round(time.perf_counter() - started, 3)


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, tuple) else [value]
