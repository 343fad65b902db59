"""`resume_run`: continue a run from its newest good trainer checkpoint.

1. Read the plan the run follows (``plan.json``). With ``--set`` overrides, load the
   run's effective spec (``spec.toml``) with them and compile it again.
2. Find the newest trainer checkpoint whose files match its manifest's checksums; a
   truncated or corrupt newer one is reported, removed and passed over. Without any
   checkpoint (killed before the first) the run starts over from its first stage.
3. Compare the plan the checkpoint was taken under (``plans/<hash>.json``) with the plan
   to resume with (`plan_diff.compare`): a change to what has already run, to the model
   or to the data is refused (E431) unless `force`; the changes are recorded in the run
   log (a ``resume`` event), in ``summary.json`` (``resumes``) and in `RunState.resumes`.
4. Run on (`runner.execute`): the stage is rebuilt from the plan, the checkpoint loaded
   into it (`restore.apply`), and the loop continues with the exact next batch.

On the CPU with unchanged settings the resumed run ends bit-identical to one that was
never stopped.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

from stagedsl.engine import checkpoints
from stagedsl.engine.events import Callback
from stagedsl.engine.outputs import PLAN_FILE, PLANS_DIR, SPEC_FILE, SUMMARY_FILE
from stagedsl.engine.plan_diff import PlanDiff, compare
from stagedsl.engine.restore import ResumePoint
from stagedsl.engine.runner import RunResult, execute
from stagedsl.engine.state import RunState
from stagedsl.errors import CheckpointError, Problem, UsageError
from stagedsl.plan.model import Plan
from stagedsl.registry import Registry, get_registry


def resume_run(
    run_dir: str | Path,
    *,
    overrides: Sequence[str] = (),
    force: bool = False,
    device: Optional[str] = None,
    registry: Optional[Registry] = None,
    callbacks: Iterable[Callback] = (),
    handle_signals: bool = True,
    warn: Optional[Callable[[str], None]] = None,
) -> RunResult:
    """Continue the run in `run_dir` where it stopped (see the module docstring).

    `overrides` are ``--set key.path=value`` changes to the run's spec; `force` accepts
    changes that touch what has already run (recorded as forced); `device` overrides the
    plan's device. Raises `UsageError` (E415 not a run directory, E431 a refused
    change), `CheckpointError` (E413 a checkpoint carrying a pickle payload, E414 no
    usable checkpoint), and whatever `run_plan` raises. A run that completed under its
    plan is not trained again: without `overrides` its result comes back with
    ``already_complete`` set.
    """
    run_dir = Path(run_dir)
    registry = registry if registry is not None else get_registry()
    warn = warn or _stderr_warning
    current = _read_plan(run_dir / PLAN_FILE, run_dir)
    finished = None if overrides else _finished(run_dir, current)
    if finished is not None:
        return finished
    target, spec_text = current, None
    if overrides:
        target, spec_text = _recompile(run_dir, overrides, registry)
    checkpoints.remove_temp_files(run_dir)
    point = find_resume_point(run_dir, warn)
    if point is None:
        warn(f"{run_dir} has no trainer checkpoint yet (the run stopped before its first): it starts over from its first stage")
        diff = compare(current, target, stage=current.stages[0].name, stage_step=0, ended=False)
        forced = _judge(diff, force, run_dir)
        record = _record(None, {"stage": target.stages[0].name, "attempt": 0, "stage_step": 0, "global_step": 0,
                                "phase": "start"}, diff, overrides, forced, device, current, target)
        return execute(target, registry=registry, run_dir=run_dir, device=device, callbacks=callbacks,
                       spec_text=spec_text, handle_signals=handle_signals, restart=record)
    base = _checkpoint_plan(run_dir, point, current)
    state = point.state
    if state.stage_name not in [s.name for s in target.stages]:
        raise UsageError([Problem(code="E431", message=f"the plan to resume with has no stage `{state.stage_name}`, "
                                  "where the run stopped", hint="keep the stages up to the resume point")])
    diff = compare(base, target, stage=state.stage_name, stage_step=state.stage_step, ended=point.phase == "end")
    forced = _judge(diff, force, run_dir)
    point.same_settings, point.same_optimizer = diff.same_settings, diff.same_optimizer
    at = {"stage": state.stage_name, "attempt": state.attempt, "stage_step": state.stage_step,
          "global_step": state.global_step, "phase": point.phase}
    point.record = _record(str(Path(point.path).relative_to(run_dir)), at, diff, overrides, forced, device, base, target)
    return execute(target, registry=registry, run_dir=run_dir, device=device, callbacks=callbacks,
                   spec_text=spec_text, resume=point, handle_signals=handle_signals)


def find_resume_point(run_dir: Path, warn: Callable[[str], None]) -> Optional[ResumePoint]:
    """The newest checkpoint whose files match their checksums, loaded; None when there is none at all.

    Newer checkpoints that fail the check are reported and removed. A checkpoint whose
    trainer state or weights carry a pickle payload stops the resume (E413): it is not corruption.
    """
    candidates = checkpoints.newest_first(checkpoints.list_states(run_dir))
    rejected: list[tuple[Path, str]] = []
    for path in candidates:
        problem = checkpoints.verify_state(path)
        if problem is not None:
            warn(f"checkpoint `{path}` is unusable: {problem}; falling back to the one before it")
            rejected.append((path, problem))
            continue
        loaded = checkpoints.load_state(path, verify=False)
        for bad, _ in rejected:
            shutil.rmtree(bad, ignore_errors=True)
        return ResumePoint(path=path, state=loaded["state"], model=loaded["model"], trainer=loaded["trainer"],
                           manifest=checkpoints.read_manifest(path))
    if rejected:
        raise CheckpointError([Problem(code="E414", message=f"no usable trainer checkpoint in {run_dir}: "
                                       + "; ".join(f"`{p.name}`: {why}" for p, why in rejected),
                                       hint="start the run again (staged run SPEC --out RUN_DIR --overwrite)")])
    return None


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


def _finished(run_dir: Path, plan: Plan) -> Optional[RunResult]:
    """A run whose summary says it completed under this plan: nothing to resume (`already_complete`)."""
    try:
        summary = json.loads((run_dir / SUMMARY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(summary, dict) or summary.get("status") != "completed" or summary.get("plan_hash") != plan.hash:
        return None
    state = RunState(run_name=str(summary.get("run", "")), plan_hash=plan.hash, status="completed",
                     global_step=int(summary.get("global_steps") or 0), wall_time_s=float(summary.get("wall_time_s") or 0.0))
    return RunResult(run_dir=run_dir, status="completed", stages=summary.get("stages") or {}, stopped_by_gate=None,
                     summary=summary, state=state, already_complete=True)


# -- plans -------------------------------------------------------------------------------
def _read_plan(path: Path, run_dir: Path) -> Plan:
    if not path.exists():
        raise UsageError([Problem(code="E415", message=f"{run_dir} is not a run directory (it has no {PLAN_FILE})",
                                  hint="pass the folder `staged run` wrote (its --out)")])
    try:
        return Plan.from_json(path.read_text())
    except Exception as exc:
        raise UsageError([Problem(code="E415", message=f"`{path}` is not a readable plan: {type(exc).__name__}: {exc}",
                                  hint="it was written by another version of stagedsl, or edited")]) from None


def _checkpoint_plan(run_dir: Path, point: ResumePoint, current: Plan) -> Plan:
    """The plan the checkpoint was taken under (it names it by hash)."""
    wanted = point.state.plan_hash
    if current.hash == wanted:
        return current
    path = run_dir / PLANS_DIR / f"{wanted}.json"
    if not path.exists():
        raise UsageError([Problem(code="E415", message=f"the plan checkpoint `{point.path}` was taken under "
                                  f"(hash {wanted}) is not in {run_dir / PLANS_DIR}",
                                  hint="plan.json was replaced by hand; restore it, or start the run again")])
    return _read_plan(path, run_dir)


def _recompile(run_dir: Path, overrides: Sequence[str], registry: Registry) -> tuple[Plan, str]:
    """The run's effective spec with `overrides`, compiled; and its new effective text."""
    from stagedsl.plan.compile import compile_plan
    from stagedsl.spec.loader import loads_spec

    path = run_dir / SPEC_FILE
    if not path.exists():
        raise UsageError([Problem(code="E415", message=f"{run_dir} has no {SPEC_FILE}, so --set has nothing to apply to",
                                  hint="runs started from Python without spec_text cannot take --set; resume without it")])
    loaded = loads_spec(path.read_text(encoding="utf-8"), file=str(path), overrides=overrides, registry=registry)
    return compile_plan(loaded, registry), _effective_text(loaded, overrides)


def _effective_text(loaded, overrides: Sequence[str]) -> str:
    import tomli_w

    header = f"# effective spec of {loaded.file}: extends, profile and --set applied (resumed with {' '.join(overrides)})\n"
    return header + tomli_w.dumps(loaded.document or {})


def _judge(diff: PlanDiff, force: bool, run_dir: Path) -> bool:
    """Raise E431 for refused changes unless `force`; return whether any change was forced."""
    refused = diff.refused
    if not refused:
        return False
    if force:
        return True
    raise UsageError([Problem(code="E431", message=f"--set changes `{c.key}` ({json.dumps(c.to_dict()['old'], default=str)} -> "
                              f"{json.dumps(c.to_dict()['new'], default=str)}): {c.refused}",
                              hint="a resume changes only what has not run yet; pass --force to resume with it anyway "
                                   "(recorded as forced), or start a new run")
                      for c in refused])


def _stderr_warning(message: str) -> None:
    import sys

    print(f"warning: {message}", file=sys.stderr, flush=True)


__all__ = ["resume_run", "find_resume_point"]
