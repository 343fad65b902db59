"""`run_matrix` and `resume_matrix`: train a spec's members, then build its ensembles.

1. Compile every member (`compile_matrix`): nothing trains unless every plan compiles.
2. Write the index (``matrix.json``), the effective spec and one job file per member.
3. Train the selected members (``--member`` globs), ``jobs`` at a time
   (`stagedsl.matrix.jobs`). A member that fails is recorded with its error; the others go on.
4. Build the ensembles over the members that finished (`stagedsl.ensemble.build`).
5. Write ``summary.json`` (after 3 and after 4).

`resume_matrix` reads the index and finishes what is unfinished: a member with a plan
and checkpoints continues with `resume_plan`, one that never started (or failed before
its first checkpoint was written) runs from its job file; finished members are left
alone. The engine runs every member as an ordinary plan and knows nothing of this.
"""

from __future__ import annotations

import fnmatch
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import attrs

from stagedsl.errors import Problem, UsageError
from stagedsl.matrix.layout import MatrixDir
from stagedsl.matrix.layout import cv_note
from stagedsl.matrix.members import COMPLETED, FINISHED, PENDING, ensure_predictions, error_text, member_status, write_job
from stagedsl.run_dir import RunDir

Say = Callable[[str], None]


@attrs.frozen
class MatrixResult:
    """How a matrix run ended: its folder, ``summary.json``'s content, failed members and ensembles."""

    run_dir: Path
    summary: dict

    @property
    def failed(self) -> list[str]:
        """Members that did not complete."""
        return list(self.summary.get("failed") or [])

    @property
    def failed_ensembles(self) -> list[str]:
        """Ensembles that could not be built."""
        return list(self.summary.get("failed_ensembles") or [])


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def select(names: Sequence[str], patterns: Optional[Sequence[str]]) -> list[str]:
    """The members matched by `patterns` (globs, comma-separated allowed); all without patterns."""
    if not patterns:
        return list(names)
    globs = [g.strip() for p in patterns for g in p.split(",") if g.strip()]
    chosen = [n for n in names if any(fnmatch.fnmatchcase(n, g) for g in globs)]
    if not chosen:
        from stagedsl.registry import did_you_mean

        raise UsageError([Problem(code="E709", message=f"--member {', '.join(globs)} matches no member (members: {', '.join(names)})",
                                  path="--member", hint=did_you_mean(globs[0], names))])
    return chosen


def run_matrix(spec: Any, *, registry: Any = None, out: Optional[Path | str] = None, jobs: Optional[int] = None,
               members: Optional[Sequence[str]] = None, device: Optional[str] = None, overwrite: bool = False,
               spec_text: str = "", say: Say = _stderr, nproc: int = 1) -> MatrixResult:
    """Train the members of `spec`'s ``[matrix]`` and build its ensembles (see the module docstring);
    `nproc` > 1: each member as that many processes (torchrun, DDP)."""
    from stagedsl.matrix.plan import compile_matrix

    registry = registry if registry is not None else _registry()
    run_dir = Path(out if out is not None else spec.run.out_dir)
    matrix = compile_matrix(spec, registry, out=run_dir, spec_text=spec_text, world_size=nproc)
    chosen = select([m.name for m in matrix.members], members)
    matrix_dir = MatrixDir(run_dir)
    _claim(matrix_dir, overwrite, say, check_only=True)  # a refused run leaves nothing behind, not even a lock
    with RunDir(run_dir).lock("run"):  # members lock their own folders
        _claim(matrix_dir, overwrite, say)
        matrix_dir.write_json(matrix_dir.index_file, matrix.index())
        if spec_text:
            from stagedsl.engine.checkpointing.safe_io import atomic_write_text

            atomic_write_text(matrix_dir.spec_file, spec_text)
        for member in matrix.members:
            write_job(matrix_dir, member.name, member.plan, member.spec_text)
        return _train_and_combine(matrix_dir, chosen, jobs=jobs or matrix.jobs, resume={}, device=device, registry=registry,
                                  say=say, nproc=nproc)


def _claim(matrix_dir: MatrixDir, overwrite: bool, say: Say, *, check_only: bool = False) -> None:
    """The matrix run's folder: new, empty, or with `overwrite` (`stagedsl.search.layout.claim_folder`)."""
    from stagedsl.search.layout import claim_folder

    claim_folder(matrix_dir.root, overwrite=overwrite, say=say, check_only=check_only,
                 go_on=f"continue it with `staged resume {matrix_dir.root}`")


def resume_matrix(run_dir: Path | str, *, registry: Any = None, jobs: Optional[int] = None, members: Optional[Sequence[str]] = None,
                  device: Optional[str] = None, say: Say = _stderr, nproc: int = 1) -> MatrixResult:
    """Finish the unfinished members of a matrix run (finished ones are skipped), then build its ensembles again."""
    registry = registry if registry is not None else _registry()
    matrix_dir = MatrixDir(run_dir)
    matrix_dir.read_index()  # E702 before anything is locked or written
    with RunDir(run_dir).lock("resume"):
        return _resume_members(matrix_dir, jobs=jobs, members=members, device=device, registry=registry, say=say, nproc=nproc)


def _resume_members(matrix_dir: MatrixDir, *, jobs: Optional[int], members: Optional[Sequence[str]], device: Optional[str],
                    registry: Any, say: Say, nproc: int) -> MatrixResult:
    index = matrix_dir.read_index()
    chosen = select([m["name"] for m in index["members"]], members)
    todo, resume = [], {}
    for name in chosen:
        status = member_status(matrix_dir, name)
        if status in FINISHED:
            say(f"member {name}: {status}, skipped")
            continue
        todo.append(name)
        resume[name] = status != PENDING
    return _train_and_combine(matrix_dir, todo, jobs=jobs or int(index.get("jobs") or 1), resume=resume, device=device,
                              registry=registry, say=say, nproc=nproc)


def _train_and_combine(matrix_dir: MatrixDir, names: list[str], *, jobs: int, resume: dict, device: Optional[str], registry: Any,
                       say: Say, nproc: int = 1) -> MatrixResult:
    from stagedsl.ensemble.build import build_ensembles
    from stagedsl.matrix.jobs import run_members
    from stagedsl.matrix.summary import write_summary

    index = matrix_dir.read_index()
    started = time.perf_counter()
    previous = (matrix_dir.read_json(matrix_dir.summary_file) or {}).get("wall_time_s") or 0.0
    total = len(names)
    counter = {"started": 0}

    def start(name: str) -> None:
        counter["started"] += 1
        say(f"member {name} ({counter['started']}/{total}): {'resuming' if resume.get(name) else 'training'}"
            + (f" as {nproc} processes, log {matrix_dir.log(name)}" if nproc > 1 else
               f" in its own process, log {matrix_dir.log(name)}" if jobs > 1 and total > 1 else ""))

    def report(name: str, result: dict) -> None:
        error = error_text(result)
        say(f"member {name}: {result['status']} in {result.get('wall_time_s', 0):.1f}s" + (f" - {error}" if error else ""))

    if names:
        say(f"training {total} member{'s' if total != 1 else ''}, {min(jobs, total)} at a time")
    try:
        run_members(matrix_dir, names, jobs=jobs, resume=resume, device=device, registry=registry, report=report, start=start,
                    nproc=nproc)
    finally:
        write_summary(matrix_dir, index, wall_time_s=round(previous + time.perf_counter() - started, 3))
    for entry in index["members"]:  # members finished in an earlier attempt may lack (or have stale) predictions
        if member_status(matrix_dir, entry["name"]) == COMPLETED:
            for problem in ensure_predictions(matrix_dir, entry["name"], registry):
                say(f"warning: {problem.message}")
    ensembles = None
    if index.get("ensembles"):
        def built(name: str, record: dict) -> None:
            if record["status"] == "completed":
                cv = cv_note(record)
                say(f"ensemble {name}: {record['use']} of {len(record['members'])} members" + (f", {cv}" if cv else ""))
            else:
                say(f"ensemble {name}: failed - {error_text(record)}")

        ensembles = build_ensembles(matrix_dir.root, registry=registry, report=built)
    summary = write_summary(matrix_dir, index, ensembles=ensembles, wall_time_s=round(previous + time.perf_counter() - started, 3))
    return MatrixResult(matrix_dir.root, summary)


def _registry() -> Any:
    from stagedsl.registry import get_registry

    return get_registry()


__all__ = ["MatrixResult", "resume_matrix", "run_matrix", "select"]
