"""`compile_plan(spec, registry) -> Plan`: resolve names, selectors, groups and durations.

The model is built on the ``meta`` device (no memory, no weights) so selectors and
groups resolve to concrete parameter names; the dataset's `sizes` hook turns epochs
into steps without loading data. Every problem is collected and raised as one
`PlanError`; lints become warnings inside the `Plan`.
"""

from __future__ import annotations

import contextlib
import math
import typing
from typing import Any, Optional

import attrs

from stagedsl.errors import PlanError, Problem
from stagedsl.plan.lint import lint_plan
from stagedsl.plan.model import (
    CheckpointPlan,
    DataPlan,
    EarlyStopPlan,
    EvalPlan,
    GatePlan,
    GroupPlan,
    InitPlan,
    LossPlan,
    LossTerm,
    PieceRef,
    Plan,
    RunPlan,
    StagePlan,
)
from stagedsl.plan.selectors import select
from stagedsl.registry import Registry, get_registry
from stagedsl.spec.check import SCHEDULER_MONITOR_KEY
from stagedsl.spec.durations import DurationError, Steps, parse_duration
from stagedsl.spec.gates import gate_metrics, parse_gate
from stagedsl.spec.locate import SourceMap, format_path
from stagedsl.spec.model import Spec, StageSpec


class _Problems:
    def __init__(self, spec: Spec):
        self.items: list[Problem] = []
        names = tuple(stage.name for stage in spec.stages)
        self.sources = SourceMap(list(spec.sources), profile=spec.profile, stage_names=names) if spec.sources else None
        self.file = spec.file

    def add(self, path: tuple, message: str, hint: Optional[str], code: str) -> None:
        file, line, column = self.sources.locate(list(path)) if self.sources else (self.file, None, None)
        self.items.append(Problem(code, message, file=file, path=format_path(list(path)), line=line, column=column, hint=hint))


def build_meta_model(spec: Spec, registry: Registry) -> Any:
    """The spec's model, built on the meta device."""
    import torch

    factory = registry.get("models", spec.model.use).factory
    with torch.device("meta"), _skip_weight_init():
        return factory(**spec.model.args)


@contextlib.contextmanager
def _skip_weight_init():
    """Make `torch.nn.init` no-ops while building on meta: there are no values to fill, and
    initialising 10k tensors one dispatch at a time dominates compile time otherwise."""
    import torch.nn.init as init

    names = [n for n in dir(init) if n.endswith("_") and not n.startswith("_") and callable(getattr(init, n))]
    saved = {n: getattr(init, n) for n in names}

    def keep(tensor, *args, **kwargs):
        return tensor

    try:
        for name in names:
            setattr(init, name, keep)
        yield
    finally:
        for name, function in saved.items():
            setattr(init, name, function)


def compile_plan(spec: Spec, registry: Optional[Registry] = None) -> Plan:
    """Compile a checked `Spec` into a `Plan`; raises `PlanError` listing every problem."""
    registry = registry or get_registry()
    problems = _Problems(spec)
    try:
        model = build_meta_model(spec, registry)
    except Exception as exc:  # a factory rejecting its arguments is the user's to fix
        problems.add(("model",), f"model `{spec.model.use}` could not be built: {type(exc).__name__}: {exc}", "check the model's arguments", "E025")
        raise PlanError(problems.items) from None
    parameters = {name: int(p.numel()) for name, p in model.named_parameters()}
    names = list(parameters)
    data = _data_plan(spec, registry, problems)
    stages = []
    for index, stage in enumerate(spec.stages):
        planned = _stage_plan(spec, stage, index, names, parameters, data, registry, problems)
        if planned is not None:
            stages.append(planned)
    if problems.items:
        raise PlanError(problems.items)
    run = spec.run
    plan = Plan(
        run=RunPlan(run.name, run.seed, run.device, run.precision, run.out or f"runs/{run.name}", run.compile, run.channels_last, run.threads),
        model=PieceRef(spec.model.use, dict(spec.model.args)),
        data=data,
        stages=tuple(stages),
        callbacks=tuple(PieceRef(c.use, dict(c.args)) for c in spec.callbacks),
        export=_export_dict(spec),
        parameters=parameters,
        spec_file=spec.file,
    )
    located = []
    for warning in lint_plan(plan, registry):
        file, line, column = problems.sources.locate(warning.path) if problems.sources and warning.path else (spec.file, None, None)
        located.append(attrs.asdict(warning.located(file, line, column)))
    return attrs.evolve(plan, warnings=tuple(located))


def _export_dict(spec: Spec) -> Optional[dict]:
    if spec.export is None:
        return None
    data = attrs.asdict(spec.export)
    data["formats"] = list(data["formats"])
    return data


def _data_plan(spec: Spec, registry: Registry, problems: _Problems) -> DataPlan:
    section = spec.data
    entry = registry.get("datasets", section.use)
    sizes: dict = {}
    sizes_of = entry.meta.get("sizes")
    if sizes_of is not None:
        try:
            sizes = {k: int(v) for k, v in sizes_of(**section.args).items() if v is not None}
        except Exception as exc:
            problems.add(("data",), f"dataset `{section.use}` could not report its size: {type(exc).__name__}: {exc}", "check the dataset's arguments (paths, array names)", "E026")
    batches = None
    if "train" in sizes:
        count = sizes["train"]
        batches = count // section.batch_size if section.drop_last else math.ceil(count / section.batch_size)
        if batches == 0:
            problems.add(("data", "batch_size"), f"the training split has {count} samples, fewer than one batch of {section.batch_size}", "lower batch_size or set drop_last = false", "E027")
    return DataPlan(
        name=section.use,
        args=dict(section.args),
        batch_size=section.batch_size,
        eval_batch_size=section.eval_batch_size or section.batch_size,
        workers=section.workers,
        shuffle=section.shuffle,
        drop_last=section.drop_last,
        pin_memory=section.pin_memory,
        sizes=sizes,
        batches_per_epoch=batches,
    )


def _steps(value: Any, batches: Optional[int], accumulate: int) -> int:
    duration = parse_duration(value)
    if duration.unit == "epochs":
        if batches is None:
            raise DurationError("durations in epochs need the dataset's length, which this dataset does not report; use steps")
        steps = duration.value * batches / accumulate
        if not math.isfinite(steps):
            raise DurationError(f"{duration.value:g} epochs is too long: it overflows a step count")
        return max(1, math.ceil(steps - 1e-9))
    return int(duration.value)


def _stage_plan(spec: Spec, stage: StageSpec, index: int, names: list[str], parameters: dict, data: DataPlan,
                registry: Registry, problems: _Problems) -> Optional[StagePlan]:
    at = ("stage", index)
    before = len(problems.items)
    batches = data.batches_per_epoch

    def steps_of(value: Any, path: tuple) -> Optional[int]:
        try:
            return _steps(value, batches, stage.accumulate)
        except DurationError as exc:
            problems.add(path, str(exc), None, "E064")
            return None

    steps = stage.steps if stage.steps is not None else steps_of(f"{stage.epochs} epochs", at + ("epochs",))
    epochs = (steps * stage.accumulate / batches) if (steps is not None and batches) else None

    # trainable set: `train` selectors (default all), minus `freeze` selectors
    trainable = set(names)
    if stage.train:
        trainable = set()
        for j, matched, problem in select(stage.train, names, registry):
            if problem:
                problems.add(at + ("train", j), str(problem), problem.hint, problem.code)
            trainable.update(matched)
    for j, matched, problem in select(stage.freeze, names, registry):
        if problem:
            problems.add(at + ("freeze", j), str(problem), problem.hint, problem.code)
        trainable.difference_update(matched)
    trainable_names = tuple(n for n in names if n in trainable)
    frozen_names = tuple(n for n in names if n not in trainable)
    if not trainable_names and len(problems.items) == before:
        problems.add(at, f"stage `{stage.name}` trains nothing: every parameter is frozen", "loosen `freeze` or widen `train`", "E061")

    groups = _groups(stage, at, names, trainable_names, registry, problems)
    scheduler, monitor = _scheduler(stage, at, steps, batches, registry, problems)
    optimizer = PieceRef(stage.optimizer.use, dict(stage.optimizer.args))
    loss = LossPlan(stage.loss.kind, tuple(LossTerm(t.piece.use, dict(t.piece.args), t.weight) for t in stage.loss.terms), stage.loss.alpha)
    metrics = tuple(PieceRef(m.use, dict(m.args)) for m in stage.metrics)

    eval_every = steps_of(stage.eval.every, at + ("eval", "every")) if stage.eval.every is not None else None
    log_every = steps_of(stage.log_every, at + ("log_every",)) or 1
    checkpoint_every = steps_of(stage.checkpoint.every, at + ("checkpoint", "every")) if stage.checkpoint.every is not None else None
    mode = stage.eval.mode or _default_mode(stage.eval.monitor, registry)
    early = None
    if stage.early_stop is not None:
        monitor_name = stage.early_stop.monitor or stage.eval.monitor
        early = EarlyStopPlan(monitor_name, stage.early_stop.mode or _default_mode(monitor_name, registry), stage.early_stop.patience, stage.early_stop.min_delta)
    init = None
    if stage.init is not None:
        source = "stage" if stage.init.stage is not None else "path"
        init = InitPlan(source, stage.init.stage, stage.init.which, stage.init.path, stage.init.strict)
    gate = None
    if stage.gate is not None:
        expr = parse_gate(stage.gate.when)
        gate = GatePlan(stage.gate.when, expr, tuple(gate_metrics(expr)), stage.gate.on_fail, stage.gate.goto, stage.gate.max_retries, stage.gate.check)
    modules: dict[str, list[int]] = {}
    trainable_set = set(trainable_names)
    for name, numel in parameters.items():
        counts = modules.setdefault(name.split(".")[0], [0, 0])
        counts[1] += numel
        if name in trainable_set:
            counts[0] += numel
    if len(problems.items) > before or steps is None:
        return None
    return StagePlan(
        index=index, name=stage.name, steps=steps, epochs=epochs, lr=float(stage.lr),
        trainable=trainable_names, frozen=frozen_names, frozen_norm=stage.frozen_norm, groups=groups,
        optimizer=optimizer, scheduler=scheduler, scheduler_monitor=monitor, loss=loss, metrics=metrics,
        eval=EvalPlan(eval_every, stage.eval.monitor, mode), early_stop=early, init=init, gate=gate,
        grad_clip=stage.grad_clip, accumulate=stage.accumulate, log_every=log_every,
        checkpoint=CheckpointPlan(checkpoint_every, stage.checkpoint.keep_last),
        on_nonfinite=stage.on_nonfinite, max_nonfinite=stage.max_nonfinite, modules=modules,
    )


def _default_mode(metric: str, registry: Registry) -> str:
    name = metric.split("/", 1)[-1]
    if name == "loss":
        return "min"
    entry = registry.find("metrics", name)
    return entry.meta.get("mode", "max") if entry else "min"


def _groups(stage: StageSpec, at: tuple, names: list[str], trainable: tuple, registry: Registry, problems: _Problems) -> tuple:
    trainable_set = set(trainable)
    owner: dict[str, str] = {}
    groups = []
    for g, group in enumerate(stage.groups):
        chosen: set[str] = set()
        for j, matched, problem in select(group.params, names, registry):
            if problem:
                problems.add(at + ("groups", g, "params", j), str(problem), problem.hint, problem.code)
            chosen.update(matched)
        overlap = next((name for name in names if name in chosen and name in owner), None)
        if overlap is not None:
            problems.add(at + ("groups", g, "params"), f"groups `{owner[overlap]}` and `{group.name}` overlap (e.g. `{overlap}`)",
                         "a parameter can be in one group only; narrow one of the globs", "E062")
        for name in chosen:
            owner.setdefault(name, group.name)
        lr = group.lr if group.lr is not None else stage.lr * (group.lr_scale if group.lr_scale is not None else 1.0)
        params = tuple(n for n in names if n in trainable_set and n in chosen)
        groups.append(GroupPlan(group.name, params, float(lr), group.weight_decay))
    rest = tuple(n for n in trainable if n not in owner)
    if rest or not groups:
        groups.insert(0, GroupPlan("default", rest, float(stage.lr), None))
    return tuple(groups)


def _is_steps(annotation: Any) -> tuple[bool, bool]:
    """(is a duration, is a list of durations)."""
    if annotation is Steps:
        return True, False
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (list, tuple, typing.Sequence) and args and args[0] is Steps:
        return True, True
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        for option in args:
            found = _is_steps(option)
            if found[0]:
                return found
    return False, False


def _scheduler(stage: StageSpec, at: tuple, steps: Optional[int], batches: Optional[int], registry: Registry,
               problems: _Problems) -> tuple[PieceRef, Optional[str]]:
    piece = stage.scheduler
    entry = registry.get("schedulers", piece.use)
    args = dict(piece.args)
    monitor = args.pop(SCHEDULER_MONITOR_KEY, None) if entry.meta.get("monitored") else None
    try:
        parameters = entry.signature().parameters
    except (TypeError, ValueError):
        parameters = {}
    for name, value in list(args.items()):
        if name not in parameters:
            continue
        is_duration, is_list = _is_steps(parameters[name].annotation)
        if not is_duration:
            continue
        values = value if is_list else [value]
        converted = []
        for k, item in enumerate(values):
            path = at + ("scheduler", name) + ((k,) if is_list else ())
            try:
                count = _steps(item, batches, stage.accumulate)
            except DurationError as exc:
                problems.add(path, str(exc), None, "E064")
                continue
            if steps is not None and count > steps:
                problems.add(path, f"`{name}` at step {count} ({item!r}) is past the end of stage `{stage.name}` ({steps} steps)",
                             "durations count from the stage's own start", "E063")
            converted.append(count)
        args[name] = converted if is_list else (converted[0] if converted else 0)
    return PieceRef(piece.use, args), monitor


__all__ = ["build_meta_model", "compile_plan"]
