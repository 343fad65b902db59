"""The matrix run's ``summary.json``: every member and every ensemble with its status, error
and metrics; which members failed, were stopped by a gate or are still pending (not
trained yet: ``--member`` chose others, or the run was interrupted); the best member and
ensemble by the run's monitored metric.

Member metrics are computed from the cached predictions (`stagedsl.eval.metrics`, the
same numbers `staged eval` prints); an ensemble's validation metrics are its out-of-fold
ones (see `stagedsl.ensemble.build`). Written after the members train and again after
the ensembles are built, so a failure at any point leaves a summary that says so.
"""

from __future__ import annotations

from typing import Any, Optional

from stagedsl.matrix.layout import MatrixDir, cv_note
from stagedsl.matrix.members import COMPLETED, FAILED, INTERRUPTED, PENDING, STOPPED, error_text, member_status
from stagedsl.run_dir import RunDir


def member_metrics(matrix_dir: MatrixDir, name: str, seed: int) -> tuple[dict, Optional[str]]:
    """``{split: metrics}`` of a member from its predictions (empty when it has none), and the task."""
    from stagedsl.eval.metrics import score, scores_of, task_of
    from stagedsl.eval.predictions import RunPredictions

    path = matrix_dir.predictions(name)
    if not path.is_file():
        return {}, None
    predictions = RunPredictions.load(path)
    first = next(iter(predictions.outputs))
    task = task_of(predictions.outputs[first], predictions.targets[first], seed)
    return {s: score(scores_of(predictions.outputs[s], task), predictions.targets[s], task) for s in predictions.splits}, task.kind


def _best(table: dict, metric: str) -> Optional[str]:
    from stagedsl.eval.metrics import better

    scored = [(name, entry["metrics"]["val"][metric]) for name, entry in table.items()
              if metric in ((entry.get("metrics") or {}).get("val") or {})]
    if not scored:
        return None
    sign = -1.0 if better(metric) == "max" else 1.0
    return min(scored, key=lambda item: sign * item[1])[0]


def write_summary(matrix_dir: MatrixDir, index: dict, *, ensembles: Optional[dict] = None, wall_time_s: Optional[float] = None) -> dict:
    """Gather the members' and ensembles' state into ``summary.json`` and return it."""
    from stagedsl.ensemble.task import EnsembleTask
    from stagedsl.eval.metrics import DEFAULT_MONITOR, monitor_of

    seed = int(index.get("seed") or 0)
    members: dict[str, Any] = {}
    kind = None
    for entry in index["members"]:
        name = entry["name"]
        result = matrix_dir.read_json(matrix_dir.job_result(name)) or {}
        status = member_status(matrix_dir, name)
        if status in (COMPLETED, PENDING) and result.get("status") in (FAILED, INTERRUPTED):
            status = result["status"]  # trained but its predictions failed, or its process died before its run began
        metrics, kind = member_metrics(matrix_dir, name, seed) if status == COMPLETED else ({}, kind)
        member_summary = matrix_dir.read_json(RunDir(matrix_dir.member(name)).summary) or {}
        members[name] = {
            "variant": entry["variant"], "seed": entry["seed"], "status": status,
            "error": error_text(result) if status != COMPLETED else None,
            "wall_time_s": member_summary.get("wall_time_s"), "run_dir": str(matrix_dir.member(name).relative_to(matrix_dir.root)),
            "metrics": metrics,
        }
    previous = matrix_dir.read_json(matrix_dir.summary_file) or {}
    ensembles = ensembles if ensembles is not None else (previous.get("ensembles") or {})
    ensembles = {name: record for name, record in ensembles.items() if name in {e["name"] for e in index.get("ensembles") or []}}
    metric = monitor_of(index.get("monitor"), EnsembleTask(kind, 2, 2)) if kind else DEFAULT_MONITOR["classification"]
    failed = [name for name, m in members.items() if m["status"] in (FAILED, INTERRUPTED)]
    stopped = [name for name, m in members.items() if m["status"] == STOPPED]
    pending = [name for name, m in members.items() if m["status"] not in (COMPLETED, FAILED, INTERRUPTED, STOPPED)]
    failed_ensembles = [name for name, e in ensembles.items() if e.get("status") != "completed"]
    done = not (failed or stopped or pending or failed_ensembles) and len(ensembles) == len(index.get("ensembles") or [])
    summary = {
        "kind": "matrix", "run": index.get("name"), "status": "completed" if done else "incomplete",
        "monitor": metric, "members": members, "ensembles": ensembles,
        "failed": failed, "stopped_by_gate": stopped, "pending": pending, "failed_ensembles": failed_ensembles,
        "best_member": _best(members, metric), "best_ensemble": _best(ensembles, metric),
        "wall_time_s": wall_time_s if wall_time_s is not None else previous.get("wall_time_s"),
    }
    matrix_dir.write_json(matrix_dir.summary_file, summary)
    return summary


def render_summary(summary: dict, split: str = "val") -> str:
    """Members and ensembles as one table of the split's metrics, best first by the monitored metric."""
    from stagedsl.eval.render import render_table

    rows = [{"name": name, "kind": "member", "status": m["status"], "metrics": (m.get("metrics") or {}).get(split) or {},
             "note": m.get("error") or ""} for name, m in summary["members"].items()]
    for name, e in summary["ensembles"].items():
        note = cv_note(e) or ""
        if e.get("missing"):
            note += f"; without failed {', '.join(e['missing'])}"
        if e.get("status") != "completed":
            note = error_text(e) or ""
        rows.append({"name": name, "kind": f"ensemble ({e['use']})", "status": e.get("status", "?"),
                     "metrics": (e.get("metrics") or {}).get(split) or {}, "note": note.strip("; ")})
    return render_table(rows, summary.get("monitor") or "accuracy", title=f"{split} split")


__all__ = ["member_metrics", "render_summary", "write_summary"]
