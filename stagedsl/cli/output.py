"""Writing to stdout and stderr so that a closed pipe never fails a command or a run.

``staged run … | head`` closes stdout early: Python then raises `BrokenPipeError` on the
next write (the signal itself is ignored). `say` swallows it, points the stream at
``os.devnull`` so the interpreter's final flush stays quiet too, and lets the run go on.
"""

from __future__ import annotations

import os
import sys

import typer


def say(text: str, *, err: bool = False, nl: bool = True) -> None:
    """`typer.echo`, except that a closed stdout or stderr is not an error."""
    try:
        typer.echo(text, err=err, nl=nl)
    except (BrokenPipeError, ValueError):  # ValueError: the stream was already closed
        _silence("stderr" if err else "stdout")


def _silence(name: str) -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, getattr(sys, name).fileno())
    except (OSError, ValueError, AttributeError):
        setattr(sys, name, open(os.devnull, "w"))
