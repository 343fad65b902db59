"""JSON Schema (draft 2020-12) of the language, generated from the attrs classes.

Taplo / Even Better TOML use it for completion and checking (``#:schema`` directive).
It checks shape only; `staged validate` checks everything else.
"""

from __future__ import annotations

import typing
from typing import Any, Literal, Union

import attrs

from stagedsl.spec.convert import key_names
from stagedsl.spec.durations import Duration
from stagedsl.spec.model import (
    DATA_LOADER_KEYS,
    LOADER_FIELDS,
    DataSection,
    EnsembleSpec,
    ExportSpec,
    LossSpec,
    MatrixSpec,
    Piece,
    RunSection,
    SearchSpec,
    Spec,
    StageSpec,
)

SCHEMA_ID = "https://stagedsl.dev/schema/spec.json"
DURATION = {
    "description": 'A duration: a number of steps, or "N steps" / "N epochs".',
    "anyOf": [{"type": "integer", "minimum": 0}, {"type": "string", "pattern": r"^\s*[0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?\s*(steps?|ba|batch(es)?|epochs?|ep)\s*$"}],
}
PIECE = {
    "description": 'A registered piece: "name" or { use = "name", <arguments> }.',
    "anyOf": [{"type": "string"}, {"type": "object", "required": ["use"], "properties": {"use": {"type": "string"}}}],
}
SELECTOR = {
    "description": 'A parameter selector: a glob ("encoder.**"), a regex ("re:..."), or { use = "<strategy>", ... }.',
    "anyOf": [{"type": "string"}, {"type": "object", "required": ["use"], "properties": {"use": {"type": "string"}}}],
}
LOSS_TERM = {"anyOf": [{"type": "string"}, {"type": "object", "required": ["use"], "properties": {"use": {"type": "string"}, "weight": {"type": "number"}}}]}
LOSS = {
    "description": LossSpec.__doc__,
    "anyOf": [
        LOSS_TERM,
        {"type": "object", "required": ["sum"], "additionalProperties": False, "properties": {"sum": {"type": "array", "minItems": 1, "items": LOSS_TERM}}},
        {"type": "object", "required": ["blend", "alpha"], "additionalProperties": False,
         "properties": {"blend": {"type": "array", "minItems": 2, "maxItems": 2, "items": LOSS_TERM}, "alpha": {"type": "number", "minimum": 0, "maximum": 1}}},
    ],
}


def _type_schema(tp: Any) -> dict:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Piece:
        return dict(PIECE)
    if tp is LossSpec:
        return dict(LOSS)
    if tp == Union[str, Piece]:
        return dict(SELECTOR)
    if tp is Duration:
        return dict(DURATION)
    if origin is Literal:
        return {"enum": list(args)}
    if origin is Union:
        options = [a for a in args if a is not type(None)]
        return _type_schema(options[0]) if len(options) == 1 else {"anyOf": [_type_schema(a) for a in options]}
    if origin is typing.Literal:
        return {"enum": list(args)}
    if origin is tuple:
        return {"type": "array", "items": _type_schema(args[0])}
    if attrs.has(tp):
        return _class_schema(tp)
    return {int: {"type": "integer"}, float: {"type": "number"}, str: {"type": "string"}, bool: {"type": "boolean"}, dict: {"type": "object"}}.get(tp, {})


def _class_schema(cls: type, *, required: bool = True, open_args: bool = False) -> dict:
    fields = {a.name: a for a in attrs.fields(cls)}
    hints = typing.get_type_hints(cls)
    properties: dict[str, Any] = {}
    needed = []
    for key, attr_name in zip(key_names(cls), [a.name for a in attrs.fields(cls) if a.name in fields and a.name not in LOADER_FIELDS]):
        if attr_name == "args":
            continue
        attribute = fields[attr_name]
        schema = _type_schema(hints[attr_name])
        text = attribute.metadata.get("doc")
        if text:
            schema = {**schema, "description": text}
        properties[key] = schema
        if required and attribute.default is attrs.NOTHING:
            needed.append(key)
    schema: dict[str, Any] = {"type": "object", "description": (cls.__doc__ or "").strip().splitlines()[0], "properties": properties}
    if needed:
        schema["required"] = needed
    schema["additionalProperties"] = True if open_args else False
    return schema


def spec_schema() -> dict:
    """The JSON Schema of a spec file."""
    stage = _class_schema(StageSpec)
    defaults = _class_schema(StageSpec, required=False)
    defaults["description"] = "`[defaults]`: keys every stage inherits (deep merge); any stage key."
    defaults["properties"].pop("name", None)
    data = _class_schema(DataSection, open_args=True)
    data["description"] = DataSection.__doc__.strip()
    top = _class_schema(Spec)
    top["properties"]["model"] = {**PIECE["anyOf"][1], "description": "`[model]`: the registered model and its arguments."}
    top["properties"]["data"] = data
    top["properties"]["stage"] = {"type": "array", "minItems": 1, "items": stage, "description": "`[[stage]]`: the ordered stages."}
    top["properties"]["run"] = _class_schema(RunSection)
    top["properties"]["export"] = _class_schema(ExportSpec)
    matrix = _class_schema(MatrixSpec)
    matrix["properties"]["variant"] = {**matrix["properties"]["variant"], "type": "object", "additionalProperties": {"type": "object"}}
    top["properties"]["matrix"] = matrix
    ensemble = _class_schema(EnsembleSpec, open_args=True)
    ensemble["description"] = EnsembleSpec.__doc__.strip()
    top["properties"]["ensemble"] = {"type": "array", "items": ensemble, "description": "`[[ensemble]]`: ensembles of the matrix's members."}
    search = _class_schema(SearchSpec)
    search["properties"]["space"] = {**search["properties"]["space"], "type": "object", "minProperties": 1, "additionalProperties": {
        "anyOf": [{"type": "array", "minItems": 1},
                  {"type": "object", "required": ["low", "high"], "additionalProperties": False,
                   "properties": {"low": {"type": "number"}, "high": {"type": "number"}, "log": {"type": "boolean"}, "step": {"type": "number"}}}]}}
    top["properties"]["search"] = search
    top["properties"]["defaults"] = defaults
    top["properties"]["extends"] = {"type": "string", "description": "Another spec file this one is layered on (deep merge; path relative to this file)."}
    top["properties"]["paths_from"] = {"type": "string", "description": "The folder relative paths (import paths, [model] / [data] path arguments) are read from; default this file's folder."}
    top["properties"]["profile"] = {
        "type": "object", "description": "Named partial specs selected with --profile, merged over the file.",
        "additionalProperties": {"type": "object"},
    }
    needed = top.pop("required", [])
    body = {k: v for k, v in top.items() if k != "additionalProperties"}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "stagedsl training plan",
        **body,
        "additionalProperties": False,
        # a file that `extends` another may leave the required tables to its parent
        "if": {"not": {"required": ["extends"]}},
        "then": {"required": needed},
    }


__all__ = ["DATA_LOADER_KEYS", "spec_schema"]
