"""The search's results: ``summary.json``, the table at the end, and ``best.toml``.

``summary.json`` holds the best trial (its value, parameters and run directory), the
counts (complete, pruned, failed, running; stages trained and stages reused) and one row
per trial (number, parameters, objective, state, time, which stages it reused and from
where, why it was pruned or failed) — plain data, what ``staged report`` and a script read.
``best.toml`` is the best trial's spec: the spec as it ran (extends, profile and --set
applied) with the best parameters written in and without ``[search]``; `staged run` runs it.
"""

from __future__ import annotations

import math
from typing import Any, Optional

from stagedsl.search.layout import SearchDir, storage_of
from stagedsl.search.study import COMPLETE, FAILED, PRUNED, RUNNING


def trial_rows(search_dir: SearchDir, records: list[dict]) -> list[dict]:
    """One row per trial: the study's record joined with the trial's result file (when this machine ran it)."""
    rows = []
    for record in records:
        result = search_dir.read_json(search_dir.job_result(record["number"])) or {}
        attrs = record.get("attrs") or {}
        rows.append({
            "trial": record["number"], "state": record["state"], "value": record.get("value"), "params": record.get("params") or {},
            "wall_time_s": result.get("wall_time_s", attrs.get("wall_time_s")),
            "reused": result.get("reused", attrs.get("reused")) or {}, "trained": result.get("trained", attrs.get("trained")) or [],
            "pruned_by": result.get("pruned_by", attrs.get("pruned_by")), "error": attrs.get("error") or _error(result),
            "run_dir": result.get("run_dir", attrs.get("run_dir")),
        })
    return rows


def _error(result: dict) -> Optional[str]:
    from stagedsl.matrix.jobs import error_text

    return error_text(result) if result.get("state") == FAILED else None


def best_row(rows: list[dict], direction: str) -> Optional[dict]:
    """The complete trial with the best objective (the lowest number among equals)."""
    done = [r for r in rows if r["state"] == COMPLETE and isinstance(r["value"], (int, float)) and math.isfinite(r["value"])]
    if not done:
        return None
    sign = -1.0 if direction == "maximize" else 1.0
    return min(done, key=lambda r: (sign * r["value"], r["trial"]))


def write_summary(search_dir: SearchDir, index: dict, records: list[dict], *, wall_time_s: Optional[float] = None) -> dict:
    """Gather the study's trials into ``summary.json`` and return it."""
    rows = trial_rows(search_dir, records)
    best = best_row(rows, index["direction"])
    counts = {state: sum(r["state"] == state for r in rows) for state in (COMPLETE, PRUNED, FAILED, RUNNING)}
    counts["stages_reused"] = sum(len(r["reused"]) for r in rows)
    counts["stages_trained"] = sum(len(r["trained"]) for r in rows)
    finished = counts[COMPLETE] + counts[PRUNED] + counts[FAILED]
    previous = search_dir.read_json(search_dir.summary_file) or {}
    summary = {
        "kind": "search", "run": index["name"], "status": "completed" if finished >= index["trials"] and not counts[RUNNING] else "incomplete",
        "metric": index["metric"], "direction": index["direction"], "sampler": index["sampler"], "seed": index["seed"],
        "trials_planned": index["trials"], "storage": storage_of(search_dir, index), "study": index["study"],
        "best": {"trial": best["trial"], "value": best["value"], "params": best["params"], "run_dir": best["run_dir"]} if best else None,
        "counts": counts, "trials": rows,
        "wall_time_s": wall_time_s if wall_time_s is not None else previous.get("wall_time_s"),
    }
    search_dir.write_json(search_dir.summary_file, summary)
    return summary


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def render_table(summary: dict) -> str:
    """The trials as a table: number, each parameter, objective, state, time, reused stages; the best marked."""
    rows = summary["trials"]
    keys = list(rows[0]["params"]) if rows else []
    best = (summary.get("best") or {}).get("trial")
    header = ["trial", *keys, summary["metric"], "state", "time", "reused"]
    table = [header]
    for row in rows:
        state = row["state"] + (f" ({row['pruned_by']['by']})" if row.get("pruned_by") else "")
        time_s = f"{row['wall_time_s']:.1f}s" if isinstance(row.get("wall_time_s"), (int, float)) else "-"
        value = _cell(row["value"]) if row["value"] is not None else "-"
        table.append([f"{row['trial']}{' *' if row['trial'] == best else ''}", *[_cell(row["params"].get(k)) for k in keys], value,
                      state, time_s, ", ".join(row["reused"]) or "-"])
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in table]
    counts = summary["counts"]
    lines.append(f"{counts[COMPLETE]} complete, {counts[PRUNED]} pruned, {counts[FAILED]} failed"
                 + (f", {counts[RUNNING]} running" if counts[RUNNING] else "")
                 + f"; stages trained {counts['stages_trained']}, reused {counts['stages_reused']}")
    if summary.get("best"):
        b = summary["best"]
        lines.append(f"best: trial {b['trial']}, {summary['metric']} = {_cell(b['value'])} ("
                     + ", ".join(f"{k} = {v!r}" for k, v in b["params"].items()) + ")")
    return "\n".join(lines) + "\n"


def write_best_spec(search_dir: SearchDir, spec: Any, summary: dict) -> Optional[str]:
    """``best.toml``: the best trial's spec, runnable by `staged run` (None when no trial completed)."""
    import tomli_w

    from stagedsl.engine.checkpointing.safe_io import atomic_write_text
    from stagedsl.spec.loader import anchored
    from stagedsl.spec.search import trial_document

    best = summary.get("best")
    if not best:
        return None
    document = trial_document(spec, best["params"], name=f"{summary['run']}-best")
    document["run"].pop("out", None)
    shown = ", ".join(f"{k} = {v!r}" for k, v in best["params"].items())
    header = (f"# the best trial of search {summary['run']} ({search_dir.root}): trial {best['trial']}, "
              f"{summary['metric']} = {best['value']:.6g}\n# {shown}\n"
              f"# its spec: {spec.file}" + (f" with profile {spec.profile}" if spec.profile else "")
              + " as it ran (extends, profile and --set applied), the best parameters written in, without [search]\n")
    text = header + tomli_w.dumps(anchored(document, spec.root))
    atomic_write_text(search_dir.best_spec, text)
    return text


__all__ = ["best_row", "render_table", "trial_rows", "write_best_spec", "write_summary"]
