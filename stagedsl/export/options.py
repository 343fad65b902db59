"""The export settings: the plan's ``[export]`` section with the caller's overrides, checked.

`resolve_options(plan.export, overrides, ...)` merges the plan's `ExportPlan` with the
caller's overrides (keyword arguments of `export_run`, CLI flags) and returns an
`ExportPlan`. The overrides are judged by the very rules the spec's ``[export]`` is
(`stagedsl.spec.convert` for keys and types, `stagedsl.spec.check.check_export` for
values): every problem at once, as `UsageError`s (E530) with a did-you-mean.

`override_options` reads ``--set export.key=value`` strings and `profile_options` the
``[export]`` section of the run's spec file under a profile, so a finished run is
exported again with other settings without retraining.

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

from typing import Any, Mapping, Optional, Sequence, Union

import attrs

from stagedsl.errors import Problem, UsageError
from stagedsl.plan.model import ExportPlan, PrunePlan

ONNX = "onnx"
ONNX_FP16 = "onnx-fp16"
PACKAGE = "package"
BUILTIN_FORMATS: tuple[str, ...] = (ONNX, ONNX_FP16, PACKAGE)
"""Formats stagedsl writes itself, in the order they are produced. Any other format
name is looked up among the registered ``exporters``."""

ExportOptions = ExportPlan
"""The resolved export settings are the plan's typed ``[export]`` section."""
PruneOptions = PrunePlan


def resolve_options(*sections: Union[ExportPlan, Mapping[str, Any], None], registry: Any = None) -> ExportPlan:
    """Merge sections (later wins, None values ignored), check every key and value, return an `ExportPlan`.

    Besides the spec's spellings, a caller may write ``formats`` as ``"onnx,package"``,
    ``prune`` as true / false / an amount, and a registered exporter's arguments as a
    table named after its format. With a `registry`, every format must be known.
    """
    from stagedsl.spec.check import check_export
    from stagedsl.spec.convert import converter, flatten_errors
    from stagedsl.spec.model import ExportSpec

    merged = _merge(sections)
    rows: list[tuple] = []
    accepted: dict[str, Any] = {}
    for key, value in merged.items():  # key by key, so every problem is found at once
        try:
            converter.structure({key: value}, ExportSpec)
            accepted[key] = value
        except Exception as exc:
            rows += flatten_errors(exc, ("export",))
    spec = converter.structure(accepted, ExportSpec)
    rows += check_export(spec, None, registry)
    problems = [Problem(code="E530", message=message, path=".".join(str(p) for p in path), hint=hint) for path, message, hint, _ in rows]
    if problems:
        raise UsageError(problems)
    return ExportPlan.from_spec(spec)


def override_options(overrides: Sequence[str]) -> dict[str, Any]:
    """``["export.fp16_atol=0.05", "export.prune.amount=0.3"]`` -> ``{"fp16_atol": 0.05, "prune": {"amount": 0.3}}``.

    Values are TOML, as for ``staged run --set``; a key outside ``export.`` is a `UsageError` (E530).
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


def profile_options(spec_file: Optional[str], profile: str, registry: Any = None) -> Optional[ExportPlan]:
    """The ``[export]`` section of the run's spec file under `profile` (None when it has none)."""
    from pathlib import Path

    if not spec_file or not Path(spec_file).is_file():
        raise UsageError([Problem(code="E530", message=f"--profile {profile}: the run's spec file `{spec_file}` is not here",
                                  path="--profile", hint="run the export from the folder the run was started in, or use --set export.<key>=...")])
    from stagedsl.spec.loader import load_spec

    loaded = load_spec(spec_file, profile=profile, registry=registry)
    return ExportPlan.from_spec(loaded.export) if loaded.export is not None else None


def _merge(sections: tuple) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for section in sections:
        if isinstance(section, ExportPlan):
            section = {k: v for k, v in attrs.asdict(section).items()}
        for key, value in (section or {}).items():
            if value is not None:
                merged[key] = value
    if isinstance(merged.get("formats"), str):
        merged["formats"] = [part.strip() for part in merged["formats"].split(",") if part.strip()]
    if isinstance(merged.get("formats"), tuple):
        merged["formats"] = list(merged["formats"])
    prune = merged.get("prune")
    if prune is False:
        del merged["prune"]
    elif prune is True:
        merged["prune"] = {}
    elif isinstance(prune, (int, float)) and not isinstance(prune, bool):
        merged["prune"] = {"amount": prune}
    exporters = dict(merged.get("exporters") or {})
    formats = merged.get("formats") or BUILTIN_FORMATS
    for key in [k for k, v in merged.items() if isinstance(v, Mapping) and k not in attrs.fields_dict(ExportPlan)]:
        if isinstance(formats, (list, tuple)) and key in formats:
            exporters[key] = dict(merged.pop(key))  # `[export.my_format]`: a registered exporter's arguments
    if exporters:
        merged["exporters"] = exporters
    return merged


__all__ = ["BUILTIN_FORMATS", "ExportOptions", "ONNX", "ONNX_FP16", "PACKAGE", "PruneOptions", "override_options",
           "profile_options", "resolve_options"]
