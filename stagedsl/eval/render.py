"""Tables of scored runs as plain text: one row per member, ensemble or run, best first."""

from __future__ import annotations

import math
from typing import Any

from stagedsl.eval.metrics import CLASSIFICATION_METRICS, REGRESSION_METRICS, better


def sort_rows(rows: list[dict], metric: str) -> list[dict]:
    """Rows with `metric` first, best first; the others after, in their order."""
    sign = -1.0 if better(metric) == "max" else 1.0

    def key(row: dict) -> tuple:
        value = (row.get("metrics") or {}).get(metric)
        missing = value is None or (isinstance(value, float) and math.isnan(value))
        return (missing, 0.0 if missing else sign * value)

    return sorted(rows, key=key)


def render_table(rows: list[dict], metric: str, *, title: str = "") -> str:
    """``rows`` (name, kind, status, metrics, note) as an aligned table sorted by `metric`."""
    seen = {name for row in rows for name in (row.get("metrics") or {})}
    columns = [m for m in (*CLASSIFICATION_METRICS, *REGRESSION_METRICS) if m in seen]
    header = ("name", "kind", "status", *columns, "note")
    table = [header]
    for row in sort_rows(rows, metric):
        values = row.get("metrics") or {}
        table.append((row["name"], row.get("kind", ""), row.get("status", ""), *(_figure(values.get(c)) for c in columns), row.get("note", "")))
    widths = [max(len(str(r[i])) for r in table) for i in range(len(header))]
    lines = [f"{title}: sorted by {metric} ({'higher' if better(metric) == 'max' else 'lower'} is better)"] if title else []
    lines += ["  ".join(str(cell).ljust(w) for cell, w in zip(r, widths)).rstrip() for r in table]
    return "\n".join(lines) + "\n"


def _figure(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return f"{value:.4f}"


__all__ = ["render_table", "sort_rows"]
