"""The `Plan`: everything the engine will do, resolved and plain.

A `Plan` is what `compile_plan(spec, registry)` returns and the only thing the engine
reads. It is pure data: frozen attrs classes of strings, numbers, tuples and dicts,
JSON-serialisable (`to_json` / `from_json`) with a stable `hash`. Durations are step
counts from each stage's own start; selectors are concrete parameter names.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Optional, Union

import attrs
import cattrs

PLAN_FORMAT = 1


@attrs.frozen
class PieceRef:
    """A registered piece by name, with its (resolved) arguments."""

    name: str
    args: dict = attrs.field(factory=dict)


@attrs.frozen
class GroupPlan:
    """One optimizer parameter group: trainable parameter names with their LR and decay."""

    name: str
    params: tuple[str, ...]
    lr: float
    weight_decay: Optional[float] = None


@attrs.frozen
class LossTerm:
    """One loss in a stage's objective, with its weight."""

    name: str
    args: dict = attrs.field(factory=dict)
    weight: float = 1.0


@attrs.frozen
class LossPlan:
    """A stage's objective: `sum` of weighted terms, or `blend` (1-alpha)*a + alpha*b."""

    kind: str  # "sum" | "blend"
    terms: tuple[LossTerm, ...]
    alpha: Optional[float] = None


@attrs.frozen
class InitPlan:
    """Where a stage's weights come from before it trains."""

    source: str  # "stage" | "path"
    stage: Optional[str] = None
    which: str = "best"  # "best" | "last"
    path: Optional[str] = None  # a file path or glob (newest match wins)
    strict: bool = True


@attrs.frozen
class GatePlan:
    """A condition over metrics checked after a stage (or at each evaluation)."""

    when: str
    expr: dict
    metrics: tuple[str, ...]
    on_fail: str  # "stop" | "retry" | "goto" | "warn"
    goto: Optional[str] = None
    max_retries: int = 1
    check: str = "end"  # "end" | "eval"


@attrs.frozen
class EvalPlan:
    """When a stage evaluates and which metric decides its best checkpoint."""

    every: Optional[int]  # steps between evaluations; None = only at the stage's end
    monitor: str = "val/loss"
    mode: str = "min"


@attrs.frozen
class EarlyStopPlan:
    """Stop a stage when `monitor` has not improved by `min_delta` for `patience` evaluations."""

    monitor: str
    mode: str
    patience: int
    min_delta: float = 0.0


@attrs.frozen
class CheckpointPlan:
    """How often a stage saves resumable state, and how many to keep."""

    every: Optional[int] = None  # steps; None = at evaluations and stage end only
    keep_last: int = 2


@attrs.frozen
class StagePlan:
    """One stage, fully resolved."""

    index: int
    name: str
    steps: int
    epochs: Optional[float]
    lr: float
    trainable: tuple[str, ...]
    frozen: tuple[str, ...]
    frozen_norm: str  # "eval": norm layers whose parameters are all frozen stay in eval mode
    groups: tuple[GroupPlan, ...]
    optimizer: PieceRef
    scheduler: PieceRef
    scheduler_monitor: Optional[str]
    loss: LossPlan
    metrics: tuple[PieceRef, ...]
    eval: EvalPlan
    early_stop: Optional[EarlyStopPlan] = None
    init: Optional[InitPlan] = None
    gate: Optional[GatePlan] = None
    grad_clip: Optional[float] = None
    accumulate: int = 1
    log_every: int = 50
    checkpoint: CheckpointPlan = CheckpointPlan()
    on_nonfinite: str = "stop"  # "stop" | "skip"
    max_nonfinite: int = 10
    modules: dict = attrs.field(factory=dict)  # top-level module -> [trainable numel, total numel]


@attrs.frozen
class DataPlan:
    """The dataset piece and how it is batched."""

    name: str
    args: dict
    batch_size: int
    eval_batch_size: int
    workers: int = 0
    shuffle: bool = True
    drop_last: bool = False
    pin_memory: Optional[bool] = None  # None = when the device is CUDA
    sizes: dict = attrs.field(factory=dict)  # split -> length, when known without loading
    batches_per_epoch: Optional[int] = None


@attrs.frozen
class RunPlan:
    """Run-wide settings."""

    name: str
    seed: int
    device: str
    precision: str
    out: str
    compile: bool = False
    channels_last: bool = False
    threads: Union[int, str, None] = None  # "auto" (`engine.threads.choose_threads` decides), a count, or None: torch's default


@attrs.frozen
class Plan:
    """The compiled, resolved training plan. The engine's only input."""

    run: RunPlan
    model: PieceRef
    data: DataPlan
    stages: tuple[StagePlan, ...]
    callbacks: tuple[PieceRef, ...] = ()
    export: Optional[dict] = None
    parameters: dict = attrs.field(factory=dict)  # parameter name -> numel, registration order
    warnings: tuple[dict, ...] = ()
    spec_file: Optional[str] = None
    format: int = PLAN_FORMAT

    def stage(self, name: str) -> StagePlan:
        """The stage called `name`."""
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """The plan as plain JSON-ready data."""
        return _converter.unstructure(self)

    def to_json(self, *, indent: Optional[int] = 2) -> str:
        """The plan as JSON text, with its hash."""
        data = self.to_dict()
        data["hash"] = self.hash
        return json.dumps(data, indent=indent, sort_keys=False)

    @property
    def hash(self) -> str:
        """A stable hash of what the plan makes the engine do (warnings and paths excluded)."""
        data = self.to_dict()
        for key in ("warnings", "spec_file"):
            data.pop(key, None)
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Plan":
        """Rebuild a plan from `to_dict` / `to_json` output."""
        data = {k: v for k, v in data.items() if k != "hash"}
        return _converter.structure(data, cls)

    @classmethod
    def from_json(cls, text: str) -> "Plan":
        """Rebuild a plan from JSON text."""
        return cls.from_dict(json.loads(text))


_converter = cattrs.Converter()
_converter.register_structure_hook(Union[int, str, None], lambda value, _: value)  # RunPlan.threads, as written
