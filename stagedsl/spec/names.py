"""Names and output paths a spec may give: the one place they are judged.

A *name* (a stage, a run, a matrix variant or member, an ensemble, a search trial) becomes
a folder or file name inside a run directory, so it is an identifier, never a path:
letters, digits, ``_``, ``-`` and ``.``, not starting with ``.``, at most 64 characters
(`NAME_PATTERN`). `name_problem` says what is wrong with one and offers a safe name
(`safe_name`); every room that takes a name from a user calls it (the spec checks, the
matrix, the run directory's layout, search trials).

An *output path* (``run.out``, ``staged run --out``) may be absolute, but not inside the
kernel's pseudo file systems (`SYSTEM_DIRS`): writing a run there is never meant.

Pure string and path functions: no file is touched, torch is never imported.
"""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path
from typing import Optional

NAME_PATTERN = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}"
"""What a stage, run, variant, member, ensemble or trial name may be."""
NAME_MAX = 64
NAME_RULE = "letters, digits, `_`, `-` and `.`, not starting with `.`, at most 64 characters"
"""`NAME_PATTERN` in words, for hints."""
SYSTEM_DIRS = ("/proc", "/sys", "/dev")
"""Where no run directory may be: the kernel's pseudo file systems and device nodes."""

_NAME = re.compile(NAME_PATTERN)
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_ALLOWED = re.compile(r"[A-Za-z0-9_.-]")
_FIRST = re.compile(r"[A-Za-z0-9_]")
_LEADING = re.compile(r"^[._-]+")


def valid_name(name: object) -> bool:
    """Whether `name` may name a stage, run, variant, member, ensemble or trial (see `NAME_PATTERN`)."""
    return isinstance(name, str) and _NAME.fullmatch(name) is not None


def safe_name(text: object, fallback: str = "unnamed") -> str:
    """A valid name close to `text`: accents dropped, other runs of characters made ``_``, leading
    ``.``, ``_`` and ``-`` dropped, cut to 64 characters (`fallback` when nothing is left)."""
    if not isinstance(text, str):
        text = str(text)
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    cleaned = _LEADING.sub("", _UNSAFE.sub("_", ascii_text))[:NAME_MAX].rstrip("_.-")
    return cleaned if valid_name(cleaned) else fallback


def name_problem(name: object, what: str = "name") -> Optional[tuple[str, str]]:
    """``(message, hint)`` saying why `name` is not a valid `what` name (``"stage"``, ``"run"``, ...), or None.

    The hint offers the safe name `safe_name` makes of it.
    """
    if valid_name(name):
        return None
    if not isinstance(name, str):
        return f"a {what} name is a string, found {type(name).__name__}", f'e.g. "{safe_name(name)}"'
    shown = _shown(name)
    if not name:
        why = "is empty"
    elif len(name) > NAME_MAX:
        why = f"is {len(name)} characters long (at most {NAME_MAX})"
    elif not _FIRST.fullmatch(name[0]):
        why = f"starts with {_shown(name[0])}"
    else:
        bad = "".join(dict.fromkeys(c for c in name if not _ALLOWED.fullmatch(c)))
        why = f"contains {_shown(bad[:8])}" if bad else "is not an identifier"
    return (f"{what} name {shown} {why}: a name becomes a folder of the run directory, so it cannot be a path",
            f'{NAME_RULE}; e.g. "{safe_name(name, fallback=what)}"')


def _shown(text: str) -> str:
    """`text` quoted for a message: control characters escaped, long text cut."""
    shown = repr(text if len(text) <= 48 else text[:45] + "...")
    return shown


def system_path_problem(path: object) -> Optional[str]:
    """Why a run directory at `path` is refused (inside /proc, /sys or /dev, or holding a NUL), or None.

    The path is resolved as far as it exists (symbolic links followed), so a link into
    /proc is refused too.
    """
    if not isinstance(path, (str, os.PathLike)):
        return f"expected a path, found {type(path).__name__}"
    text = os.fspath(path)
    if "\x00" in text:
        return "a path cannot hold a NUL character"
    if not text.strip():
        return "the path is empty"
    try:
        resolved = Path(os.path.realpath(os.path.abspath(text)))
    except (OSError, ValueError) as exc:
        return f"the path cannot be resolved: {exc}"
    for system in SYSTEM_DIRS:
        if resolved == Path(system) or Path(system) in resolved.parents:
            return f"`{text}` lies inside {system}, a folder of the system's"
    return None


__all__ = ["NAME_MAX", "NAME_PATTERN", "NAME_RULE", "SYSTEM_DIRS", "name_problem", "safe_name", "system_path_problem",
           "valid_name"]
