"""`RunDir`: the one object that knows the layout of a run directory.

Every path the engine, the export and the CLI write, read or delete in a run directory
is built here, so the layout is written down once::

    <run dir>/
      plan.json          the Plan that runs (with its hash); a resume with --set rewrites it
      plans/<hash>.json  every plan the run has followed (a checkpoint names its plan by hash)
      spec.toml          the effective spec text, when the caller passes it
      metrics.jsonl      one JSON object per log event (train, eval, gate, stage)
      summary.json       per-stage results, status, plan hash; rewritten at each stage end
      trial.json         a search's trial only: its number, parameters, state and objective
      tb/                TensorBoard events
      stages/<stage>/    best.safetensors, last.safetensors, start.safetensors,
                         state/step_<n>[_retry<a>]/ (trainer checkpoints)
      export/            what `staged export` writes
      report/            what `staged report` writes
      .lock              the lock of the process that writes here (`stagedsl.run_lock`)

`RunDir.owned()` lists exactly these; ``staged run --overwrite`` deletes them all but the
lock (`clear`). Every path is built through `contained`, which resolves it (links
followed) and refuses one that would leave the run directory (E417); stage names are
checked by `stagedsl.spec.names` when the spec and the plan are, and must be one plain
folder name here too. `remove` is the one way a
file or folder of the run is deleted. Pure paths otherwise: no file is touched except by
`clear`, `remove` and `prepare_new_run`. Never imports torch.

Names that become folders here (stages) and in the folders that hold other runs (a
matrix's members, a search's trials: `stagedsl.matrix.layout.ComposedDir`) are judged by
`stagedsl.spec.names` (`NAME_PATTERN`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Callable, Iterator, Optional, Union

import attrs

from stagedsl.errors import Problem, UsageError

PLAN_FILE = "plan.json"
PLANS_DIR = "plans"
SPEC_FILE = "spec.toml"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
TB_DIR = "tb"
STAGES_DIR = "stages"
EXPORT_DIR = "export"
REPORT_DIR = "report"
TRAINER_STATES_DIR = "state"
WEIGHTS_SUFFIX = ".safetensors"
LOCK_FILE = ".lock"

TRIAL_FILE = "trial.json"

OWNED = (PLAN_FILE, PLANS_DIR, SPEC_FILE, METRICS_FILE, SUMMARY_FILE, TB_DIR, STAGES_DIR, EXPORT_DIR, REPORT_DIR, TRIAL_FILE,
         LOCK_FILE)
"""Every top-level entry a run writes into its directory."""
RUN_MARKERS = (PLAN_FILE, PLANS_DIR, METRICS_FILE, SUMMARY_FILE, STAGES_DIR)
"""What only a run writes: a folder holding none of these holds no run, whatever else it holds."""


def contained(root: Union[str, Path], path: Union[str, Path], *, code: str = "E417") -> Path:
    """`path` itself, once it is known to resolve (links followed) inside `root`; a `UsageError` otherwise.

    The one check every path a run, a matrix or an export writes or deletes passes through.
    """
    root, path = Path(root), Path(path)
    try:
        base = root.resolve()
        resolved = path.resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # a loop of links, a NUL
        raise UsageError([Problem(code=code, message=f"`{path}` cannot be resolved: {exc}",
                                  hint="names in a run directory are plain names, not paths")]) from None
    if resolved != base and base not in resolved.parents:
        raise UsageError([Problem(code=code, message=f"`{path}` is outside the run directory {root}",
                                  hint="names of stages and files in a run directory cannot climb out of it "
                                       "(no `..`, no absolute path, no link out)")])
    return path


@attrs.frozen
class RunDir:
    """The layout of one run directory (see the module docstring)."""

    root: Path = attrs.field(converter=Path)

    # -- files of the run --------------------------------------------------------------
    @property
    def plan(self) -> Path:
        """``plan.json``: the plan the run follows."""
        return self.root / PLAN_FILE

    @property
    def plans(self) -> Path:
        """``plans/``: every plan the run has followed, by hash."""
        return self.root / PLANS_DIR

    def plan_version(self, plan_hash: str) -> Path:
        """``plans/<hash>.json``."""
        return self.child(PLANS_DIR, f"{plan_hash}.json")

    @property
    def spec(self) -> Path:
        """``spec.toml``: the effective spec text."""
        return self.root / SPEC_FILE

    @property
    def metrics(self) -> Path:
        """``metrics.jsonl``: the run log."""
        return self.root / METRICS_FILE

    @property
    def summary(self) -> Path:
        """``summary.json``: how the run and each stage ended."""
        return self.root / SUMMARY_FILE

    @property
    def trial(self) -> Path:
        """``trial.json``: when the run is a trial of a search, its number, parameters, state and objective."""
        return self.root / TRIAL_FILE

    @property
    def tensorboard(self) -> Path:
        """``tb/``: TensorBoard events."""
        return self.root / TB_DIR

    @property
    def stages(self) -> Path:
        """``stages/``: every stage's checkpoints."""
        return self.root / STAGES_DIR

    @property
    def export(self) -> Path:
        """``export/``: the default destination of `staged export`."""
        return self.root / EXPORT_DIR

    @property
    def report(self) -> Path:
        """``report/``: the default destination of `staged report`."""
        return self.root / REPORT_DIR

    # -- checkpoints of a stage ----------------------------------------------------------
    def stage(self, name: str) -> Path:
        """``stages/<name>/`` (E417 when `name` is not a valid stage name)."""
        return self.child(STAGES_DIR, _stage_name(name))

    def weights(self, stage: str, which: str) -> Path:
        """``stages/<stage>/<which>.safetensors`` (which: best, last, start)."""
        return self.child(STAGES_DIR, _stage_name(stage), f"{which}{WEIGHTS_SUFFIX}")

    def trainer_states(self, stage: str) -> Path:
        """``stages/<stage>/state/``: the stage's trainer checkpoints."""
        return self.child(STAGES_DIR, _stage_name(stage), TRAINER_STATES_DIR)

    def trainer_state(self, stage: str, stage_step: int, attempt: int = 0) -> Path:
        """``stages/<stage>/state/step_<stage_step>`` (``_retry<attempt>`` for a gate retry)."""
        suffix = f"_retry{attempt}" if attempt else ""
        return self.child(STAGES_DIR, _stage_name(stage), TRAINER_STATES_DIR, f"step_{int(stage_step):09d}{suffix}")

    def all_trainer_states(self) -> list[Path]:
        """Every folder that holds one stage's trainer checkpoints (inside the run directory), sorted."""
        return sorted(p for p in self.stages.glob(f"*/{TRAINER_STATES_DIR}") if self.inside(p))

    # -- the directory as a whole --------------------------------------------------------
    @property
    def lock_file(self) -> Path:
        """``.lock``: what `stagedsl.run_lock` locks while a process writes here."""
        return self.root / LOCK_FILE

    def owned(self) -> tuple[Path, ...]:
        """Every top-level path a run owns (those that exist or not)."""
        return tuple(self.root / name for name in OWNED)

    def holds_run(self) -> bool:
        """Whether a run has written here (its summary exists)."""
        return self.summary.exists()

    def present(self) -> list[Path]:
        """The top-level entries of a run that exist here (the lock file aside); none when no run has written
        here (a folder holding only a ``spec.toml`` of the user's or an ``export/`` holds no run)."""
        if not any((self.root / name).exists() for name in RUN_MARKERS):
            return []
        return [p for p in self.owned() if p.name != LOCK_FILE and (p.exists() or p.is_symlink())]

    def clear(self) -> list[Path]:
        """Delete everything a run owns here but the lock (what ``--overwrite`` replaces); return what went."""
        removed = []
        for path in self.present():
            self.remove(path)
            removed.append(path)
        return removed

    def remove(self, path: Union[str, Path]) -> None:
        """Delete a file or folder of the run; a link is removed, never followed; E417 outside the run directory."""
        path = Path(path)
        if path.is_symlink():
            contained(self.root, path.parent)
            path.unlink()
        elif path.is_dir():
            shutil.rmtree(contained(self.root, path))
        elif path.exists():
            contained(self.root, path).unlink()

    def inside(self, path: Union[str, Path]) -> bool:
        """Whether `path` resolves inside the run directory."""
        try:
            contained(self.root, path)
            return True
        except UsageError:
            return False

    def child(self, *parts: Union[str, Path]) -> Path:
        """``root / parts``, refused (E417) when it would resolve outside the run directory."""
        return contained(self.root, self.root.joinpath(*parts))

    # -- owning the directory ---------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, command: str, *, required: bool = True) -> Iterator[None]:
        """Hold the run directory's lock while `command` writes here (`stagedsl.run_lock.hold`)."""
        from stagedsl.run_lock import hold

        with hold(self.root, command, required=required):
            yield

    def prepare_new_run(self, *, overwrite: bool, say: Optional[Callable[[str], None]] = None,
                        check_only: bool = False) -> list[Path]:
        """Make the folder ready for a new run, or refuse: a folder that is not empty (the lock aside) holds
        a finished or stopped run (E091), a run killed before its summary (E442) or other files (E443).

        With `overwrite` the run's own entries are deleted (`say` is told which first) and
        nothing else; return what was deleted. Call it with the lock held; `check_only`
        refuses without deleting anything (before the lock is taken, so that a refused run
        leaves not even a lock file behind).
        """
        root = self.root
        if root.exists() and not root.is_dir():
            raise UsageError([Problem("E443", f"{root} is a file, not a folder", path="--out", hint="pick another --out")])
        if not root.is_dir():
            return []
        entries = sorted(p.name for p in root.iterdir() if p.name != LOCK_FILE)
        if not entries:
            return []
        present = self.present()
        if not overwrite:
            deletes = ", ".join(_shown_entry(p) for p in present)
            if self.holds_run():
                raise UsageError([Problem("E091", f"{root} already holds a run", path="--out",
                                          hint=f"continue it with `staged resume {root}`, start over with --overwrite "
                                               f"(deletes {deletes}), or pick another --out")])
            if present:
                raise UsageError([Problem("E442", f"{root} holds a run that stopped before its first stage ended "
                                          f"({deletes}; no {SUMMARY_FILE} yet)", path="--out",
                                          hint=f"continue it with `staged resume {root}`, start over with --overwrite "
                                               f"(deletes {deletes}), or pick another --out")])
            shown = ", ".join(entries[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")
            raise UsageError([Problem("E443", f"{root} is not empty and holds no run ({shown})", path="--out",
                                      hint="pick a new or empty --out; --overwrite runs here anyway, beside these files, "
                                           "and deletes none of them")])
        if check_only:
            return []
        if present and say is not None:
            say(f"--overwrite: deleting {', '.join(_shown_entry(p) for p in present)} in {root}")
        return self.clear()

    def relative(self, path: Union[str, Path]) -> str:
        """`path` relative to the run directory, as the run's records write it."""
        return Path(path).relative_to(self.root).as_posix()


def _stage_name(name: str) -> str:
    """`name`, once it is one plain folder name (the plan checks stage names fully: `stagedsl.spec.names`)."""
    if not isinstance(name, str) or name in ("", ".", "..") or name.startswith(".") or "\x00" in name \
            or Path(name).name != name or os.sep in name or (os.altsep and os.altsep in name):
        raise UsageError([Problem(code="E417", message=f"stage name {name!r} cannot name a folder of the run directory",
                                  hint="a stage name is letters, digits, `_`, `-` and `.`, not starting with `.`")])
    return name


def _shown_entry(path: Path) -> str:
    return path.name + ("/" if path.is_dir() and not path.is_symlink() else "")
