"""The figures of one run: loss over the whole plan, every validation metric, every group's LR.

Each function draws one PNG from the run's `Timeline` and returns a `Figure` (file,
title, caption) for the page, or None when the run logged nothing to draw.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import attrs

from stagedsl.plan.model import StagePlan
from stagedsl.report import draw
from stagedsl.report.diagnosis import smooth
from stagedsl.report.rundata import RunData, is_finite
from stagedsl.report.timeline import (
    EVAL,
    TRAIN,
    BestMark,
    Handoff,
    Point,
    Span,
    best_marks,
    handoffs,
    logged_names,
    series,
    stage_spans,
    stage_thresholds,
    validation_metrics,
    within,
)

SMOOTH_FROM = 40  # train/loss points per stage from which a smoothed line is drawn over the raw one
SYMBOL = {True: "✓", False: "✗"}


@attrs.frozen
class Figure:
    """A figure written for the page."""

    file: str  # relative to the page
    title: str
    caption: str


@attrs.frozen
class Timeline:
    """Everything the figures draw, derived once from the run."""

    run: RunData
    spans: list
    bests: list
    handoffs: list
    gates: list
    hints: tuple = ()  # diagnosis hints, numbered on the figures as on the page (1, 2, ...)

    @classmethod
    def of(cls, run: RunData, hints: tuple = ()) -> "Timeline":
        spans = stage_spans(run)
        return cls(run, spans, best_marks(run, spans), handoffs(run, spans), run.gate_decisions, tuple(hints))

    def bands(self) -> list[tuple[str, float, float]]:
        return [(s.label, s.start, s.end) for s in self.spans]


def loss_label(stage: StagePlan) -> str:
    """A stage's loss in a few characters: ``mse``, ``0.7·mse + 0.3·l1``, ``blend(mse, nrmse) α=1``."""
    names = [t.name for t in stage.loss.terms]
    if stage.loss.kind == "blend":
        return f"blend({', '.join(names)}) α={stage.loss.alpha:g}"
    return " + ".join((f"{t.weight:g}·" if t.weight != 1 else "") + t.name for t in stage.loss.terms)


def _loss_notes(run: RunData) -> dict[str, str]:
    """Per stage label, its loss — only when the stages' losses differ (then the curves jump)."""
    labels = {s.name: loss_label(s) for s in run.plan.stages}
    if len(set(labels.values())) <= 1:
        return {}
    out = {}
    for span in stage_spans(run):
        if span.stage in labels:
            out[span.label] = f"loss: {labels[span.stage]}"
    return out


def _xy(points: list[Point]) -> tuple[list[int], list[float]]:
    return [p.step for p in points], [p.value for p in points]


def draw_loss(timeline: Timeline, out_dir: Path, name: str = "loss.png") -> Optional[Figure]:
    """Train and validation loss over the whole plan, with stages, best checkpoints, gates and hand-offs."""
    run = timeline.run
    train, val = series(run, "train/loss", kind=TRAIN), series(run, "val/loss", kind=EVAL)
    if not train and not val:
        return None
    plt = draw.pyplot("staged report", "report")
    figure, axes = plt.subplots(figsize=(draw.WIDTH, 4.8))
    finite = [p.value for p in train + val if is_finite(p.value)]
    log = draw.wants_log(finite)
    labelled: set[str] = set()

    def label(text: str) -> Optional[str]:
        if text in labelled:
            return None
        labelled.add(text)
        return text

    for span in timeline.spans or [Span("run", 0, 0, 0, max(p.step for p in train + val))]:
        points = [p for p in within(train, span) if is_finite(p.value)]
        if points:
            xs, ys = _xy(points)
            if len(points) >= SMOOTH_FROM:
                axes.plot(xs, ys, color=draw.TRAIN_COLOR, alpha=0.25, linewidth=0.8)
                axes.plot(xs, smooth(ys), color=draw.TRAIN_COLOR, linewidth=1.6, label=label("train/loss (smoothed)"))
            else:
                axes.plot(xs, ys, color=draw.TRAIN_COLOR, linewidth=1.4, marker="." if len(points) < 15 else None,
                          label=label("train/loss"))
        points = [p for p in within(val, span) if is_finite(p.value)]
        if points:
            axes.plot(*_xy(points), color=draw.VAL_COLOR, linewidth=1.6, marker="o", markersize=3.5, label=label("val/loss"))
    if log:
        axes.set_yscale("log")
    _best_markers(axes, timeline.bests, val, train, label)
    rows = _gate_notes(axes, timeline.gates, label)
    draw.headroom(axes, 0.2 + 0.075 * rows, below=0.1 if timeline.handoffs else 0.0, log=log)
    bands = timeline.bands()
    _handoff_arrows(axes, timeline.handoffs, (bands[-1][2] - bands[0][1]) if bands else 1.0)
    _hint_marks(axes, timeline.hints, {"loss_rising": train, "nonfinite": train, "overfitting": val, "still_improving": val})
    draw.stage_bands(axes, timeline.bands(), extra=_loss_notes(run))
    draw.label_axes(axes, f"{run.name}: loss over the plan", "loss", log=log, xlabel="step (optimizer steps over the whole plan)")
    handles, texts = axes.get_legend_handles_labels()
    if any(h.stage for h in timeline.handoffs):
        from matplotlib.lines import Line2D

        handles.append(Line2D([], [], color=draw.HANDOFF_COLOR, linewidth=1.2))
        texts.append("init: the checkpoint a stage started from")
    draw.legend_below(figure, handles, texts, room=0.07)
    draw.save(figure, out_dir / name)
    parts = ["Training loss (blue) and validation loss (orange) over every stage"
             + ("; dashed lines are stage boundaries" if len(timeline.spans) > 1 else ""),
             "★ marks each stage's best checkpoint" if timeline.bests else ""]
    if timeline.gates:
        parts.append("a green (passed) or red (failed) ▼ marks each gate decision, with the value against the threshold")
    if timeline.handoffs:
        parts.append("purple marks at the bottom show which checkpoint each stage's `init` loaded")
    if timeline.hints:
        parts.append("numbered circles are the diagnosis hints above")
    caption = "; ".join(p for p in parts if p) + "."
    if log:
        caption += " The loss axis is logarithmic (the values span more than a factor 30)."
    if _loss_notes(run):
        caption += " The stages use different losses, so the curve jumps at their boundaries."
    return Figure(name, "Loss over the plan", caption)


def _best_markers(axes, bests: list[BestMark], val: list[Point], train: list[Point], label) -> None:
    """A star per stage's best checkpoint, on the val/loss curve at its step."""
    at = {p.step: p.value for p in train}
    at.update({p.step: p.value for p in val})
    for mark in bests:
        y = at.get(mark.step)
        if not is_finite(y):
            continue
        axes.plot([mark.step], [y], linestyle="none", marker="*", markersize=13, markerfacecolor="#ffd700",
                  markeredgecolor="black", markeredgewidth=0.7, zorder=5, label=label("best checkpoint"))


def gate_text(decision: dict) -> str:
    """``✓ val/f1 = 0.83 (needs val/f1 >= 0.8) → continue``."""
    values = ", ".join(f"{k} = {v:.4g}" if isinstance(v, (int, float)) else f"{k} = missing"
                       for k, v in (decision.get("values") or {}).items())
    action = decision.get("action") or "?"
    if action == "goto":
        action = f"goto {decision.get('goto')}"
    return f"{SYMBOL[bool(decision.get('passed'))]} {values} (needs {decision.get('condition')}) → {action}"


def _gate_notes(axes, decisions: list[dict], label) -> int:
    """Gate decisions at the top of the plot: every one a mark, the notable ones (final, failed) a note.

    Notes are right-aligned at their step (left-aligned where that would leave the plot) and moved a
    row down while they would overlap a note already placed. Returns how many rows the notes take.
    """
    import matplotlib.transforms as transforms

    top = transforms.blended_transform_factory(axes.transData, axes.transAxes)
    last_of_stage = {}
    for i, d in enumerate(decisions):
        last_of_stage[(d.get("stage"), d.get("attempt"))] = i
    renderer = axes.figure.canvas.get_renderer()
    frame = axes.get_window_extent(renderer)
    placed, rows = [], 0
    for i, decision in enumerate(decisions):
        step, passed = decision.get("step"), bool(decision.get("passed"))
        if not isinstance(step, int):
            continue
        color = draw.PASSED_COLOR if passed else draw.FAILED_COLOR
        axes.axvline(step, color=color, linewidth=1.0, alpha=0.6, ymax=0.8)
        axes.plot([step], [0.8], transform=top, marker="v", color=color, markersize=8, linestyle="none", zorder=6,
                  label=label("gate passed" if passed else "gate failed"))
        if passed and last_of_stage.get((decision.get("stage"), decision.get("attempt"))) != i:
            continue
        for row in range(6):
            note = axes.text(step, 0.775 - 0.075 * row, f"gate {gate_text(decision)}", transform=top, ha="right", va="top",
                             fontsize=8, color=color, zorder=7,
                             bbox={"boxstyle": "round,pad=0.25", "facecolor": "white", "edgecolor": color, "alpha": 0.92})
            box = note.get_window_extent(renderer)
            if box.x0 < frame.x0:
                note.set_ha("left")
                box = note.get_window_extent(renderer)
            if not any(box.overlaps(other) for other in placed) or row == 5:
                placed.append(box)
                rows = max(rows, row + 1)
                break
            note.remove()
    return rows


def _handoff_arrows(axes, moves: list[Handoff], width: float) -> None:
    """Each `init` at the bottom of its stage (``init ← best of warmup (step 40)``), with an arc back to
    that checkpoint when it lies before the stage's start (an earlier best, a retry's start)."""
    import matplotlib.transforms as transforms

    bottom = transforms.blended_transform_factory(axes.transData, axes.transAxes)
    for move in moves:
        if move.source == "path":
            text = f"init ← file {Path(move.path or '').name}"
        else:
            at = f" (step {move.from_step})" if move.from_step is not None else ""
            text = f"init ← {move.which} of {move.from_stage}{at}"
        axes.text(move.to_step + width * 0.004, 0.025, text, transform=bottom, fontsize=7.5, color=draw.HANDOFF_COLOR,
                  ha="left", va="bottom", bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.85})
        if move.from_step is None:
            continue
        axes.plot([move.from_step], [0.015], transform=bottom, marker="o", markersize=4.5, color=draw.HANDOFF_COLOR, clip_on=False)
        if move.to_step - move.from_step > width * 0.01:
            axes.annotate("", xy=(move.to_step, 0.015), xycoords=bottom, xytext=(move.from_step, 0.015), textcoords=bottom,
                          arrowprops={"arrowstyle": "->", "color": draw.HANDOFF_COLOR, "linewidth": 1.2,
                                      "connectionstyle": "arc3,rad=-0.25"})


def _hint_marks(axes, hints: tuple, curves: dict[str, list[Point]]) -> None:
    """Each hint's number (as the page lists it) on the curve it is about, at its step."""
    for number, hint in enumerate(hints, start=1):
        points = [p for p in curves.get(hint.kind, []) if is_finite(p.value)]
        if not points:
            continue
        at = min(points, key=lambda p: (abs(p.step - hint.step), p.value))
        color = draw.FAILED_COLOR if hint.severity == "warning" else "#555555"
        axes.annotate(str(number), (at.step, at.value), xytext=(0, 16), textcoords="offset points", ha="center",
                      va="bottom", fontsize=8, fontweight="bold", color="white", zorder=8,
                      bbox={"boxstyle": "circle,pad=0.25", "facecolor": color, "edgecolor": color},
                      arrowprops={"arrowstyle": "-", "color": color, "linewidth": 1.0})


def draw_metrics(timeline: Timeline, out_dir: Path, name: str = "metrics.png") -> Optional[Figure]:
    """Every logged validation metric (but the loss), one panel each, with gate thresholds and best checkpoints."""
    run = timeline.run
    names = validation_metrics(run)
    if not names:
        return None
    plt = draw.pyplot("staged report", "report")
    import matplotlib.transforms as transforms

    columns = 1 if len(names) == 1 else (2 if len(names) <= 4 else 3)
    rows = -(-len(names) // columns)
    figure, grid = plt.subplots(rows, columns, figsize=(draw.WIDTH, 2.9 * rows + 0.3), squeeze=False)
    thresholds = stage_thresholds(run)
    spans = {s.stage: s for s in timeline.spans}
    for i, metric in enumerate(names):
        axes = grid[i // columns][i % columns]
        points = series(run, metric, kind=EVAL)
        for span in timeline.spans:
            part = [p for p in within(points, span) if is_finite(p.value)]
            if part:
                axes.plot(*_xy(part), color=draw.VAL_COLOR, marker="o", markersize=3, linewidth=1.4)
        for mark in timeline.bests:
            if mark.monitor == metric:
                axes.plot([mark.step], [mark.value], marker="*", markersize=12, markerfacecolor="#ffd700",
                          markeredgecolor="black", markeredgewidth=0.6, linestyle="none", zorder=5)
        seen = [p.value for p in points if is_finite(p.value)]
        for stage, gate_metric, op, value in thresholds:
            if gate_metric == metric and stage in spans:
                span = spans[stage]
                if not _on_scale(value, seen):  # a far threshold (val/mse < 1e9) would flatten the curve: named, not drawn
                    axes.text(span.start, 0.04, f" gate {op} {value:g}: off the scale", fontsize=7.5, color=draw.FAILED_COLOR,
                              transform=transforms.blended_transform_factory(axes.transData, axes.transAxes))
                    continue
                axes.hlines(value, span.start, span.end, colors=draw.FAILED_COLOR, linestyles=":", linewidth=1.3)
                axes.annotate(f"gate {op} {value:g}", (span.start, value), xytext=(3, 3), textcoords="offset points",
                              fontsize=7.5, color=draw.FAILED_COLOR)
        for decision in timeline.gates:
            seen = (decision.get("values") or {}).get(metric)
            if isinstance(seen, (int, float)) and isinstance(decision.get("step"), int):
                passed = bool(decision.get("passed"))
                color = draw.PASSED_COLOR if passed else draw.FAILED_COLOR
                axes.plot([decision["step"]], [seen], marker="o" if passed else "X", markersize=10, linestyle="none",
                          markerfacecolor="none" if passed else color, markeredgecolor=color, markeredgewidth=1.6, zorder=6)
        draw.headroom(axes, 0.25)
        draw.stage_bands(axes, timeline.bands(), labels=(i < columns))
        axes.set_title(metric, loc="left", fontsize=9.5)
        axes.grid(True, alpha=0.25)
        axes.tick_params(labelsize=8)
        if i // columns == rows - 1:
            axes.set_xlabel("step", fontsize=8.5)
    for j in range(len(names), rows * columns):
        grid[j // columns][j % columns].set_visible(False)
    figure.tight_layout()
    draw.save(figure, out_dir / name)
    caption = "Every validation metric at each evaluation; ★ marks the best checkpoint of the stages that monitor the metric"
    if thresholds:
        caption += ("; a dotted red line is a gate's threshold over its stage (named at the bottom instead when it lies far "
                    "off the values' scale), and a green ring (passed) or a red ✗ (failed) the value the gate saw")
    caption += "."
    return Figure(name, "Validation metrics", caption)


def _on_scale(threshold: float, values: list[float]) -> bool:
    """Whether a gate threshold lies near enough to the values to share their axis (within twice their spread)."""
    if not values:
        return True
    low, high = min(values), max(values)
    spread = max(high - low, abs(high) * 0.5, 1e-12)
    return low - 2 * spread <= threshold <= high + 2 * spread


def draw_lr(timeline: Timeline, out_dir: Path, name: str = "lr.png") -> Optional[Figure]:
    """The logged LR of every parameter group, on a log axis, one colour per group across stages."""
    run = timeline.run
    groups = logged_names(run, "lr/")
    if not groups:
        return None
    plt = draw.pyplot("staged report", "report")
    colors = draw.colors_for(groups)
    figure, axes = plt.subplots(figsize=(draw.WIDTH, 3.6))
    drawn = set()
    positive = True
    for group in groups:
        points = [p for p in series(run, group, kind=TRAIN) if is_finite(p.value)]
        positive = positive and all(p.value > 0 for p in points)
        for span in timeline.spans:
            part = within(points, span)
            if not part:
                continue
            xs, ys = _xy(part)
            # a logged LR is the rate of the step it was logged at: drawn back to the log before it
            axes.plot([span.start] + xs, [ys[0]] + ys, color=colors[group], linewidth=1.8, drawstyle="steps-pre",
                      label=None if group in drawn else f"group {group[3:]}")
            if len(part) <= 40:
                axes.plot(xs, ys, color=colors[group], linestyle="none", marker=".", markersize=5)
            draw.value_note(axes, span.start, ys[0], colors[group])
            drawn.add(group)
    if positive:
        axes.set_yscale("log")
    draw.headroom(axes, 0.25, log=positive)
    draw.stage_bands(axes, timeline.bands())
    _hint_marks(axes, timeline.hints, {"lr_collapsed": [p for g in groups for p in series(run, g, kind=TRAIN)]})
    draw.label_axes(axes, f"{run.name}: learning rate of every parameter group", "learning rate", log=positive)
    draw.legend_below(figure, *axes.get_legend_handles_labels())
    draw.save(figure, out_dir / name)
    caption = ("The learning rate each optimizer group trained with, as logged every `log_every` steps (dots; a change "
               "between two logs shows at the later one), one colour per group across stages; a group absent from a stage is "
               "not one of its optimizer groups. `staged plan --plot` draws the planned schedule step by step.")
    return Figure(name, "Learning rate by parameter group", caption)


def draw_run(run: RunData, out_dir: Path, prefix: str = "", hints: tuple = ()) -> list[Figure]:
    """Every figure of one run, written as ``<prefix>loss.png`` etc. into `out_dir`; `hints` are numbered on them."""
    timeline = Timeline.of(run, hints)
    drawn = [draw_loss(timeline, out_dir, f"{prefix}loss.png"), draw_metrics(timeline, out_dir, f"{prefix}metrics.png"),
             draw_lr(timeline, out_dir, f"{prefix}lr.png")]
    return [f for f in drawn if f is not None]
