"""Training one member: its job file, the run through the engine's public entry points
(`run_plan`, or `resume_plan` to finish it), its predictions, and how it ended.

The same function runs in the calling process (``--jobs 1``) and in a member's own
process (`stagedsl.matrix.worker`), so a member's numbers do not depend on where it ran:
its plan fixes its CPU threads (``[matrix] threads``), the engine seeds it from its seed.
A failure is recorded (``jobs/<member>.result.json``) and returned, never raised: the
other members go on. Only an interruption (Ctrl-C, SIGTERM) propagates. A member run as
several processes (torchrun) trains in all of them; rank 0 alone predicts and records.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

import attrs

from stagedsl.errors import GateStopped, Problem, StagedError
from stagedsl.matrix.jobs import error_text, problem_dicts, process_death
from stagedsl.matrix.layout import COMPLETED, FAILED, INTERRUPTED, PENDING, STOPPED, MatrixDir, member_status
from stagedsl.plan.model import Plan
from stagedsl.run_dir import RunDir

FINISHED = (COMPLETED, STOPPED)
"""Statuses a resume leaves alone."""


def write_job(matrix_dir: MatrixDir, name: str, plan: Plan, spec_text: str) -> None:
    """``jobs/<member>.json``: the member's plan and effective spec text."""
    matrix_dir.write_json(matrix_dir.job(name), {"member": name, "plan": plan.to_dict(), "spec_text": spec_text})


def read_job(matrix_dir: MatrixDir, name: str) -> tuple[Plan, Optional[str]]:
    """The member's plan and spec text from its job file."""
    job = matrix_dir.read_json(matrix_dir.job(name))
    if not isinstance(job, dict) or "plan" not in job:
        from stagedsl.errors import UsageError

        raise UsageError([Problem(code="E702", message=f"member `{name}` has no readable job file `{matrix_dir.job(name)}`",
                                  hint="the matrix run directory is incomplete; start it again with --overwrite")])
    return Plan.from_dict(job["plan"]), job.get("spec_text")


def run_member(matrix_dir: MatrixDir, name: str, *, resume: bool = False, device: Optional[str] = None,
               registry: Any = None, handle_signals: bool = True) -> dict:
    """Train (or, with `resume`, finish) one member, then cache its predictions. Returns its result record."""
    import torch

    from stagedsl.engine import distributed
    from stagedsl.engine.runner import run_plan
    from stagedsl.engine.signals import RunInterrupted

    plan, spec_text = read_job(matrix_dir, name)
    member_dir = matrix_dir.member(name)
    threads = torch.get_num_threads()
    started = time.perf_counter()
    status, problems = COMPLETED, []
    try:
        if resume and RunDir(member_dir).plan.is_file():
            from stagedsl.engine.resuming import resume_plan

            resume_plan(member_dir, device=device, registry=registry, handle_signals=handle_signals)
        else:
            run_plan(plan, registry=registry, out=member_dir, device=device, spec_text=spec_text, handle_signals=handle_signals)
    except GateStopped as exc:
        status, problems = STOPPED, exc.problems
    except (KeyboardInterrupt, RunInterrupted) as exc:
        if distributed.from_environment().is_writer:
            _record(matrix_dir, name, INTERRUPTED, [Problem(code="E440", message=f"member `{name}` was interrupted: {exc or 'Ctrl-C'}")],
                    started, resume)
        raise
    except StagedError as exc:
        status, problems = FAILED, exc.problems
    except Exception as exc:  # a crash the engine did not wrap: still the member's failure, not the matrix's
        status, problems = FAILED, [Problem(code="E703", message=f"member `{name}` crashed: {type(exc).__name__}: {exc}")]
    finally:
        torch.set_num_threads(threads)
    if not distributed.from_environment().is_writer:
        return {"member": name, "status": status, "error": problem_dicts(problems) or None, "resumed": resume}
    if status == COMPLETED:
        problems = _predict(matrix_dir, name, registry)
        status = FAILED if problems else COMPLETED
    return _record(matrix_dir, name, status, problems, started, resume)


def _predict(matrix_dir: MatrixDir, name: str, registry: Any) -> list[Problem]:
    """Cache the member's predictions; the problems when that fails."""
    from stagedsl.eval.predictions import predict_run

    try:
        predict_run(matrix_dir.member(name), registry=registry).save(matrix_dir.predictions(name))
    except StagedError as exc:
        return [attrs.evolve(p, message=f"predicting with member `{name}`: {p.message}") for p in exc.problems]
    except Exception as exc:
        return [Problem(code="E700", message=f"predicting with member `{name}` failed: {type(exc).__name__}: {exc}")]
    return []


def ensure_predictions(matrix_dir: MatrixDir, name: str, registry: Any) -> list[Problem]:
    """Predictions of a completed member, made again when missing or older than its checkpoint."""
    from stagedsl.eval.predictions import RunPredictions, is_current

    path = matrix_dir.predictions(name)
    if path.is_file():
        try:
            if is_current(RunPredictions.load(path), matrix_dir.member(name)):
                return []
        except (OSError, ValueError, KeyError):
            pass
    return _predict(matrix_dir, name, registry)


def _record(matrix_dir: MatrixDir, name: str, status: str, problems: list[Problem], started: float, resume: bool) -> dict:
    result = {"member": name, "status": status, "error": problem_dicts(problems) or None, "resumed": resume,
              "wall_time_s": round(time.perf_counter() - started, 3)}
    try:
        matrix_dir.write_json(matrix_dir.job_result(name), result)
    except OSError:
        pass
    return result


def crashed_result(matrix_dir: MatrixDir, name: str, returncode: int, log: Path, wall_time_s: float, resume: bool) -> dict:
    """The record of a member process that died without writing its own (a segfault, a kill)."""
    problem = process_death(f"member `{name}`", returncode, log, code="E703")
    result = {"member": name, "status": FAILED, "error": problem_dicts([problem]), "resumed": resume, "wall_time_s": round(wall_time_s, 3)}
    matrix_dir.write_json(matrix_dir.job_result(name), result)
    return result


__all__ = ["COMPLETED", "FAILED", "FINISHED", "INTERRUPTED", "PENDING", "STOPPED", "crashed_result", "ensure_predictions",
           "error_text", "member_status", "read_job", "run_member", "write_job"]
