"""The one cattrs converter of the language: TOML data -> typed `Spec`, strictly.

Strict scalars (no ``"3"`` -> 3, no 3.7 -> 3), unknown keys forbidden, plugin pieces
from ``"name"`` or ``{ use = "name", ... }``, losses from their four spellings. Every
failure is flattened into ``(key path, message, hint)`` by `flatten_errors`.
"""

from __future__ import annotations

import typing
from typing import Any, Literal, Optional, Union

import attrs
import cattrs
from cattrs.cols import homogenous_tuple_structure_factory
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError
from cattrs.gen import make_dict_structure_fn, override

from stagedsl.errors import did_you_mean
from stagedsl.spec.durations import Duration, DurationError, parse_duration
from stagedsl.spec.locate import PathPart
from stagedsl.spec.model import (
    DATA_LOADER_KEYS,
    ENSEMBLE_KEYS,
    LOADER_FIELDS,
    CheckpointSpec,
    DataSection,
    EarlyStopSpec,
    EnsembleSpec,
    EvalSpec,
    ExportSpec,
    GateAction,
    GateCheck,
    GateSpec,
    GroupSpec,
    InitSpec,
    LossSpec,
    LossTermSpec,
    MatrixSpec,
    Piece,
    RunSection,
    Spec,
    StageSpec,
)


class KeyProblem(ValueError):
    """A value that is wrong at `path` (relative to where it was raised) with a hint."""

    def __init__(self, message: str, path: tuple[PathPart, ...] = (), hint: Optional[str] = None, code: str = "E003"):
        super().__init__(message)
        self.path = path
        self.hint = hint
        self.code = code


def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array", dict: "a table"}.get(
        type(value), type(value).__name__
    )


def _shown(value: Any) -> str:
    text = repr(value) if not isinstance(value, (dict, list)) else _type_name(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _strict_int(value: Any, _: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise KeyProblem(f"expected an integer, found {_shown(value)}")
    return value


def _strict_float(value: Any, _: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise KeyProblem(f"expected a number, found {_shown(value)}")
    return float(value)


def _strict_str(value: Any, _: Any) -> str:
    if not isinstance(value, str):
        raise KeyProblem(f"expected a string, found {_shown(value)}")
    return value


def _threads(value: Any, _: Any) -> Union[int, str]:
    if value == "auto" or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise KeyProblem(f'expected a number of threads or "auto", found {_shown(value)}')


def _strict_bool(value: Any, _: Any) -> bool:
    if not isinstance(value, bool):
        raise KeyProblem(f"expected true or false, found {_shown(value)}")
    return value


def _table(value: Any, _: Any) -> dict:
    if not isinstance(value, dict):
        raise KeyProblem(f"expected a table, found {_shown(value)}")
    return value


def _duration(value: Any, _: Any) -> Duration:
    """A duration, parsed once here: the Spec holds `Duration` values."""
    try:
        return parse_duration(value)
    except DurationError as exc:
        raise KeyProblem(str(exc), code="E010", hint='write a number of steps (500) or a string like "500 steps" / "3 epochs"') from None


CHOICE_CODES = {GateAction: "E041", GateCheck: "E041"}
"""Choices whose errors carry their own code (the rest are E011)."""


def _choice(tp: Any):
    """Structure a `Literal` choice: the value must be one of its options (a did-you-mean otherwise)."""
    options = typing.get_args(tp)
    code = CHOICE_CODES.get(tp, "E011")
    shown = ", ".join(f'"{o}"' if isinstance(o, str) else repr(o) for o in options)

    def structure(value: Any, _: Any) -> Any:
        if value in options and type(value) is type(options[options.index(value)]):
            return value
        raise KeyProblem(f"{_shown(value)} is not one of {shown}", code=code, hint=did_you_mean(value, [str(o) for o in options]) or f"use one of {shown}")

    return structure


class MissingUse(KeyProblem):
    """A piece written as a table without `use`; `flatten_errors` words its hint for the table it is in."""

    def __init__(self, near: Optional[str] = None):
        where = (near,) if near else ()
        message = f"`{near}` is not a key here: a piece names what to use with `use`" if near else "a piece needs `use = \"<registered name>\"`"
        super().__init__(message, path=where, hint=did_you_mean(near, ["use"], cutoff=0.0) if near else None, code="E004")
        self.near = near


def structure_piece(value: Any, _: Any = None) -> Piece:
    """``"name"`` or ``{ use = "name", <args> }`` -> `Piece`."""
    if isinstance(value, str):
        return Piece(value)
    if isinstance(value, dict):
        if "use" not in value:
            raise MissingUse(next((key for key in value if did_you_mean(key, ["use"], cutoff=0.6)), None))
        name = value["use"]
        if not isinstance(name, str):
            raise KeyProblem(f"expected a string, found {_shown(name)}", path=("use",))
        return Piece(name, {k: v for k, v in value.items() if k != "use"})
    raise KeyProblem(f"expected a name or {{ use = \"name\", ... }}, found {_shown(value)}", code="E004")


def _selector(value: Any, _: Any) -> Union[str, Piece]:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return structure_piece(value)
    raise KeyProblem(f"expected a glob string or {{ use = \"strategy\", ... }}, found {_shown(value)}", code="E004")


def _loss_term(value: Any, index: int) -> LossTermSpec:
    try:
        if isinstance(value, dict) and "weight" in value:
            weight = value["weight"]
            if isinstance(weight, bool) or not isinstance(weight, (int, float)):
                raise KeyProblem(f"expected a number, found {_shown(weight)}", path=("weight",))
            rest = {k: v for k, v in value.items() if k != "weight"}
            return LossTermSpec(structure_piece(rest), float(weight))
        return LossTermSpec(structure_piece(value))
    except KeyProblem as problem:
        problem.path = (index,) + problem.path
        raise


def structure_loss(value: Any, _: Any = None) -> LossSpec:
    """A loss in any of its spellings -> `LossSpec`."""
    if isinstance(value, str) or (isinstance(value, dict) and "use" in value):
        return LossSpec("sum", (_loss_term(value, 0),))
    if isinstance(value, dict) and "sum" in value:
        extra = sorted(set(value) - {"sum"})
        if extra:
            raise KeyProblem(f"unknown key `{extra[0]}` beside `sum`", path=(extra[0],), code="E002")
        terms = value["sum"]
        if not isinstance(terms, list) or not terms:
            raise KeyProblem("`sum` takes a non-empty array of losses", path=("sum",), hint='e.g. sum = [{ use = "l1", weight = 2.0 }, { use = "mse", weight = 0.5 }]')
        out = []
        for index, term in enumerate(terms):
            try:
                out.append(_loss_term(term, index))
            except KeyProblem as problem:
                problem.path = ("sum",) + problem.path
                raise
        return LossSpec("sum", tuple(out))
    if isinstance(value, dict) and "blend" in value:
        extra = sorted(set(value) - {"blend", "alpha"})
        if extra:
            raise KeyProblem(f"unknown key `{extra[0]}` beside `blend`", path=(extra[0],), code="E002", hint=did_you_mean(extra[0], ["blend", "alpha"]))
        pair = value["blend"]
        if not isinstance(pair, list) or len(pair) != 2:
            raise KeyProblem("`blend` takes exactly two losses", path=("blend",), hint='e.g. blend = ["mse", { use = "nrmse", sigma = "auto" }], alpha = 1.0')
        alpha = value.get("alpha")
        if alpha is None or isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
            raise KeyProblem(f"`alpha` must be a number from 0 to 1, found {_shown(alpha)}", path=("alpha",))
        terms = []
        for index, term in enumerate(pair):
            try:
                terms.append(_loss_term(term, index))
            except KeyProblem as problem:
                problem.path = ("blend",) + problem.path
                raise
        return LossSpec("blend", tuple(terms), float(alpha))
    raise KeyProblem(
        f"expected a loss, found {_shown(value)}",
        hint='write "mse", { use = "nrmse", sigma = "auto" }, { sum = [...] } or { blend = [a, b], alpha = 0.5 }',
        code="E004",
    )


def _data(value: Any, _: Any) -> DataSection:
    if not isinstance(value, dict):
        raise KeyProblem(f"expected a table, found {_shown(value)}")
    if "use" not in value:
        raise MissingUse(next((key for key in value if did_you_mean(key, ["use"], cutoff=0.6)), None))
    loader = {k: value[k] for k in DATA_LOADER_KEYS if k in value}
    args = {k: v for k, v in value.items() if k not in DATA_LOADER_KEYS and k != "use"}
    structured = _base_converter.structure({"use": value["use"], **loader}, DataSection)
    return attrs.evolve(structured, args=args)


def _ensemble(value: Any, _: Any) -> EnsembleSpec:
    """`[[ensemble]]`: its own keys, and every other key an argument of the ensemble factory."""
    if not isinstance(value, dict):
        raise KeyProblem(f"expected a table, found {_shown(value)}")
    own = {k: value[k] for k in ENSEMBLE_KEYS if k in value}
    structured = _base_converter.structure(own, EnsembleSpec)
    return attrs.evolve(structured, args={k: v for k, v in value.items() if k not in ENSEMBLE_KEYS})


def _array_of(tp: Any, conv: cattrs.Converter):
    """Structure an array only from a TOML array (a string is not an array of its letters)."""
    items = homogenous_tuple_structure_factory(tp, conv)

    def structure(value: Any, _: Any) -> tuple:
        if not isinstance(value, list):
            hint = f'write an array: ["{value}"]' if isinstance(value, str) else "write an array: [ ... ]"
            raise KeyProblem(f"expected an array, found {_shown(value)}", hint=hint)
        return items(value, _)

    return structure


def _table_of(cls: type, conv: cattrs.Converter):
    """Structure an attrs class only from a TOML table."""
    fields = conv.gen_structure_attrs_fromdict(cls)

    def structure(value: Any, _: Any) -> Any:
        if not isinstance(value, dict):
            raise KeyProblem(f"expected a table, found {_shown(value)}")
        return fields(value, _)

    return structure


def make_converter() -> cattrs.Converter:
    """A strict converter: exact scalars, arrays only from arrays, tables only from tables, no
    unknown key, choices only from their options, and the language's own values (durations,
    pieces, selectors, losses). The plan's converter (`stagedsl.plan.convert`) is one too."""
    conv = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    conv.register_structure_hook_factory(lambda tp: typing.get_origin(tp) is tuple, lambda tp: _array_of(tp, conv))
    conv.register_structure_hook_factory(attrs.has, lambda cls: _table_of(cls, conv))
    conv.register_structure_hook(int, _strict_int)
    conv.register_structure_hook(float, _strict_float)
    conv.register_structure_hook(str, _strict_str)
    conv.register_structure_hook(bool, _strict_bool)
    conv.register_structure_hook(dict, _table)
    conv.register_structure_hook(Duration, _duration)
    conv.register_structure_hook_factory(lambda tp: typing.get_origin(tp) is Literal, _choice)
    conv.register_structure_hook(Union[int, Literal["auto"]], _threads)
    conv.register_structure_hook(Optional[Union[int, Literal["auto"]]], lambda v, t: None if v is None else _threads(v, t))
    conv.register_structure_hook(Piece, structure_piece)
    conv.register_structure_hook(Union[str, Piece], _selector)
    conv.register_structure_hook(LossSpec, structure_loss)
    return conv


_base_converter = make_converter()
converter = make_converter()
converter.register_structure_hook(DataSection, _data)
converter.register_structure_hook(EnsembleSpec, _ensemble)
converter.register_structure_hook(
    Spec,
    make_dict_structure_fn(
        Spec, converter, _cattrs_forbid_extra_keys=True, stages=override(rename="stage"), ensembles=override(rename="ensemble"),
        **{name: override(omit=True) for name in LOADER_FIELDS}
    ),
)

_RENAMED = {Spec: {"stages": "stage", "ensembles": "ensemble"}}
_LAYER_KEYS = ("defaults", "profile", "extends", "paths_from")
"""Top-level keys the loader consumes before structuring (valid, so offered as did-you-means)."""
_OMITTED = {Spec: set(LOADER_FIELDS)}


def key_names(cls: type) -> list[str]:
    """The TOML keys of an attrs class."""
    renamed = _RENAMED.get(cls, {})
    omitted = _OMITTED.get(cls, set())
    return [renamed.get(a.name, a.name) for a in attrs.fields(cls) if a.name not in omitted]


def flatten_errors(exc: BaseException, path: tuple = ()) -> list[tuple[tuple, str, Optional[str], str]]:
    """Flatten a cattrs validation error into ``(path, message, hint, code)`` rows."""
    rows = []
    if isinstance(exc, ForbiddenExtraKeysError):
        allowed = key_names(exc.cl) + (list(_LAYER_KEYS) if exc.cl is Spec else [])
        for key in sorted(exc.extra_fields):
            rows.append((path + (key,), f"unknown key `{key}`", did_you_mean(key, allowed) or f"allowed keys: {', '.join(allowed)}", "E002"))
        return rows
    if isinstance(exc, (ClassValidationError, IterableValidationError)):
        for inner in exc.exceptions:
            step: tuple = ()
            for note in getattr(inner, "__notes__", []):
                if hasattr(note, "name") and isinstance(getattr(note, "name"), str):
                    step = (_RENAMED.get(_owner(exc), {}).get(note.name, note.name),)
                elif hasattr(note, "index"):
                    step = (note.index,)
            rows.extend(flatten_errors(inner, path + step))
        return rows
    if isinstance(exc, MissingUse):
        return [(path + exc.path, str(exc), exc.hint or _use_hint(path), exc.code)]
    if isinstance(exc, KeyProblem):
        return [(path + exc.path, str(exc), exc.hint, exc.code)]
    if isinstance(exc, KeyError):
        name = path[-1] if path else (exc.args[0] if exc.args else "?")
        return [(path, f"missing required key `{name}`", None, "E001")]
    return [(path, str(exc), None, "E003")]


_PIECE_KINDS = {"model": "model", "data": "dataset", "optimizer": "optimizer", "scheduler": "scheduler", "loss": "loss",
                "sum": "loss", "blend": "loss", "metrics": "metric", "callbacks": "callback", "train": "freeze strategy",
                "freeze": "freeze strategy", "params": "freeze strategy"}


def _use_hint(path: tuple) -> str:
    """How to write `use` in the table at `path`: under a header for [model] and [data], inline elsewhere."""
    named = [part for part in path if isinstance(part, str)]
    key = named[-1] if named else ""
    kind = _PIECE_KINDS.get(key, "piece")
    if len(path) == 1 and key in ("model", "data"):
        return f'write use = "<registered {kind}>" in [{key}], beside its arguments (`staged plugins` lists them)'
    return f'e.g. {key or "piece"} = {{ use = "<registered {kind}>", <its arguments> }} (`staged plugins` lists them)'


def _owner(exc: BaseException) -> Optional[type]:
    return getattr(exc, "cl", None)


def structure_spec(data: dict) -> Spec:
    """Structure merged TOML data into a `Spec`; raises cattrs errors (see `flatten_errors`)."""
    return converter.structure(data, Spec)


__all__ = [
    "CheckpointSpec", "EarlyStopSpec", "EnsembleSpec", "EvalSpec", "ExportSpec", "GateSpec", "GroupSpec", "InitSpec", "KeyProblem",
    "MatrixSpec", "RunSection", "StageSpec", "converter", "flatten_errors", "key_names", "structure_loss", "structure_piece", "structure_spec",
]
