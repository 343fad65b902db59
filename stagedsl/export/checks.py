"""How an export is judged: output parity against PyTorch, and the task metric.

`Parity` accumulates, over checked batches, the largest absolute error, the largest
relative error and the worst ratio of an error to its tolerance:

- abs error ``|out - ref|``; an element passes when ``abs <= atol + rtol * |ref|``,
  so the format passes when ``worst = max(abs / (atol + rtol * |ref|)) <= 1``;
- rel error ``abs / max(|ref|, 1e-3 * max|ref|)``: relative to the element, except that
  elements under a thousandth of the output's largest magnitude are measured against
  that thousandth (near-zeros would otherwise dominate with meaningless ratios).

A non-finite output where PyTorch's is finite, or a shape mismatch, fails outright.

`MetricSet` computes the stage's metrics (the registered ``metrics`` pieces the plan
names for that stage) over predictions; when the stage names none, or a metric cannot
be built or computed, it falls back to ``accuracy`` (argmax over dim 1, integer
targets) or ``mse`` (float targets shaped like the output).
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import attrs

from stagedsl.errors import StagedError


@attrs.define
class Parity:
    """Running comparison of outputs against reference outputs."""

    atol: float
    rtol: float
    max_abs: float = 0.0
    max_rel: float = 0.0
    worst: float = 0.0
    batches: int = 0
    samples: int = 0
    problem: Optional[str] = None

    def update(self, references: Sequence[Any], outputs: Sequence[Any], *, count: bool = True) -> None:
        """Compare one batch: lists of numpy arrays, one per model output. `count`: False
        for a second look at a batch already counted."""
        import numpy as np

        self.batches += count
        if references and count:
            self.samples += int(np.shape(references[0])[0]) if np.ndim(references[0]) else 1
        if len(references) != len(outputs):
            self.problem = self.problem or f"{len(outputs)} output(s) where PyTorch gives {len(references)}"
            return
        for index, (ref, out) in enumerate(zip(references, outputs)):
            ref = np.asarray(ref, dtype=np.float64)
            out = np.asarray(out, dtype=np.float64)
            if ref.shape != out.shape:
                self.problem = self.problem or f"output {index} has shape {out.shape} where PyTorch gives {ref.shape}"
                continue
            if ref.size == 0:
                continue
            finite = np.isfinite(ref)
            if not np.isfinite(out[finite]).all():
                self.problem = self.problem or f"output {index} is not finite where PyTorch's is"
            if not finite.all():
                self.problem = self.problem or f"PyTorch's output {index} itself is not finite"
            ref, out = ref[finite], out[finite]
            if ref.size == 0:
                continue
            error = np.abs(out - ref)
            error = np.where(np.isfinite(error), error, np.inf)
            magnitude = np.abs(ref)
            floor = max(1e-3 * float(magnitude.max()), 1e-12)
            self.max_abs = max(self.max_abs, float(error.max()))
            self.max_rel = max(self.max_rel, float((error / np.maximum(magnitude, floor)).max()))
            allowed = self.atol + self.rtol * magnitude
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where(error == 0, 0.0, error / allowed)
            self.worst = max(self.worst, float(ratio.max()))

    @property
    def passed(self) -> bool:
        """Every element within tolerance, and nothing mismatched or non-finite."""
        return self.problem is None and self.batches > 0 and self.worst <= 1.0

    def describe(self) -> str:
        """One line: the figures and the tolerance."""
        text = (f"max abs error {self.max_abs:.3g}, max rel error {self.max_rel:.3g} "
                f"(tolerance atol={self.atol:g} rtol={self.rtol:g}; worst element at {self.worst:.3g}x its tolerance)")
        return f"{self.problem}; {text}" if self.problem else text


class MetricSet:
    """The task metrics of one stage, fed batch by batch: ``update(pred, target)``, ``compute()``."""

    def __init__(self, refs: Sequence[Any], registry: Any, notices: Optional[list[str]] = None):
        self.notices = notices if notices is not None else []
        self.metrics: dict[str, Any] = {}
        for ref in refs:
            try:
                self.metrics[ref.name] = registry.build("metrics", ref.name, ref.args, phase="export")
            except StagedError as exc:
                self.notices.append(f"{exc.problems[0].message}; skipped")
        self.fallback: dict[str, list[float]] = {}

    def update(self, prediction: Any, target: Any) -> None:
        """Feed one batch (a prediction tensor, or the first of several outputs)."""
        import torch

        if isinstance(prediction, (list, tuple)):
            prediction = prediction[0]
        prediction = torch.as_tensor(prediction).float()
        target = torch.as_tensor(target)
        for name in list(self.metrics):
            try:
                self.metrics[name].update(prediction, target)
            except Exception as exc:
                self.notices.append(f"metric `{name}` failed on the export's outputs ({type(exc).__name__}: {exc}); skipped")
                del self.metrics[name]
        self._update_fallback(prediction, target)

    def _update_fallback(self, prediction: Any, target: Any) -> None:
        import torch

        n = len(target) if target.ndim else 1
        if not target.is_floating_point() and prediction.ndim >= 2 and prediction.shape[0] == n:
            correct = (prediction.argmax(dim=1) == target.reshape(prediction.argmax(dim=1).shape)).float().sum().item()
            self._add("accuracy", correct, n)
        elif target.is_floating_point() and target.shape == prediction.shape:
            self._add("mse", torch.sum((prediction - target.float()) ** 2).item(), target.numel())

    def _add(self, name: str, total: float, count: int) -> None:
        sums = self.fallback.setdefault(name, [0.0, 0])
        sums[0] += total
        sums[1] += count

    def compute(self) -> dict[str, float]:
        """``{metric name: value}`` over everything fed so far."""
        values: dict[str, float] = {}
        for name, metric in self.metrics.items():
            try:
                value = metric.compute()
                values[name] = float(value.item() if hasattr(value, "item") else value)
            except Exception as exc:
                self.notices.append(f"metric `{name}` could not be computed ({type(exc).__name__}: {exc})")
        if not values:
            for name, (total, count) in self.fallback.items():
                values[name] = total / count if count else math.nan
        return values
