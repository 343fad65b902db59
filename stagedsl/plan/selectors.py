"""Resolve a stage's selectors (globs, `re:` regexes, strategy pieces) to parameter names.

The core holds no matching logic and names no strategy of its own: a string starting
with a prefix a strategy registered (``"re:"``) is that strategy, any other string the
strategy registered as the default (a glob, among the built-ins), a table names any
registered strategy. The string arrives as the strategy's ``pattern``.

What the core knows of the default strategy's strings is what its messages need: a dotted
name, whose first segment is a top-level module, and that a last segment ``*`` that
stops short of a module's subtree likely meant ``**`` (W005, and E060's suggestion).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Optional, Sequence, Union

from stagedsl.errors import PlanError, StagedError, closest, did_you_mean
from stagedsl.registry import Registry
from stagedsl.spec.model import Piece


class SelectorProblem(ValueError):
    """A selector that matches nothing or that its strategy rejects (or, as a warning, one that
    selects part of a module it names)."""

    def __init__(self, message: str, hint: Optional[str], code: str, severity: str = "error", trace: Optional[str] = None):
        super().__init__(message)
        self.hint = hint
        self.code = code
        self.severity = severity
        self.trace = trace


def as_piece(selector: Union[str, Piece], registry: Registry) -> Optional[Piece]:
    """The strategy piece a selector stands for (None for a string no strategy claims)."""
    if isinstance(selector, Piece):
        return selector
    prefixed = registry.by_prefix("freeze_strategies", selector)
    if prefixed is not None:
        entry, pattern = prefixed
        return Piece(entry.name, {"pattern": pattern})
    default = registry.default("freeze_strategies")
    return Piece(default.name, {"pattern": selector}) if default is not None else None


def describe(selector: Union[str, Piece]) -> str:
    """How a selector is shown in messages."""
    if isinstance(selector, str):
        return f"`{selector}`"
    args = ", ".join(f"{k} = {v!r}" for k, v in selector.args.items())
    return f"{{ use = {selector.use!r}{', ' + args if args else ''} }}"


Matcher = Callable[[str], Sequence[str]]
"""The names a pattern selects (with the selector's own strategy)."""


def partial_module(pattern: str, selected: Sequence[str], names: Sequence[str]) -> Optional[tuple[str, int, int]]:
    """``(module, selected, under)`` when `pattern` is a module's dotted name then ``.*`` and selects
    only `selected` of the `under` parameters below that module (``*`` stays within one segment:
    ``transformer.*`` misses ``transformer.layers.0.weight``); None otherwise."""
    module, dot, last = pattern.rpartition(".")
    if not dot or last != "*" or any(char in module for char in "*?[]:"):
        return None
    under = [name for name in names if name.startswith(module + ".")]
    chosen = set(selected)
    count = sum(1 for name in under if name in chosen)
    return (module, count, len(under)) if count < len(under) else None


def suggest(selector: Union[str, Piece], names: Sequence[str], matches: Optional[Matcher] = None) -> Optional[str]:
    """A did-you-mean for a selector that matched nothing, in the user's shape: the module name
    mended (``transformr.**`` -> ``transformer.**``) and, where a last ``*`` stops short of the
    module's subtree, ``**`` (``transformers.*`` and ``backbone.*`` -> ``transformer.**``,
    ``backbone.**``). With `matches`, a suggestion is offered only if it selects something."""
    tops = sorted({name.split(".")[0] for name in names})
    text = selector if isinstance(selector, str) else str(selector.args.get("pattern") or selector.args.get("module") or "")
    text = text.split(":", 1)[1] if ":" in text else text
    head, _, rest = text.partition(".")
    module = closest(head, tops)
    if module is not None:
        mended = f"{module}.{rest}" if rest else f"{module}.**"
        if matches is not None and partial_module(mended, matches(mended), names):
            mended = mended[:-1] + "**"
        if mended != text and (matches is None or matches(mended)):
            return did_you_mean(text, [mended], cutoff=0.0)
    hint = did_you_mean(text, names, cutoff=0.6)
    if hint:
        return hint
    return f"top-level modules: {', '.join(tops)}; `*` matches within one dotted segment, `**` across segments"


def _part_of_module(selector: Union[str, Piece], selected: Sequence[str], names: Sequence[str],
                    registry: Registry) -> Optional[SelectorProblem]:
    """W005 for a selector string of the default strategy that names a module and selects part of it."""
    if not isinstance(selector, str) or registry.by_prefix("freeze_strategies", selector) is not None:
        return None
    partial = partial_module(selector, selected, names)
    if partial is None:
        return None
    module, count, under = partial
    whole = f"{module}.**"
    return SelectorProblem(
        f"`{selector}` selects {count} of the {under} parameter tensors under `{module}`",
        f"{did_you_mean(selector, [whole], cutoff=0.0)} `*` matches within one dotted segment, `**` the whole subtree",
        "W005", severity="warning",
    )


def select(selectors: Sequence[Union[str, Piece]], names: Sequence[str], registry: Registry,
           modules: Sequence[Any] = ()) -> list[tuple[int, list[str], Optional[SelectorProblem]]]:
    """For each selector: the names it selects (in model order), or the problem with it.

    `modules` is the model's module tree (`stagedsl.plan.modules.module_tree`), handed to a
    strategy that takes it.
    """
    out = []
    for index, selector in enumerate(selectors):
        piece = as_piece(selector, registry)
        if piece is None:
            out.append((index, [], SelectorProblem(f"{describe(selector)}: no plugin registers a default freeze strategy for "
                                                   "selector strings", "name one: { use = \"<strategy>\", ... }", "E020")))
            continue
        try:
            entry = registry.find("freeze_strategies", piece.use)
        except StagedError as exc:  # an import path that names nothing
            problem = exc.problems[0]
            out.append((index, [], SelectorProblem(problem.message, problem.hint, problem.code, trace=problem.trace)))
            continue
        if entry is None:
            out.append((index, [], SelectorProblem(f"no freeze strategy named `{piece.use}` is registered", None, "E020")))
            continue
        try:
            result = registry.build("freeze_strategies", piece.use, piece.args, phase="plan", names=list(names), modules=modules)
        except PlanError as exc:
            problem = exc.problems[0]
            if problem.code == "E024":  # the strategy refused its arguments: its own words
                message = str(exc.__cause__) if exc.__cause__ is not None else problem.message
                out.append((index, [], SelectorProblem(f"{describe(selector)}: {message}", None, "E024", trace=problem.trace)))
            else:
                out.append((index, [], SelectorProblem(problem.message, problem.hint, problem.code, trace=problem.trace)))
            continue
        chosen = set(result) if isinstance(result, Iterable) and not isinstance(result, (str, bytes)) else None
        matched = [name for name in names if name in chosen] if chosen is not None else []
        if chosen is None or len(matched) != len(chosen):  # not a list of the model's names: say what it is
            out.append((index, [], SelectorProblem(f"freeze strategy `{piece.use}` ({entry.source}) returned {_returned(result, names)}",
                                                   "a freeze strategy returns a list of the model's parameter names (from `names`)", "E106")))
            continue
        if not matched:
            hint = suggest(selector, names, _matcher(piece, names, registry))
            out.append((index, [], SelectorProblem(f"{describe(selector)} matches no parameter of the model", hint, "E060")))
        else:
            out.append((index, matched, _part_of_module(selector, matched, names, registry)))
    return out


def _returned(result: Any, names: Sequence[str]) -> str:
    """What is wrong with a strategy's result that is not a list of the model's parameter names (E106)."""
    if isinstance(result, (str, bytes)) or not isinstance(result, Iterable):
        return f"{type(result).__name__}, not a list of parameter names"
    items = list(result)
    odd = next((item for item in items if not isinstance(item, str)), None)
    if odd is not None:
        return f"{odd!r} among its names, which is not a parameter name (a string)"
    known = set(names)
    unknown = [item for item in items if item not in known]
    return f"`{unknown[0]}`, which is not a parameter of the model" + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else "")


def _matcher(piece: Piece, names: Sequence[str], registry: Registry) -> Optional[Matcher]:
    """What another `pattern` would select with `piece`'s strategy (None for a strategy without one)."""
    if "pattern" not in piece.args:
        return None

    def matches(pattern: str) -> Sequence[str]:
        try:
            return list(registry.build("freeze_strategies", piece.use, {**piece.args, "pattern": pattern}, phase="plan", names=list(names)))
        except PlanError:
            return []

    return matches
