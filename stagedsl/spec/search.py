"""`[search]` in the spec room: the axes of `[search.space]`, checked, and each trial's spec.

An axis's key is a ``--set`` key path (``stage.finetune.lr``, ``model.dim``,
``stage.converge.loss.sum[2].weight``). A trial's document is the spec's (``extends``, the
profile and ``--set`` applied) without ``[search]``, with each parameter written at its key
path, then its ``run.name`` and ``run.out``: an ordinary single spec, structured and checked
like one (`stagedsl.spec.matrix.structure_document`, as a matrix member is).

Every axis is checked against the spec before anything runs: its key must name a key the
spec has (a stage by name, a plugin's argument; a did-you-mean otherwise), each value of a
list must fit it, and a range ``{ low, high, log, step }`` is a float or an integer range by
the key's type (an integer key refuses a fractional value). Each problem points at the axis
in ``[search.space]``. Never imports torch.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Mapping, Optional

import attrs

from stagedsl.errors import did_you_mean
from stagedsl.registry import Registry
from stagedsl.spec.check import Row, seed_problem, stage_metrics
from stagedsl.spec.convert import KeyProblem
from stagedsl.spec.merge import parse_override, set_path
from stagedsl.spec.model import PRUNERS, Spec

RANGE_KEYS = ("low", "high", "log", "step")
FORBIDDEN_KEYS = (("search",), ("matrix",), ("ensemble",), ("profile",), ("extends",), ("run", "name"), ("run", "out"))
"""Key paths an axis may not vary: the composing tables, the layers, and what names the trial's folder."""
MISSING_CODES = ("E002", "E007", "E021")
"""Codes of a probe that say the key path is not a key of the spec (the rest say the value does not fit)."""
FRACTION = 0.5


@attrs.frozen
class Axis:
    """One axis of the space: a key path and its values (a list) or its range."""

    key: str  # as written: a --set key path
    parts: tuple  # the key path, parsed
    kind: str  # "categorical" | "float" | "int"
    choices: tuple = ()
    low: Optional[float] = None
    high: Optional[float] = None
    log: bool = False
    step: Optional[float] = None

    def describe(self) -> str:
        """``[16, 32]`` or ``float 1e-06 .. 0.0001 (log)``."""
        if self.kind == "categorical":
            return "[" + ", ".join(_shown(c) for c in self.choices) + "]"
        how = ", ".join(x for x in ("log" if self.log else "", f"step {self.step:g}" if self.step else "") if x)
        return f"{self.kind} {self.low:g} .. {self.high:g}" + (f" ({how})" if how else "")

    def to_dict(self) -> dict[str, Any]:
        """The axis as plain data (``search.json``)."""
        return {"key": self.key, "kind": self.kind, "choices": list(self.choices), "low": self.low, "high": self.high,
                "log": self.log, "step": self.step}

    @classmethod
    def from_dict(cls, data: dict) -> "Axis":
        """Back from `to_dict`."""
        return cls(data["key"], tuple(key_parts(data["key"])), data["kind"], tuple(data.get("choices") or ()), data.get("low"),
                   data.get("high"), bool(data.get("log")), data.get("step"))


def _shown(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)


def key_parts(key: str) -> list:
    """A space key's path (``"stage.finetune.lr"`` -> ["stage", "finetune", "lr"]); `KeyProblem` (E007) when it is none."""
    parts, _ = parse_override(f"{key}=0")
    return parts


def grid_points(axes: list[Axis]) -> list[dict[str, Any]]:
    """Every combination of the axes' values, the first axis outermost (what the grid sampler runs, in order)."""
    return [dict(zip([a.key for a in axes], values)) for values in itertools.product(*[a.choices for a in axes])]


def trial_count(spec: Spec, axes: list[Axis], trials: Optional[int] = None) -> int:
    """How many trials the study runs: every grid point (at most `trials`), or `trials`; `trials`
    (``--trials N``) in place of the spec's ``search.trials`` when given."""
    return count_trials(spec.search.sampler, axes, spec.search.trials if trials is None else trials)


def count_trials(sampler: str, axes: list[Axis], trials: Optional[int]) -> int:
    """`trial_count` from the sampler's name, the axes and the trial budget (what ``search.json`` keeps)."""
    if sampler == "grid":
        points = math.prod(len(a.choices) for a in axes)
        return min(points, trials) if trials else points
    return int(trials or 0)


def space_path(path: tuple) -> str:
    """A key path inside ``[search]`` as the spec writes it: ``search.space."stage.finetune.lr"[1]``."""
    from stagedsl.spec.locate import format_path

    if len(path) < 3 or tuple(path[:2]) != ("search", "space"):
        return format_path(list(path))
    rest = format_path(list(path[3:]))
    return f'search.space."{path[2]}"' + ("." + rest if rest and not rest.startswith("[") else rest)


# -- trial documents -------------------------------------------------------------------------
def base_document(spec: Spec) -> dict:
    """The spec's effective document without ``[search]``: what every trial starts from."""
    return {k: v for k, v in (spec.document or {}).items() if k != "search"}


def trial_document(spec: Spec, params: Mapping[str, Any], *, name: Optional[str] = None, out: Optional[str] = None) -> dict:
    """A trial's document: the base with each parameter at its key path, then `run.name` and `run.out`."""
    document = base_document(spec)
    for key, value in params.items():
        document = set_path(document, key_parts(key), value)
    if name is not None or out is not None:
        run = dict(document.get("run") or {})
        if name is not None:
            run["name"] = name
        if out is not None:
            run["out"] = out
        document["run"] = run
    return document


def trial_spec(spec: Spec, params: Mapping[str, Any], registry: Optional[Registry], *, name: str, out: str) -> Spec:
    """The checked single `Spec` of one trial (a `SpecError` naming the parameters when they break it)."""
    from stagedsl.errors import Problem, SpecError
    from stagedsl.spec.matrix import structure_document
    from stagedsl.spec.locate import format_path

    shown = ", ".join(f"{k} = {_shown(v)}" for k, v in params.items())
    try:
        document = trial_document(spec, params, name=name, out=out)
    except KeyProblem as exc:
        raise SpecError([Problem(exc.code, f"trial ({shown}): {exc}", file=spec.file, path=format_path(list(exc.path)), hint=exc.hint)]) from None
    trial, rows = structure_document(document, registry, root=spec.root)
    if rows:
        raise SpecError([Problem(code, f"trial ({shown}): {message}", file=spec.file, path=format_path(list(path)), hint=hint)
                         for path, message, hint, code in rows])
    return attrs.evolve(trial, file=spec.file, sources=spec.sources, document=document, profile=spec.profile)


# -- checks --------------------------------------------------------------------------------
def check_search(spec: Spec, registry: Optional[Registry]) -> tuple[list[Axis], list[Row]]:
    """The axes of `spec`'s ``[search]`` and every problem of it (rows located at ``search...``)."""
    search = spec.search
    rows: list[Row] = []
    if search is None:
        return [], rows
    if spec.matrix is not None:
        rows.append((("search",), "a spec has either `[search]` or `[matrix]`, not both",
                     "search one spec, or run the matrix of the best trial's `best.toml`", "E079"))
    for key in ("trials", "jobs"):
        value = getattr(search, key)
        if value is not None and value < 1:
            rows.append((("search", key), f"`{key}` must be at least 1, found {value}", None, "E012"))
    problem = seed_problem(search.seed) if search.seed is not None else None
    if problem:  # the sampler's seed, as every seed: 0 <= seed < 2**63
        rows.append((("search", "seed"), problem, None, "E012"))
    if search.pruner is not None and search.pruner.use not in PRUNERS:
        rows.append((("search", "pruner"), f"no pruner named `{search.pruner.use}`",
                     did_you_mean(search.pruner.use, PRUNERS) or f"pruners: {', '.join(PRUNERS)}", "E078"))
    known = stage_metrics(spec.stages[-1]) if spec.stages else []
    if search.metric not in known:
        rows.append((("search", "metric"), f"the last stage, `{spec.stages[-1].name}`, does not compute `{search.metric}`",
                     did_you_mean(search.metric, known) or f"it computes {', '.join(known)}", "E043"))
    if not isinstance(search.space, dict) or not search.space:
        rows.append((("search", "space"), "`[search.space]` names no key to search", 'e.g. "stage.finetune.lr" = { low = 1e-5, high = 1e-3, log = true }', "E079"))
        return [], rows
    axes = []
    for key, value in search.space.items():
        axis, problems = _axis(spec, key, value, registry)
        rows += problems
        if axis is not None:
            axes.append(axis)
    if search.sampler == "grid":
        for axis in axes:
            if axis.kind != "categorical":
                rows.append((("search", "space", axis.key), f"the grid sampler needs every axis to be a list, and `{axis.key}` is a range",
                             f'list its values: "{axis.key}" = [...], or use sampler = "tpe" / "random"', "E078"))
    elif search.trials is None:
        rows.append((("search",), f'sampler "{search.sampler}" needs `trials`', "e.g. trials = 16 (or staged search --trials N)", "E078"))
    return axes, rows


def _axis(spec: Spec, key: Any, value: Any, registry: Optional[Registry]) -> tuple[Optional[Axis], list[Row]]:
    at = ("search", "space", key)
    try:
        parts = tuple(key_parts(key))
    except KeyProblem as exc:
        return None, [(at, f"`{key}` is not a key path: {exc}", "write it as --set writes it: stage.finetune.lr, model.dim, stage[0].steps", "E076")]
    if any(tuple(parts[: len(f)]) == f for f in FORBIDDEN_KEYS):
        return None, [(at, f"a search cannot vary `{key}`", "a trial's name and folder are the search's; search the keys of the spec itself", "E079")]
    if isinstance(value, list):
        if not value:
            return None, [(at, f"`{key}` lists no value", "give at least one value", "E077")]
        rows = []
        for j, choice in enumerate(value):
            if choice in value[:j]:
                rows.append((at + (j,), f"`{key}` lists {_shown(choice)} twice", "each value once", "E077"))
                continue
            rows += _probe_rows(spec, key, parts, choice, registry, at + (j,))
            if rows and rows[-1][3] == "E076":  # the key itself is wrong: say it once, at the key
                return None, [(at,) + rows[-1][1:]]
        return (None if rows else Axis(key, parts, "categorical", tuple(value))), rows
    if not isinstance(value, dict):
        return None, [(at, f"an axis is a list of values or a range table, found {value!r}",
                       f'e.g. "{key}" = [1, 2] or "{key}" = {{ low = 1e-5, high = 1e-3, log = true }}', "E077")]
    return _range(spec, key, parts, value, registry, at)


def _range(spec: Spec, key: str, parts: tuple, value: dict, registry: Optional[Registry], at: tuple) -> tuple[Optional[Axis], list[Row]]:
    unknown = [k for k in value if k not in RANGE_KEYS]
    if unknown:
        return None, [(at + (unknown[0],), f"unknown key `{unknown[0]}` in the range of `{key}`",
                       did_you_mean(unknown[0], RANGE_KEYS) or f"a range has {', '.join(RANGE_KEYS)}", "E077")]
    low, high, log, step = value.get("low"), value.get("high"), value.get("log", False), value.get("step")
    numbers = all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in (low, high))
    if not numbers:
        return None, [(at, f"the range of `{key}` needs numbers `low` and `high`", f'e.g. "{key}" = {{ low = 1e-5, high = 1e-3 }}', "E077")]
    if not isinstance(log, bool):
        return None, [(at + ("log",), f"`log` is true or false, found {log!r}", None, "E077")]
    if not low < high:
        return None, [(at, f"the range of `{key}` is empty: low {low} is not below high {high}", "low < high", "E077")]
    if log and low <= 0:
        return None, [(at + ("low",), f"a log range needs low > 0, found {low}", None, "E077")]
    if step is not None and (isinstance(step, bool) or not isinstance(step, (int, float)) or step <= 0 or log):
        hint = "a log range has no step" if log else "a positive number"
        return None, [(at + ("step",), f"`step` of `{key}` must be a positive number, found {step!r}", hint, "E077")]
    integral = all(isinstance(x, int) for x in (low, high)) and (step is None or isinstance(step, int))
    missing = _probe_rows(spec, key, parts, low, registry, at)
    if missing:
        return None, missing
    kind = "int" if integral and _probe_rows(spec, key, parts, low + FRACTION, registry, at) else "float"
    rows = _probe_rows(spec, key, parts, high, registry, at)
    return (None if rows else Axis(key, parts, kind, (), float(low) if kind == "float" else int(low),
                                   float(high) if kind == "float" else int(high), log, step)), rows


def _probe_rows(spec: Spec, key: str, parts: tuple, value: Any, registry: Optional[Registry], at: tuple) -> list[Row]:
    """What is wrong with the trial document that sets `key` to `value`, as rows at the axis."""
    from stagedsl.spec.matrix import structure_document

    try:
        document = set_path(base_document(spec), list(parts), value)
    except KeyProblem as exc:
        return [(at, f"`{key}` is not a key of the spec: {exc}", exc.hint, "E076")]
    _, rows = structure_document(document, registry, root=spec.root)
    if not rows:
        return []
    path, message, hint, code = rows[0]
    if code in MISSING_CODES:
        return [(at, f"`{key}` is not a key of the spec: {message}", hint, "E076")]
    return [(at, f"{_shown(value)} does not fit `{key}`: {message}", hint, "E077")]


__all__ = ["Axis", "base_document", "check_search", "space_path", "grid_points", "key_parts", "count_trials", "trial_count", "trial_document", "trial_spec"]
