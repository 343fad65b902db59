"""A run on one step axis: where each stage (attempt) ran, its curves, best checkpoints, gates, hand-offs.

Everything here is plain data derived from a `RunData`; figures, the stage table and the
diagnosis read it. Steps are the run's global optimizer steps (a gate retry runs its
stage again further along the axis; it does not go back).
"""

from __future__ import annotations

from typing import Optional

import attrs

from stagedsl.report.rundata import RunData, is_finite, number

TRAIN, EVAL = "train", "eval"


@attrs.frozen
class Span:
    """One attempt of one stage on the global step axis: [start, end]."""

    stage: str
    index: int  # the stage's position in the plan
    attempt: int  # 0 for the first try, +1 per gate retry
    start: int
    end: int

    @property
    def label(self) -> str:
        """The stage's name, with the attempt when it is a retry."""
        return self.stage if self.attempt == 0 else f"{self.stage} (retry {self.attempt})"


@attrs.frozen
class Point:
    """One logged value at a global step."""

    step: int
    value: float


@attrs.frozen
class BestMark:
    """A stage's best checkpoint: the evaluation that decided it."""

    stage: str
    step: int  # global step
    stage_step: int
    monitor: str
    value: float


@attrs.frozen
class Handoff:
    """Where a stage's weights came from: a checkpoint of an earlier stage, or a file."""

    stage: str
    to_step: int  # the first step of the stage attempt that loaded it
    source: str  # "stage" | "path"
    from_stage: Optional[str] = None
    which: str = "best"
    from_step: Optional[int] = None  # global step of the checkpoint it loaded, when known
    path: Optional[str] = None


def stage_spans(run: RunData) -> list[Span]:
    """Every stage attempt that started, in order, from the run's ``stage_start`` events.

    Without events (an empty metrics.jsonl), the spans follow the summary's step counts.
    """
    starts = [e for e in run.events if e.get("event") == "stage_start" and isinstance(e.get("step"), int)]
    ends = {}
    for event in run.events:
        if event.get("event") in ("stage_end", TRAIN, EVAL) and isinstance(event.get("step"), int):
            key = event.get("stage")
            ends[key] = max(ends.get(key, 0), event["step"])
    spans: list[Span] = []
    for i, event in enumerate(starts):
        name = str(event.get("stage"))
        stage = run.stage_plan(name)
        following = starts[i + 1]["step"] if i + 1 < len(starts) else None
        end = following if following is not None else max(ends.get(name, event["step"]), event["step"])
        spans.append(Span(name, stage.index if stage else -1, int(event.get("attempt") or 0), event["step"], end))
    if spans or not run.summary:
        return spans
    start = 0
    for stage in run.plan.stages:
        steps = int(run.stage_record(stage.name).get("steps") or 0)
        if steps:
            spans.append(Span(stage.name, stage.index, 0, start, start + steps))
            start += steps
    return spans


def final_spans(spans: list[Span]) -> dict[str, Span]:
    """The last attempt of each stage, by stage name."""
    return {span.stage: span for span in spans}


def series(run: RunData, name: str, *, kind: Optional[str] = None) -> list[Point]:
    """Every logged value of `name` (``train/loss``, ``val/f1``, ``lr/default``) by global step."""
    points = []
    for event in run.events:
        if event.get("event") not in (TRAIN, EVAL) or (kind is not None and event.get("event") != kind):
            continue
        value = number(event.get(name))
        if value is not None and isinstance(event.get("step"), int):
            points.append(Point(event["step"], value))
    return points


def within(points: list[Point], span: Span) -> list[Point]:
    """The points logged during `span` (its first step excluded: it belongs to the stage before)."""
    return [p for p in points if span.start < p.step <= span.end]


def logged_names(run: RunData, prefix: str) -> list[str]:
    """Names of logged values starting with `prefix` (``val/``, ``lr/``), in order of first appearance."""
    names: dict[str, None] = {}
    for event in run.events:
        if event.get("event") in (TRAIN, EVAL):
            for key in event:
                if key.startswith(prefix):
                    names.setdefault(key, None)
    return list(names)


def validation_metrics(run: RunData) -> list[str]:
    """Every logged validation value but the loss (the loss figure has it): ``val/f1``, ``val/mse``, ..."""
    return [name for name in logged_names(run, "val/") if name != "val/loss"]


def best_marks(run: RunData, spans: list[Span]) -> list[BestMark]:
    """Each stage's best checkpoint, placed at its evaluation's global step."""
    last = final_spans(spans)
    marks = []
    for stage in run.plan.stages:
        record = run.stage_record(stage.name)
        value, stage_step = number(record.get("best_value")), record.get("best_step")
        if stage.name not in last or not is_finite(value) or not isinstance(stage_step, int):
            continue
        monitor = str(record.get("monitor") or stage.eval.monitor)
        marks.append(BestMark(stage.name, last[stage.name].start + stage_step, stage_step, monitor, value))
    return marks


def handoffs(run: RunData, spans: list[Span]) -> list[Handoff]:
    """Each stage attempt's `init`: which checkpoint of which stage (at which step) it started from."""
    last = final_spans(spans)
    bests = {mark.stage: mark for mark in best_marks(run, spans)}
    out = []
    for span in spans:
        stage = run.stage_plan(span.stage)
        if stage is None or stage.init is None:
            continue
        init = stage.init
        if init.source != "stage":
            out.append(Handoff(stage.name, span.start, "path", path=init.path))
            continue
        source = last.get(init.stage)
        if init.which == "best" and init.stage in bests:
            from_step = bests[init.stage].step
        else:
            from_step = source.end if source is not None else None
        out.append(Handoff(stage.name, span.start, "stage", init.stage, init.which, from_step))
    return out


def _comparison(expr: object) -> Optional[tuple[str, str, float]]:
    if not isinstance(expr, dict) or expr.get("op") not in (">=", ">", "<=", "<"):
        return None
    left, right = expr.get("left") or {}, expr.get("right") or {}
    if "metric" in left and "number" in right:
        return str(left["metric"]), str(expr["op"]), float(right["number"])
    flipped = {">=": "<=", ">": "<", "<=": ">=", "<": ">"}
    if "number" in left and "metric" in right:
        return str(right["metric"]), flipped[expr["op"]], float(left["number"])
    return None


def stage_thresholds(run: RunData) -> list[tuple[str, str, str, float]]:
    """(stage, metric, operator, number) for every stage whose gate is a single comparison."""
    out = []
    for stage in run.plan.stages:
        if stage.gate is not None:
            found = _comparison(stage.gate.expr)
            if found:
                out.append((stage.name, *found))
    return out
