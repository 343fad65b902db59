"""`staged report A B`: two runs of one spec side by side — what differs in their plans, and their curves.

The question after every ``--set`` change: the plans are compared key by key (the keys
read like ``--set`` paths: ``stage.finetune.lr``), the curves of both runs share one
figure (A in blue, B in red), and each stage's results and the last validation values
stand next to each other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from stagedsl.plan.diff import differences, shown
from stagedsl.plan.model import Plan
from stagedsl.report import draw
from stagedsl.report.build import Report, write_page
from stagedsl.report.diagnosis import Hint, diagnose
from stagedsl.report.figures import Figure
from stagedsl.report.page import Section, code, escape, figure, paragraph, table
from stagedsl.report.rundata import RunData, is_finite, read_run
from stagedsl.report.sections import RunView, duration, status_badge, value
from stagedsl.report.timeline import EVAL, TRAIN, logged_names, series, stage_spans, validation_metrics, within
from stagedsl.run_dir import RunDir

HALO_ALPHA = 0.45
"""How opaque A's wide line under B is (where the two runs agree it shows as a halo)."""
IGNORED = ("warnings", "spec_file", "format", "run.out", "hash")
"""Keys that do not change what a run does (where it wrote, the lints, the file it came from)."""


def plan_differences(a: Plan, b: Plan) -> list[tuple[str, Any, Any]]:
    """(key, A value, B value) for every setting that differs; keys as ``--set`` writes them."""
    def data(plan: Plan) -> dict:
        out = plan.to_dict()
        out["parameters"] = sum(plan.parameters.values())  # a count reads better than every tensor's size
        out["stage"] = out.pop("stages")
        return out

    rows = [(key, x, y) for key, x, y in differences(data(a), data(b))
            if not any(key == k or key.startswith(k + ".") for k in IGNORED)]
    changed = {key: (x, y) for key, x, y in rows}
    return [(key, shown(x), shown(y)) for key, x, y in rows if not _follows_stage_lr(key, x, y, changed)]


def _follows_stage_lr(key: str, x: Any, y: Any, changed: dict) -> bool:
    """A group's LR that changed only because its stage's LR did (the same lr_scale on both sides)."""
    parts = key.split(".")
    if len(parts) != 5 or parts[0] != "stage" or parts[2] != "groups" or parts[4] != "lr":
        return False
    stage_lr = changed.get(f"stage.{parts[1]}.lr")
    if stage_lr is None or not all(isinstance(v, (int, float)) and v for v in (x, y, *stage_lr)):
        return False
    return abs(x / stage_lr[0] - y / stage_lr[1]) <= 1e-9 * abs(x / stage_lr[0])


def default_out(a: Path, b: Path) -> Path:
    """``A/report/vs_<B's folder name>``."""
    return RunDir(a).report / f"vs_{Path(b).resolve().name}"


def _labels(a: RunData, b: RunData) -> tuple[str, str]:
    names = (a.path.resolve().name, b.path.resolve().name)
    if names[0] == names[1]:
        names = (str(a.path), str(b.path))
    return f"A: {names[0]}", f"B: {names[1]}"


def draw_comparison(a: RunData, b: RunData, out: Path, name: str = "compare.png") -> Optional[Figure]:
    """Both runs' loss, validation metrics and LRs on one figure: a panel each, A blue, B red."""
    metrics = [m for m in dict.fromkeys(validation_metrics(a) + validation_metrics(b))]
    lrs = [g for g in dict.fromkeys(logged_names(a, "lr/") + logged_names(b, "lr/"))]
    panels = ["loss"] + metrics + (["lr"] if lrs else [])
    if not any(a.events) and not any(b.events):
        return None
    plt = draw.pyplot("staged report", "report")
    columns = 1 if len(panels) == 1 else 2
    rows = -(-len(panels) // columns)
    figure_, grid = plt.subplots(rows, columns, figsize=(draw.WIDTH, 3.1 * rows + 0.5), squeeze=False)
    labels = _labels(a, b)
    colors = (draw.PALETTE[0], draw.PALETTE[1])
    spans_a, spans_b = stage_spans(a), stage_spans(b)
    for i, panel in enumerate(panels):
        axes = grid[i // columns][i % columns]
        # A is drawn wide and light under B: where the runs agree, A shows as a halo around B's line
        for run, spans, color, halo in ((a, spans_a, colors[0], True), (b, spans_b, colors[1], False)):
            if panel == "loss":
                curves = [("train/loss", TRAIN, "-", None, 1.1), ("val/loss", EVAL, "-", "o", 1.8)]
            elif panel == "lr":
                curves = [(g, TRAIN, "-" if j == 0 else "--", None, 1.6) for j, g in enumerate(lrs)]
            else:
                curves = [(panel, EVAL, "-", "o", 1.6)]
            for key, kind, style, marker, width in curves:
                points = [p for p in series(run, key, kind=kind) if is_finite(p.value)]
                for span in spans:
                    part = within(points, span)
                    if not part:
                        continue
                    xs, ys = [p.step for p in part], [p.value for p in part]
                    if panel == "lr":  # the logged rate is the rate of its step: back to the log before it
                        xs, ys = [span.start] + xs, [ys[0]] + ys
                    axes.plot(xs, ys, color=color, linestyle=style, marker=marker, markersize=5 if halo else 3,
                              linewidth=width + 2.2 if halo else width, drawstyle="steps-pre" if panel == "lr" else "default",
                              alpha=(0.35 if halo else 0.6) if key == "train/loss" else (HALO_ALPHA if halo else 1.0))
        if panel == "lr":
            axes.set_yscale("log")
        elif panel == "loss":
            values = [v for run in (a, b) for k in ("train/loss", "val/loss") for v in (p.value for p in series(run, k))]
            if draw.wants_log(values):
                axes.set_yscale("log")
        draw.headroom(axes, 0.22, log=axes.get_yscale() == "log")
        draw.stage_bands(axes, [(s.label, s.start, s.end) for s in spans_a], labels=(i < columns))
        for span in spans_b:
            if span.start not in {s.start for s in spans_a}:
                axes.axvline(span.start, color=colors[1], linestyle=":", linewidth=1.0)
        axes.set_title({"loss": "train/loss and val/loss", "lr": "learning rate by group"}.get(panel, panel),
                       loc="left", fontsize=9.5)
        axes.grid(True, alpha=0.25)
        axes.tick_params(labelsize=8)
    for j in range(len(panels), rows * columns):
        grid[j // columns][j % columns].set_visible(False)
    draw.legend_below(figure_, *_legend(labels, colors, several_groups=len(lrs) > 1), room=0.045 if rows > 1 else 0.09)
    draw.save(figure_, out / name)
    caption = (f"{labels[0]} in blue (wide and light, under B: where the runs agree it is a blue halo around the red line), "
               f"{labels[1]} in red, on the same step axis; shaded bands and names are A's stages (dotted red lines: where B's "
               "stages start when they differ).")
    if len(lrs) > 1:
        caption += " In the LR panel the default group is solid, the other groups dashed."
    return Figure(name, "A and B on one figure", caption)


def _legend(labels: tuple[str, str], colors: tuple[str, str], *, several_groups: bool) -> tuple[list, list]:
    """One legend for every panel: which colour is which run, which line is which curve."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=colors[0], linewidth=4.2, alpha=HALO_ALPHA), Line2D([], [], color=colors[1], linewidth=2),
               Line2D([], [], color="#777777", linewidth=1.1, alpha=0.6), Line2D([], [], color="#777777", marker="o", markersize=3)]
    texts = [labels[0], labels[1], "train/loss", "validation (each evaluation)"]
    if several_groups:
        handles.append(Line2D([], [], color="#777777", linestyle="--"))
        texts.append("LR of the other groups")
    return handles, texts


def _runs_section(a: RunView, b: RunView, labels: tuple[str, str]) -> Section:
    def column(view: RunView) -> dict[str, str]:
        run, summary = view.run, view.run.summary
        return {"directory": code(run.path), "status": status_badge(run.status), "spec": code(run.plan.spec_file or "—"),
                "plan hash": code(run.plan.hash), "steps": escape(summary.get("global_steps", "—")),
                "wall time": escape(duration(summary.get("wall_time_s"))),
                "hints": escape(len(view.hints))}

    ca, cb = column(a), column(b)
    rows = [[escape(key), ca[key], cb[key]] for key in ca]
    body = table(["", labels[0], labels[1]], rows, raw=True)
    if (a.run.plan.spec_file, a.run.name) != (b.run.plan.spec_file, b.run.name):
        body += paragraph(f"These runs come from different specs ({a.run.plan.spec_file} `{a.run.name}` and "
                          f"{b.run.plan.spec_file} `{b.run.name}`): the comparison shows every difference, which may be many.", "note")
    return Section("runs", "Runs", body)


def _plan_section(a: RunData, b: RunData, labels: tuple[str, str]) -> Section:
    rows = plan_differences(a.plan, b.plan)
    if not rows:
        body = paragraph(f"The two plans are the same (hash {a.plan.hash}): any difference in the curves comes from where "
                         "they ran (device, threads) or from nondeterminism.", "note")
    else:
        body = table(["setting", labels[0], labels[1]], [[code(k), escape(x), escape(y)] for k, x, y in rows], raw=True)
        body += paragraph("Keys read like --set paths. A group's LR that only follows its stage's LR (the same lr_scale) is "
                          "not listed.", "note")
    return Section("plan-differences", "What differs in the plans", body)


def _stages_section(a: RunData, b: RunData, labels: tuple[str, str]) -> Section:
    names = list(dict.fromkeys([s.name for s in a.plan.stages] + [s.name for s in b.plan.stages]))
    rows = []
    for name in names:
        ra, rb = a.stage_record(name), b.stage_record(name)
        monitor = ra.get("monitor") or rb.get("monitor") or "—"
        delta = "—"
        if is_finite(_float(ra.get("best_value"))) and is_finite(_float(rb.get("best_value"))):
            delta = f"{float(rb['best_value']) - float(ra['best_value']):+.4g}"
        rows.append([code(name), status_badge(str(ra.get("status") or "not in plan")), status_badge(str(rb.get("status") or "not in plan")),
                     code(monitor), escape(value(ra.get("best_value"))), escape(value(rb.get("best_value"))), escape(delta),
                     escape(f"{ra.get('steps', '—')} / {rb.get('steps', '—')}"),
                     escape(f"{duration(ra.get('wall_time_s'))} / {duration(rb.get('wall_time_s'))}")])
    header = ["stage", f"status {labels[0][:1]}", f"status {labels[1][:1]}", "monitor", "best A", "best B", "B − A",
              "steps A / B", "wall time A / B"]
    return Section("stages", "Stages side by side", table(header, rows, numeric=(4, 5, 6), raw=True))


def _float(v: Any) -> Optional[float]:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _last_values_section(a: RunData, b: RunData, labels: tuple[str, str]) -> Optional[Section]:
    def last(run: RunData) -> dict:
        for stage in reversed(run.plan.stages):
            values = run.stage_record(stage.name).get("last_values")
            if isinstance(values, dict) and values:
                return values
        return {}

    la, lb = last(a), last(b)
    keys = [k for k in dict.fromkeys(list(la) + list(lb)) if k.startswith("val/")]
    if not keys:
        return None
    rows = [[code(k), escape(value(la.get(k))), escape(value(lb.get(k))),
             escape(f"{float(lb[k]) - float(la[k]):+.4g}" if _float(la.get(k)) is not None and _float(lb.get(k)) is not None else "—")]
            for k in keys]
    return Section("last-values", "Validation values at the end",
                   table(["metric", labels[0], labels[1], "B − A"], rows, numeric=(1, 2, 3), raw=True)
                   + paragraph("The last evaluation of the last stage that ran in each run.", "note"))


def _hints_section(views: tuple[RunView, RunView], labels: tuple[str, str]) -> Section:
    parts = []
    for view, label in zip(views, labels):
        if view.hints:
            items = "".join(f"<li><b>step {h.step}</b> — {escape(h.message)}</li>" for h in view.hints)
            parts.append(f"<h3>{escape(label)}</h3><ul class=hints>{items}</ul>")
        else:
            parts.append(f"<h3>{escape(label)}</h3>" + paragraph("Nothing stands out in the curves.", "note"))
    return Section("diagnosis", "Diagnosis", "".join(parts))


def write_comparison(a_dir: Path | str, b_dir: Path | str, out: Optional[Path | str] = None) -> Report:
    """Read two run directories and write their comparison into `out` (default ``A/report/vs_<B>``)."""
    a, b = read_run(a_dir), read_run(b_dir)
    out = Path(out) if out is not None else default_out(a.path, b.path)
    out.mkdir(parents=True, exist_ok=True)
    labels = _labels(a, b)
    views = (RunView(a, hints=tuple(diagnose(a)), anchor="a-"), RunView(b, hints=tuple(diagnose(b)), anchor="b-"))
    drawn = draw_comparison(a, b, out)
    curves = Section("curves", "Curves", figure(drawn.file, drawn.title, drawn.caption) if drawn
                     else paragraph("Neither run logged anything to draw.", "note"))
    sections = [s for s in (_runs_section(*views, labels), _plan_section(a, b, labels), curves, _stages_section(a, b, labels),
                            _last_values_section(a, b, labels), _hints_section(views, labels)) if s is not None]
    figures = [out / drawn.file] if drawn else []
    hints: list[Hint] = [*views[0].hints, *views[1].hints]
    lead = f"{escape(labels[0])} ({code(a.path)}) against {escape(labels[1])} ({code(b.path)})"
    return write_page(out, f"Comparison: {a.name} A/B", lead, sections, figures, hints, (a, b))
