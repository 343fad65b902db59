"""`staged export` and `staged predict`: thin faces over `export_run` and `load_package`.

Imported when the CLI starts, so nothing heavy (torch, onnx) is imported at module level.
Data goes to stdout (the report table or JSON, the prediction summary); diagnostics to
stderr; failures are raised as stagedsl errors for the app to render and map to exit codes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, List, Optional

import typer

from stagedsl.cli.output import say
from stagedsl.errors import ExportError, Problem, UsageError


def add_commands(app: typer.Typer) -> None:
    """Add `export` and `predict` to the `staged` app."""
    app.command("export")(export)
    app.command("predict")(predict)


def export(
    run_dir: Path = typer.Argument(..., help="The run directory (holds plan.json and stages/).", show_default=False, metavar="RUN_DIR"),
    stage: Optional[str] = typer.Option(None, "--stage", help="Stage to export (default: the last stage with checkpoints).", metavar="STAGE"),
    which: Optional[str] = typer.Option(None, "--which", help='Checkpoint of the stage: "best" (default) or "last".', metavar="best|last"),
    format_: Optional[str] = typer.Option(None, "--format", "-f", help="Comma-separated formats: onnx,onnx-fp16,package "
                                          "(default: the formats of the spec's [export] section, else all three).", metavar="FORMATS"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Destination folder (default: RUN_DIR/export).", metavar="DIR"),
    profile: Optional[str] = typer.Option(None, "--profile", "-p", help="Take the [export] section of the run's spec file under this profile.", metavar="NAME"),
    set_: Optional[List[str]] = typer.Option(None, "--set", "-s", help="Change an export setting: --set export.fp16_atol=0.05 (repeatable); nothing is retrained.", metavar="KEY=VALUE"),
    json_: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    ensemble: Optional[str] = typer.Option(None, "--ensemble", "-e", help="Export this ensemble of a matrix run as one ONNX graph, verified against PyTorch and the fitted ensemble.", metavar="NAME"),
) -> None:
    """Export a run's checkpoint to ONNX, FP16 ONNX and a model package, each verified against PyTorch (or a matrix run's ensemble).

    A finished run can be exported again with other settings (--set export.key=value,
    --profile) without retraining; the report says which check failed and by how much.
    """
    from stagedsl.export.runner import export_run
    from stagedsl.matrix.layout import MatrixDir

    if ensemble is not None or MatrixDir.holds_matrix(run_dir):
        from stagedsl.cli.matrix_export import export_ensemble_command

        return export_ensemble_command(run_dir, ensemble, out=out, json_=json_)

    formats = [f.strip() for f in format_.split(",") if f.strip()] if format_ else None
    report = echo_report(lambda: export_run(run_dir, stage=stage, which=which, formats=formats, out=out, profile=profile,
                                            overrides=set_ or ()), render_report, json_)
    say(f"exported stage `{report.stage}` ({report.which}) in {report.seconds:.1f}s to {report.out}", err=True)


def echo_report(export: Callable[[], Any], render: Callable[[Any], str], json_: bool) -> Any:
    """Run `export` and print its report (JSON or `render`ed), also when it fails with one."""
    try:
        report = export()
    except ExportError as exc:
        report = getattr(exc, "report", None)
        if report is not None:
            say(report.to_json() if json_ else render(report))
        raise
    say(report.to_json() if json_ else render(report))
    return report


def _figure(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.3g}"


def _tolerance(name: str, result: Any) -> str:
    if result.atol is None:
        return "-"
    if result.atol == 0 and result.rtol == 0:
        return "identical"
    scale = " x scale" if name == "onnx-fp16" else ""
    return f"atol {result.atol:g}{scale}, rtol {result.rtol:g}"


def _scaled(result: Any) -> str:
    from stagedsl.export.checks import percent

    return "-" if result.max_scaled is None else percent(result.max_scaled)


def _metric_lines(before: dict, after: dict) -> list[str]:
    return [f"{name} {value:.4g} -> {after.get(name, float('nan')):.4g}" for name, value in before.items()]


def _details(name: str, result: Any) -> list[str]:
    """The lines under the table for one format: its checks, or its metric before -> after, and its error."""
    lines = []
    if result.checks:
        for check in result.checks:
            mark = ("ok  " if check["passed"] else "FAIL") if check["decides"] else "info"
            lines.append(f"  {mark} {check['detail']}")
        if not any(c["name"].startswith("metric ") for c in result.checks):
            lines += [f"  info {line}" for line in _metric_lines(result.metric_before, result.metric_after)]
    elif result.metric_before:
        lines += [f"  info {line}" for line in _metric_lines(result.metric_before, result.metric_after)]
    if result.error and not result.passed:
        lines.append(f"  {result.status}: {result.error}")
    return [f"{name}:"] + lines if lines else []


def render_report(report: Any) -> str:
    """The export report as plain text: a table, then each format's checks."""
    rows = [("format", "status", "max abs", "of scale", "tolerance", "file")]
    for name, result in report.formats.items():
        files = ", ".join(_short(f, report.out) for f in result.files) or "-"
        rows.append((name, result.status, _figure(result.max_abs), _scaled(result), _tolerance(name, result), files))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    for name, result in report.formats.items():
        lines += _details(name, result)
    if report.prune is not None:
        prune = report.prune
        lines.append(f"prune: amount {prune.amount:g}: {prune.sparsity:.1%} of {prune.tensors} Linear/Conv weight tensors zeroed "
                     f"({prune.model_sparsity:.1%} of all parameters); {', '.join(_metric_lines(prune.metric_before, prune.metric_after)) or '-'}; "
                     f"{_short(prune.file, report.out) if prune.file else '-'}")
    lines.append(f"checked on {report.check_split} batches; report: {_short(str(Path(report.out) / 'report.json'), report.out)}")
    lines.append("PASSED" if report.passed else "FAILED")
    return "\n".join(lines)


def _short(path: str, out: str) -> str:
    try:
        return str(Path(path).relative_to(Path(out)))
    except ValueError:
        return path


def predict(
    package: Path = typer.Argument(..., help="The model package folder (RUN_DIR/export/package).", show_default=False, metavar="PACKAGE"),
    inputs: Path = typer.Argument(..., help="An .npz file with the model's input arrays.", show_default=False, metavar="INPUT.npz"),
    out: Path = typer.Option(..., "--out", "-o", help="The .npz file to write the outputs to.", metavar="OUT.npz"),
    input_key: Optional[List[str]] = typer.Option(None, "--input-key", "-k", help="The npz key of each model input, in order (repeatable; default: the package's input names, or the file's only array).", metavar="KEY"),
    onnx: bool = typer.Option(False, "--onnx", help="Run the package's ONNX model in onnxruntime instead of PyTorch."),
    fp16: bool = typer.Option(False, "--fp16", help="Run the package's float16 ONNX model."),
    batch_size: int = typer.Option(256, "--batch-size", min=1, help="Rows per forward pass.", metavar="N"),
    json_: bool = typer.Option(False, "--json", help="Print what was written as JSON."),
) -> None:
    """Run a model package on the arrays of an .npz file and write its outputs to another .npz."""
    import numpy as np

    import stagedsl

    loaded = stagedsl.load_package(package)
    keys, arrays = _read_inputs(inputs, input_key, loaded)
    outputs = loaded.predict(arrays, onnx=onnx, fp16=fp16, batch_size=batch_size)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    names = loaded.output_names or [f"output_{i}" for i in range(len(outputs))]
    out = out if out.suffix == ".npz" else out.with_name(out.name + ".npz")  # what np.savez writes: say that path
    from stagedsl.engine.checkpointing.safe_io import atomic_write

    atomic_write(out, lambda tmp: _save_npz(tmp, dict(zip(names, outputs))))
    written = {"out": str(out), "backend": "onnx-fp16" if fp16 else "onnx" if onnx else "torch", "inputs": keys,
               "outputs": {name: list(array.shape) for name, array in zip(names, outputs)}}

    if json_:
        say(json.dumps(written))
    else:
        shapes = ", ".join(f"{n} {tuple(s)}" for n, s in written["outputs"].items())
        say(f"{out}: {shapes}")


def _save_npz(path: str, arrays: dict) -> None:
    import numpy as np

    with open(path, "wb") as handle:  # a file object: np.savez adds no second .npz to a name
        np.savez(handle, **arrays)


def _read_inputs(path: Path, given: Optional[List[str]], package: Any) -> tuple[List[str], list]:
    """The npz keys that feed the model and their arrays; E524 for a file that is not an .npz of numbers."""
    import zipfile

    import numpy as np

    if not path.is_file():
        raise UsageError([Problem(code="E524", message=f"input file `{path}` does not exist")])
    expected = _expected(package)
    if not zipfile.is_zipfile(path):
        kind = "a single .npy array, not an .npz archive" if path.read_bytes()[:6] == b"\x93NUMPY" else "not an .npz archive"
        raise UsageError([Problem(code="E524", message=f"`{path}` is {kind}",
                                  hint=f"write the inputs with numpy.savez('{path.name}', x=array); the model takes {expected}")])
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise UsageError([Problem(code="E524", message=f"cannot read `{path}` as .npz: {type(exc).__name__}: {exc}",
                                  hint=f"the model takes {expected}")]) from None
    with archive:
        keys = _input_keys(given, package.input_names, list(archive.files), path)
        arrays = []
        for key in keys:
            try:
                arrays.append(archive[key])
            except ValueError as exc:  # object arrays: pickled Python objects, never loaded
                raise UsageError([Problem(code="E522", message=f"array `{key}` of `{path}` holds Python objects "
                                          f"(dtype object), not numbers: it was not loaded ({exc})",
                                          hint=f"save a numeric array; the model takes {expected}")]) from None
            except Exception as exc:
                raise UsageError([Problem(code="E524", message=f"cannot read array `{key}` of `{path}`: "
                                          f"{type(exc).__name__}: {exc}", hint=f"the model takes {expected}")]) from None
    return keys, arrays


def _expected(package: Any) -> str:
    specs = package.config.get("inputs", []) if isinstance(getattr(package, "config", None), dict) else []
    shown = ["`{}` {} [{}]".format(s.get("name"), s.get("dtype"), ", ".join("batch" if d is None else str(d)
                                                                          for d in s.get("shape") or []))
             for s in specs]
    return ", ".join(shown) or "its inputs (see the package's config.json)"


def _input_keys(given: Optional[List[str]], names: List[str], files: List[str], path: Path) -> List[str]:
    """Which npz arrays feed the model's inputs, in order."""
    if given:
        keys = [k.strip() for item in given for k in item.split(",") if k.strip()]
        missing = [k for k in keys if k not in files]
        if missing:
            raise UsageError([Problem(code="E524", message=f"`{path}` has no array(s) {missing} (it has {files})")])
        return keys
    if names and all(name in files for name in names):
        return list(names)
    if len(names) <= 1 and len(files) == 1:
        return files
    raise UsageError([Problem(code="E524", message=f"cannot tell which arrays of `{path}` ({files}) are the model's inputs {names}",
                              hint="name them with --input-key, in the model's input order")])
