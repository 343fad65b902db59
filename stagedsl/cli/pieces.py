"""`staged plugins [NAME]`: every piece with its arguments, or one piece in full.

A plugin author (or a user naming a class by import path) sees what a spec may write:
each argument with its type and default, the ones stagedsl supplies itself, the piece's
meta (default, prefix, mode, ...) and a line of TOML that uses it.
"""

from __future__ import annotations

import inspect
import json
import textwrap
from typing import Any, Optional

import attrs

from stagedsl.cli.output import say
from stagedsl.errors import PluginError, Problem, did_you_mean
from stagedsl.registry import KINDS, Entry, Registry, singular
from stagedsl.registry.import_path import is_import_path

WIDTH = 100
DOC_LINES = 16
"""How much of a docstring `staged plugins NAME` prints (a torch class's runs to pages)."""

EXAMPLE = {
    "models": '[model]\nuse = "{name}"{args_lines}',
    "datasets": '[data]\nuse = "{name}"{args_lines}',
    "losses": 'loss = {table}',
    "metrics": 'metrics = [{table}]',
    "optimizers": 'optimizer = {table}',
    "schedulers": 'scheduler = {table}',
    "freeze_strategies": 'freeze = [{table}]',
    "callbacks": 'callbacks = [{table}]',
    "ensembles": '[[ensemble]]\nname = "{name}"\nuse = "{name}"{args_lines}',
    "meta_learners": 'meta = {table}',
    "exporters": '[export]\nformats = ["{name}"]',
}
"""How a spec writes a piece of each kind (with its required arguments)."""


def _meta(entry: Entry) -> dict[str, Any]:
    out = {}
    for field in attrs.fields(type(entry.meta)):
        value = getattr(entry.meta, field.name)
        if value in (None, False, {}, ()) or (field.name == "mode" and value == field.default):
            continue
        if callable(value):
            value = getattr(value, "__name__", repr(value))
        elif isinstance(value, dict):
            value = {k: getattr(v, "__name__", v) if callable(v) else v for k, v in value.items()}
        out[field.name] = value
    return out


def _record(entry: Entry, *, full: bool = False) -> dict[str, Any]:
    doc = (inspect.getdoc(entry.factory) or "").strip() if full else entry.doc
    return {"kind": entry.kind, "name": entry.name, "plugin": entry.plugin, "distribution": entry.distribution,
            "version": entry.version, "doc": doc, "default": bool(entry.meta.get("default")),
            "arguments": [attrs.asdict(a) for a in entry.arguments()], "meta": _meta(entry), "origin": entry.origin}


def _signature_line(entry: Entry) -> str:
    if entry.parameters is None:
        return "(its signature cannot be read: arguments unchecked)"
    written = [a.render() for a in entry.arguments() if not a.supplied]
    return ", ".join(written) if written else "no arguments"


def list_pieces(registry: Registry, *, kind: Optional[str], json_: bool) -> None:
    """Every registered piece (of `kind`), with its arguments."""
    if kind is not None and kind not in KINDS:
        raise PluginError([Problem(code="E020", message=f"no kind of piece named `{kind}`", path="--kind",
                                   hint=did_you_mean(kind, KINDS) or f"kinds: {', '.join(KINDS)}")])
    entries = registry.entries(kind)
    if json_:
        say(json.dumps([_record(e) for e in entries], indent=2, default=str))
        return
    current = None
    for entry in entries:
        if entry.kind != current:
            current = entry.kind
            say(f"{current}:")
        source = f"{entry.distribution or entry.plugin} {entry.version or ''}".strip()
        default = " (the default)" if entry.meta.get("default") else ""
        say(f"  {entry.name:<20} {entry.doc}{default}  [{source}]")
        say(textwrap.fill(_signature_line(entry), WIDTH, initial_indent=" " * 25, subsequent_indent=" " * 25))


def _find(registry: Registry, name: str, kind: Optional[str]) -> list[Entry]:
    if is_import_path(name):
        return [registry.get(kind or "models", name)]
    kinds = [kind] if kind else list(KINDS)
    found = [registry.find(k, name) for k in kinds]
    found = [entry for entry in found if entry is not None]
    if not found:
        every = sorted({e.name for e in registry.entries(kind)})
        where = f"{singular(kind)} " if kind else "piece "
        raise PluginError([Problem(code="E020", message=f"no {where}named `{name}` is registered",
                                   hint=did_you_mean(name, every) or "`staged plugins` lists them; an import path names "
                                   "any class or function (\"torch.optim:SGD\", \"./model.py:Net\")")])
    return found


def _example(entry: Entry) -> str:
    required = [a for a in entry.arguments() if a.required]
    pairs = [f"{a.name} = ..." for a in required]
    table = f'{{ use = "{entry.name}"{", " + ", ".join(pairs) if pairs else ""} }}'
    if not pairs and entry.kind not in ("freeze_strategies", "callbacks"):
        table = f'"{entry.name}"'
    lines = "".join(f"\n{pair}" for pair in pairs)
    return EXAMPLE.get(entry.kind, "{table}").format(name=entry.name, table=table, args_lines=lines)


def show_piece(registry: Registry, name: str, *, kind: Optional[str], json_: bool) -> None:
    """One piece in full: where it comes from, its whole docstring, every argument, its meta, a spec line."""
    entries = _find(registry, name, kind)
    if json_:
        records = [_record(e, full=True) for e in entries]
        say(json.dumps(records[0] if len(records) == 1 else records, indent=2, default=str))
        return
    blocks = []
    for entry in entries:
        lines = [f"{singular(entry.kind)} `{entry.name}`  ({entry.source})"]
        if entry.origin:
            lines.append(f"  file: {entry.origin}")
        doc = (inspect.getdoc(entry.factory) or "").strip().splitlines()
        if doc:
            shown = doc[:DOC_LINES] + ([f"... ({len(doc) - DOC_LINES} more lines of its docstring)"] if len(doc) > DOC_LINES else [])
            lines += ["", textwrap.indent("\n".join(shown), "  ")]
        arguments = entry.arguments()
        lines += ["", "  arguments:" if arguments else "  arguments: none (or its signature cannot be read)"]
        lines += [f"    {a.render()}" for a in arguments]
        meta = _meta(entry)
        if meta:
            lines += ["", "  registered with: " + "; ".join(f"{k} = {json.dumps(v, default=str)}" for k, v in meta.items())]
        lines += ["", "  in a spec:", textwrap.indent(_example(entry), "    ")]
        blocks.append("\n".join(lines))
    if is_import_path(name) and kind is None:
        blocks.append("(shown as a model; --kind optimizers, --kind schedulers, ... shows it as the core would call that kind)")
    say("\n\n".join(blocks))


__all__ = ["list_pieces", "show_piece"]
