"""The strict converter of plans: JSON data (``plan.json``) back to a `Plan`.

Nothing is coerced and nothing is dropped: an unknown key, ``"4"`` where a count belongs,
a string where a flag belongs or a choice outside its options (``on_nonfinite =
"explode"``) is a `PlanError` (E065) naming the key path, so a plan that was edited by
hand or written by another version is refused whole rather than half-understood.
"""

from __future__ import annotations

import typing
from typing import Any, Literal

import attrs
import cattrs
from cattrs.cols import homogenous_tuple_structure_factory
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError

from stagedsl.errors import PlanError, Problem
from stagedsl.plan.model import Plan


class _Wrong(ValueError):
    """A value of the wrong type or outside its choices."""


def _kind(value: Any) -> str:
    return type(value).__name__


def _exact(kind: type, name: str):
    def structure(value: Any, _: Any) -> Any:
        if type(value) is not kind and not (kind is float and type(value) is int):
            raise _Wrong(f"expected {name}, found {_kind(value)} {value!r}")
        return kind(value)

    return structure


def _choice(tp: Any):
    options = typing.get_args(tp)

    def structure(value: Any, _: Any) -> Any:
        if not isinstance(value, str) or value not in options:
            raise _Wrong(f"expected one of {', '.join(map(repr, options))}, found {value!r}")
        return value

    return structure


def _tuple(tp: Any, conv: cattrs.Converter):
    items = homogenous_tuple_structure_factory(tp, conv)

    def structure(value: Any, _: Any) -> tuple:
        if not isinstance(value, (list, tuple)):
            raise _Wrong(f"expected an array, found {_kind(value)}")
        return items(value, _)

    return structure


def _table(value: Any, _: Any) -> dict:
    if not isinstance(value, dict):
        raise _Wrong(f"expected a table, found {_kind(value)}")
    return value


def _attrs_class(cls: type, conv: cattrs.Converter):
    fields = conv.gen_structure_attrs_fromdict(cls)

    def structure(value: Any, _: Any) -> Any:
        if not isinstance(value, dict):
            raise _Wrong(f"expected a table, found {_kind(value)}")
        return fields(value, _)

    return structure


def _make() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    conv.register_structure_hook_factory(attrs.has, lambda cls: _attrs_class(cls, conv))
    conv.register_structure_hook_factory(lambda tp: typing.get_origin(tp) is tuple, lambda tp: _tuple(tp, conv))
    conv.register_structure_hook_factory(lambda tp: typing.get_origin(tp) is Literal, _choice)
    for kind, name in ((int, "an integer"), (float, "a number"), (str, "a string"), (bool, "true or false")):
        conv.register_structure_hook(kind, _exact(kind, name))
    conv.register_structure_hook(dict, _table)
    return conv


_converter = _make()


def _rows(exc: BaseException, path: str = "") -> list[tuple[str, str]]:
    """``(key path, message)`` for every leaf of a cattrs error."""
    if isinstance(exc, ForbiddenExtraKeysError):
        return [(f"{path}.{key}" if path else key, "unknown key") for key in sorted(exc.extra_fields)]
    if isinstance(exc, (ClassValidationError, IterableValidationError)):
        rows = []
        for inner in exc.exceptions:
            step = path
            for note in getattr(inner, "__notes__", []):
                if isinstance(getattr(note, "name", None), str):
                    step = f"{path}.{note.name}" if path else note.name
                elif hasattr(note, "index"):
                    step = f"{path}[{note.index}]"
            rows.extend(_rows(inner, step))
        return rows
    if isinstance(exc, KeyError):
        return [(path, "missing")]
    return [(path, str(exc))]


def structure_plan(data: Any) -> Plan:
    """A `Plan` from plain data, strictly (see the module docstring); E065 listing every problem."""
    if not isinstance(data, dict):
        raise PlanError([Problem(code="E065", message=f"a plan is a table, found {_kind(data)}")])
    try:
        return _converter.structure(data, Plan)
    except PlanError:
        raise
    except Exception as exc:  # cattrs' exception groups
        rows = _rows(exc) or [("", f"{type(exc).__name__}: {exc}")]
        raise PlanError([Problem(code="E065", message=f"not a valid plan: `{path or '<plan>'}`: {message}", path=path or None)
                         for path, message in rows]) from None


__all__ = ["structure_plan"]
