"""Layering of TOML documents: `extends`, profiles, `--set` overrides and `[defaults]`.

Tables merge key by key; arrays of named tables (``[[stage]]``) merge element by
element on ``name`` (a later layer may also address them as a table keyed by stage
name: ``[profile.tiny.stage.warmup] steps = 20``); any other value is replaced.
"""

from __future__ import annotations

import copy
from typing import Any

from stagedsl.errors import did_you_mean
from stagedsl.spec.convert import KeyProblem
from stagedsl.spec.locate import PathPart
from stagedsl.spec.overrides import Override


def _is_named_tables(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) and isinstance(v.get("name"), str) for v in value)


def deep_merge(base: Any, layer: Any, path: tuple[PathPart, ...] = ()) -> Any:
    """`layer` merged over `base` (neither is modified)."""
    if isinstance(base, dict) and isinstance(layer, dict) and not _other_piece(base, layer):
        merged = dict(base)
        for key, value in layer.items():
            merged[key] = deep_merge(base[key], value, path + (key,)) if key in base else copy.deepcopy(value)
        return merged
    if _is_named_tables(base) and isinstance(layer, dict):
        return _merge_by_name(base, list(_named(layer, path)), path, addressed=True)
    if _is_named_tables(base) and _is_named_tables(layer):
        return _merge_by_name(base, layer, path, addressed=False)
    return copy.deepcopy(layer)


_ALTERNATIVES = (("use", "sum", "blend"), ("stage", "path"))
"""Keys that say what a table *is* (a piece, a loss; an init from a stage or from a file):
a layer that switches to another one replaces the table instead of merging into it."""


def _other_piece(base: dict, layer: dict) -> bool:
    """True when `layer` names another piece (or init source) than `base`: its arguments must not inherit."""
    for kinds in _ALTERNATIVES:
        base_kind = next((k for k in kinds if k in base), None)
        layer_kind = next((k for k in kinds if k in layer), None)
        if layer_kind is None or base_kind is None:
            continue
        if layer_kind != base_kind or (layer_kind == "use" and base["use"] != layer["use"]):
            return True
    return False


def _named(layer: dict, path: tuple) -> list[dict]:
    items = []
    for name, value in layer.items():
        if not isinstance(value, dict):
            raise KeyProblem(f"expected a table of settings for `{name}`, found {value!r}", path=path + (name,))
        items.append({**value, "name": name})
    return items


def _merge_by_name(base: list[dict], layer: list[dict], path: tuple, *, addressed: bool) -> list[dict]:
    merged = [dict(item) for item in base]
    index = {item["name"]: i for i, item in enumerate(merged)}
    for item in layer:
        name = item["name"]
        if name in index:
            merged[index[name]] = deep_merge(merged[index[name]], item, path + (index[name],))
        elif addressed:
            raise KeyProblem(
                f"no stage named `{name}` to override", path=path + (name,), code="E007",
                hint=did_you_mean(name, index, cutoff=0.6) or f"stages: {', '.join(index)}",
            )
        else:
            merged.append(copy.deepcopy(item))
    return merged


def parse_override(text: str) -> tuple[list[PathPart], Any]:
    """``"stage.warmup.lr=1e-5"`` -> (["stage", "warmup", "lr"], 1e-05). Values are TOML, else strings
    (`stagedsl.spec.overrides.Override` keeps where each part is written, for messages)."""
    override = Override.parse(text)
    return list(override.parts), override.value


def set_path(document: dict, parts: list[PathPart], value: Any) -> dict:
    """A copy of `document` with `value` written at `parts` (stages addressable by name)."""
    document = copy.deepcopy(document)
    node: Any = document
    for depth, part in enumerate(parts[:-1]):
        following = parts[depth + 1]
        if isinstance(node, list):
            if isinstance(part, int):
                if not 0 <= part < len(node):
                    raise KeyProblem(f"index [{part}] is out of range ({len(node)} entries)", path=tuple(parts[: depth + 1]), code="E007")
                node = node[part]
                continue
            match = [item for item in node if isinstance(item, dict) and item.get("name") == part]
            if not match:
                names = [str(item.get("name")) for item in node if isinstance(item, dict)]
                hint = did_you_mean(part, names, cutoff=0.6) or f"names: {', '.join(names)}"
                raise KeyProblem(f"no entry named `{part}`", path=tuple(parts[: depth + 1]), code="E007", hint=hint)
            node = match[0]
            continue
        if not isinstance(node, dict):
            raise KeyProblem("cannot set a key inside a value that is not a table", path=tuple(parts[: depth + 1]), code="E007")
        if part not in node:
            node[part] = [] if isinstance(following, int) else {}
        node = node[part]
    last = parts[-1]
    if isinstance(node, list) and isinstance(last, int) and 0 <= last < len(node):
        node[last] = value
    elif isinstance(node, dict) and isinstance(last, str):
        node[last] = value
    else:
        raise KeyProblem("cannot set this key path", path=tuple(parts), code="E007")
    return document


def apply_defaults(document: dict) -> dict:
    """Each stage merged over `[defaults]`; the `defaults` key removed."""
    defaults = document.get("defaults")
    if defaults is None:
        return document
    if not isinstance(defaults, dict):
        raise KeyProblem(f"expected a table, found {defaults!r}", path=("defaults",))
    document = {k: v for k, v in document.items() if k != "defaults"}
    stages = document.get("stage")
    if isinstance(stages, list):
        document["stage"] = [deep_merge(defaults, stage) if isinstance(stage, dict) else stage for stage in stages]
    return document
