"""Every command's --help reads as written: real usage lines, no type tags on flags, markup-safe text."""

from __future__ import annotations

import re

import pytest
import typer

from stagedsl.cli.app import app, run_cli

GROUP = typer.main.get_command(app)
COMMANDS = sorted(GROUP.commands)
EXTRA = re.compile(r"\s+\[(default|required|x>=|x<=)[^\]]*(\]|$)")  # click's "[default: ...]" / "[required]" after a help text


def _help(argv: list[str], capsys, monkeypatch, columns: int) -> str:
    monkeypatch.setenv("COLUMNS", str(columns))
    assert run_cli([*argv, "--help"]) == 0
    return capsys.readouterr().out


def _texts(command) -> list[str]:
    """The help strings of a command and its parameters, single-spaced."""
    texts = [command.help or ""] + [getattr(p, "help", None) or "" for p in command.params]
    return [" ".join(t.split()) for t in texts if t]


@pytest.mark.parametrize("name", [None, *COMMANDS])
@pytest.mark.parametrize("columns", [80, 200])
def test_every_help_is_plain_and_complete(name, columns, capsys, monkeypatch):
    argv = [name] if name else []
    text = _help(argv, capsys, monkeypatch, columns)
    command = GROUP.commands[name] if name else GROUP
    assert "<bool>" not in text and "{" not in text and "}" not in text
    assert "<str>" not in text and "<list[" not in text and "<int>" not in text  # options say what they take (--split SPLIT)
    usage = text.splitlines()[0]
    assert usage.startswith(f"Usage: staged {name or ''}".rstrip())
    for param in command.params:
        if getattr(param, "param_type_name", "") == "argument":
            assert (param.metavar or param.name.upper()) in usage  # SPEC, RUN_DIR: not {spec}
    flowing = " ".join(text.split())
    for help_text in _texts(command):
        if name is None and help_text == " ".join((GROUP.help or "").split()):
            assert help_text in flowing
            continue
        if command is GROUP:
            continue
        assert help_text in flowing, f"help text lost or changed in rendering: {help_text!r}"
    for line in text.splitlines():
        body = line.strip()
        parts = re.split(r" {2,}", body, maxsplit=1)  # the gap between the option and its help
        rest = EXTRA.sub("", parts[-1]) if len(parts) > 1 else body
        assert "  " not in rest, f"doubled space in {line!r}"
        assert not re.search(r"\s[.,;:](\s|$)", rest), f"a word vanished before punctuation in {line!r}"


def test_markup_in_help_survives(capsys, monkeypatch):
    text = _help(["run"], capsys, monkeypatch, 200)
    assert "[export]" in text
    text = _help(["export"], capsys, monkeypatch, 200)
    assert "[export]" in text


def test_flags_take_no_value_and_value_options_say_what(capsys, monkeypatch):
    text = _help(["run"], capsys, monkeypatch, 200)
    assert re.search(r"--overwrite\s{2,}Run in a folder", text)
    assert "--out DIR" in text and "--set KEY=VALUE" in text and "--profile NAME" in text


def test_version(capsys):
    from stagedsl import __version__

    assert run_cli(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"staged (stagedsl) {__version__}"
