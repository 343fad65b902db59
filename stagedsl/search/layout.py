"""`SearchDir`: the one owner of a search run's folder layout.

::

    <run dir>/
      search.json         the index: the study (name, storage, sampler, seed, direction, metric), the axes, the trial count
      spec.toml           the effective spec (extends, profile and --set applied), [search] included
      study.db            the Optuna study (default storage; `optuna-dashboard sqlite:///RUN_DIR/study.db`;
                          -wal and -shm beside it while processes have it open)
      study.json          the trials of a grid study run without Optuna installed
      summary.json        the best trial (value, parameters), the counts, every trial's row
      best.toml           the best trial's spec: the original with the best parameters written in (`staged run` runs it)
      trials/<n>/         one ordinary run directory per trial (plan.json, stages/, summary.json, ...) and its trial.json
      cache/<hash>.json   the stage cache: a finished stage of some trial, by stage hash (`stagedsl.search.cache`)
      jobs/<n>.json       what trial n's process runs (plan, spec text, parameters, the stages it adopts);
                          <n>.result.json how it ended; <n>.lock held while it runs
      logs/<n>.log        the output of a trial run in its own process
      search.lock         held while a process asks the study for its next trial

Paths are built from checked names (`stagedsl.matrix.layout.ComposedDir`) and stay inside
the run directory. Never imports torch.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Iterator, Optional

from stagedsl.errors import Problem, UsageError
from stagedsl.matrix.layout import ComposedDir
from stagedsl.run_dir import RunDir

INDEX_FILE = "search.json"
SPEC_FILE = "spec.toml"
STUDY_DB = "study.db"
PLAIN_STUDY = "study.json"
SUMMARY_FILE = "summary.json"
BEST_SPEC = "best.toml"
TRIALS_DIR = "trials"
CACHE_DIR = "cache"
JOBS_DIR = "jobs"
LOGS_DIR = "logs"
ASK_LOCK = "search.lock"
ARTIFACTS = (INDEX_FILE, SPEC_FILE, STUDY_DB, f"{STUDY_DB}-wal", f"{STUDY_DB}-shm", PLAIN_STUDY, SUMMARY_FILE, BEST_SPEC, TRIALS_DIR,
             CACHE_DIR, JOBS_DIR, LOGS_DIR, ASK_LOCK)
"""Everything a search writes at its top level; `clear` removes exactly these."""
INDEX_FORMAT = 1
COMPLETE, PRUNED, FAILED, RUNNING = "complete", "pruned", "failed", "running"
"""A trial's states as its records say them (Optuna's COMPLETE, PRUNED, FAIL, RUNNING)."""


class SearchDir(ComposedDir):
    """Paths and files of one search run directory."""

    ARTIFACTS = ARTIFACTS
    PATH_CODE = "E801"

    @staticmethod
    def holds_search(path: Path | str) -> bool:
        """Whether `path` is a search run directory (it has ``search.json``)."""
        return (Path(path) / INDEX_FILE).is_file()

    # -- paths -----------------------------------------------------------------------
    @property
    def index_file(self) -> Path:
        """``search.json``."""
        return self._inside(INDEX_FILE)

    @property
    def spec_file(self) -> Path:
        """``spec.toml``."""
        return self._inside(SPEC_FILE)

    @property
    def study_db(self) -> Path:
        """``study.db``: the default storage."""
        return self._inside(STUDY_DB)

    @property
    def plain_study(self) -> Path:
        """``study.json``: the trials of a grid study without Optuna."""
        return self._inside(PLAIN_STUDY)

    @property
    def summary_file(self) -> Path:
        """``summary.json``."""
        return self._inside(SUMMARY_FILE)

    @property
    def best_spec(self) -> Path:
        """``best.toml``."""
        return self._inside(BEST_SPEC)

    @property
    def cache(self) -> Path:
        """``cache/``: the stage cache."""
        return self._inside(CACHE_DIR)

    def cache_entry(self, stage_hash: str) -> Path:
        """``cache/<hash>.json``."""
        return self._inside(CACHE_DIR, self._name(stage_hash, "stage hash") + ".json")

    def trial(self, number: int) -> Path:
        """``trials/<n>/``: the trial's run directory."""
        return self._inside(TRIALS_DIR, self._name(str(int(number)), "trial"))

    def trial_run(self, number: int) -> RunDir:
        """The trial's `RunDir`."""
        return RunDir(self.trial(number))

    def trial_numbers(self) -> list[int]:
        """The numbers of the trials that have a folder here, in order."""
        folder = self._inside(TRIALS_DIR)
        return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.is_dir() else []

    def job(self, number: int) -> Path:
        """``jobs/<n>.json``: what the trial's process runs."""
        return self._inside(JOBS_DIR, f"{int(number)}.json")

    def job_result(self, number: int) -> Path:
        """``jobs/<n>.result.json``: how the trial ended."""
        return self._inside(JOBS_DIR, f"{int(number)}.result.json")

    def job_lock(self, number: int) -> Path:
        """``jobs/<n>.lock``: held by the process running the trial."""
        return self._inside(JOBS_DIR, f"{int(number)}.lock")

    def log(self, number: int) -> Path:
        """``logs/<n>.log``: the output of the trial's process."""
        return self._inside(LOGS_DIR, f"{int(number)}.log")

    def relative(self, path: Path) -> str:
        """`path` relative to the run directory (what the records write)."""
        return Path(path).resolve().relative_to(self.root.resolve()).as_posix()

    # -- files -----------------------------------------------------------------------
    def read_index(self) -> dict:
        """``search.json``; a `UsageError` (E802) when this is not a search run directory."""
        index = self.read_json(self.index_file)
        if not isinstance(index, dict) or index.get("format") != INDEX_FORMAT:
            raise UsageError([Problem(code="E802", message=f"`{self.root}` is not a search run directory (no readable {INDEX_FILE})",
                                      hint="pass the folder `staged search SPEC` wrote")])
        return index

    def holds_run(self) -> bool:
        """Whether an earlier search left its index or summary here."""
        return self.index_file.exists() or self.summary_file.exists()

    # -- locks -----------------------------------------------------------------------
    @contextlib.contextmanager
    def ask_lock(self) -> Iterator[None]:
        """Held while one process asks the study for a trial: the count and the ask happen together."""
        with _locked(self._inside(ASK_LOCK), wait=True):
            yield

    @contextlib.contextmanager
    def trial_lock(self, number: int) -> Iterator[bool]:
        """Held while a process runs trial `number`; yields False (without waiting) when another holds it."""
        with _locked(self.job_lock(number), wait=False) as held:
            yield held

    def trial_is_running(self, number: int) -> bool:
        """Whether a live process holds the trial's lock."""
        with self.trial_lock(number) as held:
            return not held


@contextlib.contextmanager
def _locked(path: Path, *, wait: bool) -> Iterator[bool]:
    """An exclusive `flock` on `path` (released when the process dies, so a killed run leaves no stale lock)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(str(path), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def default_storage(search_dir: SearchDir) -> str:
    """``sqlite:///<run dir>/study.db`` (absolute, so every process of the study opens the same file)."""
    return f"sqlite:///{search_dir.study_db.resolve()}"


def storage_of(search_dir: SearchDir, index: dict) -> Optional[str]:
    """The study's storage URL: the index's, or the default inside the run directory."""
    return index.get("storage") or default_storage(search_dir)


def claim_folder(root: Path | str, *, overwrite: bool, say, go_on: str, check_only: bool = False) -> None:
    """A matrix run or a search goes into a new or empty folder (the lock aside). One holding any run
    here, a single run, a matrix or a search, is refused (E091, `go_on` says how to continue it), one
    holding other files too (E443), unless `overwrite`: then every earlier run's own files are deleted
    (`say` is told which first) and nothing else. `check_only` refuses or returns, deleting nothing."""
    from stagedsl.matrix.layout import MatrixDir
    from stagedsl.run_dir import LOCK_FILE

    root = Path(root)
    entries = sorted(p.name for p in root.iterdir() if p.name != LOCK_FILE) if root.is_dir() else []
    if not entries:
        return
    single, composed = RunDir(root), [MatrixDir(root), SearchDir(root)]
    held = single.plan.exists() or single.holds_run() or any(kind.holds_run() for kind in composed)
    if not overwrite:
        if held:
            raise UsageError([Problem("E091", f"{root} already holds a run", path="--out",
                                      hint=f"{go_on}, start over with --overwrite, or pick another --out")])
        raise UsageError([Problem("E443", f"{root} is not empty and holds no run ({', '.join(entries[:5])})", path="--out",
                                  hint="pick a new or empty --out; --overwrite runs here anyway, beside these files, and deletes none of them")])
    if check_only:
        return
    going = sorted({p.name for p in single.present()} | {name for kind in composed for name in kind.ARTIFACTS if (root / name).exists()})
    if going:
        say(f"--overwrite: deleting {', '.join(going)} in {root}")
    single.clear()
    for kind in composed:
        kind.clear()


__all__ = ["ARTIFACTS", "claim_folder", "COMPLETE", "FAILED", "INDEX_FORMAT", "PRUNED", "RUNNING", "SearchDir", "default_storage", "storage_of"]
