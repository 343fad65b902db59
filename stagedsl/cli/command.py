"""The Typer pieces every `staged` command shares: plain, markup-safe help with real usage lines.

- Help is click's plain text (``rich_markup_mode=None``): a help string such as "the
  spec's [export] section" prints as written, where rich markup would eat ``[export]``.
- Usage lines name arguments as ``SPEC`` / ``[NAME]``: typer 0.28+ writes ``{spec}``.
- Options that take a value carry a metavar (``--out DIR``); flags carry none, where
  typer 0.29's rich help prints ``<bool>`` after every flag; an argument taking any text
  shows its metavar alone (``NAME``, not ``NAME <str>``).

These hold for every typer from 0.12 on, so no pin is needed (``tests/cli/test_help.py``
renders every command's help and checks it).
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperCommand


class StagedCommand(TyperCommand):
    """A command whose usage line reads ``staged run [OPTIONS] SPEC`` and whose options say what they take.

    An argument or a value option without a metavar gets its name in capitals
    (``RUN_DIR``, ``--split SPLIT``), where typer would print its Python type.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        for param in self.params:
            kind = getattr(param, "param_type_name", "")
            if param.metavar is None and (kind == "argument" or (kind == "option" and not getattr(param, "is_flag", False))):
                param.metavar = (param.name or "value").rstrip("_").upper()
            if kind == "argument" and _shows_str(param):
                param.display_type_rich = _no_type  # "NAME <str>" says nothing its metavar does not (typer 0.29 adds it)

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        params = self.get_params(ctx)
        pieces = ["[OPTIONS]"] if any(getattr(p, "param_type_name", "") == "option" for p in params) else []
        for param in params:
            if getattr(param, "param_type_name", "") != "argument":
                continue
            name = param.metavar or param.name.upper()
            name += "..." if param.nargs != 1 else ""
            pieces.append(name if param.required else f"[{name}]")
        return pieces


def _shows_str(param: Any) -> bool:
    try:
        return param.display_type_rich(None) == "<str>"
    except Exception:  # another typer's internals: leave its help as it is
        return False


def _no_type(ctx: Any) -> None:
    return None


class StagedTyper(typer.Typer):
    """A Typer app whose commands are `StagedCommand`s with plain help."""

    def __init__(self, **kwargs: Any):
        kwargs.setdefault("rich_markup_mode", None)
        super().__init__(**kwargs)

    def command(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("cls", StagedCommand)
        return super().command(*args, **kwargs)
