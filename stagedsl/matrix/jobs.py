"""Running members: one after another in this process (``jobs = 1``), or N at a time, each
in a fresh Python process (``python -m stagedsl.matrix.worker``, the spawn start method:
nothing is inherited but the environment). `run_processes` is the pool itself, shared
with the search's trials (`stagedsl.search.runner`).

With ``nproc`` > 1 each member is itself a group of that many processes started by
torchrun (``torchrun --standalone --nproc-per-node N -m stagedsl.matrix.worker ...``, a
rendezvous of its own on a free port), even with ``jobs = 1``: ``--jobs 2 --nproc 2`` runs
two members at a time, four processes in all; with CUDA, member slot i gets the GPUs
``i*N .. i*N+N-1`` (``CUDA_VISIBLE_DEVICES``), one per process.

A member process writes its output to ``logs/<member>.log`` and its outcome to
``jobs/<member>.result.json``; one that dies without writing it (a segfault, a kill) is
recorded as failed with its exit code and the last line of its log. With CUDA and
several GPUs, the member in slot i of N runs on ``cuda:<i mod GPUs>``. Ctrl-C reaches the
member processes too (one process group): each finishes its step, saves and stops.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import attrs

from stagedsl.errors import Problem
from stagedsl.matrix.layout import MatrixDir, error_text

POLL_S = 0.2
Report = Callable[[str, dict], None]


def problem_dicts(problems: Sequence[Problem]) -> list[dict]:
    """Problems as the result files keep them (plain dicts, unset fields left out)."""
    return [{k: v for k, v in attrs.asdict(p).items() if v is not None} for p in problems]


def process_death(what: str, returncode: int, log: Path, *, code: str) -> Problem:
    """The problem of a job's process that died without writing its result (a segfault, a kill): how, and its log's last line."""
    tail = ""
    try:
        lines = [line for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
        tail = lines[-1][:300] if lines else ""
    except OSError:
        pass
    how = f"was killed by signal {-returncode}" if returncode < 0 else f"exited with code {returncode}"
    return Problem(code=code, message=f"the process of {what} {how}" + (f": {tail}" if tail else ""), hint=f"see {log}")


def worker_exit(label: str, work: Callable[[], str]) -> int:
    """The exit code of a member's or a trial's own process: 0 whatever `work`'s outcome (it returns the state,
    said on stderr), 128 + N when signal N stopped it (after saving), 130 for Ctrl-C before the handlers were in place."""
    from stagedsl.engine.signals import RunInterrupted

    try:
        state = work()
    except RunInterrupted as exc:
        print(f"{label}: {exc.problems[0].message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    print(f"{label}: {state}", file=sys.stderr)
    return 0


def run_members(matrix_dir: MatrixDir, names: Sequence[str], *, jobs: int, resume: dict[str, bool], device: Optional[str],
                registry: Any, report: Report, start: Optional[Callable[[str], None]] = None, nproc: int = 1) -> dict[str, dict]:
    """Train `names` with `jobs` at a time (each as `nproc` processes); `report(name, result)` after each.
    Returns the results by member."""
    from stagedsl.matrix.members import run_member

    if (jobs <= 1 or len(names) <= 1) and nproc <= 1:
        results = {}
        for name in names:
            if start:
                start(name)
            results[name] = run_member(matrix_dir, name, resume=resume.get(name, False), device=device, registry=registry)
            report(name, results[name])
        return results
    return _in_processes(matrix_dir, names, jobs=max(1, jobs), resume=resume, device=device, report=report, start=start,
                         nproc=nproc)


def slot_device(slot: int, device: Optional[str], plan_device: str) -> Optional[str]:
    """The device of the member in `slot`: one GPU per process when there are several and the plan uses CUDA."""
    wanted = device or plan_device
    if wanted not in ("auto", "cuda"):
        return device
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return f"cuda:{slot % count}" if count > 1 else device


def _in_processes(matrix_dir: MatrixDir, names: Sequence[str], *, jobs: int, resume: dict[str, bool], device: Optional[str],
                  report: Report, start: Optional[Callable[[str], None]], nproc: int = 1) -> dict[str, dict]:
    from stagedsl.matrix.members import INTERRUPTED, read_job

    waiting = list(names)
    results: dict[str, dict] = {}

    def next_job(slot: int) -> Optional[Job]:
        if not waiting:
            return None
        name = waiting.pop(0)
        plan, _ = read_job(matrix_dir, name)
        if start:
            start(name)
        matrix_dir.job_result(name).unlink(missing_ok=True)
        if nproc > 1:  # a torchrun of its own; on CUDA the slot's GPUs, one a process
            gpus = slot_gpus(slot, nproc, device, plan.run.device)
            return Job(name, worker_command(matrix_dir, name, resume.get(name, False), device, nproc), matrix_dir.log(name),
                       {"CUDA_VISIBLE_DEVICES": gpus} if gpus is not None else {})
        return Job(name, worker_command(matrix_dir, name, resume.get(name, False), slot_device(slot, device, plan.run.device)),
                   matrix_dir.log(name))

    def finished(job: Job, returncode: int, wall_time_s: float) -> bool:
        results[job.name] = _outcome(matrix_dir, job.name, returncode, wall_time_s, resume.get(job.name, False))
        report(job.name, results[job.name])
        return results[job.name]["status"] == INTERRUPTED

    run_processes(next_job, finished, jobs=jobs)
    return results


@attrs.frozen
class Job:
    """One process to run: its name, command line and log file."""

    name: str
    command: list
    log: Path
    env: dict = attrs.field(factory=dict)  # set in its environment beside this process's (CUDA_VISIBLE_DEVICES)


WAIT = "wait"
"""What `next_job` returns when nothing can start now but something may later (a job waits on a running one)."""


def run_processes(next_job: Callable[[int], Any], finished: Callable[[Job, int, float], bool], *, jobs: int,
                  poll_s: float = POLL_S) -> None:
    """Run jobs `jobs` at a time, each in its own process, until `next_job(slot)` has no more (None).

    `next_job` returns a `Job`, None (no more) or `WAIT` (none now; ask again at the next poll).
    `finished(job, returncode, wall_time_s)` is called as each process ends; True from it means
    stop (an interruption): the running processes are waited for (they got the same SIGINT,
    each saves its checkpoint) and each is `finished` too, then `KeyboardInterrupt` is raised.
    """
    running: dict[int, tuple[Job, subprocess.Popen, float, Any]] = {}
    exhausted = False
    try:
        while running or not exhausted:
            for slot in range(jobs):
                if slot in running or exhausted:
                    continue
                job = next_job(slot)
                if job is None:
                    exhausted = True
                elif job != WAIT:
                    running[slot] = (job, *_spawn(job))
            time.sleep(poll_s)
            for slot, (job, process, started, log) in list(running.items()):
                if process.poll() is None:
                    continue
                log.close()
                del running[slot]
                if finished(job, process.returncode, time.perf_counter() - started):
                    raise KeyboardInterrupt
    except KeyboardInterrupt:
        for job, process, _, log in running.values():
            try:
                process.wait(timeout=120)  # they got the same SIGINT: let each save its checkpoint
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.close()
            finished(job, process.returncode, 0.0)
        raise


def slot_gpus(slot: int, nproc: int, device: Optional[str], plan_device: str) -> Optional[str]:
    """``CUDA_VISIBLE_DEVICES`` of the member in `slot` when it runs as `nproc` processes on CUDA (None: leave it)."""
    wanted = device or plan_device
    if wanted not in ("auto", "cuda"):
        return None
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        return None
    return ",".join(str((slot * nproc + i) % count) for i in range(nproc))


def worker_command(matrix_dir: MatrixDir, name: str, resume: bool, device: Optional[str], nproc: int = 1) -> list[str]:
    """The command line of a member's process (of torchrun starting `nproc` of them)."""
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc)] if nproc > 1 else []
    command = [sys.executable, *launcher, "-m", "stagedsl.matrix.worker", str(matrix_dir.root), name]
    if resume:
        command.append("--resume")
    if device:
        command += ["--device", device]
    return command


def _spawn(job: Job) -> tuple[subprocess.Popen, float, Any]:
    job.log.parent.mkdir(parents=True, exist_ok=True)
    log = open(job.log, "a", encoding="utf-8")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **job.env}
    process = subprocess.Popen(job.command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    return process, time.perf_counter(), log


def _outcome(matrix_dir: MatrixDir, name: str, returncode: int, wall_time_s: float, resume: bool) -> dict:
    from stagedsl.matrix.members import crashed_result

    result = matrix_dir.read_json(matrix_dir.job_result(name))
    if isinstance(result, dict) and result.get("status"):
        return result
    return crashed_result(matrix_dir, name, returncode, matrix_dir.log(name), wall_time_s, resume)


__all__ = ["WAIT", "Job", "error_text", "problem_dicts", "process_death", "run_members", "run_processes", "slot_device",
           "slot_gpus", "worker_command", "worker_exit"]
