"""The export settings: the spec's ``[export]`` section, resolved and checked.

`ExportOptions.resolve(plan.export, overrides)` merges the plan's section with the
caller's overrides (keyword arguments of `export_run`, CLI flags) and checks every
key. Unknown keys and bad values are `UsageError`s with a did-you-mean.

Tolerances. An fp32 ONNX output element passes when ``|onnx - torch| <= atol + rtol *
|torch|`` (NumPy's ``allclose`` rule, with the PyTorch fp32 eval-mode output as
reference); the format passes when every element of every checked batch does and
nothing is non-finite where PyTorch is finite. fp16 is judged for what it is: its
``fp16_atol`` is relative to the output's scale (``|fp16 - torch| <= fp16_atol *
max|torch| + fp16_rtol * |torch|``), and a classifier passes on its classes
(``fp16_min_agreement``) and its task metric (``fp16_metric_tol``), with the
element-wise figures reported beside them (see `stagedsl.export.checks`).
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import attrs

from stagedsl.errors import Problem, UsageError

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
    """Tolerance of the fp16 ONNX model against PyTorch fp32, relative to the output's scale (its largest magnitude)."""
    fp16_rtol: float = 1e-2
    """Relative (per-element) tolerance of the fp16 ONNX model against PyTorch fp32."""
    fp16_min_agreement: float = 0.99
    """Classifiers: the least share of held-out rows where fp16 picks PyTorch's class."""
    fp16_metric_tol: float = 0.01
    """Classifiers: the largest change of each task metric from PyTorch to fp16."""
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
                from stagedsl.registry import did_you_mean

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


def override_options(overrides: Sequence[str]) -> dict[str, Any]:
    """``["export.fp16_atol=0.05", "export.prune.amount=0.3"]`` -> ``{"fp16_atol": 0.05, "prune": {"amount": 0.3}}``.

    Values are TOML, as for ``staged run --set``; a key outside ``export.`` is a `UsageError`.
    """
    from stagedsl.spec.convert import KeyProblem
    from stagedsl.spec.merge import parse_override, set_path

    document: dict[str, Any] = {}
    problems = []
    for text in overrides:
        try:
            parts, value = parse_override(text)
            if parts[0] != "export" or len(parts) < 2:
                raise KeyProblem(f"--set {text.split('=', 1)[0]}: an export takes only export.* keys",
                                 hint="e.g. --set export.fp16_atol=0.05; to change training, use `staged resume --set` or a new run")
            document = set_path(document, parts, value)
        except KeyProblem as exc:
            problems.append(Problem(code="E530", message=str(exc), path="--set", hint=exc.hint))
    if problems:
        raise UsageError(problems)
    return document.get("export", {})


def profile_options(spec_file: Optional[str], profile: str, registry: Any = None) -> dict[str, Any]:
    """The ``[export]`` section of the run's spec file under `profile` (keys of `ExportOptions`)."""
    from pathlib import Path

    if not spec_file or not Path(spec_file).is_file():
        raise UsageError([Problem(code="E530", message=f"--profile {profile}: the run's spec file `{spec_file}` is not here",
                                  path="--profile", hint="run the export from the folder the run was started in, or use --set export.<key>=...")])
    from stagedsl.spec.loader import load_spec

    loaded = load_spec(spec_file, profile=profile, registry=registry)
    if loaded.export is None:
        return {}
    section = attrs.asdict(loaded.export)
    return {key: value for key, value in section.items() if value is not None}


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


def _fraction(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError("expected a fraction in [0, 1]")
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
    "fp16_min_agreement": _fraction,
    "fp16_metric_tol": _tolerance,
    "keep_io_types": _bool,
    "dynamic_batch": _bool,
    "check_batches": _positive_int(1),
    "metric_samples": _optional_samples,
    "prune": _prune,
}
