"""What a resume with ``--set`` changes, and whether it may.

`compare(old, new, stage=..., stage_step=..., ended=...)` lists every difference between
the plan a checkpoint was taken under and the plan the run resumes with, key by key
(``stage.refine.lr``, ``data.batch_size``, ``model.args.hidden``), and judges each:

- **allowed**: anything about what has not run yet: stages after the resume point, and
  the resumed stage's remaining steps (LR, optimizer and scheduler settings, loss,
  metrics, evaluation, gate, early stopping, checkpoint cadence, its length as long as
  it does not end before the resume step); run-wide settings that only change how the
  rest runs (``run.*`` but the seed: device, precision, threads, compile; callbacks,
  export, data workers, eval batch size);
- **refused** (unless ``--force``): a change to a finished stage (one before the resume
  point, or the resumed stage when the checkpoint is its end), to the resumed stage's
  `init` (already loaded) or a length that ends before the resume step; a change to the
  model, its parameters, the data (dataset, batch size, shuffle, drop_last) or the seed;
  removing, renaming or reordering stages up to the resume point.

The number of processes may change (``processes``, allowed) as long as the global batch
(each process's batch x processes) stays: then ``data.batch_size`` is allowed to follow it.

It also says whether the resumed stage's optimizer and scheduler settings changed
(`same_settings`): then the optimizer keeps its per-parameter state but takes the new
hyperparameters, and the new schedule is advanced to the resume step.
"""

from __future__ import annotations

from typing import Any, Optional

import attrs

from stagedsl.plan.diff import differences as _differences
from stagedsl.plan.diff import shown as _show
from stagedsl.plan.model import Plan

IGNORED = {"warnings", "spec_file", "format", "run.out", "data.sizes", "data.batches_per_epoch"}
IGNORED_STAGE_FIELDS = {"index", "modules", "epochs"}
FREE = ("callbacks", "export", "data.workers", "data.pin_memory", "data.eval_batch_size")
"""Keys that only change how the rest runs (besides every ``run.*`` key but the seed)."""
SETTINGS = ("lr", "groups", "optimizer", "scheduler", "scheduler_monitor", "steps", "trainable", "frozen")
"""Fields of a stage that the optimizer or the scheduler is built from."""


@attrs.frozen
class Change:
    """One key that differs: its old and new value, and why it is refused (None = allowed)."""

    key: str
    old: Any
    new: Any
    refused: Optional[str] = None

    def to_dict(self, *, forced: bool = False) -> dict[str, Any]:
        status = "applied" if self.refused is None else ("forced" if forced else "refused")
        data = {"key": self.key, "old": _show(self.old), "new": _show(self.new), "status": status}
        if self.refused:
            data["reason"] = self.refused
        return data


@attrs.frozen
class PlanDiff:
    """Every change between two plans, judged against a resume point."""

    changes: tuple[Change, ...]
    same_settings: bool  # the resumed stage's optimizer / scheduler settings are unchanged
    same_optimizer: bool

    @property
    def refused(self) -> list[Change]:
        return [c for c in self.changes if c.refused is not None]


def _under(key: str, prefixes: tuple[str, ...]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def _without_followers(rows: list[tuple[str, Any, Any]], stage: str, old_lr: Any, new_lr: Any) -> list[tuple[str, Any, Any]]:
    """Drop a group's LR change that only follows the stage's (a default group, or an lr_scale)."""
    if old_lr == new_lr or not old_lr:
        return rows
    prefix = f"stage.{stage}.groups."

    def follows(path: str, old: Any, new: Any) -> bool:
        return (path.startswith(prefix) and path.endswith(".lr") and isinstance(old, (int, float))
                and isinstance(new, (int, float)) and abs(new * old_lr - old * new_lr) <= 1e-12 * abs(old * new_lr))

    return [row for row in rows if not follows(*row)]


def compare(old: Plan, new: Plan, *, stage: str, stage_step: int, ended: bool) -> PlanDiff:
    """Judge every change from `old` to `new` for a resume at `stage`, step `stage_step` (`ended`: at its end)."""
    before, after = old.to_dict(), new.to_dict()
    changes: list[Change] = []
    old_global, new_global = old.data.batch_size * old.world_size, new.data.batch_size * new.world_size
    same_global = old_global == new_global
    if old.world_size != new.world_size:
        changes.append(Change("processes", old.world_size, new.world_size, None if same_global else
                              f"the global batch (batch x processes) changed from {old_global} to {new_global}: a resume on "
                              "another number of processes keeps it (each process's batch follows)"))

    for key in ("run", "model", "data", "callbacks", "export", "parameters"):
        for path, a, b in _differences(before.get(key), after.get(key), key):
            if path in IGNORED or _under(path, tuple(IGNORED)):
                continue
            if path == "run.seed":
                changes.append(Change(path, a, b, "the seed made the model's first weights and every stage's data order"))
            elif path.startswith("run.") or _under(path, FREE):
                changes.append(Change(path, a, b))
            elif path.startswith("parameters"):
                changes.append(Change("parameters", _show(a), _show(b), "the model's parameters changed: the checkpoint's "
                                      "weights are of another model"))
            elif path.startswith("model"):
                changes.append(Change(path, a, b, "the model changed since the run started"))
            elif path == "data.batch_size" and old.world_size != new.world_size and same_global:
                changes.append(Change(path, a, b))  # each process's share of the same global batch
            else:
                changes.append(Change(path, a, b, "the data changed: the finished steps saw the old data, and the data "
                                      "position of the checkpoint is in it"))

    old_names = [s["name"] for s in before["stages"]]
    new_names = [s["name"] for s in after["stages"]]
    position = old_names.index(stage)
    if new_names[:position + 1] != old_names[:position + 1]:
        changes.append(Change("stages", old_names[:position + 1], new_names[:position + 1],
                              f"the stages up to the resume point (`{stage}`) must stay as they ran, in order"))
    old_stages = {s["name"]: s for s in before["stages"]}
    new_stages = {s["name"]: s for s in after["stages"]}
    same_settings, same_optimizer = True, True
    for name in old_names + [n for n in new_names if n not in old_stages]:
        a, b = old_stages.get(name), new_stages.get(name)
        index = old_names.index(name) if name in old_stages else len(old_names)
        finished = index < position or (index == position and ended)
        if a is None or b is None:
            if finished or name == stage:
                changes.append(Change(f"stage.{name}", "present" if a else None, "present" if b else None,
                                      f"stage `{name}` has run (or is running): it cannot be added or removed"))
            else:
                changes.append(Change(f"stage.{name}", "present" if a else None, "present" if b else None))
            continue
        a = {k: v for k, v in a.items() if k not in IGNORED_STAGE_FIELDS and k != "name"}
        b = {k: v for k, v in b.items() if k not in IGNORED_STAGE_FIELDS and k != "name"}
        for path, x, y in _without_followers(_differences(a, b, f"stage.{name}"), name, a.get("lr"), b.get("lr")):
            field = path.split(".")[2]
            reason = None
            if finished:
                reason = f"stage `{name}` has finished" + (" (the checkpoint is its end)" if index == position else "")
            elif name == stage:
                if field in SETTINGS:
                    same_settings = False
                    same_optimizer = same_optimizer and not path.startswith(f"stage.{name}.optimizer.name")
                if field == "init":
                    reason = f"stage `{name}` already started from its init"
                elif field == "steps" and isinstance(y, int) and y < stage_step:
                    reason = f"stage `{name}` is at step {stage_step} already, past the new length {y}"
            changes.append(Change(path, x, y, reason))
    return PlanDiff(tuple(changes), same_settings, same_optimizer)
