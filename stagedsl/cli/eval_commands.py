"""`staged eval`: a thin face over `stagedsl.eval.runs.evaluate_run`.

Imported when the CLI starts, so nothing heavy is imported at module level. The table
(or JSON) is data and goes to stdout.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer


def add_commands(app: typer.Typer) -> None:
    """Add `eval` to the `staged` app."""
    app.command("eval")(eval_)


def eval_(
    run_dir: Path = typer.Argument(..., help="A run directory: a single run or a matrix run.", show_default=False),
    split: str = typer.Option("val", "--split", help='The split to score: "val" or "test".'),
    json_: bool = typer.Option(False, "--json", help="Print the rows as JSON."),
) -> None:
    """Score a run on a split: accuracy, F1, precision, recall, ROC-AUC (classification) or MAE, RMSE, nRMSE; per member and ensemble."""
    from stagedsl.eval.render import render_table
    from stagedsl.eval.runs import evaluate_run
    from stagedsl.registry import get_registry

    result = evaluate_run(run_dir, split=split, registry=get_registry())
    if json_:
        typer.echo(json.dumps(result, indent=2, default=str))
        return
    rows = []
    for row in result["rows"]:
        cv = row.get("cv")
        note = f"cv {cv['metric']} {cv['mean']:.4f} ± {cv['std']:.4f} over {cv['folds']} folds" if cv and split == "val" else ""
        rows.append({**row, "note": note})
    typer.echo(render_table(rows, result["monitor"], title=f"{result['run_dir']}, {split} split"), nl=False)
