"""Built-in freeze strategies: select parameter names, ``factory(names, **args) -> list[str]``.

`names` is every parameter name of the model in registration order; the result keeps
that order. Pure Python: no torch.
"""

import difflib
import math
import re

from stagedsl import hookimpl
from stagedsl_plugins.name_globs import compile_glob


def glob(names: list[str], pattern: str) -> list[str]:
    """Names matching a dotted glob: * within a segment, ** across segments, ? and [abc]."""
    compiled = compile_glob(pattern)
    return [name for name in names if compiled.fullmatch(name)]


def regex(names: list[str], pattern: str) -> list[str]:
    """Names the regular expression matches in full (re.fullmatch)."""
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None
    return [name for name in names if compiled.fullmatch(name)]


def fraction(names: list[str], module: str, fraction: float, end: str = "last") -> list[str]:
    """The last (or first) ceil(fraction x count) parameter tensors under module, in registration order."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], found {fraction}")
    if end not in ("last", "first"):
        raise ValueError(f'end must be "last" or "first", found {end!r}')
    prefix = f"{module}." if module else ""
    under = [name for name in names if name.startswith(prefix)]
    if not under:
        modules = sorted({name.split(".")[0] for name in names})
        close = difflib.get_close_matches(module, modules, n=1)
        hint = f'; did you mean "{close[0]}"?' if close else f"; top-level modules: {modules}"
        raise ValueError(f"no parameters under module {module!r}{hint}")
    count = math.ceil(fraction * len(under) - 1e-9)
    return under[-count:] if end == "last" else under[:count]


@hookimpl
def register_freeze_strategies(register):
    """Register the built-in freeze strategies."""
    register("glob", glob)
    register("regex", regex)
    register("fraction", fraction)
