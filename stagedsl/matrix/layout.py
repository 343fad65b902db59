"""`MatrixDir`: the one owner of a matrix run's folder layout.

::

    <run dir>/
      matrix.json               the index: the members (variant, seed, plan hash), the ensembles, the monitor
      spec.toml                 the effective spec (extends, profile and --set applied), [matrix] included
      summary.json              members and ensembles with their status, error and metrics
      members/<member>/         one ordinary run directory per member (plan.json, stages/, summary.json, ...)
      predictions/<member>.npz  the member's validation and test outputs with targets (see stagedsl.eval.predictions)
      ensembles/<name>/         ensemble.json, predictions.npz (out-of-fold on val, fitted on val for test), export/
      jobs/<member>.json        what a member's process runs (its plan, spec text, device); <member>.result.json its outcome
      logs/<member>.log         the output of a member trained in its own process

Every path is built here from names checked by `stagedsl.spec.names` and goes through
`stagedsl.run_dir.contained`: it must resolve inside the run directory; anything else is
refused. `ComposedDir` holds that discipline for every folder that holds other runs (a
search's `SearchDir` too).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Optional

from stagedsl.errors import Problem, UsageError
from stagedsl.run_dir import RunDir, contained
from stagedsl.spec.names import NAME_RULE, valid_name

INDEX_FILE = "matrix.json"
SUMMARY_FILE = "summary.json"
SPEC_FILE = "spec.toml"
MEMBERS_DIR = "members"
PREDICTIONS_DIR = "predictions"
ENSEMBLES_DIR = "ensembles"
JOBS_DIR = "jobs"
LOGS_DIR = "logs"
ARTIFACTS = (INDEX_FILE, SUMMARY_FILE, SPEC_FILE, MEMBERS_DIR, PREDICTIONS_DIR, ENSEMBLES_DIR, JOBS_DIR, LOGS_DIR)
"""Everything a matrix run writes at its top level; `clear` removes exactly these."""
INDEX_FORMAT = 1


class ComposedDir:
    """Base of the folders that hold other runs: checked names, paths kept inside, atomic JSON.

    A subclass lists what it writes at its top level in `ARTIFACTS` (what `clear` removes)
    and names its error code for a refused path (`PATH_CODE`).
    """

    ARTIFACTS: tuple[str, ...] = ()
    PATH_CODE = "E701"

    def __init__(self, root: Path | str):
        self.root = Path(root)

    def _inside(self, *parts: str) -> Path:
        return self._within(self.root.joinpath(*parts))

    def _within(self, path: Path) -> Path:
        return contained(self.root, path, code=self.PATH_CODE)

    def _name(self, name: str, what: str) -> str:
        if not valid_name(name):
            raise UsageError([Problem(code=self.PATH_CODE, message=f"`{name}` is not a valid {what} name", hint=NAME_RULE)])
        return name

    def write_json(self, path: Path, data: Any) -> None:
        """Write JSON atomically to a path of this layout."""
        from stagedsl.engine.checkpointing.safe_io import atomic_write_text

        atomic_write_text(self._within(Path(path)), json.dumps(data, indent=2, default=str) + "\n")

    @staticmethod
    def read_json(path: Path) -> Optional[Any]:
        """A JSON file's content, or None when it is missing or unreadable."""
        try:
            return json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def clear(self) -> None:
        """Remove every artifact of an earlier run of this kind (and nothing else); a link is removed, never followed."""
        for name in self.ARTIFACTS:
            target = self.root / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(self._within(target))
            elif target.exists() or target.is_symlink():
                target.unlink()


class MatrixDir(ComposedDir):
    """Paths and files of one matrix run directory."""

    ARTIFACTS = ARTIFACTS
    PATH_CODE = "E701"

    @staticmethod
    def holds_matrix(path: Path | str) -> bool:
        """Whether `path` is a matrix run directory (it has ``matrix.json``)."""
        return (Path(path) / INDEX_FILE).is_file()

    # -- paths -----------------------------------------------------------------------
    @property
    def index_file(self) -> Path:
        """``matrix.json``."""
        return self._inside(INDEX_FILE)

    @property
    def summary_file(self) -> Path:
        """``summary.json``."""
        return self._inside(SUMMARY_FILE)

    @property
    def spec_file(self) -> Path:
        """``spec.toml``."""
        return self._inside(SPEC_FILE)

    def member(self, name: str) -> Path:
        """``members/<name>/``: the member's run directory."""
        return self._inside(MEMBERS_DIR, self._name(name, "member"))

    def predictions(self, name: str) -> Path:
        """``predictions/<name>.npz``."""
        return self._inside(PREDICTIONS_DIR, self._name(name, "member") + ".npz")

    def ensemble(self, name: str) -> Path:
        """``ensembles/<name>/``."""
        return self._inside(ENSEMBLES_DIR, self._name(name, "ensemble"))

    def ensemble_file(self, name: str, file: str) -> Path:
        """A file of ``ensembles/<name>/`` (``ensemble.json``, ``predictions.npz``, ``export``)."""
        return self._inside(ENSEMBLES_DIR, self._name(name, "ensemble"), self._name(file, "file"))

    def job(self, name: str) -> Path:
        """``jobs/<name>.json``: what the member's process runs."""
        return self._inside(JOBS_DIR, self._name(name, "member") + ".json")

    def job_result(self, name: str) -> Path:
        """``jobs/<name>.result.json``: how the member's last attempt ended."""
        return self._inside(JOBS_DIR, self._name(name, "member") + ".result.json")

    def log(self, name: str) -> Path:
        """``logs/<name>.log``: the output of the member's process."""
        return self._inside(LOGS_DIR, self._name(name, "member") + ".log")

    # -- files -----------------------------------------------------------------------
    def read_index(self) -> dict:
        """``matrix.json``; a `UsageError` (E702) when this is not a matrix run directory."""
        index = self.read_json(self.index_file)
        if not isinstance(index, dict) or index.get("format") != INDEX_FORMAT:
            raise UsageError([Problem(code="E702", message=f"`{self.root}` is not a matrix run directory (no readable {INDEX_FILE})",
                                      hint="pass the folder `staged run` wrote for a spec with [matrix]")])
        return index

    def holds_run(self) -> bool:
        """Whether an earlier matrix run left its index or summary here."""
        return self.index_file.exists() or self.summary_file.exists()


COMPLETED, FAILED, INTERRUPTED, PENDING, STOPPED = "completed", "failed", "interrupted", "pending", "stopped_by_gate"
"""A member's statuses (its run's, and "pending" before its run has a summary)."""


def member_status(matrix_dir: MatrixDir, name: str) -> str:
    """The member run's status from its own ``summary.json`` ("pending" when it has none)."""
    summary = matrix_dir.read_json(RunDir(matrix_dir.member(name)).summary)
    status = summary.get("status") if isinstance(summary, dict) else None
    return status if isinstance(status, str) else PENDING


def error_text(record: Optional[dict]) -> Optional[str]:
    """A member's, trial's or ensemble's recorded error as one line (``E400: ...; E401: ...``), or None."""
    problems = (record or {}).get("error") or []
    return "; ".join(f"{p.get('code')}: {p.get('message')}" for p in problems if isinstance(p, dict)) or None


def cv_note(record: Optional[dict]) -> Optional[str]:
    """A stacking ensemble's recorded cross-validation as one line (``cv accuracy 0.9940 ± 0.0020 over 3 folds``), or None."""
    cv = (record or {}).get("cv")
    if not isinstance(cv, dict) or not {"metric", "mean", "std", "folds"} <= set(cv):
        return None
    return f"cv {cv['metric']} {cv['mean']:.4f} ± {cv['std']:.4f} over {cv['folds']} folds"


__all__ = ["ARTIFACTS", "COMPLETED", "ComposedDir", "cv_note", "error_text", "FAILED", "INDEX_FORMAT", "INTERRUPTED", "PENDING", "STOPPED", "MatrixDir", "member_status"]
