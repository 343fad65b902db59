"""The run directory's text outputs: plan, spec, metrics.jsonl, TensorBoard, summary.

Layout (weights and trainer state are `stagedsl.engine.checkpoints`' business)::

    <run dir>/
      plan.json          the Plan that ran (Plan.to_json(), with its hash)
      spec.toml          the effective spec text, when the caller passes it
      metrics.jsonl      one JSON object per log event (train, eval, gate, stage)
      summary.json       per-stage results, status, plan hash; rewritten at each stage end
      tb/                TensorBoard events: train/loss, lr/<group>, val/*, stage and gate text
      stages/<stage>/    best.safetensors, last.safetensors, state/step_<n>/

Only the writing process (rank 0) writes; elsewhere every method is a no-op.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Optional

PLAN_FILE = "plan.json"
SPEC_FILE = "spec.toml"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
TB_DIR = "tb"


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` through a temp file and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _clean(value: Any) -> Any:
    """JSON-safe: non-finite floats become strings ("nan", "inf")."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


class RunOutputs:
    """Writes the run directory's text outputs (see the module docstring)."""

    def __init__(self, run_dir: Path, *, enabled: bool = True, append: bool = False):
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self._metrics = None
        self._tb = None
        if enabled:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._metrics = open(self.run_dir / METRICS_FILE, "a" if append else "w", encoding="utf-8")

    # -- files ---------------------------------------------------------------------
    def write_plan(self, plan_json: str) -> None:
        """Write ``plan.json``."""
        if self.enabled:
            atomic_write_text(self.run_dir / PLAN_FILE, plan_json + "\n")

    def write_spec(self, spec_text: Optional[str]) -> None:
        """Write ``spec.toml`` when the effective spec text is given."""
        if self.enabled and spec_text is not None:
            atomic_write_text(self.run_dir / SPEC_FILE, spec_text)

    def write_summary(self, summary: dict[str, Any]) -> None:
        """Write ``summary.json`` atomically."""
        if self.enabled:
            atomic_write_text(self.run_dir / SUMMARY_FILE, json.dumps(_clean(summary), indent=2, default=str) + "\n")

    def read_summary(self) -> Optional[dict[str, Any]]:
        """The existing ``summary.json``, if any (a run continued with from_stage)."""
        path = self.run_dir / SUMMARY_FILE
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    # -- events --------------------------------------------------------------------
    def log(self, record: dict[str, Any]) -> None:
        """Append one JSON object to ``metrics.jsonl``."""
        if self._metrics is not None:
            self._metrics.write(json.dumps(_clean(record), default=str) + "\n")
            self._metrics.flush()

    @property
    def tensorboard(self) -> Any:
        """The run's SummaryWriter (created on first use), or None off rank 0."""
        if self._tb is None and self.enabled:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(self.run_dir / TB_DIR))
        return self._tb

    def scalars(self, values: dict[str, float], step: int) -> None:
        """One TensorBoard scalar per value (tag = the value's name)."""
        writer = self.tensorboard
        if writer is None:
            return
        for tag, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                writer.add_scalar(tag, value, step)

    def text(self, tag: str, text: str, step: int) -> None:
        """A TensorBoard text entry (stage boundaries, gate decisions)."""
        writer = self.tensorboard
        if writer is not None:
            writer.add_text(tag, text, step)

    def flush(self) -> None:
        """Flush the TensorBoard writer."""
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        """Close every open file."""
        if self._metrics is not None:
            self._metrics.close()
            self._metrics = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None
