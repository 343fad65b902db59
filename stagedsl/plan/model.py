"""The `Plan`: everything the engine will do, resolved and plain.

A `Plan` is what `compile_plan(spec, registry)` returns and the only thing the engine
reads. It is pure data: frozen attrs classes of strings, numbers, tuples and dicts,
JSON-serialisable (`to_json` / `from_json`) with a stable `hash`. Durations are step
counts from each stage's own start; selectors are concrete parameter names.
"""

from __future__ import annotations

import json
from typing import Any, Literal, Optional, Union

import attrs

from stagedsl.errors import PlanError, Problem

PLAN_FORMAT = 1
DERIVED_KEYS = ("hash", "stage_hashes")
"""Keys `Plan.to_json` adds that are computed from the plan, not part of it."""


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

    kind: Literal["sum", "blend"]
    terms: tuple[LossTerm, ...]
    alpha: Optional[float] = None


@attrs.frozen
class InitPlan:
    """Where a stage's weights come from before it trains."""

    source: Literal["stage", "path"]
    stage: Optional[str] = None
    which: Literal["best", "last"] = "best"
    path: Optional[str] = None  # a file path or glob (newest match wins)
    strict: bool = True
    strip_prefix: Optional[str] = None  # removed from every key of the file that has it
    rename: dict = attrs.field(factory=dict)  # old key (or module prefix) -> new, after strip_prefix
    add_prefix: Optional[str] = None  # put before every key, after rename
    digest: Optional[str] = None  # sha256 of the file `path` named when the plan was compiled (None: no file yet)


@attrs.frozen
class GatePlan:
    """A condition over metrics checked after a stage (or at each evaluation)."""

    when: str
    expr: dict
    metrics: tuple[str, ...]
    on_fail: Literal["stop", "retry", "goto", "warn"]
    goto: Optional[str] = None
    max_retries: int = 1
    check: Literal["end", "eval"] = "end"


@attrs.frozen
class EvalPlan:
    """When a stage evaluates and which metric decides its best checkpoint."""

    every: Optional[int]  # steps between evaluations; None = only at the stage's end
    monitor: str = "val/loss"
    mode: Literal["min", "max"] = "min"


@attrs.frozen
class EarlyStopPlan:
    """Stop a stage when `monitor` has not improved by `min_delta` for `patience` evaluations."""

    monitor: str
    mode: Literal["min", "max"]
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
    trainable: tuple[str, ...]  # every parameter the stage trains, in model order
    frozen: tuple[str, ...]  # every other parameter
    frozen_norm: Literal["eval", "train"]  # "eval": norm layers whose parameters are all frozen stay in eval mode
    groups: tuple[GroupPlan, ...]  # the optimizer's groups, named: each trainable parameter in exactly one
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
    on_nonfinite: Literal["stop", "skip"] = "stop"
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
    sizes_from: Optional[str] = None  # "built": the dataset (no `sizes` function) was built once while planning; "live": handed over


@attrs.frozen
class RunPlan:
    """Run-wide settings."""

    name: str
    seed: int
    device: str
    precision: Literal["32", "16-mixed", "bf16-mixed"]
    out: str
    compile: bool = False
    channels_last: bool = False
    threads: Union[int, Literal["auto"], None] = None  # "auto": `engine.threads.choose_threads` decides; None: torch's default


@attrs.frozen
class PrunePlan:
    """L1 unstructured pruning of Linear/Conv weights after export."""

    amount: float = 0.3  # fraction of each weight tensor's entries zeroed


@attrs.frozen
class ExportPlan:
    """What `staged run` exports at the end (and `staged export`'s defaults): the spec's ``[export]``."""

    formats: tuple[str, ...] = ("onnx", "onnx-fp16", "package")
    stage: Optional[str] = None  # None = the last stage with a checkpoint
    which: Literal["best", "last"] = "best"
    opset: int = 18
    atol: float = 1e-4
    rtol: float = 1e-4
    fp16_atol: float = 1e-2  # relative to the output's scale
    fp16_rtol: float = 1e-2
    fp16_min_agreement: float = 0.99  # classifiers: share of rows where fp16 picks PyTorch's class
    fp16_metric_tol: float = 0.01  # classifiers: largest change of each task metric
    keep_io_types: bool = True
    check_batches: int = 4
    prune: Optional[PrunePlan] = None
    dynamic_batch: bool = True
    metric_samples: Optional[int] = None
    exporters: dict = attrs.field(factory=dict)  # registered exporter -> its arguments

    @classmethod
    def from_spec(cls, export: Any) -> "ExportPlan":
        """The plan data of a checked `stagedsl.spec.model.ExportSpec`."""
        fields = {name: getattr(export, name) for name in attrs.fields_dict(cls)}
        fields["formats"] = tuple(export.formats)
        fields["prune"] = PrunePlan(export.prune.amount) if export.prune is not None else None
        fields["exporters"] = {name: dict(args) for name, args in export.exporters.items()}
        return cls(**fields)


@attrs.frozen
class DistributedStagePlan:
    """How one stage runs under DistributedDataParallel (decided by `stagedsl.plan.distributed`)."""

    name: str
    find_unused: bool  # DDP's find_unused_parameters: only when a trainable parameter has no path to the output
    unused: tuple[str, ...] = ()  # the trainable parameters the graph check found without one
    check: str = "traced"  # "traced" (a forward on the meta device), or why the check could not run


@attrs.frozen
class DistributedPlan:
    """The run as `world_size` processes (torchrun, DDP); ``data.batch_size`` is each process's batch."""

    world_size: int
    global_batch: int  # data.batch_size x world_size: what one optimizer step sees
    stages: tuple[DistributedStagePlan, ...] = ()


@attrs.frozen
class Plan:
    """The compiled, resolved training plan. The engine's only input."""

    run: RunPlan
    model: PieceRef
    data: DataPlan
    stages: tuple[StagePlan, ...]
    callbacks: tuple[PieceRef, ...] = ()
    export: Optional[ExportPlan] = None
    parameters: dict = attrs.field(factory=dict)  # parameter name -> numel, registration order
    warnings: tuple[dict, ...] = ()
    spec_file: Optional[str] = None
    distributed: Optional[DistributedPlan] = None  # None: one process
    format: int = PLAN_FORMAT
    root: Optional[str] = None  # the spec's folder: modules named by import path ("pkg.module:attr") are found there too

    def __attrs_post_init__(self) -> None:
        problems = inconsistencies(self)
        if problems:
            raise PlanError([Problem(code="E066", message=f"the plan is inconsistent: {text}",
                                     hint="a Plan is what compile_plan makes; build one by hand only with every field resolved")
                             for text in problems[:5]])

    def stage(self, name: str) -> StagePlan:
        """The stage called `name`."""
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(name)

    @property
    def world_size(self) -> int:
        """How many processes the plan runs as (1 without `distributed`)."""
        return self.distributed.world_size if self.distributed is not None else 1

    def to_dict(self) -> dict[str, Any]:
        """The plan as plain JSON-ready data (a one-process plan has no ``distributed`` key)."""
        data = _plain(attrs.asdict(self))
        if data.get("distributed") is None:
            data.pop("distributed", None)
        return data

    def to_json(self, *, indent: Optional[int] = 2) -> str:
        """The plan as JSON text, with its hash and every stage's hash."""
        data = self.to_dict()
        data["hash"] = self.hash
        data["stage_hashes"] = self.stage_hashes
        return json.dumps(data, indent=indent, sort_keys=False)

    @property
    def stage_hashes(self) -> dict[str, str]:
        """Each stage's content hash (`stagedsl.plan.hashing`): equal hashes, equal outcomes."""
        from stagedsl.plan.hashing import stage_hashes

        return stage_hashes(self)

    @property
    def hash(self) -> str:
        """A stable hash of what the plan makes the engine do (warnings and paths excluded)."""
        from stagedsl.plan.hashing import digest

        data = self.to_dict()
        for key in ("warnings", "spec_file", "root"):
            data.pop(key, None)
        return digest(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Plan":
        """Rebuild a plan from `to_dict` / `to_json` output, strictly: no unknown key, no value of
        another type (``"4"`` is not 4), no choice outside its options (a `PlanError`, E065)."""
        from stagedsl.plan.convert import structure_plan

        return structure_plan({k: v for k, v in data.items() if k not in DERIVED_KEYS})

    @classmethod
    def from_json(cls, text: str) -> "Plan":
        """Rebuild a plan from JSON text."""
        return cls.from_dict(json.loads(text))


def inconsistencies(plan: Plan) -> list[str]:
    """What contradicts itself in `plan`: its run and stage names are valid names (`stagedsl.spec.names`),
    each stage trains and freezes every parameter exactly once, and its named groups hold each
    trainable parameter exactly once (and nothing else)."""
    from stagedsl.spec.names import name_problem

    out = [problem[0] for problem in [name_problem(plan.run.name, "run")] if problem]
    every = set(plan.parameters)
    for stage in plan.stages:
        problem = name_problem(stage.name, "stage")
        if problem:
            out.append(problem[0])
        trainable, frozen = set(stage.trainable), set(stage.frozen)
        if trainable & frozen:
            out.append(f"stage `{stage.name}` both trains and freezes `{min(trainable & frozen)}`")
        if every and (len(trainable) + len(frozen) != len(every) or not (trainable | frozen) == every):
            odd = min(((trainable | frozen) ^ every) or trainable & frozen)
            out.append(f"stage `{stage.name}` does not place parameter `{odd}` as the model has it (trained or frozen)")
        names = [group.name for group in stage.groups]
        if len(set(names)) != len(names):
            out.append(f"stage `{stage.name}` has two groups named `{next(n for n in names if names.count(n) > 1)}`")
        grouped: set[str] = set()
        count = 0
        for group in stage.groups:
            grouped.update(group.params)
            count += len(group.params)
        if grouped != trainable or count != len(trainable):
            extra = sorted(grouped - trainable)
            lacking = sorted(trainable - grouped)
            what = (f"groups hold `{extra[0]}`, which is frozen" if extra else f"no group holds trainable `{lacking[0]}`" if lacking
                    else "a parameter is in two groups")
            out.append(f"stage `{stage.name}`: {what}")
    distributed = plan.distributed
    if distributed is not None:
        if distributed.world_size < 2:
            out.append(f"a distributed plan runs as 2 or more processes, not {distributed.world_size}")
        if distributed.global_batch != plan.data.batch_size * distributed.world_size:
            out.append(f"the global batch {distributed.global_batch} is not the batch {plan.data.batch_size} "
                       f"x {distributed.world_size} processes")
        if [s.name for s in distributed.stages] != [s.name for s in plan.stages]:
            out.append("the distributed plan's stages are not the plan's stages")
    return out


def _plain(value: Any) -> Any:
    """Tuples as lists, all the way down (what JSON holds)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
