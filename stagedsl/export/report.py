"""What an export did: per-format results and the whole report (``export/report.json``)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Optional

import attrs

REPORT = "report.json"

PASSED = "passed"
FAILED = "failed"
SKIPPED = "skipped"
UNVERIFIED = "unverified"  # written by a registered exporter; stagedsl cannot check it


@attrs.define
class FormatResult:
    """One format's outcome: files, parity figures against PyTorch, metric before/after."""

    format: str
    status: str = SKIPPED
    files: list[str] = attrs.field(factory=list)
    max_abs: Optional[float] = None
    max_rel: Optional[float] = None
    max_scaled: Optional[float] = None
    """Largest error relative to the output's scale (its largest magnitude)."""
    worst: Optional[float] = None
    """Largest error as a multiple of its tolerance (``<= 1`` passes)."""
    agreement: Optional[float] = None
    """fp16 of a classifier: share of held-out rows where it picks PyTorch's class."""
    agreement_rows: int = 0
    checks: list[dict] = attrs.field(factory=list)
    """fp16: each criterion of the verdict (`checks.Check.to_dict`): name, value, limit, passed, decides, detail."""
    atol: Optional[float] = None
    rtol: Optional[float] = None
    batches: int = 0
    samples: int = 0
    exporter: Optional[str] = None
    metric_before: dict = attrs.field(factory=dict)
    metric_after: dict = attrs.field(factory=dict)
    seconds: float = 0.0
    error: Optional[str] = None

    @property
    def passed(self) -> bool:
        """The format was written and verified (or written by a registered exporter)."""
        return self.status in (PASSED, UNVERIFIED)


@attrs.define
class PruneResult:
    """What L1 unstructured pruning did to the weights, and to the metric."""

    amount: float
    tensors: int
    pruned: int
    """Weights zeroed, over the pruned tensors."""
    total: int
    """Entries in the pruned tensors."""
    parameters: int
    """Entries in all the model's parameters."""
    metric_before: dict = attrs.field(factory=dict)
    metric_after: dict = attrs.field(factory=dict)
    file: Optional[str] = None

    @property
    def sparsity(self) -> float:
        """Fraction of zeros in the pruned (Linear/Conv weight) tensors."""
        return self.pruned / self.total if self.total else 0.0

    @property
    def model_sparsity(self) -> float:
        """Fraction of the whole model's parameters zeroed by pruning."""
        return self.pruned / self.parameters if self.parameters else 0.0

    def to_dict(self) -> dict[str, Any]:
        data = attrs.asdict(self)
        data.update(sparsity=self.sparsity, model_sparsity=self.model_sparsity)
        return data


@attrs.define
class ExportReport:
    """The result of `export_run`. ``passed`` is true only when every format passed."""

    run_dir: str
    out: str
    stage: str
    which: str
    checkpoint: str
    formats: dict[str, FormatResult] = attrs.field(factory=dict)
    prune: Optional[PruneResult] = None
    notices: list[str] = attrs.field(factory=list)
    check_split: Optional[str] = None
    seconds: float = 0.0
    stagedsl_version: str = ""

    @property
    def passed(self) -> bool:
        return bool(self.formats) and all(result.passed for result in self.formats.values())

    @property
    def files(self) -> list[str]:
        """Every valid file written (a package counts as its folder)."""
        files = [f for result in self.formats.values() if result.passed for f in result.files]
        if self.prune is not None and self.prune.file:
            files.append(self.prune.file)
        return files

    @property
    def max_abs(self) -> dict[str, Optional[float]]:
        """Largest absolute error against PyTorch, by format."""
        return {name: result.max_abs for name, result in self.formats.items()}

    @property
    def max_rel(self) -> dict[str, Optional[float]]:
        """Largest relative error against PyTorch, by format."""
        return {name: result.max_rel for name, result in self.formats.items()}

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON-ready data."""
        return {
            "passed": self.passed,
            "run_dir": self.run_dir,
            "out": self.out,
            "stage": self.stage,
            "which": self.which,
            "checkpoint": self.checkpoint,
            "check_split": self.check_split,
            "files": self.files,
            "formats": {name: {**attrs.asdict(result), "passed": result.passed} for name, result in self.formats.items()},
            "prune": self.prune.to_dict() if self.prune is not None else None,
            "notices": list(self.notices),
            "seconds": self.seconds,
            "stagedsl_version": self.stagedsl_version,
        }

    def to_json(self, *, indent: Optional[int] = 2) -> str:
        """The report as JSON; non-finite figures are written as the strings "inf" / "nan"."""
        return json.dumps(_finite(self.to_dict()), indent=indent, default=_json_default)


def failure_hint(name: str, report: ExportReport, run_dir: Any, out: Any) -> str:
    """What to do about a failed format: without retraining, re-check it or leave it out."""
    others = ",".join(f for f in report.formats if report.formats[f].passed or f == "package")
    if name == "onnx-fp16":
        looser = ("--set export.fp16_min_agreement=0.95 --set export.fp16_metric_tol=0.02"
                  if report.formats[name].agreement is not None else "--set export.fp16_atol=0.05")
        return (f"see {Path(out) / REPORT}; re-check without retraining: `staged export {run_dir} {looser}`, "
                f"or leave fp16 out: `staged export {run_dir} --format {others or 'onnx'}`")
    if name == "package" and report.formats["package"].status == SKIPPED:
        return f"export the package without the failed format(s): `staged export {run_dir} --format {others or 'package'}`"
    return f"see {Path(out) / REPORT}; failed files are renamed *.invalid"


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)
