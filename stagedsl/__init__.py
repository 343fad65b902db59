"""stagedsl: declarative, plugin-based PyTorch training in stages.

The public API. Light names are imported eagerly; anything that needs torch is loaded
on first access, so ``import stagedsl`` (and ``staged validate``) stays instant.
"""

from __future__ import annotations

import importlib
from typing import Any

from stagedsl.data import DataSplits, TensorSplit
from stagedsl.errors import (
    CheckpointError,
    ExportError,
    GateStopped,
    PlanError,
    PluginError,
    Problem,
    RunError,
    SpecError,
    StagedError,
    UsageError,
    did_you_mean,
)
from stagedsl.registry import Entry, Registry, get_registry, hookimpl, set_registry
from stagedsl.spec.durations import Duration, Steps, parse_duration

__version__ = "0.1.0"

_LAZY = {
    "load_spec": "stagedsl.spec.loader",
    "Spec": "stagedsl.spec.model",
    "compile_plan": "stagedsl.plan.compile",
    "Plan": "stagedsl.plan.model",
    "run_plan": "stagedsl.engine.runner",
    "resume_run": "stagedsl.api",
    "run": "stagedsl.api",
    "ModuleInfo": "stagedsl.plan.modules",
    "Callback": "stagedsl.engine.events",
    "Event": "stagedsl.engine.events",
    "RunState": "stagedsl.engine.run_state",
    "load_package": "stagedsl.export.package",
    "export_run": "stagedsl.export.runner",
    "evaluate_gate": "stagedsl.spec.gates",
    "EnsembleTask": "stagedsl.ensemble.task",
    "import_optional": "stagedsl.extras",
    "run_matrix": "stagedsl.matrix.runner",
    "resume_matrix": "stagedsl.matrix.runner",
    "build_ensembles": "stagedsl.ensemble.build",
    "evaluate_run": "stagedsl.eval.runs",
}


def __getattr__(name: str) -> Any:
    if name == "plan":  # the plan package, which is callable: stagedsl.plan(spec, ...) is stagedsl.api.plan
        return importlib.import_module("stagedsl.plan")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'stagedsl' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "CheckpointError", "DataSplits", "Duration", "Entry", "ExportError", "GateStopped", "PlanError",
    "PluginError", "Problem", "Registry", "RunError", "SpecError", "StagedError", "Steps", "TensorSplit",
    "UsageError", "did_you_mean", "get_registry", "hookimpl", "parse_duration", "plan", "set_registry", *sorted(_LAZY),
]
