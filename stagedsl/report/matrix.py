"""A matrix run's report: its members and ensembles compared (seed 002's table, a bar chart), then
every member as the single-run report shows a run.

It reads the matrix's ``matrix.json`` and ``summary.json`` (members and ensembles with their
status and validation metrics, the monitored metric, the best of each) and each member's run
directory (``members/<name>/``) through `read_run`; it never runs or changes anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import attrs

from stagedsl.eval.metrics import CLASSIFICATION_METRICS, REGRESSION_METRICS, better
from stagedsl.eval.render import sort_rows
from stagedsl.matrix.layout import MatrixDir, cv_note, error_text, member_status
from stagedsl.report import draw
from stagedsl.report.build import Part, Report, run_part, write_page
from stagedsl.report.figures import Figure
from stagedsl.report.page import Section, code, escape, figure, paragraph, table
from stagedsl.report.rundata import is_finite
from stagedsl.report.sections import duration, status_badge, value
from stagedsl.run_dir import RunDir

SPLIT = "val"
ENSEMBLE_COLOR = "#444444"
BEST_EDGE = "#d4a000"


@attrs.frozen
class Entry:
    """One row of the comparison: a member or an ensemble, with its validation metrics."""

    name: str
    kind: str  # "member" | "ensemble"
    what: str  # a member's variant and seed, an ensemble's method and members
    status: str
    metrics: dict
    note: str = ""
    group: str = ""  # the colour group: a member's variant, "ensemble"

    @property
    def anchor(self) -> str:
        """The id of the member's part of the page (ensembles have none)."""
        return f"member-{self.name}" if self.kind == "member" else ""


def entries(index: dict, summary: dict, matrix_dir: MatrixDir) -> list[Entry]:
    """The members (from the summary, or the index with each member's status when there is no summary yet) and ensembles."""
    out = []
    recorded = summary.get("members") or {}
    for item in index.get("members") or []:
        name = item["name"]
        m = recorded.get(name) or {}
        status = m.get("status") or member_status(matrix_dir, name)
        out.append(Entry(name, "member", f"variant {item.get('variant')}, seed {item.get('seed')}", status,
                         (m.get("metrics") or {}).get(SPLIT) or {}, m.get("error") or "", str(item.get("variant"))))
    recorded = summary.get("ensembles") or {}
    for item in index.get("ensembles") or []:
        name = item["name"]
        e = recorded.get(name) or {}
        members = e.get("members") or []
        what = f"{e.get('use') or item.get('use')} of {len(members)} member{'s' if len(members) != 1 else ''}" if members else \
            str(e.get("use") or item.get("use"))
        notes = []
        notes.append(cv_note(e))
        if e.get("missing"):
            notes.append(f"without failed {', '.join(e['missing'])}")
        if e.get("status") not in (None, "completed"):
            notes = [error_text(e)]
        out.append(Entry(name, "ensemble", what, str(e.get("status") or "pending"), (e.get("metrics") or {}).get(SPLIT) or {},
                         "; ".join(n for n in notes if n), "ensemble"))
    return out


def metric_columns(rows: list[Entry]) -> list[str]:
    """The validation metrics any row has, in the eval tables' order."""
    seen = {name for row in rows for name in row.metrics}
    known = [m for m in (*CLASSIFICATION_METRICS, *REGRESSION_METRICS) if m in seen]
    return known + sorted(seen - set(known))


def best_of(rows: list[Entry], metric: str) -> set[str]:
    """The names of the rows best on `metric` (all of them when several tie)."""
    scored = [r for r in rows if is_finite(r.metrics.get(metric))]
    if not scored:
        return set()
    pick = max if better(metric) == "max" else min
    top = pick(r.metrics[metric] for r in scored)
    return {r.name for r in scored if r.metrics[metric] == top}


def _tied_with(rows: list[Entry], kind: str, chosen: Optional[str], monitor: str) -> set[str]:
    """The matrix's best `kind` (`chosen`, from its summary) and every row of that kind with the same monitored value."""
    if chosen is None:
        return set()
    of_kind = [r for r in rows if r.kind == kind]
    tied = best_of(of_kind, monitor)
    return tied if chosen in tied else {chosen}


def in_order(rows: list[Entry], monitor: str) -> list[Entry]:
    """Best first by the monitored metric (rows without it last), as `staged eval` prints them."""
    by_name = {r.name: r for r in rows}
    ordered = sort_rows([{"name": r.name, "metrics": r.metrics} for r in rows], monitor)
    return [by_name[r["name"]] for r in ordered]


def comparison_section(rows: list[Entry], monitor: str, summary: dict) -> Section:
    """Seed 002's table: every member and ensemble on the validation metrics, best first; the best of each marked."""
    columns = metric_columns(rows)
    best_member, best_ensemble = summary.get("best_member"), summary.get("best_ensemble")
    overall = best_of(rows, monitor)
    column_best = {c: best_of(rows, c) for c in columns}
    body_rows = []
    tie = " (tie)" if len(overall) > 1 else ""
    kinds = {kind: _tied_with(rows, kind, chosen, monitor) for kind, chosen in (("member", best_member), ("ensemble", best_ensemble))}
    for rank, row in enumerate(in_order(rows, monitor), start=1):
        marks = []
        if row.name in overall:
            marks.append(f'<span class="best">★ best{tie}</span>')
        for kind, tied in kinds.items():
            if row.name in tied:
                marks.append(f'<span class="best">best {kind}{" (tie)" if len(tied) > 1 else ""}</span>')
        name = f'<a href="#{escape(row.anchor)}">{escape(row.name)}</a>' if row.anchor else escape(row.name)
        name = f'<span class="name">{f"<b>{name}</b>" if row.name in overall else name}</span>'
        cells = [escape(rank if is_finite(row.metrics.get(monitor)) else "—"), name,
                 escape(row.kind), escape(row.what), status_badge(row.status)]
        for c in columns:
            shown = escape(value(row.metrics.get(c)))
            cells.append(f"<b>{shown}</b>" if row.name in column_best[c] else shown)
        cells += [" ".join(marks), escape(row.note)]
        body_rows.append(cells)
    header = ["#", "name", "kind", "what", "status", *[f"{c} ({'↑' if better(c) == 'max' else '↓'})" for c in columns], "best", "note"]
    body = table(header, body_rows, numeric=(0, *range(5, 5 + len(columns))), raw=True, klass="compare")
    body += paragraph(f"Validation split. Sorted by {monitor}, the run's monitored metric ({'higher' if better(monitor) == 'max' else 'lower'} "
                      "is better); ★ marks the best of all (every one of them when several tie); the best value of each column is bold; ↑ higher is better, ↓ lower. Members are scored on their "
                      "saved predictions (the numbers `staged eval` prints); an ensemble's validation metrics are out-of-fold.", "note")
    if not columns:
        body += paragraph("No member has validation metrics yet (none completed, or the matrix has no summary.json).", "note")
    return Section("comparison", "Members and ensembles", body)


def draw_bars(rows: list[Entry], monitor: str, out: Path, name: str = "comparison.png") -> Optional[Figure]:
    """One panel per validation metric: a bar per member and ensemble, best first by `monitor`, the best of each panel marked."""
    columns = metric_columns(rows)
    ordered = [r for r in in_order(rows, monitor) if any(is_finite(r.metrics.get(c)) for c in columns)]
    if not columns or not ordered:
        return None
    plt = draw.pyplot("staged report", "report")
    from matplotlib.patches import Patch

    groups = draw.colors_for(r.group for r in ordered if r.kind == "member")
    color = {r.name: ENSEMBLE_COLOR if r.kind == "ensemble" else groups[r.group] for r in ordered}
    per_row = 2 if len(columns) > 1 else 1
    grid_rows = -(-len(columns) // per_row)
    height = max(2.2, 0.28 * len(ordered) + 1.0)
    figure_, grid = plt.subplots(grid_rows, per_row, figsize=(draw.WIDTH, height * grid_rows + 0.5), squeeze=False)
    labels = [r.name for r in ordered]
    for i, metric in enumerate(columns):
        axes = grid[i // per_row][i % per_row]
        values = [r.metrics.get(metric) if is_finite(r.metrics.get(metric)) else 0.0 for r in ordered]
        best = best_of(ordered, metric)
        ys = list(range(len(ordered)))
        bars = axes.barh(ys, values, color=[color[r.name] for r in ordered], height=0.7,
                         edgecolor=[BEST_EDGE if r.name in best else "none" for r in ordered],
                         linewidth=[2.2 if r.name in best else 0 for r in ordered])
        for bar, row in zip(bars, ordered):
            if row.kind == "ensemble":
                bar.set_hatch("//")
                bar.set_facecolor("#bbbbbb")
                bar.set_edgecolor(BEST_EDGE if row.name in best else ENSEMBLE_COLOR)
        top = max(values) if values else 1.0
        for y, v, row in zip(ys, values, ordered):
            text = value(row.metrics.get(metric)) + ("  ★ best" if row.name in best else "")
            axes.text(v + top * 0.01, y, text, va="center", ha="left", fontsize=8,
                      fontweight="bold" if row.name in best else "normal")
        axes.set_yticks(ys, labels, fontsize=8.5)
        axes.invert_yaxis()
        axes.set_xlim(0, top * 1.28 if top > 0 else 1.0)
        axes.grid(True, axis="x", alpha=0.25)
        axes.tick_params(axis="x", labelsize=8)
        axes.set_title(f"val/{metric} ({'higher' if better(metric) == 'max' else 'lower'} is better)", loc="left", fontsize=9.5)
    for j in range(len(columns), grid_rows * per_row):
        grid[j // per_row][j % per_row].set_visible(False)
    handles = [Patch(facecolor=c, label=f"member, variant {g}") for g, c in groups.items()]
    if any(r.kind == "ensemble" for r in ordered):
        handles.append(Patch(facecolor="#bbbbbb", edgecolor=ENSEMBLE_COLOR, hatch="//", label="ensemble"))
    handles.append(Patch(facecolor="white", edgecolor=BEST_EDGE, linewidth=2.2, label="best of the panel"))
    draw.legend_below(figure_, handles, [h.get_label() for h in handles], room=0.35 / (height * grid_rows + 0.5) + 0.02)
    draw.save(figure_, out / name)
    caption = (f"Every member (coloured by variant) and ensemble (hatched grey) on each validation metric, in the table's order "
               f"(best first by {monitor}); the best of each panel (all of them when several tie) has a gold edge and ★. Bars start at zero; the value is written "
               "at each bar's end.")
    return Figure(name, "Members and ensembles on the validation metrics", caption)


def ensembles_section(index: dict, summary: dict) -> Optional[Section]:
    """What each ensemble combines and how it ended."""
    declared = index.get("ensembles") or []
    if not declared:
        return None
    recorded = summary.get("ensembles") or {}
    rows = []
    for item in declared:
        e = recorded.get(item["name"]) or {}
        error = error_text(e)
        rows.append([code(item["name"]), code(e.get("use") or item.get("use")), status_badge(str(e.get("status") or "pending")),
                     escape(", ".join(e.get("members") or []) or "—"), escape(", ".join(e.get("missing") or []) or "—"),
                     escape(error or "—")])
    return Section("ensembles", "Ensembles", table(["ensemble", "method", "status", "members", "left out (failed)", "error"], rows,
                                                    raw=True))


def member_part(entry: Entry, matrix_dir: MatrixDir, out: Path) -> Part:
    """The member as a run (figures under ``members/<name>/``), or a line saying why it has nothing to draw."""
    run_dir = matrix_dir.member(entry.name)
    if not RunDir(run_dir).plan.is_file():
        text = f"{entry.what}: {entry.status.replace('_', ' ')}; its run directory has no plan.json, so there is nothing to draw."
        return Part((Section(entry.anchor, f"Member {entry.name}", paragraph(f"{text} {entry.note}".strip(), "note")),), (), ())
    return run_part(run_dir, out, folder=f"members/{entry.name}", id=entry.anchor, title=f"Member {entry.name}",
                    label=f"member {entry.name}", facts=entry.what, note=entry.note)


def write_matrix_report(run_dir: Path | str, out: Path) -> Report:
    """Read the matrix run `run_dir` and write its report into `out`."""
    matrix_dir = MatrixDir(run_dir)
    index = matrix_dir.read_index()
    summary = matrix_dir.read_json(matrix_dir.summary_file) or {}
    rows = entries(index, summary, matrix_dir)
    columns = metric_columns(rows)
    monitor = summary.get("monitor") or (columns[0] if columns else "accuracy")
    out.mkdir(parents=True, exist_ok=True)
    bars = draw_bars(rows, monitor, out)
    sections = [comparison_section(rows, monitor, summary),
                Section("bars", "Bar chart", figure(bars.file, bars.title, bars.caption) if bars
                        else paragraph("No member or ensemble has validation metrics to draw yet.", "note"))]
    ensembles = ensembles_section(index, summary)
    if ensembles is not None:
        sections.append(ensembles)
    figures, hints = [out / bars.file] if bars else [], []
    for entry in rows:
        if entry.kind == "member":
            part = member_part(entry, matrix_dir, out)
            sections += part.sections
            figures += part.figures
            hints += part.hints
    members = [r for r in rows if r.kind == "member"]
    counts: dict[str, int] = {}
    for r in members:
        counts[r.status] = counts.get(r.status, 0) + 1
    tally = ", ".join(f"{n} {status.replace('_', ' ')}" for status, n in counts.items())
    lead = (f"{status_badge(str(summary.get('status') or 'incomplete'))} &nbsp; matrix of {len(members)} member"
            f"{'s' if len(members) != 1 else ''} ({escape(tally)}) "
            f"and {len(rows) - len(members)} ensemble{'s' if len(rows) - len(members) != 1 else ''} · monitored: {code(monitor)} · "
            f"{escape(duration(summary.get('wall_time_s')))} · {code(matrix_dir.root)}")
    if not summary:
        lead += " · " + escape("no summary.json yet: the matrix has not finished training its members")
    footer = (f"Written by <code>staged report</code> from {code(matrix_dir.root)}: matrix.json, summary.json and each member's "
              "plan.json, summary.json and metrics.jsonl. The page is self-contained: its figures are the PNG files beside it; it "
              "runs no script and loads nothing from the network.")
    return write_page(out, f"Matrix report: {index.get('name') or matrix_dir.root.name}", lead, sections, figures, hints,
                      footer=footer)
