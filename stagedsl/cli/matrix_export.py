"""`staged export RUN_DIR --ensemble NAME`: a thin face over `stagedsl.ensemble.export.export_ensemble`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from stagedsl.errors import Problem, UsageError


def export_ensemble_command(run_dir: Path, ensemble: Optional[str], *, out: Optional[Path], json_: bool) -> None:
    """Export one ensemble of a matrix run; without --ensemble on a matrix run, say what to export."""
    from stagedsl.ensemble.export import export_ensemble
    from stagedsl.matrix.layout import MatrixDir

    if ensemble is None:
        index = MatrixDir(run_dir).read_index()
        names = [e["name"] for e in index.get("ensembles") or []]
        raise UsageError([Problem(code="E712", message=f"`{run_dir}` is a matrix run: export one of its ensembles or one member",
                                  path="--ensemble", hint=f"staged export {run_dir} --ensemble {names[0] if names else 'NAME'} "
                                  f"(ensembles: {', '.join(names) or 'none'}), or staged export {run_dir}/members/<member>")])
    if not MatrixDir.holds_matrix(run_dir):
        raise UsageError([Problem(code="E702", message=f"--ensemble needs a matrix run directory; `{run_dir}` is not one",
                                  path="--ensemble", hint="pass the folder `staged run` wrote for a spec with [matrix]")])
    from stagedsl.cli.export_commands import echo_report

    report = echo_report(lambda: export_ensemble(run_dir, ensemble, out=out), render, json_)
    typer.echo(f"exported ensemble `{report.ensemble}` ({report.use} of {len(report.members)} members) in {report.seconds:.1f}s to {report.out}", err=True)


def render(report) -> str:
    """The ensemble export report as a few plain lines."""
    figure = lambda v: "-" if v is None else f"{v:.3g}"  # noqa: E731
    lines = [f"ensemble {report.ensemble} ({report.use}): {report.graph or 'not written'}",
             f"  members: {', '.join(report.members)}",
             f"  max abs error vs PyTorch {figure(report.torch_max_abs)}, vs the fitted ensemble {figure(report.ensemble_max_abs)} "
             f"(atol {report.atol:g}, {report.samples} held-out samples)",
             *(f"  file: {f}" for f in report.files),
             *(f"  note: {n}" for n in report.notices)]
    if report.error:
        lines.append(f"  error: {report.error}")
    lines.append("PASSED" if report.passed else "FAILED")
    return "\n".join(lines)
