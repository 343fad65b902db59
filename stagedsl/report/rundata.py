"""What a report reads from a run directory: the plan, the summary and the logged events.

`read_run` is the only place the report touches the run folder's files; everything after
it works on the plain `RunData` it returns. The plan comes back typed (`Plan.from_json`);
``summary.json`` and ``metrics.jsonl`` stay plain data, read leniently: a report of a run
that was killed mid-write (a torn last line, no summary yet) still renders what is there,
with a note saying what was missing.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Optional

import attrs

from stagedsl.errors import Problem, UsageError
from stagedsl.export.source import read_plan, read_summary
from stagedsl.matrix.layout import MEMBERS_DIR, MatrixDir
from stagedsl.plan.model import Plan, StagePlan
from stagedsl.run_dir import RunDir


@attrs.frozen
class RunData:
    """One run directory, read: its plan, summary, events (metrics.jsonl lines) and reading notes."""

    path: Path
    plan: Plan
    summary: dict = attrs.field(factory=dict)
    events: tuple[dict, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """The run's name (from the plan)."""
        return self.plan.run.name

    @property
    def status(self) -> str:
        """How the run ended (``summary.json``'s status), or "unknown" without a summary."""
        return str(self.summary.get("status") or "unknown")

    def stage_record(self, name: str) -> dict:
        """The stage's entry of ``summary.json`` (empty when it has none)."""
        records = self.summary.get("stages")
        record = records.get(name) if isinstance(records, dict) else None
        return record if isinstance(record, dict) else {}

    def stage_plan(self, name: str) -> Optional[StagePlan]:
        """The plan of stage `name`, or None when the plan has no such stage."""
        try:
            return self.plan.stage(name)
        except KeyError:
            return None

    @property
    def gate_decisions(self) -> list[dict]:
        """Every gate decision of the run, in order (across stages and retries)."""
        decisions = self.summary.get("gate_decisions")
        if isinstance(decisions, list) and decisions:
            return [d for d in decisions if isinstance(d, dict)]
        return [{k: v for k, v in e.items() if k != "event"} for e in self.events if e.get("event") == "gate"]


def read_run(run_dir: Path | str) -> RunData:
    """Read `run_dir`; a `UsageError` (E501) when it is not a run directory."""
    run_dir = Path(run_dir)
    layout = RunDir(run_dir)
    if MatrixDir.holds_matrix(run_dir) and not layout.plan.is_file():
        members = sorted(p.name for p in (run_dir / MEMBERS_DIR).glob("*") if RunDir(p).plan.is_file())
        member = run_dir / "members" / (members[0] if members else "<member>")
        raise UsageError([Problem(code="E501", message=f"`{run_dir}` is a matrix run: its members are the run directories",
                                  hint=f"`staged report {run_dir}` draws the whole matrix; compare members, as in "
                                  f"`staged report {member} {run_dir / 'members' / '<other>'}`"
                                  + (f" (members: {', '.join(members)})" if members else ""))])
    plan = read_plan(run_dir)
    summary, why = read_summary(run_dir)
    notes = [why.split(";")[0]] if why else []
    if not summary and why is None:
        notes.append("the run has no summary.json yet (it has not finished a stage): tables show the plan only")
    events, skipped = read_events(layout.metrics)
    if skipped:
        notes.append(f"{skipped} line(s) of {layout.metrics.name} could not be read and were left out")
    if not layout.metrics.exists():
        notes.append(f"the run has no {layout.metrics.name}: no curves to draw")
    return RunData(path=run_dir, plan=plan, summary=summary, events=tuple(events), notes=tuple(notes))


def read_events(path: Path) -> tuple[list[dict], int]:
    """The events of ``metrics.jsonl`` and how many lines were unreadable."""
    if not path.is_file():
        return [], 0
    events, skipped = [], 0
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            line = line.strip()
            if not line:
                continue
            try:
                event = json.loads(line)
            except ValueError:
                skipped += 1
                continue
            if isinstance(event, dict):
                events.append(event)
            else:
                skipped += 1
    return events, skipped


def number(value: Any) -> Optional[float]:
    """A logged value as a float: numbers as they are, "nan" / "inf" strings (JSON-safe forms) parsed."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and value.lower() in ("nan", "inf", "-inf", "infinity", "-infinity"):
        return float(value)
    return None


def is_finite(value: Any) -> bool:
    """True for a real, finite number (not None, a bool, a string, NaN or an infinity)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
