"""`compile_plan(spec, registry) -> Plan`: resolve names, selectors, groups and durations.

The model is built on the ``meta`` device (no memory, no weights) so selectors and
groups resolve to concrete parameter names; the dataset's `sizes` hook turns epochs
into steps without loading data. Every problem is collected and raised as one
`PlanError`; lints become warnings inside the `Plan`.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Optional

import attrs

from stagedsl.errors import PlanError, Problem, StagedError
from stagedsl.plan.groups import plan_groups
from stagedsl.plan.lint import lint_plan
from stagedsl.plan.model import (
    CheckpointPlan,
    DataPlan,
    EarlyStopPlan,
    EvalPlan,
    ExportPlan,
    GatePlan,
    InitPlan,
    LossPlan,
    LossTerm,
    PieceRef,
    Plan,
    RunPlan,
    StagePlan,
)
from stagedsl.plan.modules import ModuleTree
from stagedsl.plan.paths import anchored
from stagedsl.plan.pieces import check_stage_pieces, live_piece, split_sizes
from stagedsl.plan.selectors import select
from stagedsl.registry import Registry, get_registry
from stagedsl.registry.arguments import annotated_as
from stagedsl.registry.import_path import is_live
from stagedsl.spec.check import SCHEDULER_MONITOR_KEY
from stagedsl.spec.durations import Duration, DurationError, Steps, parse_duration
from stagedsl.spec.gates import gate_metrics, parse_gate
from stagedsl.spec.locate import SourceMap, format_path, parse_path, points_at_key
from stagedsl.spec.overrides import written_overrides
from stagedsl.spec.model import Piece, Spec, StageSpec


class _Problems:
    """The errors and warnings found while compiling, each located at its key path in the spec's
    text (or in the ``--set`` argument that wrote it)."""

    def __init__(self, spec: Spec):
        self.items: list[Problem] = []
        self.warnings: list[Problem] = []
        names = tuple(stage.name for stage in spec.stages)
        overrides = written_overrides(spec.overrides, spec.document or {})
        self.sources = SourceMap(list(spec.sources), profile=spec.profile, stage_names=names, overrides=overrides) if spec.sources else None
        self.file = spec.file

    def located(self, problem: Problem) -> Problem:
        """`problem` pointing at the value written at its key path (at the key, for a problem with the key)."""
        if self.sources is None or not problem.path:
            return attrs.evolve(problem, file=problem.file or self.file)
        where = self.sources.where(problem.path, on_key=points_at_key(problem.code, problem.message))
        return attrs.evolve(problem, **where.fields())

    def add(self, path: tuple, message: str, hint: Optional[str], code: str, severity: str = "error",
            trace: Optional[str] = None) -> None:
        problem = self.located(Problem(code, message, path=format_path(list(path)), hint=hint, severity=severity, trace=trace))
        (self.items if severity == "error" else self.warnings).append(problem)

    def extend(self, error: StagedError, at: Optional[tuple] = None) -> None:
        """Add an error's problems, each located at its key path in the spec's text (or at `at`)."""
        for problem in error.problems:
            path = at if at is not None and not problem.path else tuple(parse_path(problem.path or ""))
            self.add(path, problem.message, problem.hint, problem.code, trace=problem.trace)


MAX_PARAMETER_TENSORS = 100_000
"""A model may hold at most this many parameter tensors: the Plan lists each by name (the largest
published networks hold a few thousand), and a runaway `depth` is stopped while it is built."""


def build_meta_model(spec: Spec, registry: Registry) -> Any:
    """The spec's model, built on the meta device (a `PlanError` at ``model`` when its factory fails).

    Parameters are counted as they are registered: past ``run.max_parameters`` (or
    `MAX_PARAMETER_TENSORS` tensors) the build stops at once with E017, so a model with
    ``depth = 1000000`` is refused in a moment instead of filling the memory for minutes.
    """
    import torch

    budget = _ParameterBudget(spec.run.max_parameters, spec.model.use)
    handle = torch.nn.modules.module.register_module_parameter_registration_hook(budget.count)
    try:
        with torch.device("meta"), skip_weight_init(), _counting_copies(budget):
            return registry.build("models", spec.model.use, spec.model.args, at="model", phase="plan")
    finally:
        handle.remove()


@contextlib.contextmanager
def _counting_copies(budget: "_ParameterBudget"):
    """Count parameters made by ``copy.deepcopy`` too (``nn.TransformerEncoder`` clones its layer `depth` times
    before any of the copies is registered)."""
    from torch.nn import Parameter

    original = Parameter.__deepcopy__

    def deepcopy(parameter, memo):
        copied = original(parameter, memo)
        budget.count(None, "(a copy)", copied)
        return copied

    Parameter.__deepcopy__ = deepcopy
    try:
        yield
    finally:
        Parameter.__deepcopy__ = original


def _where(module: Any, name: str) -> str:
    return f"`{type(module).__name__}.{name}`" if module is not None else "copies of a layer"


class _ParameterBudget:
    """Counts the parameters a model registers while it is built; raises E017 past the budget."""

    def __init__(self, limit: int, model: str):
        self.limit, self.model = limit, model
        self.numel = 0
        self.tensors = 0

    def count(self, module: Any, name: str, parameter: Any) -> None:
        if parameter is None:
            return
        self.numel += int(parameter.numel())
        self.tensors += 1
        if self.numel > self.limit:
            self._refuse(f"more than {self.limit:,} parameters ({self.numel:,} by {_where(module, name)}, and counting)",
                         "model",
                         f"check its size arguments (depth, width, hidden); if it is meant to be this big, "
                         f"raise [run] max_parameters (now {self.limit:,})")
        if self.tensors > MAX_PARAMETER_TENSORS:
            self._refuse(f"more than {MAX_PARAMETER_TENSORS:,} parameter tensors ({self.numel:,} parameters so far)", "model",
                         "check its size arguments (depth, layers, blocks): a plan lists every parameter tensor by name")

    def _refuse(self, what: str, path: str, hint: str) -> None:  # noqa: D401 - raises
        raise PlanError([Problem(code="E017", message=f"model `{self.model}` has {what}: it was refused while being "
                                 "built on the meta device", path=path, hint=hint)])


@contextlib.contextmanager
def skip_weight_init():
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


def compile_plan(spec: Spec, registry: Optional[Registry] = None, *, model: Any = None, data: Any = None,
                 world_size: int = 1, build_pieces: bool = True) -> Plan:
    """Compile a checked `Spec` into a `Plan`; raises `PlanError` listing every problem.

    `model` (an ``nn.Module``) and `data` (`stagedsl.DataSplits`) are live objects taking the
    place of a ``[model]`` / ``[data]`` the spec names ``<live:...>`` (`stagedsl.plan`): the
    plan records their name and what was read from them (parameter names, split lengths).
    `world_size` > 1 compiles it for that many processes (torchrun / DDP): the spec's
    batch size is each process's, epochs count global batches, and each stage's DDP
    graph check is made (`stagedsl.plan.distributed`). `build_pieces` builds each stage's loss,
    metrics, optimizer and scheduler once so that one refusing its arguments is a located error
    before any compute (`stagedsl.plan.pieces`); False (``staged plan``'s dry run) builds the
    losses alone and leaves the rest to the run, which checks them before its first stage:
    building a torch optimizer imports torch._dynamo and a metric torchmetrics, ~1.5 s each.
    """
    registry = registry or get_registry()
    spec = anchored(spec, registry)
    problems = _Problems(spec)
    try:
        network = live_piece("models", spec.model.use, model) if is_live(spec.model.use) else build_meta_model(spec, registry)
    except StagedError as exc:  # a factory rejecting its arguments is the user's to fix
        problems.extend(exc, ("model",))
        raise PlanError(problems.items) from None
    parameters = {name: int(p.numel()) for name, p in network.named_parameters()}
    names = list(parameters)
    modules = ModuleTree(network, names)  # walked only if a strategy takes `modules`
    data_plan, sized = _data_plan(spec, registry, problems, data, world_size)
    stages = []
    for index, stage in enumerate(spec.stages):
        planned = _stage_plan(stage, index, names, modules, parameters, data_plan, sized, registry, problems)
        if planned is not None:
            stages.append(planned)
            check_stage_pieces(planned, registry, problems, losses_only=not build_pieces)
    if problems.items:
        raise PlanError(problems.items)
    run = spec.run
    plan = Plan(
        run=RunPlan(run.name, run.seed, run.device, run.precision, run.out_dir, run.compile, run.channels_last, run.threads),
        model=PieceRef(spec.model.use, dict(spec.model.args)),
        data=data_plan,
        stages=tuple(stages),
        callbacks=tuple(PieceRef(c.use, dict(c.args)) for c in spec.callbacks),
        export=ExportPlan.from_spec(spec.export) if spec.export is not None else None,
        parameters=parameters,
        spec_file=spec.file,
        root=spec.root,
    )
    if world_size > 1:
        from stagedsl.plan.distributed import distributed_plan

        plan = attrs.evolve(plan, distributed=distributed_plan(plan, registry, world_size, model=network, data=data))
    warnings = problems.warnings + [problems.located(warning) for warning in lint_plan(plan, registry)]
    return attrs.evolve(plan, warnings=tuple(attrs.asdict(warning, filter=lambda field, _: field.name != "trace") for warning in warnings))


def _data_plan(spec: Spec, registry: Registry, problems: _Problems, live: Any = None,
               world_size: int = 1) -> tuple[DataPlan, bool]:
    """The data plan, and whether the dataset could say how big it is (False after E026).

    An epoch is counted in global batches (each process's batch x `world_size`): each process
    sees ``ceil(n / world_size)`` samples an epoch, in batches of ``batch_size``."""
    section = spec.data
    sizes: dict = {}
    sized = True
    source = None
    if is_live(section.use):
        try:
            sizes, source = split_sizes(live_piece("datasets", section.use, live)), "live"
        except StagedError as exc:
            sized = False
            problems.extend(exc, ("data",))
    else:
        entry = registry.get("datasets", section.use)
        if entry.meta.sizes is not None:
            try:
                sizes = {k: int(v) for k, v in entry.meta.sizes(**section.args).items() if v is not None}
            except Exception as exc:
                sized = False
                problems.add(("data",), f"dataset `{section.use}` could not report its size: {type(exc).__name__}: {exc}", "check the dataset's arguments (paths, array names)", "E026")
        elif _counts_epochs(spec):  # no `sizes` function: build the data once to count it
            try:
                sizes, source = split_sizes(registry.build("datasets", section.use, section.args, at="data", phase="plan")), "built"
            except StagedError as exc:
                sized = False
                problems.extend(exc, ("data",))
    batches = None
    if "train" in sizes:
        count = sizes["train"]
        step = section.batch_size * world_size  # ceil(ceil(n / N) / B) = ceil(n / (N B)), floor likewise
        batches = count // step if section.drop_last else math.ceil(count / step)
        if batches == 0:
            what = f"one batch of {section.batch_size}" + (f" on each of {world_size} processes" if world_size > 1 else "")
            problems.add(("data", "batch_size"), f"the training split has {count} samples, fewer than {what}", "lower batch_size or set drop_last = false", "E027")
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
        sizes_from=source,
    ), sized


def _counts_epochs(spec: Spec) -> bool:
    """Whether any duration of the spec is written in epochs (so the training split's length is needed)."""
    def in_epochs(value: Any) -> bool:
        if isinstance(value, list):
            return any(in_epochs(v) for v in value)
        try:
            return isinstance(value, str) and parse_duration(value).unit == "epochs"
        except DurationError:
            return False

    for stage in spec.stages:
        durations = (stage.length, stage.eval.every, stage.log_every, stage.checkpoint.every)
        if any(d is not None and d.unit == "epochs" for d in durations):
            return True
        if stage.scheduler is not None and any(in_epochs(v) for v in stage.scheduler.args.values()):
            return True
    return False


def _stage_plan(stage: StageSpec, index: int, names: list[str], modules: tuple, parameters: dict, data: DataPlan, sized: bool,
                registry: Registry, problems: _Problems) -> Optional[StagePlan]:
    at = ("stage", index)
    before = len(problems.items)
    batches = data.batches_per_epoch

    def steps_of(duration: Duration, path: tuple) -> Optional[int]:
        try:
            return duration.to_steps(batches, stage.accumulate)
        except DurationError as exc:
            if sized:  # when the dataset's size failed (E026), that is the problem to report
                problems.add(path, str(exc), None, "E064")
            return None

    length = stage.length
    steps = steps_of(length, at + (length.unit,))
    epochs = (steps * stage.accumulate / batches) if (steps is not None and batches) else None

    # trainable set: `train` selectors (default all), minus `freeze` selectors
    trainable = set(names)
    if stage.train:
        trainable = set()
        for j, matched, problem in select(stage.train, names, registry, modules):
            if problem:
                problems.add(at + ("train", j), str(problem), problem.hint, problem.code, problem.severity, trace=problem.trace)
            trainable.update(matched)
    for j, matched, problem in select(stage.freeze, names, registry, modules):
        if problem:
            problems.add(at + ("freeze", j), str(problem), problem.hint, problem.code, problem.severity, trace=problem.trace)
        trainable.difference_update(matched)
    trainable_names = tuple(n for n in names if n in trainable)
    frozen_names = tuple(n for n in names if n not in trainable)
    if not trainable_names and len(problems.items) == before:
        problems.add(at, f"stage `{stage.name}` trains nothing: every parameter is frozen", "loosen `freeze` or widen `train`", "E061")

    groups = plan_groups(stage, at, names, trainable_names, registry, problems, modules)
    scheduler, monitor = _scheduler(stage, at, steps, batches, sized, registry, problems)
    optimizer = _piece_ref(stage.optimizer, "optimizers", registry)
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
        init = InitPlan(source, stage.init.stage, stage.init.which, stage.init.path, stage.init.strict,
                        stage.init.strip_prefix, dict(stage.init.rename), stage.init.add_prefix, digest=_init_digest(stage.init.path))
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


def _init_digest(path: Optional[str]) -> Optional[str]:
    """The digest of the file an ``init = { path }`` names now (its stage hash covers it); None without one."""
    from stagedsl.plan.hashing import file_digest, newest_match

    found = newest_match(path) if path else None
    try:
        return file_digest(found) if found is not None else None
    except OSError:
        return None


def _piece_ref(piece: Optional[Piece], kind: str, registry: Registry) -> PieceRef:
    """The piece a stage names, or the one a plugin registers as the kind's default."""
    if piece is None:
        return PieceRef(registry.default(kind).name, {})  # the spec check made sure there is one
    return PieceRef(piece.use, dict(piece.args))


def _default_mode(metric: str, registry: Registry) -> str:
    name = metric.split("/", 1)[-1]
    if name == "loss":
        return "min"
    entry = registry.find("metrics", name)
    return entry.meta.mode if entry else "min"


def _is_steps(annotation: Any) -> tuple[bool, bool]:
    """(is a duration, is a list of durations)."""
    return annotated_as(annotation, lambda a: a is Steps)


def _scheduler(stage: StageSpec, at: tuple, steps: Optional[int], batches: Optional[int], sized: bool, registry: Registry,
               problems: _Problems) -> tuple[PieceRef, Optional[str]]:
    ref = _piece_ref(stage.scheduler, "schedulers", registry)
    entry = registry.get("schedulers", ref.name)
    args = dict(ref.args)
    monitor = args.pop(SCHEDULER_MONITOR_KEY, None) if entry.meta.monitored else None
    try:
        parameters = entry.signature().parameters
    except TypeError:
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
                count = parse_duration(item).to_steps(batches, stage.accumulate)
            except DurationError as exc:
                if sized:
                    problems.add(path, str(exc), None, "E064")
                continue
            if steps is not None and count > steps:
                problems.add(path, f"`{name}` at step {count} ({item!r}) is past the end of stage `{stage.name}` ({steps} steps)",
                             "durations count from the stage's own start", "E063")
            converted.append(count)
        args[name] = converted if is_list else (converted[0] if converted else 0)
    return PieceRef(ref.name, args), monitor


__all__ = ["build_meta_model", "compile_plan"]
