"""One trial: its spec and plan, its run through the engine's public entry points, its outcome.

`prepare_trial` writes ``jobs/<n>.json``: the trial's parameters, plan (the spec with the
parameters at their key paths, compiled) and effective spec text. `run_trial` runs it, in
the calling process or in a trial's own (`stagedsl.search.worker`), the same way: it takes
every leading stage the study's cache already holds (`stagedsl.search.cache.reuse_start`;
the engine adopts them), trains the rest with two callbacks (`PruningReporter`: each
evaluation of the study's metric goes to the pruner, which may stop the trial;
`StagePublisher`: each finished stage goes to the cache at once), and records how it ended
(``jobs/<n>.result.json`` and the trial's ``trial.json``). A trial left running by a killed
process is continued from its newest checkpoint (`resume_plan`). A gate that stops the plan
prunes the trial; a failure is the trial's, never the study's: only an interruption
propagates.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Iterable, Optional

from stagedsl.engine.events import Callback
from stagedsl.errors import GateStopped, Problem, RunStopped, StagedError
from stagedsl.matrix.jobs import problem_dicts, process_death
from stagedsl.plan.model import Plan
from stagedsl.run_dir import RunDir
from stagedsl.search.layout import SearchDir
from stagedsl.search.study import COMPLETE, FAILED, PRUNED, Ticket

PRUNED_CODE = "E808"


def trial_name(index: dict, number: int) -> str:
    """The run name of trial `number` (``<search>-t<n>``)."""
    return f"{index['name']}-t{number}"


def prepare_trial(search_dir: SearchDir, index: dict, spec: Any, ticket: Ticket, registry: Any) -> Optional[dict]:
    """Compile the trial and write its job file; None when its parameters break the spec or the plan (its failure is recorded)."""
    import tomli_w

    from stagedsl.plan.compile import compile_plan
    from stagedsl.spec.loader import anchored
    from stagedsl.spec.search import trial_spec

    run_dir = search_dir.trial(ticket.number)
    started = time.perf_counter()
    try:
        trial = trial_spec(spec, ticket.params, registry, name=trial_name(index, ticket.number), out=str(run_dir))
        plan = compile_plan(trial, registry)
    except StagedError as exc:
        record(search_dir, ticket.number, ticket.params, FAILED, started, problems=exc.problems)
        return None
    shown = ", ".join(f"{k} = {v!r}" for k, v in ticket.params.items())
    text = f"# trial {ticket.number} of search {index['name']} ({index['spec_file']}): {shown}\n" + tomli_w.dumps(anchored(trial.document or {}, spec.root))
    job = {"trial": ticket.number, "params": ticket.params, "plan": plan.to_dict(), "spec_text": text, "hashes": plan.stage_hashes}
    search_dir.write_json(search_dir.job(ticket.number), job)
    return job


def read_job(search_dir: SearchDir, number: int) -> tuple[dict, Plan]:
    """The trial's job file and plan."""
    from stagedsl.errors import UsageError

    job = search_dir.read_json(search_dir.job(number))
    if not isinstance(job, dict) or "plan" not in job:
        raise UsageError([Problem(code="E802", message=f"trial {number} has no readable job file `{search_dir.job(number)}`",
                                  hint="the search run directory is incomplete; start it again with --overwrite")])
    return job, Plan.from_dict(job["plan"])


class PruningReporter(Callback):
    """Reports each evaluation of the study's metric to the pruner, and stops the trial when it says so."""

    def __init__(self, metric: str, reporter: Any):
        self.metric, self.reporter = metric, reporter

    def eval_end(self, state) -> None:
        """After every evaluation (called by the engine)."""
        value = state.values.get(self.metric)
        if value is None or not isinstance(value, (int, float)) or not math.isfinite(value):
            return
        if self.reporter.report(float(value), state.global_step):
            raise RunStopped([Problem(code=PRUNED_CODE, message=f"pruned at step {state.global_step} (stage `{state.stage_name}`): "
                                      f"the pruner stopped it at {self.metric} = {value:.6g}")])


def run_trial(search_dir: SearchDir, number: int, *, registry: Any, reporter: Any, device: Optional[str] = None,
              callbacks: Iterable[Callback] = (), handle_signals: bool = True) -> dict:
    """Run (or continue) trial `number` from its job file; return its result (see the module docstring)."""
    import torch

    from stagedsl.engine.runner import run_plan
    from stagedsl.engine.signals import RunInterrupted
    from stagedsl.search.cache import StageCache, StagePublisher, reuse_start

    index = search_dir.read_index()
    job, plan = read_job(search_dir, number)
    layout = search_dir.trial_run(number)
    started = time.perf_counter()
    threads = torch.get_num_threads()
    cache = StageCache(search_dir)
    hooks = [PruningReporter(index["metric"], reporter), *( [StagePublisher(cache, layout.root, job["hashes"])] if index["reuse"] else []),
             *callbacks]
    state, problems, pruned_by = COMPLETE, [], None
    try:
        ended = _ended(layout)
        if ended is not None:  # it ended before the process that ran it was stopped: only its outcome is left to record
            state, problems, pruned_by = ended
        elif _resumable(layout):
            from stagedsl.engine.resuming import resume_plan

            resume_plan(layout.root, device=device, registry=registry, callbacks=hooks, handle_signals=handle_signals)
        else:
            layout.clear()
            start = reuse_start(plan, cache) if index["reuse"] else None
            run_plan(plan, registry=registry, out=layout.root, start=start, device=device, callbacks=hooks,
                     spec_text=job["spec_text"], handle_signals=handle_signals)
    except GateStopped as exc:
        state, problems, pruned_by = PRUNED, exc.problems, {"by": "gate", "message": exc.problems[0].message}
    except RunStopped as exc:
        state, problems, pruned_by = PRUNED, exc.problems, {"by": "pruner", "message": exc.problems[0].message}
    except (KeyboardInterrupt, RunInterrupted):
        raise
    except StagedError as exc:
        state, problems = FAILED, exc.problems
    except Exception as exc:  # a crash the engine did not wrap: still the trial's failure, not the study's
        state, problems = FAILED, [Problem(code="E803", message=f"trial {number} crashed: {type(exc).__name__}: {exc}")]
    finally:
        torch.set_num_threads(threads)
    value = None
    if state == COMPLETE:
        value = objective_of(layout, index["metric"], index["direction"])
        if value is None:
            state, problems = FAILED, [Problem(code="E805", message=f"trial {number} never measured `{index['metric']}` in its last stage",
                                               hint="the metric must be one the last stage evaluates (val/loss, val/<metric>)")]
    return record(search_dir, number, job["params"], state, started, value=value, problems=problems, pruned_by=pruned_by)


def _ended(layout: RunDir) -> Optional[tuple[str, list[Problem], Optional[dict]]]:
    """How a trial whose run already ended did end (state, problems, pruned_by); None when it has not ended."""
    from stagedsl.engine.outputs import read_summary

    summary = read_summary(layout) or {}
    status = summary.get("status")
    if status == "completed":
        return COMPLETE, [], None
    if status == "stopped_by_gate" and summary.get("stopped_by_gate"):
        from stagedsl.engine.gates import GateDecision

        message = GateDecision(**summary["stopped_by_gate"]).describe()
        return PRUNED, [Problem(code="E420", message=message)], {"by": "gate", "message": message}
    if status == "stopped_by_callback" and summary.get("stopped_by"):
        message = summary["stopped_by"].get("message", "")
        return PRUNED, [Problem(code=PRUNED_CODE, message=message)], {"by": "pruner", "message": message}
    return None


def _resumable(layout: RunDir) -> bool:
    """Whether an earlier process left the trial mid-run with a checkpoint to continue from."""
    return layout.plan.is_file() and bool(layout.all_trainer_states())


def objective_of(layout: RunDir, metric: str, direction: str) -> Optional[float]:
    """The best value of `metric` over the evaluations of the run's last stage (its last attempt), in `direction`."""
    from stagedsl.engine.outputs import read_log

    values: list[float] = []
    for event in read_log(layout):
        if event.get("event") == "stage_start":
            values = []
        elif event.get("event") == "eval" and isinstance(event.get(metric), (int, float)) and math.isfinite(event[metric]):
            values.append(float(event[metric]))
    if not values:
        return None
    return max(values) if direction == "maximize" else min(values)


def record(search_dir: SearchDir, number: int, params: dict, state: str, started: float, *, value: Optional[float] = None,
           problems: Iterable[Problem] = (), pruned_by: Optional[dict] = None) -> dict:
    """Write the trial's result (``jobs/<n>.result.json`` and its ``trial.json``) and return it."""
    from stagedsl.engine.outputs import read_summary

    layout = search_dir.trial_run(number)
    stages = (read_summary(layout) or {}).get("stages") or {}
    reused = {name: r["reused"] for name, r in stages.items() if isinstance(r, dict) and r.get("reused")}
    trained = [name for name, r in stages.items() if isinstance(r, dict) and not r.get("reused") and r.get("steps")]
    result = {"trial": number, "params": params, "state": state, "value": value, "error": problem_dicts(list(problems)) or None,
              "pruned_by": pruned_by, "reused": reused, "trained": trained, "wall_time_s": round(time.perf_counter() - started, 3),
              "run_dir": search_dir.relative(layout.root)}
    for path in (search_dir.job_result(number), layout.trial):
        try:
            search_dir.write_json(path, result)
        except OSError:
            pass
    return result


def crashed_result(search_dir: SearchDir, number: int, params: dict, returncode: int, wall_time_s: float) -> dict:
    """The record of a trial process that died without writing its own (a segfault, a kill), after `wall_time_s`."""
    problem = process_death(f"trial {number}", returncode, search_dir.log(number), code="E803")
    return record(search_dir, number, params, FAILED, time.perf_counter() - wall_time_s, problems=[problem])


__all__ = ["PRUNED_CODE", "PruningReporter", "crashed_result", "objective_of", "prepare_trial", "read_job", "record",
           "run_trial", "trial_name"]
