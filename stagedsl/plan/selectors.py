"""Resolve a stage's selectors (globs, `re:` regexes, strategy pieces) to parameter names.

The core holds no matching logic and names no strategy of its own: a string starting
with a prefix a strategy registered (``"re:"``) is that strategy, any other string the
strategy registered as the default (a glob, among the built-ins), a table names any
registered strategy. The string arrives as the strategy's ``pattern``.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

from stagedsl.errors import PlanError, closest, did_you_mean
from stagedsl.registry import Registry
from stagedsl.spec.model import Piece


class SelectorProblem(ValueError):
    """A selector that matches nothing or that its strategy rejects."""

    def __init__(self, message: str, hint: Optional[str], code: str):
        super().__init__(message)
        self.hint = hint
        self.code = code


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


def select(selectors: Sequence[Union[str, Piece]], names: Sequence[str], registry: Registry) -> list[tuple[int, list[str], Optional[SelectorProblem]]]:
    """For each selector: the names it selects (in model order), or the problem with it."""
    out = []
    for index, selector in enumerate(selectors):
        piece = as_piece(selector, registry)
        if piece is None:
            out.append((index, [], SelectorProblem(f"{describe(selector)}: no plugin registers a default freeze strategy for "
                                                   "selector strings", "name one: { use = \"<strategy>\", ... }", "E020")))
            continue
        if registry.find("freeze_strategies", piece.use) is None:
            out.append((index, [], SelectorProblem(f"no freeze strategy named `{piece.use}` is registered", None, "E020")))
            continue
        try:
            chosen = set(registry.build("freeze_strategies", piece.use, piece.args, phase="plan", names=list(names)))
        except PlanError as exc:
            message = str(exc.__cause__) if exc.__cause__ is not None else exc.problems[0].message  # the strategy's own words
            out.append((index, [], SelectorProblem(f"{describe(selector)}: {message}", None, "E024")))
            continue
        matched = [name for name in names if name in chosen]
        if not matched:
            out.append((index, [], SelectorProblem(f"{describe(selector)} matches no parameter of the model", suggest(selector, names), "E060")))
        else:
            out.append((index, matched, None))
    return out
