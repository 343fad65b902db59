"""`evaluate_run`: the metrics of a run directory on one split, as rows sorted by its monitored metric.

A single run is predicted on the fly (its best checkpoint of the last stage, see
`stagedsl.eval.predictions`); a matrix run is read from its caches: each member's
``predictions/<member>.npz`` and each ensemble's ``ensembles/<name>/predictions.npz``
(out-of-fold on the validation split for fitted ensembles). Nothing is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np

from stagedsl.errors import Problem, RunError, UsageError
from stagedsl.eval.metrics import monitor_of, score, scores_of, task_of
from stagedsl.eval.render import sort_rows


def evaluate_run(run_dir: Path | str, *, split: str = "val", registry: Optional[Any] = None) -> dict:
    """``{"kind", "run_dir", "split", "monitor", "task", "rows"}``; each row: name, kind, status, metrics."""
    from stagedsl.matrix.layout import MatrixDir

    run_dir = Path(run_dir)
    if split not in ("val", "test"):
        raise UsageError([Problem(code="E090", message=f"--split must be val or test, found {split!r}", path="--split")])
    if MatrixDir.holds_matrix(run_dir):
        return _matrix(MatrixDir(run_dir), split)
    return _single(run_dir, split, registry)


def _single(run_dir: Path, split: str, registry: Optional[Any]) -> dict:
    from stagedsl.eval.predictions import predict_run
    from stagedsl.export.source import read_summary

    try:
        predictions = predict_run(run_dir, registry=registry, splits=(split,))
    except RunError as exc:
        if exc.problems[0].code != "E700":
            raise
        raise UsageError([Problem(code="E714", message=f"the dataset of `{run_dir}` has no {split} split", path="--split",
                                  hint="try --split val" if split == "test" else None)]) from None
    task = task_of(predictions.outputs[split], predictions.targets[split])
    metrics = score(scores_of(predictions.outputs[split], task), predictions.targets[split], task)
    summary, _ = read_summary(run_dir)
    row = {"name": predictions.meta.get("run") or run_dir.name, "kind": "run", "status": summary.get("status", "?"),
           "metrics": metrics, "stage": predictions.meta["stage"], "which": predictions.meta["which"]}
    monitor = monitor_of(predictions.meta.get("monitor"), task)
    return {"kind": "run", "run_dir": str(run_dir), "split": split, "monitor": monitor, "task": task.kind, "rows": [row]}


def _matrix(matrix_dir: Any, split: str) -> dict:
    from stagedsl.eval.predictions import RunPredictions
    from stagedsl.matrix.layout import member_status

    index = matrix_dir.read_index()
    rows, task = [], None
    for entry in index["members"]:
        name, path = entry["name"], matrix_dir.predictions(entry["name"])
        row = {"name": name, "kind": "member", "status": member_status(matrix_dir, name), "metrics": {}, "variant": entry["variant"],
               "seed": entry["seed"]}
        if path.is_file():
            predictions = RunPredictions.load(path)
            if split in predictions.outputs:
                task = task or task_of(predictions.outputs[split], predictions.targets[split], int(index.get("seed") or 0))
                row["metrics"] = score(scores_of(predictions.outputs[split], task), predictions.targets[split], task)
        rows.append(row)
    for entry in index.get("ensembles") or []:
        record = matrix_dir.read_json(matrix_dir.ensemble_file(entry["name"], "ensemble.json")) or {}
        row = {"name": entry["name"], "kind": f"ensemble ({entry['use']})", "status": record.get("status", "not built"), "metrics": {}}
        path = matrix_dir.ensemble_file(entry["name"], "predictions.npz")
        if record.get("status") == "completed" and path.is_file() and task is not None:
            with np.load(path, allow_pickle=False) as arrays:
                if f"{split}_scores" in arrays.files:
                    row["metrics"] = score(arrays[f"{split}_scores"], arrays[f"{split}_target"], task)
        if record.get("cv"):
            row["cv"] = record["cv"]
        rows.append(row)
    if task is None:
        raise UsageError([Problem(code="E714", message=f"no member of `{matrix_dir.root}` has {split} predictions", path="--split",
                                  hint="has a member finished (staged resume RUN_DIR)? does the dataset have that split? try --split val")])
    monitor = monitor_of(index.get("monitor"), task)
    return {"kind": "matrix", "run_dir": str(matrix_dir.root), "split": split, "monitor": monitor, "task": task.kind,
            "rows": sort_rows(rows, monitor)}


__all__ = ["evaluate_run"]
