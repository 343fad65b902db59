"""What a spec names on disk, read from the spec's folder, decided once for the plan.

- A piece named by a file (``use = "./model.py:Net"``) gets the file's absolute path.
- An argument of ``[model]`` or ``[data]`` annotated as a path (``pathlib.Path``,
  ``os.PathLike``, optional or a list of them) is read relative to the spec's folder; an
  absolute path or one starting with ``~`` works as usual. The plan holds the absolute
  path, so the engine (or a matrix member's process, or a resume) opens exactly what the
  plan says wherever it runs.
"""

from __future__ import annotations

import os
from typing import Any, Optional

import attrs

from stagedsl.errors import StagedError
from stagedsl.registry import Registry
from stagedsl.registry.arguments import map_path_args
from stagedsl.registry.import_path import absolute, is_live
from stagedsl.spec.model import DataSection, Piece, Spec


def _read_from(value: Any, root: str) -> Any:
    if not isinstance(value, str):
        return value
    expanded = os.path.expanduser(value)
    return expanded if os.path.isabs(expanded) else os.path.normpath(os.path.join(root, expanded))


def resolve_path_args(kind: str, use: str, args: dict, registry: Registry, root: Optional[str]) -> dict:
    """`args` with every path-annotated argument of the piece read from `root`."""
    if root is None or is_live(use) or not args:
        return args
    try:
        entry = registry.find(kind, use)
        signature = entry.signature() if entry is not None else None
    except (StagedError, TypeError):
        return args  # reported where the piece is checked
    return map_path_args(signature, args, lambda value: _read_from(value, root))


def _absolute_uses(value: Any, root: Optional[str]) -> Any:
    """Every `Piece` inside `value` (the spec's attrs tree) with a file import path made absolute."""
    if isinstance(value, Piece):
        return attrs.evolve(value, use=absolute(value.use, root))
    if isinstance(value, tuple):
        return tuple(_absolute_uses(item, root) for item in value)
    if attrs.has(type(value)) and not isinstance(value, DataSection):
        changes = {field.name: _absolute_uses(getattr(value, field.name), root) for field in attrs.fields(type(value))
                   if field.init and (attrs.has(type(getattr(value, field.name))) or isinstance(getattr(value, field.name), tuple))}
        return attrs.evolve(value, **changes) if changes else value
    return value


def anchored(spec: Spec, registry: Registry) -> Spec:
    """`spec` with its file import paths and its ``[model]`` / ``[data]`` path arguments made absolute (see the module docstring)."""
    root = spec.root
    pieces = {field.name: _absolute_uses(getattr(spec, field.name), root)
              for field in attrs.fields(Spec) if field.name in ("model", "stages", "callbacks")}
    model = pieces["model"]
    pieces["model"] = attrs.evolve(model, args=resolve_path_args("models", model.use, dict(model.args), registry, root))
    data_use = absolute(spec.data.use, root)
    pieces["data"] = attrs.evolve(spec.data, use=data_use,
                                  args=resolve_path_args("datasets", data_use, dict(spec.data.args), registry, root))
    return attrs.evolve(spec, **pieces)


__all__ = ["anchored", "resolve_path_args"]
