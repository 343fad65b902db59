"""`staged report RUN_DIR [B]`: a thin face over `stagedsl.report` (a run's, a matrix's or a search's page, or two runs side by side).

Imported when the CLI starts, so nothing heavy (matplotlib) is imported at module level.
The page's path goes to stdout (or the report as JSON with ``--json``); the hints and
what was written go to stderr.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer


def add_commands(app: typer.Typer) -> None:
    """Add `report` to the `staged` app."""
    app.command("report")(report)


def report(
    run_dir: Path = typer.Argument(..., help="The run directory: a run (plan.json, summary.json, metrics.jsonl), a matrix "
                                   "run (matrix.json, members/) or a search (search.json, trials/).",
                                   show_default=False),
    b: Optional[Path] = typer.Argument(None, help="A second run directory: compare the two side by side "
                                       "(RUN_DIR is A).", show_default=False),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for index.html and its figures "
                                       "(default: RUN_DIR/report; for A B: A/report/vs_<B>)."),
    open_: bool = typer.Option(False, "--open", help="Open the page in the web browser when it is written."),
    json_: bool = typer.Option(False, "--json", help="Print what was written (page, figures, hints) as JSON."),
) -> None:
    """Draw a run as one self-contained HTML page: loss, metrics and LR over the plan, stages, gates, hints.

    A matrix run's page compares its members and ensembles (a table and a bar chart, the best
    marked), then shows every member; a search's page shows the objective per trial with the
    best so far, the trials, parameter importance, then its best trial.
    """
    if b is not None:
        from stagedsl.report.compare import write_comparison

        written = write_comparison(run_dir, b, out)
    else:
        from stagedsl.report.build import write_report

        written = write_report(run_dir, out)
    for hint in written.hints:
        typer.echo(f"{'warning' if hint.severity == 'warning' else 'note'}: step {hint.step}: {hint.message}", err=True)
    typer.echo(f"report: {written.index} ({len(written.figures)} figures, {len(written.hints)} hints)", err=True)
    typer.echo(json.dumps(written.to_dict(), indent=2) if json_ else str(written.index))
    if open_:
        import webbrowser

        if not webbrowser.open(written.index.resolve().as_uri()):
            typer.echo(f"no web browser could be started here; open {written.index.resolve().as_uri()} yourself", err=True)
