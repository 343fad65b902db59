"""Render `Problem`s the way rustc does: one block per problem, then a count.

    error[E060]: `transformr.**` matches no parameter of the model
     --> specs/pde.toml:31:11
       |
    31 | freeze = ["transformr.**"]
       |           ^^^^^^^^^^^^^^^
       = at: stage[0].freeze[0]
       = help: did you mean "transformer.**"?
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable, Optional

from stagedsl.errors import Problem

_TOKEN_END = re.compile(r'"(?:[^"\\]|\\.)*"|\'[^\']*\'|[^\s,\]\}=]+')


def _source_line(problem: Problem, texts: dict) -> Optional[str]:
    if not problem.file or not problem.line:
        return None
    lines = texts.get(problem.file)
    if lines is None:
        try:
            lines = Path(problem.file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            lines = ""
    if isinstance(lines, str):  # split once per file: 20k problems in one file stay linear
        lines = texts[problem.file] = lines.splitlines()
    return lines[problem.line - 1] if 0 < problem.line <= len(lines) else None


def _caret(line: str, problem: Problem) -> str:
    """The caret line under `line`: from the problem's column to its end (the line's end when the span
    goes on below; the token at the column when the problem has no end)."""
    column = max(1, problem.column or 1)
    if problem.end_column is not None and (problem.end_line is None or problem.end_line == problem.line):
        width = problem.end_column - column
    elif problem.end_line is not None and problem.line is not None and problem.end_line > problem.line:
        width = len(line.rstrip()) - (column - 1)
    else:
        match = _TOKEN_END.match(line, column - 1)
        width = (match.end() - match.start()) if match else 1
    return f"{' ' * (column - 1)}{'^' * max(1, width)}"


def render_problem(problem: Problem, texts: Optional[dict[str, str]] = None) -> str:
    """One problem as a block of text (no trailing newline)."""
    texts = {} if texts is None else texts
    out = [f"{problem.severity}[{problem.code}]: {problem.message}"]
    if problem.argument is not None:
        option = problem.argument.split(" ", 1)[0]
        number = f" #{problem.argument_index + 1}" if problem.argument_index is not None else ""
        out.append(f" --> {option}{number}")
        number, line = "", problem.argument
    else:
        if problem.file:
            where = problem.file + (f":{problem.line}:{problem.column or 1}" if problem.line else "")
            out.append(f" --> {where}")
        number, line = str(problem.line), _source_line(problem, texts)
    if line is not None:
        pad = " " * len(number)
        out += [f"{pad} |", f"{number} | {line}", f"{pad} | {_caret(line, problem)}"]
        indent = pad + " "
    else:
        indent = " "
    if problem.path:
        out.append(f"{indent}= at: {problem.path}")
    if problem.hint:
        out.append(f"{indent}= help: {problem.hint}")
    return "\n".join(out)


def render_problems(problems: Iterable[Problem]) -> str:
    """Every problem, then a one-line count."""
    problems = list(problems)
    texts: dict[str, str] = {}
    blocks = [render_problem(p, texts) for p in problems]
    errors = sum(1 for p in problems if p.severity == "error")
    warnings = len(problems) - errors
    summary = []
    if errors:
        summary.append(f"{errors} error{'s' if errors != 1 else ''}")
    if warnings:
        summary.append(f"{warnings} warning{'s' if warnings != 1 else ''}")
    return "\n\n".join(blocks) + ("\n\n" + ", ".join(summary) if summary else "")


def problems_json(problems: Iterable[Problem]) -> dict:
    """``{"ok": false, "errors": [...], "warnings": [...]}``: what ``--json`` prints for a bad spec."""
    rows = [{"code": p.code, "message": p.message, "file": p.file, "line": p.line, "column": p.column,
             "end_line": p.end_line, "end_column": p.end_column, "argument": p.argument,
             "argument_index": p.argument_index, "path": p.path, "hint": p.hint, "severity": p.severity}
            for p in problems]
    return {"ok": False, "errors": [r for r in rows if r["severity"] == "error"],
            "warnings": [r for r in rows if r["severity"] != "error"]}
