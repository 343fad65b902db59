"""Freeze strategies: select parameter names, ``factory(names, **args) -> list[str]``.

`names` is every parameter name of the model in registration order; the result keeps
that order. A strategy that takes `modules` also receives the model's module tree (one
`stagedsl.ModuleInfo` per ``named_modules()`` entry: name, class and bases, own
parameters), so it can select by module type or count parameter-less children. Pure
Python: no torch.
"""

import functools
import math
import re

from stagedsl import did_you_mean, hookimpl


def glob(names: list[str], pattern: str) -> list[str]:
    """Names matching a dotted glob: * within a segment, ** across segments, ? and [abc]."""
    compiled = _compile_glob(pattern)
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
        hint = did_you_mean(module, modules, cutoff=0.6)
        hint = f"; {hint}" if hint else f"; top-level modules: {modules}"
        raise ValueError(f"no parameters under module {module!r}{hint}")
    count = math.ceil(fraction * len(under) - 1e-9)
    return under[-count:] if end == "last" else under[:count]


def _under(modules, module: str) -> list:
    """`module` and every module inside it (the whole model for "")."""
    return [m for m in modules if not module or m.name == module or m.name.startswith(module + ".")]


def _module(modules, module: str):
    found = next((m for m in modules if m.name == module), None)
    if found is None:
        named = [m.name for m in modules if m.name]
        hint = did_you_mean(module, named, cutoff=0.6)
        tops = sorted({m.name for m in modules if m.depth == 1})
        raise ValueError(f"the model has no module {module!r}; {hint or 'its top-level modules: ' + ', '.join(tops)}")
    return found


def _parameters_under(names: list[str], modules, chosen) -> list[str]:
    selected = {p for m in chosen for inside in _under(modules, m.name) for p in inside.parameters}
    return [name for name in names if name in selected]


def modules_of_type(names: list[str], modules: list, type: str | list[str], module: str = "") -> list[str]:
    """The parameters of every module of a type (its class or a base: "BatchNorm2d", "LayerNorm", "_NormBase"), inside `module`."""
    wanted = [type] if isinstance(type, str) else list(type)
    if not wanted:
        raise ValueError("type names no module type")
    if module:
        _module(modules, module)  # a ValueError naming the modules there are
    inside = _under(modules, module)
    chosen = [m for m in inside if any(m.is_a(t) for t in wanted)]
    if not chosen:
        present = sorted({m.type for m in inside})
        hint = did_you_mean(wanted[0], present)
        where = f"inside {module!r}" if module else "in the model"
        raise ValueError(f"no module of type {', '.join(wanted)} {where}; {hint or 'its module types: ' + ', '.join(present)}")
    return _parameters_under(names, modules, chosen)


def children(names: list[str], modules: list, module: str = "", first: int | None = None, last: int | None = None,
             parameterless: bool = True) -> list[str]:
    """The parameters of the first (or last) K children of `module`; parameter-less children (relu, maxpool) count unless parameterless = false."""
    if (first is None) == (last is None):
        raise ValueError("give exactly one of `first` or `last`")
    count = first if first is not None else last
    if count < 1:
        raise ValueError(f"`{'first' if first is not None else 'last'}` must be at least 1, found {count}")
    parent = _module(modules, module)
    kids = [m for m in modules if parent.parent_of(m)]
    if not parameterless:
        kids = [kid for kid in kids if any(inside.parameters for inside in _under(modules, kid.name))]
    if not kids:
        raise ValueError(f"module {module or 'the model'!r} has no children" + ("" if parameterless else " with parameters"))
    picked = kids[:count] if first is not None else kids[-count:]
    return _parameters_under(names, modules, picked)


# -- globs over dotted names ------------------------------------------------------------
# Glob patterns over dotted parameter names, compiled to regular expressions.
#
# A pattern matches a *whole* name, segment by segment (segments are separated by dots):
#
# - ``*`` matches within one segment (never a dot): ``head.*`` matches ``head.weight``,
#   not ``head.0.weight``;
# - ``**`` standing alone as a segment matches zero or more whole segments:
#   ``transformer.**`` matches everything under ``transformer``, ``**.bias`` every bias,
#   ``encoder.**.weight`` every weight under ``encoder`` at any depth;
# - ``?`` matches one character (not a dot); ``[abc]``, ``[a-z]`` and ``[!abc]`` match one
#   character of (or not of) a class;
# - everything else matches itself.

_SEGMENT = r"[^.]+"


class GlobError(ValueError):
    """A pattern that cannot be compiled."""


def _segment_regex(segment: str, pattern: str) -> str:
    if "**" in segment:
        raise GlobError(f"in {pattern!r}: `**` must be a whole segment between dots (as in `encoder.**`), found {segment!r}")
    out, i = [], 0
    while i < len(segment):
        char = segment[i]
        if char == "*":
            out.append(r"[^.]*")
        elif char == "?":
            out.append(r"[^.]")
        elif char == "[":
            end = segment.find("]", i + 2 if segment[i + 1 : i + 2] in ("!", "]") else i + 1)
            if end < 0:
                out.append(re.escape(char))
            else:
                body = segment[i + 1 : end]
                negate = body.startswith("!")
                body = body[1:] if negate else body
                body = body.replace("\\", "\\\\").replace("^", "\\^")
                out.append(f"[^.{body}]" if negate else f"[{body}]")
                i = end
        else:
            out.append(re.escape(char))
        i += 1
    return "".join(out)


@functools.lru_cache(maxsize=512)
def _compile_glob(pattern: str) -> re.Pattern:
    """The regular expression (for ``fullmatch``) of a parameter-name glob; a `GlobError` if malformed."""
    if not pattern:
        raise GlobError("an empty pattern matches nothing")
    segments = pattern.split(".")
    if any(not s for s in segments):
        raise GlobError(f"in {pattern!r}: empty segment (a leading, trailing or doubled dot)")
    collapsed = [s for i, s in enumerate(segments) if not (s == "**" and i and segments[i - 1] == "**")]
    out, need_dot = [], False
    for index, segment in enumerate(collapsed):
        last = index == len(collapsed) - 1
        if segment == "**":
            if index == 0:
                out.append(f"{_SEGMENT}(?:\\.{_SEGMENT})*" if last else f"(?:{_SEGMENT}\\.)*")
            else:
                out.append(f"(?:\\.{_SEGMENT})*" if last else f"\\.(?:{_SEGMENT}\\.)*")
            need_dot = False
        else:
            if need_dot:
                out.append(r"\.")
            out.append(_segment_regex(segment, pattern))
            need_dot = True
    return re.compile("".join(out))


@hookimpl
def register_freeze_strategies(register):
    """Register the freeze strategies: a bare selector string is a glob, one starting with "re:" a regex."""
    register("glob", glob, default=True)
    register("regex", regex, prefix="re:")
    register("fraction", fraction)
    register("modules_of_type", modules_of_type)
    register("children", children)
