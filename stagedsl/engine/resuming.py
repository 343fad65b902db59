"""`resume_plan`: continue a run from its newest good trainer checkpoint.

The engine never reads a spec: the caller hands it the plan to resume with (the API
layer, `stagedsl.api.resume_run`, compiles the run's effective spec with ``--set``
overrides); without one the run goes on under its own ``plan.json``. A run whose
``summary.json`` says it completed under that very plan is complete: nothing is trained
(`RunResult.already_complete`).

1. Find the newest trainer checkpoint whose files match its manifest's checksums; a
   truncated or corrupt newer one is reported, removed and passed over. Without any
   checkpoint (killed before the first) the run starts over from its first stage.
2. Compare the plan the checkpoint was taken under (``plans/<hash>.json``) with the plan
   to resume with (`plan_diff.compare`): a change to what has already run, to the model
   or to the data is refused (E431) unless `force`; the changes are recorded in the run
   log (a ``resume`` event), in ``summary.json`` (``resumes``) and in `RunState.resumes`.
3. Run on (`runner.execute`): the stage is rebuilt from the plan, the checkpoint loaded
   into it (`attempts.apply_resume_point`), and the loop continues with the exact next batch.

On the CPU with unchanged settings the resumed run ends bit-identical to one that was
never stopped.

Under torchrun rank 0 alone does steps 1 and 2 and hands the other processes the plan
and the loaded checkpoint. A run resumes on another number of processes with the same
global batch (`stagedsl.plan.distributed.for_world_size`: each process's batch is the
global batch over the processes), so its steps and data order stay the same: a run of 2
processes goes on in one, and the reverse.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

from stagedsl.engine import distributed
from stagedsl.engine.checkpointing import trainer_checkpoints
from stagedsl.engine.checkpointing.resume_point import ResumePoint
from stagedsl.engine.events import Callback
from stagedsl.engine.plan_diff import PlanDiff, compare
from stagedsl.engine.runner import Live, RunResult, execute
from stagedsl.engine.run_state import RunState
from stagedsl.errors import CheckpointError, Problem, RunError, UsageError, os_failure
from stagedsl.plan.diff import differences as _differences
from stagedsl.plan.diff import shown as _show
from stagedsl.plan.distributed import for_world_size
from stagedsl.plan.model import Plan
from stagedsl.registry import Registry, get_registry
from stagedsl.run_dir import RunDir


def resume_plan(
    run_dir: str | Path,
    plan: Optional[Plan] = None,
    *,
    spec_text: Optional[str] = None,
    overrides: Sequence[str] = (),
    force: bool = False,
    device: Optional[str] = None,
    registry: Optional[Registry] = None,
    callbacks: Iterable[Callback] = (),
    handle_signals: bool = True,
    warn: Optional[Callable[[str], None]] = None,
    model: Any = None,
    data: Any = None,
) -> RunResult:
    """Continue the run in `run_dir` where it stopped, following `plan` (see the module docstring).

    `model` / `data`: the live objects of a run whose plan names them ``<live:...>`` (`stagedsl.run`).

    `plan` is the plan to resume with (default: the run's ``plan.json``); `spec_text` its
    effective spec, written to ``spec.toml``; `overrides` the ``--set`` changes that made
    it, recorded with the resume. `force` accepts changes that touch what has already run
    (recorded as forced); `device` overrides the plan's device. Raises `UsageError` (E415
    not a run directory, E431 a refused change), `CheckpointError` (E413 a checkpoint
    carrying a pickle payload, E414 no usable checkpoint), and whatever `run_plan` raises.
    A run that completed under the plan to resume with is not trained again: its result
    comes back with ``already_complete`` set.
    """
    layout = RunDir(run_dir)
    registry = registry if registry is not None else get_registry()
    warn = warn or _stderr_warning
    processes = distributed.from_environment()
    distributed.join(processes)  # rank 0 alone reads the run directory; the others get what it found
    with contextlib.ExitStack() as owner:

        def prepare() -> tuple:
            try:  # rank 0 owns the run directory from its first read to the end of training (E441 for all otherwise)
                owner.enter_context(layout.lock("resume"))
                return _prepare(layout, plan, processes.world_size, overrides=overrides, force=force, device=device,
                                registry=registry, warn=warn, model=model, data=data)
            except OSError as exc:  # taking the lock, cleaning half-written files
                raise os_failure(exc, f"`staged resume` of {layout.root}") from None

        target, point, restart, finished = distributed.from_writer(prepare)
        if finished is not None:
            return finished
        if point is None:
            return execute(target, registry=registry, run_dir=layout.root, device=device, callbacks=callbacks,
                           spec_text=spec_text, handle_signals=handle_signals, restart=restart, live=Live(model, data))
        return execute(target, registry=registry, run_dir=layout.root, device=device, callbacks=callbacks,
                       spec_text=spec_text, resume=point, handle_signals=handle_signals, live=Live(model, data))


def _prepare(layout: RunDir, plan: Optional[Plan], world_size: int, *, overrides: Sequence[str], force: bool,
             device: Optional[str], registry: Registry, warn: Callable[[str], None], model: Any = None, data: Any = None
             ) -> tuple[Plan, Optional[ResumePoint], Optional[dict], Optional[RunResult]]:
    """The plan to resume with (for `world_size` processes), the checkpoint to resume from (None: start over),
    without one the record of the restart, and the result of a run that had completed already (then
    nothing else). Steps 1 and 2 of the module docstring."""
    current = read_run_plan(layout)
    finished = _finished(layout, plan if plan is not None else current)
    if finished is not None:
        return current, None, None, finished
    target = for_world_size(plan if plan is not None else current, world_size, registry, model=model, data=data)
    trainer_checkpoints.remove_temp_files(layout)
    point = find_resume_point(layout, warn)
    if point is None:
        warn(f"{layout.root} has no trainer checkpoint yet (the run stopped before its first): it starts over from its first stage")
        diff = compare(current, target, stage=current.stages[0].name, stage_step=0, ended=False)
        forced = _judge(diff, force, overrides)
        record = _record(None, {"stage": target.stages[0].name, "attempt": 0, "stage_step": 0, "global_step": 0,
                                "phase": "start"}, diff, overrides, forced, device, current, target)
        return target, None, record, None
    base = _checkpoint_plan(layout, point, current)
    state = point.state
    if state.stage_name not in [s.name for s in target.stages]:
        raise UsageError([Problem(code="E431", message=f"the plan to resume with has no stage `{state.stage_name}`, "
                                  "where the run stopped", hint="keep the stages up to the resume point")])
    diff = compare(base, target, stage=state.stage_name, stage_step=state.stage_step, ended=point.phase == "end")
    forced = _judge(diff, force, overrides)
    point.same_settings, point.same_optimizer = diff.same_settings, diff.same_optimizer
    at = {"stage": state.stage_name, "attempt": state.attempt, "stage_step": state.stage_step,
          "global_step": state.global_step, "phase": point.phase}
    point.record = _record(layout.relative(point.path), at, diff, overrides, forced, device, base, target)
    return target, point, None, None


def find_resume_point(run_dir: RunDir, warn: Callable[[str], None]) -> Optional[ResumePoint]:
    """The newest checkpoint whose files match their checksums, loaded; None when there is none at all.

    Newer checkpoints that fail the check (a file missing, truncated or changed; a
    manifest that lists no files, or cannot be read) are reported, each by name, and
    removed. A checkpoint whose files carry a pickle payload stops the resume (E413): it
    is not corruption.
    """
    candidates = trainer_checkpoints.newest_first(trainer_checkpoints.list_states(run_dir))
    rejected: list[tuple[Path, str]] = []
    for position, path in enumerate(candidates):
        problem = trainer_checkpoints.verify_state(path)
        if problem is not None:
            warn(f"checkpoint `{path}` is unusable: {problem}; falling back to the one before it")
            rejected.append((path, problem))
            continue
        loaded = trainer_checkpoints.load_state(path, verify=False)
        for skipped in candidates[position + 1:]:  # sorted last for want of a readable manifest: they may be newer
            if trainer_checkpoints.manifest_order(skipped) is None:
                why = trainer_checkpoints.verify_state(skipped) or "its manifest cannot be read"
                warn(f"checkpoint `{skipped}` was skipped: {why}; without its manifest its age is unknown, so it may "
                     f"have been newer than `{path.name}` (W011)")
        for bad, _ in rejected:
            if _manifest_readable(bad):  # corrupt: it can never be used; one that cannot be read may be a permission away
                run_dir.remove(bad)
        return ResumePoint(path=path, state=loaded["state"], model=loaded["model"], trainer=loaded["trainer"],
                           manifest=trainer_checkpoints.read_manifest(path))
    if rejected:
        raise CheckpointError([Problem(code="E414", message=f"no usable trainer checkpoint in {run_dir.root}: "
                                       + "; ".join(f"`{p.name}`: {why}" for p, why in rejected),
                                       hint="start the run again (staged run SPEC --out RUN_DIR --overwrite)")])
    return None


def _manifest_readable(path: Path) -> bool:
    try:
        (path / trainer_checkpoints.MANIFEST_FILE).read_bytes()
        return True
    except OSError as exc:
        return isinstance(exc, FileNotFoundError)


def _record(checkpoint: Optional[str], at: dict, diff: PlanDiff, overrides: Sequence[str], forced: bool,
            device: Optional[str], base: Plan, target: Plan) -> dict:
    """A resume's entry of `RunState.resumes` (and of its ``resume`` event in the run log)."""
    return {
        "checkpoint": checkpoint,
        "at": at,
        "changes": [c.to_dict(forced=forced) for c in diff.changes],
        "overrides": list(overrides),
        "forced": forced,
        "device": device,
        "plan_hash": {"before": base.hash, "after": target.hash},
    }


def _finished(layout: RunDir, plan: Plan) -> Optional[RunResult]:
    """A run whose summary says it completed under `plan`: nothing to resume (`already_complete`)."""
    try:
        summary = json.loads(layout.summary.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(summary, dict) or summary.get("status") != "completed" or summary.get("plan_hash") != plan.hash:
        return None
    state = RunState(run_name=str(summary.get("run", "")), plan_hash=plan.hash, status="completed",
                     global_step=int(summary.get("global_steps") or 0), wall_time_s=float(summary.get("wall_time_s") or 0.0))
    return RunResult(run_dir=layout.root, status="completed", stages=summary.get("stages") or {}, stopped_by_gate=None,
                     summary=summary, state=state, already_complete=True)


# -- plans -------------------------------------------------------------------------------
def read_run_plan(run_dir: RunDir, path: Optional[Path] = None, *, verify: bool = True) -> Plan:
    """The plan a run follows (``plan.json``, or `path`); E415 when there is none or it cannot be read.

    With `verify` its integrity is checked (E444): the hash it carries must be its
    content's, and it must be a plan the run wrote (one of ``plans/<hash>.json``); the
    only way to change a run's plan is ``staged resume --set``.
    """
    path = path or run_dir.plan
    if not path.exists():
        raise UsageError([Problem(code="E415", message=f"{run_dir.root} is not a run directory (it has no {run_dir.plan.name})",
                                  hint="pass the folder `staged run` wrote (its --out)")])
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        plan = Plan.from_dict(data)
    except OSError as exc:
        raise os_failure(exc, f"reading {path.name}", error=UsageError) from None
    except Exception as exc:
        raise UsageError([Problem(code="E415", message=f"`{path}` is not a readable plan: {type(exc).__name__}: {exc}",
                                  hint="it was written by another version of stagedsl, or edited")]) from None
    if verify:
        _verify_plan(run_dir, path, data, plan)
    return plan


def _verify_plan(run_dir: RunDir, path: Path, data: dict, plan: Plan) -> None:
    """E444 unless `plan` (read from `path`, whose JSON is `data`) is a plan the run itself wrote."""
    stored, actual = data.get("hash"), plan.hash
    is_version = path.parent == run_dir.plans
    expected = path.stem if is_version else stored
    if expected == actual and (is_version or run_dir.plan_version(actual).is_file()):
        return
    original = None
    if isinstance(expected, str) and not is_version and run_dir.plan_version(expected).is_file():
        try:
            original = read_run_plan(run_dir, run_dir.plan_version(expected))
        except (UsageError, RunError):
            original = None
    if original is not None:
        rows = _differences(original.to_dict(), plan.to_dict())
        changed = "; ".join(f"{key} {json.dumps(_show(old), default=str)} -> {json.dumps(_show(new), default=str)}"
                            for key, old, new in rows[:5]) + (f"; and {len(rows) - 5} more" if len(rows) > 5 else "")
        what = f"it was edited since the run wrote it: {changed}" if rows else "its hash was edited"
        hint = f"restore it from {run_dir.relative(run_dir.plan_version(expected))}: "
    elif expected != actual:
        what = f"its content hashes to {actual}, not to the {expected!r} it carries: it was edited since the run wrote it"
        hint = ""
    else:
        what = f"it is not a plan this run wrote (no {run_dir.relative(run_dir.plan_version(actual))})"
        hint = ""
    raise UsageError([Problem(code="E444", message=f"`{path}`: {what}", file=str(path),
                              hint=hint + "the only way to change a run's plan is `staged resume RUN_DIR --set key=value` "
                                          "(checked against what has run, and recorded); or start a new run")])


def _checkpoint_plan(run_dir: RunDir, point: ResumePoint, current: Plan) -> Plan:
    """The plan the checkpoint was taken under (it names it by hash)."""
    wanted = point.state.plan_hash
    if current.hash == wanted:
        return current
    path = run_dir.plan_version(wanted)
    if not path.exists():
        raise UsageError([Problem(code="E415", message=f"the plan checkpoint `{point.path}` was taken under "
                                  f"(hash {wanted}) is not in {run_dir.plans}",
                                  hint="plan.json was replaced by hand; restore it, or start the run again")])
    return read_run_plan(run_dir, path)


def _judge(diff: PlanDiff, force: bool, overrides: Sequence[str] = ()) -> bool:
    """Raise E431 for refused changes unless `force`; return whether any change was forced."""
    refused = diff.refused
    if not refused:
        return False
    if force:
        return True
    source = "--set changes" if overrides else "the run's plan.json (from an earlier `staged resume --set`) changes"
    raise UsageError([Problem(code="E431", message=f"{source} `{c.key}` ({json.dumps(c.to_dict()['old'], default=str)} -> "
                              f"{json.dumps(c.to_dict()['new'], default=str)}): {c.refused}",
                              hint="a resume changes only what has not run yet; pass --force to resume with it anyway "
                                   "(recorded as forced), or start a new run")
                      for c in refused])


def _stderr_warning(message: str) -> None:
    import sys

    print(f"warning: {message}", file=sys.stderr, flush=True)


__all__ = ["find_resume_point", "read_run_plan", "resume_plan"]
