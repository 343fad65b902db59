"""Stage reuse: where a finished stage can be found by its stage hash, and the start that adopts it.

A *source* of finished stages answers `find(stage_hash)` with an entry::

    {"hash", "stage", "run_dir" (absolute), "from" (what the records name), "record" (its summary
     record), "end_step" (the global step at its end), "auto_loss_args"}

Two kinds: the study's `StageCache` (``cache/<hash>.json``, one file per finished stage,
written by `StagePublisher` at the stage's end in whichever trial trained it), and
`RunSource`, a finished run directory whose ``plan.json`` gives its stage hashes
(``staged run --reuse OTHER_RUN_DIR``). `reuse_start` walks a plan's stages in order and
adopts each whose hash a source knows, following the adopted gate decisions, until one is
not known: the run starts there (`stagedsl.engine.start.StartAt`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import attrs

from stagedsl.engine.events import Callback
from stagedsl.engine.start import REUSABLE, AdoptedStage, StartAt, next_index, start_after
from stagedsl.errors import Problem, UsageError
from stagedsl.plan.model import Plan
from stagedsl.run_dir import RunDir
from stagedsl.search.layout import SearchDir


class StageCache:
    """The study's index of finished stages: ``cache/<hash>.json``, the first trial to finish a hash wins."""

    def __init__(self, search_dir: SearchDir):
        self.search_dir = search_dir

    def find(self, stage_hash: str) -> Optional[dict]:
        """The entry of `stage_hash`, or None when no trial has finished such a stage."""
        entry = self.search_dir.read_json(self.search_dir.cache_entry(stage_hash))
        if not isinstance(entry, dict) or entry.get("hash") != stage_hash:
            return None
        return {**entry, "run_dir": str(self.search_dir.root / entry["run_dir"]), "from": entry["run_dir"]}

    def publish(self, entry: dict) -> None:
        """Record a finished stage (``run_dir`` inside the search) unless another trial already has."""
        path = self.search_dir.cache_entry(entry["hash"])
        if not path.exists():
            self.search_dir.write_json(path, {**entry, "run_dir": self.search_dir.relative(Path(entry["run_dir"]))})

    def __len__(self) -> int:
        return len(list(self.search_dir.cache.glob("*.json"))) if self.search_dir.cache.is_dir() else 0


class StagePublisher(Callback):
    """Publishes each stage a trial trains to the study's cache as soon as it ends (its files are written by then)."""

    def __init__(self, cache: StageCache, run_dir: Path, hashes: dict[str, str]):
        self.cache, self.run_dir, self.hashes = cache, Path(run_dir), hashes

    def stage_end(self, state) -> None:
        """Called by the engine after every attempt of a stage; a retried attempt is not the stage's outcome."""
        record = state.record(state.stage_name)
        if record.status not in REUSABLE or record.reused is not None:
            return
        self.cache.publish({"hash": self.hashes[record.name], "stage": record.name, "run_dir": str(self.run_dir),
                            "record": attrs.asdict(record), "end_step": state.global_step,
                            "auto_loss_args": json.loads(json.dumps(state.auto_loss_args, default=str))})


class RunSource:
    """The finished stages of one run directory, by the stage hashes of its ``plan.json``."""

    def __init__(self, run_dir: Path | str, label: Optional[str] = None):
        from stagedsl.engine.outputs import read_summary

        self.layout = RunDir(run_dir)
        try:
            data = json.loads(self.layout.plan.read_text(encoding="utf-8"))
            plan = Plan.from_dict(data)
        except (OSError, ValueError) as exc:
            raise UsageError([Problem(code="E806", message=f"--reuse {run_dir}: not a run directory ({exc})",
                                      hint="name a folder `staged run` wrote (it holds plan.json and summary.json), or a search's")]) from None
        summary = read_summary(self.layout) or {}
        self.label = label or str(run_dir)
        self.records = summary.get("stages") or {}
        self.auto_loss_args = summary.get("auto_loss_args") or {}
        self.by_hash = {h: name for name, h in plan.stage_hashes.items()}
        self.end_steps = _end_steps(self.layout)

    def find(self, stage_hash: str) -> Optional[dict]:
        """The entry of the run's stage with `stage_hash`, when that stage finished."""
        name = self.by_hash.get(stage_hash)
        record = self.records.get(name) if name else None
        if not isinstance(record, dict) or record.get("status") not in REUSABLE or name not in self.end_steps:
            return None
        return {"hash": stage_hash, "stage": name, "run_dir": str(self.layout.root), "from": self.label, "record": record,
                "end_step": self.end_steps[name], "auto_loss_args": self.auto_loss_args}


def _end_steps(layout: RunDir) -> dict[str, int]:
    """Each stage's global step at its last end, from ``metrics.jsonl``."""
    from stagedsl.engine.outputs import read_log

    return {e.get("stage"): int(e.get("step") or 0) for e in read_log(layout) if e.get("event") == "stage_end"}


def source_at(path: Path | str):
    """The reuse source in `path`: a search's stage cache, or a run directory."""
    if SearchDir.holds_search(path):
        return StageCache(SearchDir(path))
    return RunSource(path)


def reuse_start(plan: Plan, source) -> Optional[StartAt]:
    """The start that adopts every leading stage of `plan` that `source` has finished (None: nothing to adopt)."""
    hashes = plan.stage_hashes
    adopted: list[AdoptedStage] = []
    auto: dict = {}
    index: Optional[int] = 0
    while index is not None and index < len(plan.stages):
        stage = plan.stages[index]
        entry = source.find(hashes[stage.name])
        if entry is None:
            break
        record = {**entry["record"], "name": stage.name, "index": stage.index}
        adopted.append(AdoptedStage(stage.name, Path(entry["run_dir"]), record, int(entry["end_step"]),
                                    reused={"from": entry["from"], "stage": entry["stage"], "hash": entry["hash"]}))
        auto.update(entry.get("auto_loss_args") or {})
        index = next_index(plan, index, record)
    return start_after(plan, adopted, auto) if adopted else None


def describe_start(plan: Plan, start: Optional[StartAt]) -> list[str]:
    """Lines saying which stages a run adopts (and from where) and which it trains (`plan --dry-run --reuse`)."""
    hashes = plan.stage_hashes
    adopted = {a.name: a for a in (start.adopted if start else ())}
    first = start.index if start else 0
    lines = []
    for stage in plan.stages:
        if stage.name in adopted:
            reused = adopted[stage.name].reused or {}
            lines.append(f"  reused  {stage.name:<16} [hash {hashes[stage.name]}] from {reused.get('from')} ({adopted[stage.name].record.get('status')})")
        elif stage.index < first:
            lines.append(f"  skipped {stage.name:<16} (the adopted gate decision jumps over it)")
        elif start is not None and start.stopped_by_gate is not None:
            lines.append(f"  not run {stage.name:<16} (the adopted gate decision stopped the plan)")
        else:
            lines.append(f"  trains  {stage.name:<16} [hash {hashes[stage.name]}]")
    return lines


__all__ = ["RunSource", "StageCache", "StagePublisher", "describe_start", "reuse_start", "source_at"]
