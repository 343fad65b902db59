"""How an export is judged: output parity against PyTorch, and the task metric.

`Parity` accumulates, over checked batches, the largest absolute error, the largest
relative error and the worst ratio of an error to its tolerance:

- abs error ``|out - ref|``; an element passes when ``abs <= atol + rtol * |ref|``,
  so the format passes when ``worst = max(abs / (atol + rtol * |ref|)) <= 1``;
  with ``scaled=True`` (the fp16 check) `atol` is relative to the output's scale,
  its largest magnitude in the batch: ``abs <= atol * max|ref| + rtol * |ref|``, so
  logits that reach ±46 get the same share of slack as outputs of ±1;
- rel error ``abs / max(|ref|, 1e-3 * max|ref|)``: relative to the element, except that
  elements under a thousandth of the output's largest magnitude are measured against
  that thousandth (near-zeros would otherwise dominate with meaningless ratios);
- scaled error ``abs / max|ref|``: relative to the output's scale.

A non-finite output where PyTorch's is finite, or a shape mismatch, fails outright.

`Agreement` counts the held-out rows where a classifier's export picks PyTorch's class
(argmax over dim 1). `fp16_checks` turns the figures into the fp16 verdict: for a
classifier (integer targets, one score per class) argmax agreement and the task metric
before/after decide, and the element-wise error is reported beside them; for any other
model the scale-relative element-wise check decides.

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
    scaled: bool = False
    """`atol` is relative to the output's scale (its largest magnitude in the batch)."""
    max_abs: float = 0.0
    max_rel: float = 0.0
    max_scaled: float = 0.0
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
            scale = max(float(magnitude.max()), 1e-12)
            floor = 1e-3 * scale
            self.max_abs = max(self.max_abs, float(error.max()))
            self.max_rel = max(self.max_rel, float((error / np.maximum(magnitude, floor)).max()))
            self.max_scaled = max(self.max_scaled, float(error.max()) / scale)
            allowed = self.atol * (scale if self.scaled else 1.0) + self.rtol * magnitude
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where(error == 0, 0.0, error / allowed)
            self.worst = max(self.worst, float(ratio.max()))

    @property
    def passed(self) -> bool:
        """Every element within tolerance, and nothing mismatched or non-finite."""
        return self.problem is None and self.batches > 0 and self.worst <= 1.0

    def describe(self) -> str:
        """One line: the figures and the tolerance."""
        atol = f"atol={self.atol:g} x the output's scale" if self.scaled else f"atol={self.atol:g}"
        text = (f"max abs error {self.max_abs:.3g} ({self.max_scaled:.3g} of the output's scale), max rel error {self.max_rel:.3g} "
                f"(tolerance {atol}, rtol={self.rtol:g}; worst element at {self.worst:.3g}x its tolerance)")
        return f"{self.problem}; {text}" if self.problem else text


@attrs.define
class Agreement:
    """Held-out rows where an export picks the same class as PyTorch (argmax over dim 1)."""

    rows: int = 0
    same: int = 0

    def update(self, reference: Any, output: Any, target: Any) -> None:
        """Count one batch, if it is a classifier's: integer targets, one score per class."""
        import torch

        reference, output, target = torch.as_tensor(reference), torch.as_tensor(output), torch.as_tensor(target)
        if not is_classifier(reference, target) or output.shape != reference.shape:
            return
        self.rows += int(reference.shape[0])
        self.same += int((reference.argmax(dim=1) == output.argmax(dim=1)).sum().item())

    @property
    def rate(self) -> Optional[float]:
        """The share of rows that agree; None when no classifier output was seen."""
        return self.same / self.rows if self.rows else None


def percent(fraction: float) -> str:
    """``0.0123`` -> ``1.2%``; small shares keep two significant digits (``0.0039%``)."""
    return f"{100 * fraction:.2g}%"


def is_classifier(prediction: Any, target: Any) -> bool:
    """Integer targets, one per row, and at least two scores per row."""
    return (not target.is_floating_point() and prediction.ndim >= 2 and prediction.shape[1] >= 2
            and target.ndim >= 1 and prediction.shape[0] == target.shape[0])


@attrs.frozen
class Check:
    """One criterion of a verdict: what was measured, the limit, and whether it decides."""

    name: str
    value: float
    limit: float
    passed: bool
    decides: bool = True
    detail: str = ""

    def describe(self) -> str:
        """``argmax agreement 97.3% < 99% (3 of 112 rows differ)``."""
        return self.detail

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def fp16_checks(parity: Parity, agreement: Agreement, before: dict, after: dict, *, min_agreement: float,
                metric_tol: float) -> list[Check]:
    """The fp16 verdict's criteria (see the module docstring); the format passes when every deciding one does."""
    classifier = agreement.rate is not None
    share = f"{percent(parity.max_scaled)} of the output's scale"
    checks = [Check("elementwise", parity.worst, 1.0, parity.worst <= 1.0, decides=not classifier,
                    detail=f"largest error {parity.max_abs:.3g} ({share}) is {parity.worst:.3g}x its tolerance"
                           + ("" if classifier else (" (passes at <= 1)" if parity.worst <= 1.0 else " (> 1)"))
                           + (" - reported only: a classifier is judged by its classes and metric" if classifier else ""))]
    if classifier:
        rate = agreement.rate
        differ = agreement.rows - agreement.same
        checks.append(Check("argmax agreement", rate, min_agreement, rate >= min_agreement,
                            detail=f"argmax agreement {rate:.2%} {'>=' if rate >= min_agreement else '<'} {min_agreement:.2%} "
                                   f"({differ} of {agreement.rows} rows pick another class)"))
        for name, value in before.items():
            new = after.get(name, math.nan)
            change = abs(new - value)
            ok = change <= metric_tol
            checks.append(Check(f"metric {name}", change, metric_tol, bool(ok),
                                detail=f"{name} {value:.4g} -> {new:.4g} (change {change:.3g} {'<=' if ok else '>'} {metric_tol:g})"))
    return checks


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
        prediction = torch.as_tensor(prediction).float().contiguous()  # onnxruntime's arrays may be strided
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
