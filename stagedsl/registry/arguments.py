"""How a piece's factory signature reads: its arguments as `staged plugins` shows them, and
the arguments annotated as paths (read relative to the spec's folder, handed over as `Path`)."""

from __future__ import annotations

import inspect
import os
import pathlib
import typing
from typing import Any, Callable, Optional

import attrs

from stagedsl.registry.hookspecs import OPTIONAL_SUPPLIED, SUPPLIED


def is_path_type(annotation: Any) -> bool:
    """Whether an annotation is a path class (`pathlib.Path`, `os.PathLike`, any `PurePath`)."""
    return annotation is os.PathLike or (inspect.isclass(annotation) and issubclass(annotation, pathlib.PurePath))


def annotated_as(annotation: Any, is_type: Callable[[Any], bool]) -> tuple[bool, bool]:
    """(is such a type, is a list of them) for a parameter's annotation, optional ones included:
    ``annotated_as(list[Steps] | None, lambda a: a is Steps) == (True, True)``."""
    if is_type(annotation):
        return True, False
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (list, tuple, typing.Sequence) and args:
        return bool(is_type(args[0])), True
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        for option in args:
            found = annotated_as(option, is_type)
            if found[0]:
                return found
    return False, False


def is_path_annotation(annotation: Any) -> tuple[bool, bool]:
    """(is a path, is a list of paths) for a parameter's annotation (optional ones included)."""
    return annotated_as(annotation, is_path_type)


def map_path_args(signature: Optional[inspect.Signature], args: dict, convert: Callable[[str], Any]) -> dict:
    """`args` with `convert` applied to each string of a path-annotated parameter (each item of a list of paths)."""
    if signature is None:
        return args
    out = dict(args)
    for name, value in args.items():
        parameter = signature.parameters.get(name)
        if parameter is None:
            continue
        is_path, is_list = is_path_annotation(parameter.annotation)
        if is_path and isinstance(value, str):
            out[name] = convert(value)
        elif is_path and is_list and isinstance(value, list):
            out[name] = [convert(v) if isinstance(v, str) else v for v in value]
    return out


def as_paths(signature: Optional[inspect.Signature], args: dict) -> dict:
    """`args` with the strings of path-annotated parameters as `pathlib.Path` objects."""
    return map_path_args(signature, args, pathlib.Path)


def describe_type(annotation: Any) -> str:
    """An annotation as a spec writer reads it: ``float``, ``list[int]``, ``int | None``, ``duration``, ``path``."""
    if annotation is inspect.Parameter.empty:
        return "any"
    if annotation is type(None):
        return "None"
    if getattr(annotation, "__name__", None) == "Steps":
        return "duration"
    if is_path_type(annotation):
        return "path"
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        return " | ".join(describe_type(a) for a in args)
    if origin is not None:
        name = getattr(origin, "__name__", str(origin).replace("typing.", ""))
        return f"{name}[{', '.join('...' if a is Ellipsis else describe_type(a) for a in args)}]" if args else name
    if isinstance(annotation, str):
        return annotation
    return getattr(annotation, "__name__", str(annotation).replace("typing.", ""))


@attrs.frozen
class Argument:
    """One argument of a piece: what a spec writes (or what stagedsl supplies itself)."""

    name: str
    type: str
    default: Any = None  # JSON-ready (a repr when it is not plain data); None when required
    required: bool = False
    supplied: bool = False  # given by stagedsl itself (an optimizer's param_groups), never written in a spec

    def render(self) -> str:
        """``name: type = default`` as `staged plugins` prints it."""
        if self.name.startswith("**"):
            return f"{self.name} (takes any argument: none is checked)"
        text = f"{self.name}: {self.type}"
        if self.supplied:
            return text + " (supplied by stagedsl)"
        return text if self.required else f"{text} = {_toml(self.default)}"


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return repr(value)


def _toml(value: Any) -> str:
    if value is None:
        return "None"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return str(value)


def arguments(kind: str, signature: Optional[inspect.Signature]) -> list[Argument]:
    """The arguments of a factory of `kind`, in order; empty when its signature cannot be read."""
    if signature is None:
        return []
    supplied = set(SUPPLIED.get(kind, ()) + OPTIONAL_SUPPLIED.get(kind, ()))
    out = []
    for name, parameter in signature.parameters.items():
        if parameter.kind in (inspect.Parameter.VAR_POSITIONAL,):
            continue
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            out.append(Argument(f"**{name}", "any", None, False, False))
            continue
        required = parameter.default is inspect.Parameter.empty
        out.append(Argument(name, describe_type(parameter.annotation), None if required else _plain(parameter.default),
                            required and name not in supplied, name in supplied))
    return out


__all__ = ["Argument", "annotated_as", "arguments", "as_paths", "describe_type", "is_path_annotation", "is_path_type", "map_path_args"]
