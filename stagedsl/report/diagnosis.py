"""Diagnosis hints: what the curves say, in words, with the step — seed 001's table, checked.

| what the curve does                                 | what it usually means                  |
|-----------------------------------------------------|----------------------------------------|
| training loss rises within a stage                  | the LR is too high (or the data is bad)|
| training loss becomes non-finite                    | the LR is too high / gradients explode |
| validation loss rises while training loss falls     | overfitting                            |
| a metric-driven schedule cut the LR below 1e-3x     | the rest of the stage barely trained   |
| validation loss still falling at the stage's end    | under-trained: more steps may help     |

Each check looks at one stage attempt at a time (losses of different stages are not
comparable: a stage may change the loss). Curves are smoothed with a running median
first, so a noisy step does not make a hint; too short a curve makes none.
"""

from __future__ import annotations

from statistics import median
from typing import Callable, Optional

import attrs

from stagedsl.plan.lint import COLLAPSE_RATIO
from stagedsl.report.rundata import RunData, is_finite
from stagedsl.report.timeline import EVAL, TRAIN, Point, Span, logged_names, series, stage_spans, within

RISE = 0.25  # training loss this much above its low point (relative) counts as rising
DIVERGE = 0.10  # validation loss this much above its low point, while training falls, counts as diverging
STILL_IMPROVING = 0.05  # validation loss this much lower over the stage's last three evaluations: still improving
MIN_TRAIN_POINTS = 5
MIN_EVALS_AFTER_BEST = 2


@attrs.frozen
class Hint:
    """One finding: what happened (with the step), what it usually means and what to try."""

    kind: str  # loss_rising | nonfinite | overfitting | lr_collapsed | still_improving
    stage: str
    step: int  # global step where it shows
    message: str
    severity: str = "warning"  # warning | note

    def to_dict(self) -> dict:
        """The hint as JSON-ready data."""
        return attrs.asdict(self)


def smooth(values: list[float]) -> list[float]:
    """A centred running median (window ~ 1/8 of the curve, at least 3, odd)."""
    window = max(3, len(values) // 8) | 1
    half = window // 2
    return [median(values[max(0, i - half): i + half + 1]) for i in range(len(values))]


def _low_point(points: list[Point]) -> tuple[int, list[float]]:
    smoothed = smooth([p.value for p in points])
    return min(range(len(smoothed)), key=smoothed.__getitem__), smoothed


def _percent(a: float, b: float) -> str:
    return f"{(b - a) / abs(a) * 100:+.0f}%" if a else "from zero"


def loss_rising(run: RunData, span: Span) -> list[Hint]:
    """Training loss that climbs back up within the stage (or turns non-finite)."""
    points = within(series(run, "train/loss", kind=TRAIN), span)
    stage = run.stage_plan(span.stage)
    lr = f" (lr {stage.lr:.3g})" if stage else ""
    bad = next((p for p in points if not is_finite(p.value)), None)
    if bad is not None:
        return [Hint("nonfinite", span.stage, bad.step,
                     f"stage `{span.label}`: training loss became {bad.value} at step {bad.step} — the learning rate{lr} "
                     "is probably too high or the gradients exploded; lower `lr`, add `grad_clip`, or check the data")]
    if len(points) < MIN_TRAIN_POINTS:
        return []
    low, smoothed = _low_point(points)
    floor, end = smoothed[low], smoothed[-1]
    if len(points) - low < 3 or end - floor <= RISE * abs(floor):
        return []
    return [Hint("loss_rising", span.stage, points[low].step,
                 f"stage `{span.label}`: training loss rose from {floor:.4g} at step {points[low].step} to {end:.4g} at step "
                 f"{points[-1].step} ({_percent(floor, end)}) — the learning rate{lr} is probably too high for this stage "
                 "(or the data changed); try a lower `lr` or a warmup")]


def overfitting(run: RunData, span: Span) -> list[Hint]:
    """Validation loss rising after its best while training loss keeps falling."""
    val = [p for p in within(series(run, "val/loss", kind=EVAL), span) if is_finite(p.value)]
    train = [p for p in within(series(run, "train/loss", kind=TRAIN), span) if is_finite(p.value)]
    if len(val) < MIN_EVALS_AFTER_BEST + 1 or len(train) < 2:
        return []
    low = min(range(len(val)), key=lambda i: val[i].value)
    best, end = val[low], val[-1]
    if len(val) - 1 - low < MIN_EVALS_AFTER_BEST or end.value - best.value <= DIVERGE * abs(best.value):
        return []
    before = [p.value for p in train if p.step <= best.step] or [train[0].value]
    after = [p.value for p in train if p.step > best.step]
    if not after or median(after[-3:]) >= median(before[-3:]):
        return []
    return [Hint("overfitting", span.stage, best.step,
                 f"stage `{span.label}`: validation loss rose from {best.value:.4g} at step {best.step} to {end.value:.4g} at "
                 f"step {end.step} ({_percent(best.value, end.value)}) while training loss kept falling "
                 f"({median(before[-3:]):.4g} → {median(after[-3:]):.4g}) — overfitting from step {best.step}; the best "
                 "checkpoint (before it) is what `init` and export use; early_stop, more weight decay or more data help")]


def lr_collapsed(run: RunData, span: Span, monitored: Callable[[str], bool]) -> list[Hint]:
    """A metric-driven schedule (plateau) that cut a group's LR below COLLAPSE_RATIO x its start."""
    stage = run.stage_plan(span.stage)
    if stage is None or not monitored(stage.scheduler.name):
        return []
    hints = []
    for name in logged_names(run, "lr/"):
        points = [p for p in within(series(run, name, kind=TRAIN), span) if is_finite(p.value)]
        if len(points) < 2 or points[0].value <= 0:
            continue
        start = points[0].value
        low = next((p for p in points if p.value < COLLAPSE_RATIO * start), None)
        if low is None:
            continue
        watched = stage.scheduler_monitor or stage.eval.monitor
        hints.append(Hint("lr_collapsed", span.stage, low.step,
                          f"stage `{span.label}`: {stage.scheduler.name} on {watched} cut the LR of group "
                          f"`{name[3:]}` from {start:.3g} to {low.value:.3g} by step {low.step} (below {COLLAPSE_RATIO:g}× "
                          f"its start, ending at {points[-1].value:.3g}) — the rest of the stage barely trained; a schedule by "
                          "milestones keeps the LR predictable, or raise patience / min_lr (lint W001)"))
    return hints


def still_improving(run: RunData, span: Span) -> list[Hint]:
    """Validation loss better at each of the stage's last three evaluations (by 5 % in all): it ended too soon."""
    val = [p for p in within(series(run, "val/loss", kind=EVAL), span) if is_finite(p.value)]
    if len(val) < 3 or not (val[-3].value > val[-2].value > val[-1].value):
        return []
    if val[-3].value - val[-1].value < STILL_IMPROVING * abs(val[-3].value):
        return []
    return [Hint("still_improving", span.stage, val[-1].step,
                 f"stage `{span.label}`: validation loss was still falling at its end ({val[-3].value:.4g} → "
                 f"{val[-1].value:.4g} over its last three evaluations, up to step {val[-1].step}) — it may be under-trained; "
                 "more steps may help", severity="note")]


def diagnose(run: RunData, *, monitored: Optional[Callable[[str], bool]] = None) -> list[Hint]:
    """Every hint the curves support, stage attempt by stage attempt, in step order.

    `monitored(scheduler_name)` says whether a scheduler is metric-driven (default: the
    registry's ``monitored`` flag; a scheduler the registry lacks counts as monitored when
    the stage names a `scheduler_monitor`).
    """
    monitored = monitored or _registry_monitored(run)
    hints: list[Hint] = []
    for span in stage_spans(run):
        hints += loss_rising(run, span) + overfitting(run, span) + lr_collapsed(run, span, monitored) + still_improving(run, span)
    return sorted(hints, key=lambda h: (h.step, h.severity != "warning"))


def _registry_monitored(run: RunData) -> Callable[[str], bool]:
    from stagedsl.registry import get_registry

    registry = get_registry()
    named = {s.scheduler.name for s in run.plan.stages if s.scheduler_monitor}

    def monitored(name: str) -> bool:
        entry = registry.find("schedulers", name)
        return bool(entry.meta.get("monitored")) if entry is not None else name in named

    return monitored
