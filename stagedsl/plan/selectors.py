"""Resolve a stage's selectors (globs, `re:` regexes, strategy pieces) to parameter names.

The core holds no matching logic of its own: a bare string is the `glob` strategy, a
``re:`` string the `regex` strategy, a table names any registered strategy.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

from stagedsl.errors import closest, did_you_mean
from stagedsl.registry import Registry
from stagedsl.spec.model import Piece


class SelectorProblem(ValueError):
    """A selector that matches nothing or that its strategy rejects."""

    def __init__(self, message: str, hint: Optional[str], code: str):
        super().__init__(message)
        self.hint = hint
        self.code = code


def as_piece(selector: Union[str, Piece]) -> Piece:
    """The strategy piece a selector stands for."""
    if isinstance(selector, Piece):
        return selector
    if selector.startswith("re:"):
        return Piece("regex", {"pattern": selector[3:]})
    return Piece("glob", {"pattern": selector})


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
    text = text[3:] if text.startswith("re:") else text
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
        piece = as_piece(selector)
        entry = registry.find("freeze_strategies", piece.use)
        if entry is None:
            out.append((index, [], SelectorProblem(f"no freeze strategy named `{piece.use}` is registered", None, "E020")))
            continue
        try:
            chosen = set(entry.factory(list(names), **piece.args))
        except (ValueError, TypeError) as exc:
            out.append((index, [], SelectorProblem(f"{describe(selector)}: {exc}", None, "E024")))
            continue
        matched = [name for name in names if name in chosen]
        if not matched:
            out.append((index, [], SelectorProblem(f"{describe(selector)} matches no parameter of the model", suggest(selector, names), "E060")))
        else:
            out.append((index, matched, None))
    return out
