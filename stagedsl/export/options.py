"""The export settings: the spec's ``[export]`` section, resolved and checked.

`ExportOptions.resolve(plan.export, overrides)` merges the plan's section with the
caller's overrides (keyword arguments of `export_run`, CLI flags) and checks every
key. Unknown keys and bad values are `UsageError`s with a did-you-mean.

Tolerances. An output element passes when ``|onnx - torch| <= atol + rtol * |torch|``
(NumPy's ``allclose`` rule, with the PyTorch fp32 eval-mode output as reference); a
format passes when every element of every checked batch does and nothing is
non-finite where PyTorch is finite.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import attrs

from stagedsl.errors import Problem, UsageError, did_you_mean

ONNX = "onnx"
ONNX_FP16 = "onnx-fp16"
PACKAGE = "package"
BUILTIN_FORMATS: tuple[str, ...] = (ONNX, ONNX_FP16, PACKAGE)
"""Formats stagedsl writes itself, in the order they are produced. Any other format
name is looked up among the registered ``exporters``."""


@attrs.frozen
class PruneOptions:
    """Post-export L1 unstructured pruning of Linear/Conv weights (seed 001 §7.1)."""

    amount: float = 0.3
    """Fraction of each weight tensor's entries zeroed (smallest magnitudes first)."""


@attrs.frozen
class ExportOptions:
    """Every export setting, with its default. Keys of the spec's ``[export]`` section."""

    formats: tuple[str, ...] = BUILTIN_FORMATS
    """What to write: "onnx", "onnx-fp16", "package", or a registered exporter's name."""
    stage: Optional[str] = None
    """The stage whose checkpoint is exported; default: the last stage with checkpoints."""
    which: str = "best"
    """Which checkpoint of the stage: "best" or "last"."""
    opset: int = 18
    """ONNX opset version."""
    atol: float = 1e-4
    """Absolute tolerance of the fp32 ONNX model against PyTorch."""
    rtol: float = 1e-4
    """Relative tolerance of the fp32 ONNX model against PyTorch."""
    fp16_atol: float = 1e-2
    """Absolute tolerance of the fp16 ONNX model against PyTorch fp32."""
    fp16_rtol: float = 1e-2
    """Relative tolerance of the fp16 ONNX model against PyTorch fp32."""
    keep_io_types: bool = True
    """The fp16 model keeps float32 inputs and outputs (casts inside the graph)."""
    dynamic_batch: bool = True
    """The ONNX batch axis is dynamic (named "batch")."""
    check_batches: int = 4
    """Held-out batches (validation split, else test, else train) compared against PyTorch."""
    metric_samples: Optional[int] = None
    """At most this many validation samples for the metric before/after fp16 (None: all)."""
    prune: Optional[PruneOptions] = None
    """``{amount = 0.3}``: also write an L1-pruned copy of the weights and report the metric change."""
    exporters: dict = attrs.field(factory=dict)
    """Arguments of registered exporters, by format name: ``{my_format = {arg = 1}}``."""

    @classmethod
    def keys(cls) -> list[str]:
        """Every key the ``[export]`` section accepts."""
        return [field.name for field in attrs.fields(cls)]

    @classmethod
    def resolve(cls, *sections: Optional[Mapping[str, Any]]) -> "ExportOptions":
        """Merge sections (later wins, None values ignored) and check every key and value."""
        merged: dict[str, Any] = {}
        for section in sections:
            for key, value in (section or {}).items():
                if value is not None:
                    merged[key] = value
        problems: list[Problem] = []
        known = set(cls.keys())
        values: dict[str, Any] = {}
        exporter_args: dict[str, Any] = dict(merged.pop("exporters", None) or {})
        for key, value in merged.items():
            if key not in known:
                if isinstance(value, Mapping) and key in _named_formats(merged.get("formats", BUILTIN_FORMATS)):
                    exporter_args[key] = dict(value)  # `[export.my_format]`: a registered exporter's arguments
                    continue
                problems.append(_problem(f"unknown export option `{key}`", key, did_you_mean(key, known)))
                continue
            try:
                values[key] = _CHECKS[key](value)
            except (TypeError, ValueError) as exc:
                problems.append(_problem(f"bad value {value!r} for export option `{key}`: {exc}", key))
        if problems:
            raise UsageError(problems)
        return cls(exporters=exporter_args, **values)

    def to_dict(self) -> dict[str, Any]:
        """The options as plain JSON-ready data."""
        return attrs.asdict(self, recurse=True)


def _problem(message: str, key: str, hint: Optional[str] = None) -> Problem:
    return Problem(code="E530", message=message, path=f"export.{key}", hint=hint)


def _formats(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [part for part in value.split(",")]
    names = tuple(str(part).strip() for part in value if str(part).strip())
    if not names:
        raise ValueError("no format given")
    if len(set(names)) != len(names):
        raise ValueError("a format is named twice")
    return names


def _named_formats(value: Any) -> tuple[str, ...]:
    try:
        return _formats(value)
    except (TypeError, ValueError):
        return ()


def _which(value: Any) -> str:
    if value not in ("best", "last"):
        raise ValueError('expected "best" or "last"')
    return value


def _positive_int(low: int):
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"expected an integer >= {low}")
        return value

    return check


def _tolerance(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError("expected a number >= 0")
    return float(value)


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("expected true or false")
    return value


def _stage(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("expected a stage name")
    return value


def _optional_samples(value: Any) -> Optional[int]:
    return None if value is None else _positive_int(1)(value)


def _prune(value: Any) -> Optional[PruneOptions]:
    if value is False:
        return None
    if value is True:
        return PruneOptions()
    if isinstance(value, PruneOptions):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = {"amount": value}
    if not isinstance(value, Mapping):
        raise ValueError("expected a table such as {amount = 0.3}")
    unknown = set(value) - {"amount"}
    if unknown:
        raise ValueError(f"unknown key(s) {sorted(unknown)}; expected `amount`")
    amount = value.get("amount", PruneOptions.amount)
    if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not 0.0 <= amount < 1.0:
        raise ValueError("`amount` must be a fraction in [0, 1)")
    return PruneOptions(amount=float(amount))


_CHECKS = {
    "formats": _formats,
    "stage": _stage,
    "which": _which,
    "opset": _positive_int(7),
    "atol": _tolerance,
    "rtol": _tolerance,
    "fp16_atol": _tolerance,
    "fp16_rtol": _tolerance,
    "keep_io_types": _bool,
    "dynamic_batch": _bool,
    "check_batches": _positive_int(1),
    "metric_samples": _optional_samples,
    "prune": _prune,
}
