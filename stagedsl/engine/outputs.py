"""The run directory's text outputs: plan, spec, metrics.jsonl, TensorBoard, summary.

Where each goes is `stagedsl.run_dir.RunDir`'s business (weights and trainer state are
`stagedsl.engine.checkpointing`'s). Only the writing process (rank 0) writes; elsewhere
every method is a no-op. Text files are replaced atomically and durably (temp file,
fsync, rename). A resumed run cuts ``metrics.jsonl`` back to its size at the checkpoint
it continues from (the steps after it are redone and logged again) and has TensorBoard
purge the events past that step.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Optional

from stagedsl.engine.checkpointing.safe_io import atomic_write_text as _durable_text
from stagedsl.run_dir import RunDir


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` through a temp file, fsync and ``os.replace``."""
    _durable_text(path, text)


def _clean(value: Any) -> Any:
    """JSON-safe: non-finite floats become strings ("nan", "inf")."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def read_summary(run_dir: RunDir) -> Optional[dict[str, Any]]:
    """A run directory's ``summary.json``, or None when it has none (or it cannot be read)."""
    try:
        return json.loads(run_dir.summary.read_text())
    except (OSError, ValueError):
        return None


def read_log(run_dir: RunDir) -> list[dict[str, Any]]:
    """The events of a run directory's ``metrics.jsonl``, up to the first line that is not whole (one a
    running run is writing); empty when there is none."""
    try:
        lines = run_dir.metrics.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    events = []
    for line in lines:
        try:
            events.append(json.loads(line))
        except ValueError:
            break
    return events


class RunOutputs:
    """Writes the run directory's text outputs (see the module docstring)."""

    def __init__(self, run_dir: RunDir, *, enabled: bool = True, append: bool = False, metrics_bytes: Optional[int] = None,
                 purge_step: Optional[int] = None):
        """`metrics_bytes`: cut ``metrics.jsonl`` to this size first (a resume); `purge_step`: TensorBoard's."""
        self.run_dir = run_dir
        self.enabled = enabled
        self._metrics = None
        self._tb = None
        self._purge_step = purge_step
        if enabled:
            run_dir.root.mkdir(parents=True, exist_ok=True)
            path = run_dir.metrics
            if metrics_bytes is not None and path.exists() and path.stat().st_size > metrics_bytes:
                with open(path, "r+b") as handle:
                    handle.truncate(metrics_bytes)
            self._metrics = open(path, "a" if append else "w", encoding="utf-8")

    # -- files ---------------------------------------------------------------------
    def write_plan(self, plan_json: str) -> None:
        """Write ``plan.json``."""
        if self.enabled:
            atomic_write_text(self.run_dir.plan, plan_json + "\n")

    def write_plan_version(self, plan_hash: str, plan_json: str) -> None:
        """Write ``plans/<hash>.json`` (once per plan the run follows)."""
        path = self.run_dir.plan_version(plan_hash)
        if self.enabled and not path.exists():
            atomic_write_text(path, plan_json + "\n")

    def write_spec(self, spec_text: Optional[str]) -> None:
        """Write ``spec.toml`` when the effective spec text is given."""
        if self.enabled and spec_text is not None:
            atomic_write_text(self.run_dir.spec, spec_text)

    def write_summary(self, summary: dict[str, Any]) -> None:
        """Write ``summary.json`` atomically."""
        if self.enabled:
            atomic_write_text(self.run_dir.summary, json.dumps(_clean(summary), indent=2, default=str) + "\n")

    def read_summary(self) -> Optional[dict[str, Any]]:
        """The existing ``summary.json``, if any (a run continued with from_stage)."""
        return read_summary(self.run_dir)

    # -- events --------------------------------------------------------------------
    def log(self, record: dict[str, Any]) -> None:
        """Append one JSON object to ``metrics.jsonl``."""
        if self._metrics is not None:
            line = json.dumps(_clean(record), default=str) + "\n"
            size = self._metrics.tell()
            try:
                self._metrics.write(line)
                self._metrics.flush()
            except OSError:  # a full disk: no half line is left for a reader to choke on
                self._cut_metrics(size)
                raise

    def _cut_metrics(self, size: int) -> None:
        handle, self._metrics = self._metrics, None
        try:
            handle.close()
        except OSError:
            pass
        try:
            with open(self.run_dir.metrics, "r+b") as raw:
                raw.truncate(size)
        except OSError:
            pass
        try:
            self._metrics = open(self.run_dir.metrics, "a", encoding="utf-8")
        except OSError:
            self._metrics = None

    def metrics_size(self) -> int:
        """Bytes written to ``metrics.jsonl`` so far (what a checkpoint records)."""
        if self._metrics is None:
            return 0
        self._metrics.flush()
        return os.fstat(self._metrics.fileno()).st_size

    @property
    def tensorboard(self) -> Any:
        """The run's SummaryWriter (created on first use), or None off rank 0."""
        if self._tb is None and self.enabled:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(self.run_dir.tensorboard), purge_step=self._purge_step)
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
