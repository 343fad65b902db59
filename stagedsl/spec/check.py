"""Checks of a structured `Spec` that need no torch: references, values, plugin names
and plugin arguments (against each factory's signature, as torchtune's `validate`).

Each check yields ``(path, message, hint, code)`` rows; the loader locates and renders them.
"""

from __future__ import annotations

import inspect
import math
import re
import types
import typing
from typing import Any, Iterator, Optional, Union

from stagedsl.errors import StagedError, did_you_mean
from stagedsl.registry import Registry, singular
from stagedsl.registry.arguments import is_path_type
from stagedsl.registry.hookspecs import OPTIONAL_SUPPLIED, SUPPLIED
from stagedsl.registry.import_path import is_live, short_name
from stagedsl.spec.durations import DurationError, Steps, parse_duration
from stagedsl.spec.gates import GateSyntaxError, gate_metrics, parse_gate
from stagedsl.spec.model import REST_GROUP, ExportSpec, Piece, Spec, StageSpec
from stagedsl.spec.names import name_problem, system_path_problem

Row = tuple[tuple, str, Optional[str], str]

SCHEDULER_MONITOR_KEY = "monitor"
EXPORT_FORMATS = ("onnx", "onnx-fp16", "package")
"""The formats stagedsl writes itself; any other is a registered exporter's name."""
DEFAULTED = {"optimizer": "optimizers", "scheduler": "schedulers"}
"""Stage keys whose piece, when a stage names none, is the one a plugin registers as default."""


def stage_metrics(stage: StageSpec) -> list[str]:
    """The metric names a stage computes, as gates and monitors refer to them."""
    return ["train/loss", "val/loss", *(f"val/{short_name(m.use)}" for m in stage.metrics)]


def check_spec(spec: Spec, registry: Optional[Registry]) -> list[Row]:
    """Every problem in `spec`; plugin names and arguments too when `registry` is given."""
    rows: list[Row] = []
    rows += _check_run(spec)
    rows += _check_stages(spec)
    if spec.export is not None:
        rows += check_export(spec.export, [stage.name for stage in spec.stages], registry)
    if registry is not None:
        rows += list(_check_pieces(spec, registry))
    return rows


SEED_LIMIT = 2**63
"""Seeds are 0 <= seed < 2**63: what torch, numpy and random all take."""


def seed_problem(seed: int) -> Optional[str]:
    """Why `seed` is not a usable seed, or None."""
    if not 0 <= seed < SEED_LIMIT:
        return f"a seed must be from 0 to 2**63 - 1, found {seed}"
    return None


def _finite(value: Optional[float], key: str, *, low: float = 0.0, strict: bool = True) -> Optional[str]:
    """Why `value` (of `key`) is not a finite number above `low` (at least `low` unless `strict`), or None."""
    if value is None:
        return None
    if not math.isfinite(value):
        return f"`{key}` must be a finite number, found {value}"
    if value < low or (strict and value == low):
        return f"`{key}` must be {'greater than' if strict else 'at least'} {low:g}, found {value}"
    return None


def _check_run(spec: Spec) -> list[Row]:
    rows = []
    run = spec.run
    problem = name_problem(run.name, "run")
    if problem:
        rows.append((("run", "name"), *problem, "E013"))
    if run.out is not None:
        problem = system_path_problem(run.out)
        if problem:
            rows.append((("run", "out"), f"`run.out`: {problem}: no run belongs there", 'give the run a folder of its own, e.g. out = "runs/NAME"', "E014"))
    problem = seed_problem(run.seed)
    if problem:
        rows.append((("run", "seed"), problem, None, "E012"))
    if run.max_parameters < 1:
        rows.append((("run", "max_parameters"), f"`max_parameters` must be at least 1, found {run.max_parameters}", None, "E012"))
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", run.device):
        rows.append((("run", "device"), f"unknown device {run.device!r}", 'use "auto", "cpu", "cuda" or "cuda:N"', "E011"))
    if isinstance(run.threads, int) and run.threads < 1:
        rows.append((("run", "threads"), f"`threads` must be at least 1, found {run.threads}", None, "E012"))
    data = spec.data
    for key in ("batch_size", "eval_batch_size"):
        value = getattr(data, key)
        if value is not None and value < 1:
            rows.append((("data", key), f"`{key}` must be at least 1, found {value}", None, "E012"))
    if data.workers < 0:
        rows.append((("data", "workers"), f"`workers` cannot be negative, found {data.workers}", None, "E012"))
    return rows


def _check_stages(spec: Spec) -> list[Row]:
    rows: list[Row] = []
    if not spec.stages:
        return [(("stage",), "the plan has no stage", 'add at least one [[stage]] with a name and "steps" or "epochs"', "E030")]
    names = [stage.name for stage in spec.stages]
    first: dict[str, int] = {}
    for i, name in enumerate(names):
        first.setdefault(name, i)
    for i, stage in enumerate(spec.stages):
        at = ("stage", i)
        problem = name_problem(stage.name, "stage")
        if problem:
            rows.append((at + ("name",), *problem, "E013"))
        if first[stage.name] != i:
            rows.append((at + ("name",), f"stage name `{stage.name}` is used twice", "give every stage its own name", "E031"))
        if (stage.steps is None) == (stage.epochs is None):
            rows.append((at, f"stage `{stage.name}` needs exactly one of `steps` or `epochs`", 'e.g. steps = 2000 or epochs = 10', "E032"))
        for key in ("steps", "epochs"):
            value = getattr(stage, key)
            if value is not None and not 0 < value < math.inf:
                rows.append((at + (key,), f"`{key}` must be positive, found {value}", None, "E032"))
        if stage.lr is None:
            rows.append((at, f"stage `{stage.name}` has no learning rate", "set `lr` in the stage or in [defaults]", "E033"))
        elif not 0 < stage.lr < math.inf:
            rows.append((at + ("lr",), f"`lr` must be positive, found {stage.lr}", None, "E033"))
        if stage.loss is None:
            rows.append((at, f"stage `{stage.name}` has no loss", 'set `loss` in the stage or in [defaults], e.g. loss = "mse"', "E034"))
        if stage.accumulate < 1:
            rows.append((at + ("accumulate",), f"`accumulate` must be at least 1, found {stage.accumulate}", None, "E012"))
        problem = _finite(stage.grad_clip, "grad_clip")
        if problem:
            rows.append((at + ("grad_clip",), problem, "the largest gradient norm allowed, e.g. grad_clip = 1.0", "E012"))
        if stage.max_nonfinite < 1:
            rows.append((at + ("max_nonfinite",), f"`max_nonfinite` must be at least 1, found {stage.max_nonfinite}", None, "E012"))
        if stage.checkpoint.keep_last < 0:
            rows.append((at + ("checkpoint", "keep_last"), f"`keep_last` cannot be negative, found {stage.checkpoint.keep_last}",
                         "0 keeps every checkpoint", "E012"))
        if stage.loss is not None:
            for j, term in enumerate(stage.loss.terms):
                if not math.isfinite(term.weight):
                    path = at + ("loss", "blend" if stage.loss.kind == "blend" else "sum", j, "weight")
                    rows.append((path, f"a loss weight must be a finite number, found {term.weight}", None, "E012"))
        known = stage_metrics(stage)
        if stage.eval.monitor not in known:
            rows.append((at + ("eval", "monitor"), f"stage `{stage.name}` does not compute `{stage.eval.monitor}`", did_you_mean(stage.eval.monitor, known) or f"it computes {', '.join(known)}", "E043"))
        if stage.early_stop is not None:
            monitor = stage.early_stop.monitor
            if monitor is not None and monitor not in known:
                rows.append((at + ("early_stop", "monitor"), f"stage `{stage.name}` does not compute `{monitor}`", did_you_mean(monitor, known) or f"it computes {', '.join(known)}", "E043"))
            if stage.early_stop.patience < 1:
                rows.append((at + ("early_stop", "patience"), "`patience` must be at least 1", None, "E012"))
            problem = _finite(stage.early_stop.min_delta, "min_delta", strict=False)
            if problem:
                rows.append((at + ("early_stop", "min_delta"), problem, None, "E012"))
        group_names = [g.name for g in stage.groups]
        for j, group in enumerate(stage.groups):
            for key, strict in (("lr", True), ("lr_scale", True), ("weight_decay", False)):
                problem = _finite(getattr(group, key), key, strict=strict)
                if problem:
                    rows.append((at + ("groups", j, key), f"group `{group.name}`: {problem}",
                                 "a learning rate (or its scale) is positive; a weight decay is 0 or more", "E012"))
            if group_names.index(group.name) != j or group.name == REST_GROUP:
                rows.append((at + ("groups", j, "name"), f"group name `{group.name}` is used twice or reserved", f'names must be unique and not "{REST_GROUP}"', "E050"))
            if group.lr is not None and group.lr_scale is not None:
                rows.append((at + ("groups", j), f"group `{group.name}` sets both `lr` and `lr_scale`", "keep one: `lr` is absolute, `lr_scale` multiplies the stage's lr", "E050"))
            if not group.params:
                rows.append((at + ("groups", j, "params"), f"group `{group.name}` selects no parameters", 'e.g. params = ["backbone.**"]', "E050"))
        if stage.init is not None:
            rows += _check_init(stage, i, names, first)
        if stage.gate is not None:
            rows += _check_gate(stage, i, names, first, known)
    return rows


def _few(names: list[str], most: int = 8) -> str:
    """Names for a hint: the first `most`, then how many more."""
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def _check_init(stage: StageSpec, i: int, names: list[str], first: dict[str, int]) -> list[Row]:
    at = ("stage", i, "init")
    init = stage.init
    rows: list[Row] = []
    if (init.stage is None) == (init.path is None):
        rows.append((at, "`init` needs exactly one of `stage` or `path`", 'e.g. init = { stage = "warmup", which = "best" }', "E035"))
    if init.stage is not None:
        if init.stage not in first:
            rows.append((at + ("stage",), f"no stage named `{init.stage}`", did_you_mean(init.stage, names[:i]), "E036"))
        elif first[init.stage] >= i:
            what = "itself" if init.stage == stage.name else f"the later stage `{init.stage}`"
            rows.append((at + ("stage",), f"stage `{stage.name}` starts from {what}", f"init can only load an earlier stage: {_few(names[:i]) or 'none before this one'}", "E037"))
    mapped = init.strip_prefix is not None or init.add_prefix is not None or init.rename
    if mapped and init.path is None:
        rows.append((at, "`strip_prefix`, `add_prefix` and `rename` map the keys of a file: they need `path`",
                     "an earlier stage's checkpoint already has the model's own names", "E470"))
    for key in ("strip_prefix", "add_prefix"):
        if getattr(init, key) == "":
            rows.append((at + (key,), f"`{key}` is empty", f'e.g. {key} = "model."', "E470"))
    for old, new in init.rename.items():
        if not isinstance(new, str) or not new or not old:
            rows.append((at + ("rename", old), f"`rename` maps a key to a new key name, found {old!r} = {new!r}", '{ "fc" = "head" }', "E470"))
    return rows


def _check_gate(stage: StageSpec, i: int, names: list[str], first: dict[str, int], known: list[str]) -> list[Row]:
    at = ("stage", i, "gate")
    gate = stage.gate
    rows: list[Row] = []
    try:
        expr = parse_gate(gate.when)
    except GateSyntaxError as exc:
        shown = repr(gate.when) if len(gate.when) <= 80 else repr(gate.when[:77] + "...")
        hint = ('write comparisons joined by and/or, e.g. "val/f1 >= 0.80 and val/loss < 0.5"' if exc.code == "E040"
                else "write the condition flat: and/or chains need no parentheses (`and` binds tighter than `or`)")
        rows.append((at + ("when",), f"bad condition {shown}: {exc} (at character {exc.column})", hint, exc.code))
        expr = None
    if expr is not None:
        for metric in gate_metrics(expr):
            if metric not in known:
                rows.append((at + ("when",), f"the gate reads `{metric}`, which stage `{stage.name}` does not compute", did_you_mean(metric, known) or f"it computes {', '.join(known)}", "E043"))
    if gate.max_retries < 0:
        rows.append((at + ("max_retries",), "`max_retries` cannot be negative", None, "E012"))
    if gate.on_fail == "goto":
        if gate.goto is None:
            rows.append((at, 'on_fail = "goto" needs `goto = "<later stage>"`', f"later stages: {_few(names[i + 1:]) or 'none'}", "E042"))
        elif not _later(gate.goto, i, names, first):
            rows.append((at + ("goto",), f"`goto` must name a later stage, found `{gate.goto}`", did_you_mean(gate.goto, names[i + 1 :]) or f"later stages: {_few(names[i + 1:]) or 'none'}", "E042"))
    elif gate.goto is not None:
        rows.append((at + ("goto",), '`goto` is only used with on_fail = "goto"', 'set on_fail = "goto" or remove `goto`', "E042"))
    return rows


def _later(name: str, i: int, names: list[str], first: dict[str, int]) -> bool:
    """Whether a stage called `name` comes after stage `i` (a duplicate name may stand both before and after)."""
    if name not in first:
        return False
    return first[name] > i or name in names[i + 1:]


def check_export(export: ExportSpec, stages: Optional[list[str]], registry: Optional[Registry]) -> list[Row]:
    """Every problem in an ``[export]`` section: the one place its values are judged.

    Format names are judged when a `registry` is given, the stage when `stages` are. The
    export room checks the options a caller adds (``staged export --format``) with it too.
    """
    rows: list[Row] = []
    known = list(EXPORT_FORMATS) + (registry.names("exporters") if registry is not None else [])
    if not export.formats:
        rows.append((("export", "formats"), "`formats` names no format", f"e.g. formats = [{', '.join(repr(f) for f in EXPORT_FORMATS)}]", "E012"))
    for j, fmt in enumerate(export.formats):
        if export.formats.index(fmt) != j:
            rows.append((("export", "formats", j), f"format {fmt!r} is named twice", None, "E012"))
        elif fmt not in known and registry is not None:
            rows.append((("export", "formats", j), f"unknown export format {fmt!r}", did_you_mean(fmt, known) or f"one of {', '.join(known)}", "E011"))
    for key in ("atol", "rtol", "fp16_atol", "fp16_rtol", "fp16_metric_tol"):
        problem = _finite(getattr(export, key), key, strict=False)
        if problem:
            rows.append((("export", key), problem, None, "E012"))
    if not 0.0 <= export.fp16_min_agreement <= 1.0:  # NaN fails this too
        rows.append((("export", "fp16_min_agreement"), f"`fp16_min_agreement` is a share of rows in [0, 1], found {export.fp16_min_agreement}",
                     None, "E012"))
    for key, low in (("opset", 7), ("check_batches", 1), ("metric_samples", 1)):
        value = getattr(export, key)
        if value is not None and value < low:
            rows.append((("export", key), f"`{key}` must be at least {low}, found {value}", None, "E012"))
    if export.prune is not None and not 0.0 <= export.prune.amount < 1.0:  # NaN fails this too
        rows.append((("export", "prune", "amount"), f"`amount` must be a fraction in [0, 1), found {export.prune.amount}", None, "E012"))
    for name, args in export.exporters.items():
        if name not in export.formats or name in EXPORT_FORMATS:
            rows.append((("export", "exporters", name), f"arguments for `{name}`, which `formats` does not name as a registered exporter",
                         did_you_mean(name, [f for f in export.formats if f not in EXPORT_FORMATS]), "E011"))
        elif not isinstance(args, dict):
            rows.append((("export", "exporters", name), f"the arguments of exporter `{name}` must be a table, found {args!r}", None, "E003"))
    if stages is not None and export.stage is not None and export.stage not in stages:
        rows.append((("export", "stage"), f"no stage named `{export.stage}`", did_you_mean(export.stage, stages), "E036"))
    return rows


# -- plugin names and arguments ----------------------------------------------------------
def loss_term_path(stage: int, kind: str, count: int, term: int) -> tuple:
    """The key path of a loss term: ``stage[i].loss`` for a single loss, else ``stage[i].loss.sum[j]`` / ``.blend[j]``."""
    if count == 1 and kind == "sum":
        return ("stage", stage, "loss")
    return ("stage", stage, "loss", "blend" if kind == "blend" else "sum", term)


def _pieces(spec: Spec) -> Iterator[tuple[str, tuple, Piece]]:
    yield "models", ("model",), spec.model
    yield "datasets", ("data",), Piece(spec.data.use, spec.data.args)
    for j, piece in enumerate(spec.callbacks):
        yield "callbacks", ("callbacks", j), piece
    for i, stage in enumerate(spec.stages):
        at = ("stage", i)
        for key, kind in DEFAULTED.items():
            if getattr(stage, key) is not None:
                yield kind, at + (key,), getattr(stage, key)
        for j, piece in enumerate(stage.metrics):
            yield "metrics", at + ("metrics", j), piece
        if stage.loss is not None:
            for j, term in enumerate(stage.loss.terms):
                yield "losses", loss_term_path(i, stage.loss.kind, len(stage.loss.terms), j), term.piece
        for key in ("train", "freeze"):
            for j, selector in enumerate(getattr(stage, key)):
                if isinstance(selector, Piece):
                    yield "freeze_strategies", at + (key, j), selector
        for g, group in enumerate(stage.groups):
            for j, selector in enumerate(group.params):
                if isinstance(selector, Piece):
                    yield "freeze_strategies", at + ("groups", g, "params", j), selector


def _check_pieces(spec: Spec, registry: Registry) -> Iterator[Row]:
    for kind in DEFAULTED.values():
        if registry.default(kind) is None and any(getattr(s, k) is None for s in spec.stages for k, v in DEFAULTED.items() if v == kind):
            key = next(k for k, v in DEFAULTED.items() if v == kind)
            stage = next(i for i, s in enumerate(spec.stages) if getattr(s, key) is None)
            yield (("stage", stage), f"stage `{spec.stages[stage].name}` names no {key}, and no plugin registers a default {singular(kind)}",
                   f'name one: {key} = "<registered {singular(kind)}>" (see `staged plugins`)', "E020")
    for kind, path, piece in _pieces(spec):
        if is_live(piece.use):
            continue  # handed over by stagedsl.run / stagedsl.plan; the loader left it no arguments
        use_path = path + ("use",) if piece.args or kind in ("models", "datasets") else path
        try:
            entry = registry.find(kind, piece.use, root=spec.root)
        except StagedError as exc:  # an import path that names nothing (E080–E085)
            for problem in exc.problems:
                yield (use_path, problem.message, problem.hint, problem.code)
            continue
        if entry is None:
            names = registry.names(kind)
            yield (use_path, f"no {singular(kind)} named `{piece.use}` is registered", did_you_mean(piece.use, names) or f"registered: {', '.join(names) or 'none'} (see `staged plugins`)", "E020")
            continue
        args = dict(piece.args)
        if kind == "schedulers" and entry.meta.monitored:
            monitor = args.pop(SCHEDULER_MONITOR_KEY, None)
            if monitor is None:
                yield (path, f"scheduler `{piece.use}` is driven by a metric and needs `monitor`", 'e.g. { use = "plateau", monitor = "val/loss", mode = "min" }', "E045")
            elif not isinstance(monitor, str):
                yield (path + (SCHEDULER_MONITOR_KEY,), f"scheduler `{piece.use}`: `monitor` expected a metric name, found {monitor!r}", 'e.g. monitor = "val/loss"', "E023")
            else:
                stage = spec.stages[path[1]]
                if monitor not in stage_metrics(stage):
                    yield (path + (SCHEDULER_MONITOR_KEY,), f"stage `{stage.name}` does not compute `{monitor}`", did_you_mean(monitor, stage_metrics(stage)), "E043")
        yield from check_args(entry, args, path, auto=entry.meta.auto if kind == "losses" else {})


def check_args(entry, args: dict, path: tuple, *, auto: dict) -> Iterator[Row]:
    """Check a piece's arguments against its factory's signature."""
    try:
        signature = entry.signature()
    except (TypeError, ValueError):
        return
    injected = SUPPLIED.get(entry.kind, ()) + OPTIONAL_SUPPLIED.get(entry.kind, ())
    params = {name: p for name, p in signature.parameters.items() if name not in injected}
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    accepted = [name for name, p in params.items() if p.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)]
    label = f"{singular(entry.kind)} `{entry.name}`"
    for name, value in args.items():
        if name not in params:
            if not takes_any:
                yield (path + (name,), f"{label} has no argument `{name}`", did_you_mean(name, accepted) or f"its arguments: {', '.join(accepted) or 'none'}", "E021")
            continue
        if isinstance(value, str) and value == "auto" and name in auto:
            continue
        problem = _value_problem(value, params[name].annotation)
        if problem:
            yield (path + (name,), f"{label}: `{name}` {problem}", None, "E023")
    for name, p in params.items():
        if p.default is inspect.Parameter.empty and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY) and name not in args:
            yield (path, f"{label} needs argument `{name}`", f"add {name} = ...", "E022")


def _value_problem(value: Any, annotation: Any) -> Optional[str]:
    """Why `value` does not fit `annotation`, or None (unknown annotations always fit)."""
    if annotation is inspect.Parameter.empty or annotation is Any:
        return None
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        options = typing.get_args(annotation)
        if any(_value_problem(value, option) is None for option in options):
            return None
        return f"expected {' or '.join(_describe(o) for o in options)}, found {value!r}"
    if annotation is type(None):
        return None if value is None else f"expected nothing, found {value!r}"
    if annotation is Steps:
        try:
            parse_duration(value)
            return None
        except DurationError as exc:
            return str(exc)
    if annotation is bool:
        return None if isinstance(value, bool) else f"expected true or false, found {value!r}"
    if annotation is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else f"expected an integer, found {value!r}"
    if annotation is float:
        return None if isinstance(value, (int, float)) and not isinstance(value, bool) else f"expected a number, found {value!r}"
    if annotation is str:
        return None if isinstance(value, str) else f"expected a string, found {value!r}"
    if is_path_type(annotation):
        return None if isinstance(value, str) else f"expected a path (a string), found {value!r}"
    if origin in (list, tuple, typing.Sequence) or annotation in (list, tuple):
        if not isinstance(value, list):
            return f"expected an array, found {value!r}"
        inner = typing.get_args(annotation)
        if inner and inner[-1] is not Ellipsis:
            for item in value:
                problem = _value_problem(item, inner[0])
                if problem:
                    return f"has an item that does not fit: {problem}"
        return None
    if origin is dict or annotation is dict:
        return None if isinstance(value, dict) else f"expected a table, found {value!r}"
    if origin is typing.Literal:
        choices = typing.get_args(annotation)
        return None if value in choices else f"expected one of {', '.join(map(repr, choices))}, found {value!r}"
    return None


def _describe(annotation: Any) -> str:
    if annotation is type(None):
        return "nothing"
    return getattr(annotation, "__name__", str(annotation))
