"""Resolve a stage's selectors (globs, `re:` regexes, strategy pieces) to parameter names.

The core holds no matching logic and names no strategy of its own: a string starting
with a prefix a strategy registered (``"re:"``) is that strategy, any other string the
strategy registered as the default (a glob, among the built-ins), a table names any
registered strategy. The string arrives as the strategy's ``pattern``.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional, Sequence, Union

from stagedsl.errors import PlanError, StagedError, closest, did_you_mean
from stagedsl.registry import Registry
from stagedsl.spec.model import Piece


class SelectorProblem(ValueError):
    """A selector that matches nothing or that its strategy rejects."""

    def __init__(self, message: str, hint: Optional[str], code: str, trace: Optional[str] = None):
        super().__init__(message)
        self.hint = hint
        self.code = code
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


def suggest(selector: Union[str, Piece], names: Sequence[str]) -> Optional[str]:
    """A did-you-mean for a selector that matched nothing."""
    tops = sorted({name.split(".")[0] for name in names})
    text = selector if isinstance(selector, str) else str(selector.args.get("pattern") or selector.args.get("module") or "")
    text = text.split(":", 1)[1] if ":" in text else text
    head, _, rest = text.partition(".")
    module = closest(head, tops)
    if module is not None and module != head:
        return f'did you mean "{module}{"." + rest if rest else ".**"}"?'
    hint = did_you_mean(text, names, cutoff=0.6)
    if hint:
        return hint
    return f"top-level modules: {', '.join(tops)}; `*` matches within one dotted segment, `**` across segments"


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
            out.append((index, [], SelectorProblem(problem.message, problem.hint, problem.code, problem.trace)))
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
                out.append((index, [], SelectorProblem(f"{describe(selector)}: {message}", None, "E024", problem.trace)))
            else:
                out.append((index, [], SelectorProblem(problem.message, problem.hint, problem.code, problem.trace)))
            continue
        chosen, wrong = _returned_names(result, names)
        if wrong is not None:
            out.append((index, [], SelectorProblem(f"freeze strategy `{piece.use}` ({entry.source}) returned {wrong}", 
                                                   "a freeze strategy returns a list of the model's parameter names (from `names`)", "E106")))
            continue
        matched = [name for name in names if name in chosen]
        if not matched:
            out.append((index, [], SelectorProblem(f"{describe(selector)} matches no parameter of the model", suggest(selector, names), "E060")))
        else:
            out.append((index, matched, None))
    return out


def _returned_names(result: Any, names: Sequence[str]) -> tuple[set[str], Optional[str]]:
    """The names a strategy returned, or what is wrong with its result (E106)."""
    if isinstance(result, (str, bytes)) or not isinstance(result, Iterable):
        return set(), f"{type(result).__name__}, not a list of parameter names"
    items = list(result)
    odd = next((item for item in items if not isinstance(item, str)), None)
    if odd is not None:
        return set(), f"{odd!r} among its names, which is not a parameter name (a string)"
    known = set(names)
    unknown = [item for item in items if item not in known]
    if unknown:
        return set(), f"`{unknown[0]}`, which is not a parameter of the model" + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else "")
    return set(items), None
