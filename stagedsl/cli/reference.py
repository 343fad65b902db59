"""Generate `docs/cli.md` — every command, argument and option of `staged` — from the Typer
app itself, so the reference cannot drift from the code.

    python -m stagedsl.cli.reference > docs/cli.md
"""

from __future__ import annotations

import inspect
from typing import Any

import typer

from stagedsl.cli import app as app_module

INTRO = """\
# The `staged` command

Generated from the command's own help by `python -m stagedsl.cli.reference > docs/cli.md`
(a test checks that this file is current). `staged --help` and `staged <command> --help`
print the same in a terminal; `python -m stagedsl` is the same command.

Data goes to stdout, diagnostics and progress to stderr; every listing and report
command has `--json`. Exit codes: **0** done, **1** failure while running, **2** bad spec,
plan or usage (including a plugin that fails to load with `--strict-plugins`),
**3** stopped by a gate. Errors are listed with their codes in [errors.md](errors.md).

Environment: `STAGEDSL_DISABLE_PLUGIN_AUTOLOAD=1` loads no third-party plugin,
`STAGEDSL_STRICT_PLUGINS=1` makes a plugin that fails to load an error (as
`--strict-plugins`), `STAGEDSL_BLOCK_PLUGINS=name,name` skips these entry points
(see [plugins.md](plugins.md)).
"""


def _cell(text: Any) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _metavar(param: Any) -> str:
    return param.metavar or ("VALUE" if getattr(param, "param_type_name", "") == "option" else param.name.upper())


def _names(param: Any) -> str:
    if getattr(param, "param_type_name", "") == "argument":
        return f"`{_metavar(param)}`"
    names = ", ".join(f"`{o}`" for o in param.opts)
    if param.secondary_opts:
        names += " / " + ", ".join(f"`{o}`" for o in param.secondary_opts)
    if not getattr(param, "is_flag", False):
        names += f" {_metavar(param)}"
    return names


def _default(param: Any) -> str:
    if param.required:
        return "**required**"
    default = param.default
    if getattr(param, "is_flag", False):
        if param.secondary_opts:
            return f"`{param.opts[0] if default else param.secondary_opts[0]}`"
        return "off" if not default else "on"
    if default is None or default == () or default == []:
        return "—"
    return f"`{default}`"


def _meaning(param: Any) -> str:
    text = _cell(getattr(param, "help", None) or "")
    if getattr(param, "multiple", False) and "repeatable" not in text:
        text += " (repeatable)"
    return text


def _table(params: list) -> list[str]:
    rows = ["| argument / option | meaning | default |", "|---|---|---|"]
    for param in params:
        rows.append(f"| {_names(param)} | {_meaning(param)} | {_default(param)} |")
    return rows


def _usage(name: str, command: Any) -> str:
    arguments = [p for p in command.params if getattr(p, "param_type_name", "") == "argument"]
    pieces = ["staged", name]
    if any(getattr(p, "param_type_name", "") == "option" for p in command.params):
        pieces.append("[OPTIONS]")
    pieces += [_metavar(p) if p.required else f"[{_metavar(p)}]" for p in arguments]
    return " ".join(pieces)


def render_cli_reference(app: typer.Typer | None = None) -> str:
    """Markdown reference of every visible command of `app` (default: `staged`)."""
    group = typer.main.get_command(app or app_module.app)
    lines = [INTRO, "## `staged`", "", inspect.cleandoc(group.help or ""), "", "```text", "staged [GLOBAL OPTIONS] COMMAND [ARGS]...", "```", ""]
    lines += ["Global options, written before the command:", ""]
    lines += _table([p for p in group.params if p.name != "help"]) + [""]
    commands = [(name, command) for name, command in group.commands.items() if not getattr(command, "hidden", False)]
    lines += ["| command | what it does |", "|---|---|"]
    for name, command in commands:
        summary = inspect.cleandoc(command.help or "").split("\n\n")[0]
        lines.append(f"| [`{name}`](#staged-{name}) | {_cell(summary)} |")
    lines.append("")
    for name, command in commands:
        lines += [f"## `staged {name}`", "", inspect.cleandoc(command.help or ""), "", "```text", _usage(name, command), "```", ""]
        params = [p for p in command.params if p.name != "help"]
        if params:
            lines += _table(params) + [""]
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    print(render_cli_reference(), end="")
