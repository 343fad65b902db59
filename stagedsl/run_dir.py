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

`RunDir.owned()` lists exactly these, which is what ``staged run --overwrite`` deletes.
`RunDir.child(...)` resolves any other path below the run directory and refuses one that
would leave it. Pure paths: no file is touched except by `clear`. Never imports torch.

`NAME` is what may name a folder inside a run directory that holds other runs (a matrix's
members, a search's trials; `stagedsl.matrix.layout.ComposedDir`).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Union

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

TRIAL_FILE = "trial.json"

OWNED = (PLAN_FILE, PLANS_DIR, SPEC_FILE, METRICS_FILE, SUMMARY_FILE, TB_DIR, STAGES_DIR, EXPORT_DIR, REPORT_DIR, TRIAL_FILE)
"""Every top-level entry a run writes into its directory."""


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
        """``stages/<name>/``."""
        return self.child(STAGES_DIR, name)

    def weights(self, stage: str, which: str) -> Path:
        """``stages/<stage>/<which>.safetensors`` (which: best, last, start)."""
        return self.child(STAGES_DIR, stage, f"{which}{WEIGHTS_SUFFIX}")

    def trainer_states(self, stage: str) -> Path:
        """``stages/<stage>/state/``: the stage's trainer checkpoints."""
        return self.child(STAGES_DIR, stage, TRAINER_STATES_DIR)

    def trainer_state(self, stage: str, stage_step: int, attempt: int = 0) -> Path:
        """``stages/<stage>/state/step_<stage_step>`` (``_retry<attempt>`` for a gate retry)."""
        suffix = f"_retry{attempt}" if attempt else ""
        return self.child(STAGES_DIR, stage, TRAINER_STATES_DIR, f"step_{stage_step:09d}{suffix}")

    def all_trainer_states(self) -> list[Path]:
        """Every folder that holds one stage's trainer checkpoints, sorted."""
        return sorted(self.stages.glob(f"*/{TRAINER_STATES_DIR}"))

    # -- the directory as a whole --------------------------------------------------------
    def owned(self) -> tuple[Path, ...]:
        """Every top-level path a run owns (those that exist or not)."""
        return tuple(self.root / name for name in OWNED)

    def holds_run(self) -> bool:
        """Whether a run has written here (its summary exists)."""
        return self.summary.exists()

    def clear(self) -> list[Path]:
        """Delete everything a run owns here (what ``--overwrite`` replaces); return what went."""
        removed = []
        for path in self.owned():
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
            else:
                continue
            removed.append(path)
        return removed

    def child(self, *parts: Union[str, Path]) -> Path:
        """``root / parts``, refused (E417) when it would resolve outside the run directory."""
        path = self.root.joinpath(*parts)
        root = self.root.resolve()
        resolved = path.resolve()
        if resolved != root and root not in resolved.parents:
            raise UsageError([Problem(code="E417", message=f"`{Path(*parts)}` is outside the run directory {self.root}",
                                      hint="names of stages and files in a run directory cannot climb out of it (no `..`, no absolute path)")])
        return path

    def relative(self, path: Union[str, Path]) -> str:
        """`path` relative to the run directory, as the run's records write it."""
        return Path(path).relative_to(self.root).as_posix()


NAME = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}"
"""What names a folder inside a composed run directory (a variant, member, ensemble, trial):
letters, digits, `_`, `-`, `.`, not starting with `.`, at most 64 characters."""

