"""Running members: one after another in this process (``jobs = 1``), or N at a time, each
in a fresh Python process (``python -m stagedsl.matrix.worker``, the spawn start method:
nothing is inherited but the environment).

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
from typing import Any, Callable, Optional, Sequence

from stagedsl.matrix.layout import MatrixDir
from stagedsl.matrix.members import INTERRUPTED, crashed_result, run_member

POLL_S = 0.2
Report = Callable[[str, dict], None]


def run_members(matrix_dir: MatrixDir, names: Sequence[str], *, jobs: int, resume: dict[str, bool], device: Optional[str],
                registry: Any, report: Report, start: Optional[Callable[[str], None]] = None, nproc: int = 1) -> dict[str, dict]:
    """Train `names` with `jobs` at a time (each as `nproc` processes); `report(name, result)` after each.
    Returns the results by member."""
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
    from stagedsl.matrix.members import read_job

    waiting = list(names)
    running: dict[int, tuple[str, subprocess.Popen, float, Any]] = {}
    results: dict[str, dict] = {}
    try:
        while waiting or running:
            for slot in range(jobs):
                if slot in running or not waiting:
                    continue
                name = waiting.pop(0)
                plan, _ = read_job(matrix_dir, name)
                if start:
                    start(name)
                if nproc > 1:
                    running[slot] = (name, *_spawn(matrix_dir, name, resume.get(name, False), device, nproc=nproc,
                                                   gpus=slot_gpus(slot, nproc, device, plan.run.device)))
                else:
                    running[slot] = (name, *_spawn(matrix_dir, name, resume.get(name, False),
                                                   slot_device(slot, device, plan.run.device)))
            time.sleep(POLL_S)
            for slot, (name, process, started, log) in list(running.items()):
                if process.poll() is None:
                    continue
                log.close()
                del running[slot]
                results[name] = _outcome(matrix_dir, name, process.returncode, time.perf_counter() - started, resume.get(name, False))
                report(name, results[name])
                if results[name]["status"] == INTERRUPTED:
                    raise KeyboardInterrupt
    except KeyboardInterrupt:
        for name, process, _, log in running.values():
            try:
                process.wait(timeout=120)  # they got the same SIGINT: let each save its checkpoint
            except subprocess.TimeoutExpired:
                process.kill()
            log.close()
            results[name] = _outcome(matrix_dir, name, process.returncode, 0.0, resume.get(name, False))
        raise
    return results


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


def _spawn(matrix_dir: MatrixDir, name: str, resume: bool, device: Optional[str], *, nproc: int = 1,
           gpus: Optional[str] = None) -> tuple[subprocess.Popen, float, Any]:
    log_path = matrix_dir.log(name)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    matrix_dir.job_result(name).unlink(missing_ok=True)
    command = worker_command(matrix_dir, name, resume, device, nproc)
    log = open(log_path, "a", encoding="utf-8")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpus
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    return process, time.perf_counter(), log


def _outcome(matrix_dir: MatrixDir, name: str, returncode: int, wall_time_s: float, resume: bool) -> dict:
    result = matrix_dir.read_json(matrix_dir.job_result(name))
    if isinstance(result, dict) and result.get("status"):
        return result
    return crashed_result(matrix_dir, name, returncode, matrix_dir.log(name), wall_time_s, resume)


__all__ = ["run_members", "slot_device", "slot_gpus", "worker_command"]
