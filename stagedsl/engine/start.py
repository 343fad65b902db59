"""Starting a run at a later stage, the stages before it adopted instead of trained.

`StartAt` is the plain description: the first stage that runs, and for every earlier stage
that ran, where its finished outcome lies (`AdoptedStage`: a run directory holding its
``best``/``last`` weights and its lines of ``metrics.jsonl``, its ``summary.json`` record,
the global step at its end). Two callers build one:

- ``run_plan(from_stage=...)`` reruns the later stages of a run in its own folder
  (`from_own_run`: the records come from its ``summary.json``, nothing is copied);
- reuse (``staged run --reuse``, a search's stage cache) adopts stages from another run
  whose stage hashes equal this plan's (`stagedsl.plan.hashing`): equal hash, equal
  outcome. `adopt` puts them into the new run's folder: the weights files (hard links where
  the file system allows, copies elsewhere), the log lines, and each record with ``reused``
  saying where it came from.

Every stage seeds itself from the run seed and its index (`stagedsl.engine.seeding`), so a
run started at stage k from adopted weights trains stages k.. exactly as a run that trained
stages 0..k-1 itself would (bit-identical on the CPU). The last adopted stage's gate decision
is followed: a ``goto`` skips to its target, a ``stop`` ends the run as that stage did.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Optional, Sequence

import attrs

from stagedsl.engine.checkpointing.weights import BEST, LAST
from stagedsl.engine.outputs import RunOutputs, read_log
from stagedsl.engine.run_state import RunState, StageRecord
from stagedsl.errors import CheckpointError, Problem
from stagedsl.plan.model import Plan
from stagedsl.run_dir import RunDir

REUSABLE = ("completed", "early_stopped", "gate_goto", "stopped")
"""Statuses of a finished stage whose outcome another run may adopt."""


@attrs.frozen
class AdoptedStage:
    """A finished stage taken from `run_dir` instead of trained."""

    name: str
    run_dir: Path = attrs.field(converter=Path)
    record: dict  # its record as summary.json holds it
    end_step: int  # the global step when it ended
    reused: Optional[dict] = None  # written as the record's `reused` ({"from", "stage", "hash"}); None: the run's own


@attrs.frozen
class StartAt:
    """Where a run starts: stage `index`, with `adopted` (in plan order) standing for the stages before it that ran."""

    index: int
    adopted: tuple[AdoptedStage, ...]
    auto_loss_args: dict = attrs.field(factory=dict)
    stopped_by_gate: Optional[dict] = None  # the adopted decision that stops the plan (no stage runs)

    @property
    def end_step(self) -> int:
        """The global step the run continues from."""
        return self.adopted[-1].end_step if self.adopted else 0

    def reused(self) -> list[str]:
        """Names of the stages adopted from another run."""
        return [a.name for a in self.adopted if a.reused is not None]


def next_index(plan: Plan, index: int, record: dict) -> Optional[int]:
    """The stage that follows stage `index` given its finished `record` (its gate decision); None when it stopped the plan."""
    decision = record.get("gate") or {}
    if record.get("status") == "stopped" or decision.get("action") == "stop":
        return None
    if record.get("status") == "gate_goto" or decision.get("action") == "goto":
        names = [s.name for s in plan.stages]
        return names.index(decision["goto"]) if decision.get("goto") in names else None
    return index + 1


def start_after(plan: Plan, adopted: Sequence[AdoptedStage], auto_loss_args: Optional[dict] = None) -> StartAt:
    """The start that follows `adopted` (stages that ran, in order, each the one its predecessor leads to)."""
    if not adopted:
        return StartAt(0, ())
    last = plan.stage(adopted[-1].name)
    following = next_index(plan, last.index, adopted[-1].record)
    stopped = None
    if following is None:
        stopped, following = adopted[-1].record.get("gate"), len(plan.stages)
    return StartAt(following, tuple(adopted), dict(auto_loss_args or {}), stopped)


def from_own_run(plan: Plan, run_dir: Path, index: int, summary: Optional[dict]) -> StartAt:
    """`run_plan(from_stage=...)`: stages before `index` as the run directory's ``summary.json`` records them."""
    summary = summary or {}
    records = summary.get("stages") or {}
    step = int(summary.get("global_steps") or 0)
    adopted = tuple(AdoptedStage(stage.name, run_dir, records.get(stage.name) if isinstance(records.get(stage.name), dict) else {},
                                 step) for stage in plan.stages[:index])
    return StartAt(index, adopted, dict(summary.get("auto_loss_args") or {}))


def check_start(plan: Plan, start: StartAt) -> None:
    """A `RunError` (E400) when `start` does not fit `plan`: adopted stages it lacks, out of order, or at or after the start."""
    from stagedsl.errors import RunError

    names = [s.name for s in plan.stages]
    positions = [names.index(a.name) if a.name in names else -1 for a in start.adopted]
    if not 0 <= start.index <= len(names) or -1 in positions or positions != sorted(set(positions)) \
            or any(p >= start.index for p in positions if start.stopped_by_gate is None):
        raise RunError(f"the start does not fit the plan: adopted {[a.name for a in start.adopted]}, first stage index {start.index}, "
                       f"stages {names}", code="E400")


def in_place(start: StartAt, run_dir: Path) -> bool:
    """Whether every adopted stage lies in `run_dir` itself (nothing to copy)."""
    root = Path(run_dir).resolve()
    return all(a.run_dir.resolve() == root for a in start.adopted)


# -- carrying it out -----------------------------------------------------------------------
def adopt_files(start: StartAt, layout: RunDir) -> list[dict]:
    """Link (or copy) each adopted stage's weights into `layout`; return the adopted log lines, in order."""
    foreign = [a for a in start.adopted if a.run_dir.resolve() != layout.root.resolve()]
    for stage in foreign:
        source = RunDir(stage.run_dir)
        for which in (BEST, LAST):
            found = source.weights(stage.name, which)
            if found.is_file():
                _link_or_copy(found, layout.weights(stage.name, which))
            elif which == LAST and stage.record.get("status") in REUSABLE:
                raise CheckpointError([Problem(code="E800", message=f"stage `{stage.name}` cannot be reused from {stage.run_dir}: "
                                               f"`{found}` is missing", hint="reuse a run whose stages finished, or run without reuse")])
    if not foreign:
        return []
    return _log_lines(foreign[-1])


def adopt(state: RunState, start: StartAt, plan: Plan, layout: RunDir, outputs: RunOutputs, *, files: bool = True) -> None:
    """Carry the adopted stages over: their files (from another run), log lines, records, the step count;
    stages before the start that the adopted decisions skipped are recorded as skipped. `files` False:
    the records and step count alone (a process other than rank 0 under torchrun)."""
    for record in adopt_files(start, layout) if files else ():
        outputs.log(record)
        if record.get("event") in ("train", "eval"):
            outputs.scalars({k: v for k, v in record.items() if "/" in k}, int(record.get("step") or 0))
    fields = attrs.fields_dict(StageRecord)
    adopted = {a.name: a for a in start.adopted}
    decided = start.index if start.stopped_by_gate is None else plan.stage(start.adopted[-1].name).index + 1
    for stage in plan.stages[:decided]:
        if stage.name not in adopted:
            state.record(stage.name).status = "skipped"
            continue
        data = adopted_record(adopted[stage.name], fields)
        try:
            state.stages[stage.name] = StageRecord(**{**data, "name": stage.name, "index": stage.index})
        except TypeError:
            pass
        state.gate_decisions.extend(data.get("gate_decisions") or [])
    state.auto_loss_args.update(start.auto_loss_args)
    state.global_step = start.end_step
    if start.stopped_by_gate is not None:
        state.status, state.stopped_by_gate = "stopped_by_gate", dict(start.stopped_by_gate)
        for later in plan.stages[decided:]:
            state.record(later.name).status = "not_run"


def _link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() or target.is_symlink():
        target.unlink()
    try:
        os.link(source, target)  # checkpoints are replaced, never written in place: a link is as safe as a copy
    except OSError:
        shutil.copy2(source, target)


def _log_lines(last: AdoptedStage) -> list[dict]:
    """The source's ``metrics.jsonl`` events up to the end of `last` (the stages before it ran before it)."""
    records = read_log(RunDir(last.run_dir))
    ends = [i for i, r in enumerate(records)
            if r.get("event") == "stage_end" and r.get("stage") == last.name and int(r.get("step") or 0) <= last.end_step]
    return records[: ends[-1] + 1] if ends else []


def adopted_record(stage: AdoptedStage, fields: Sequence[str]) -> dict[str, Any]:
    """The stage's record as this run keeps it: the source's fields, with `reused` set."""
    data = {k: v for k, v in stage.record.items() if k in fields}
    data["reused"] = stage.reused if stage.reused is not None else data.get("reused")
    return data


__all__ = ["REUSABLE", "AdoptedStage", "StartAt", "adopt", "adopt_files", "adopted_record", "check_start", "from_own_run", "in_place", "next_index",
           "start_after"]
