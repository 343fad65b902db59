"""``--set key.path=value`` arguments: parsed once, with where each part of them is written.

An `Override` keeps the argument as the user typed it and the span of every key part and
of the value, so that a problem the override causes (a stage it names that does not
exist, a value of the wrong type) points at the argument, not into the file.
"""

from __future__ import annotations

import re
import tomllib
from typing import Any, Iterable, Optional

import attrs

from stagedsl.spec.convert import KeyProblem
from stagedsl.spec.locate import PathPart, Span

OPTION = "--set"
_KEY = re.compile(r"[A-Za-z0-9_-]+(\[\d+\])?(\.[A-Za-z0-9_-]+(\[\d+\])?)*")
_PART = re.compile(r"([A-Za-z0-9_-]+)|\[(\d+)\]")


class OverrideProblem(KeyProblem):
    """An override that cannot be read or applied; `span` is the part of its text at fault."""

    def __init__(self, message: str, span: Span, *, path: tuple = (), hint: Optional[str] = None, code: str = "E007"):
        super().__init__(message, path=path, hint=hint, code=code)
        self.span = span


@attrs.frozen
class Override:
    """One ``--set`` argument: its text as written (`text`), which one it is (`index`, from 0),
    the key path and value it sets, and the spans in `text` of each key part and of the value."""

    text: str
    index: int
    parts: tuple[PathPart, ...]
    value: Any
    part_spans: tuple[Span, ...]
    value_span: Span

    @property
    def argument(self) -> str:
        """The option and its value, as the command line reads: ``--set stage[0].steps=ten``."""
        return f"{OPTION} {self.text}"

    @property
    def prefix(self) -> int:
        """How many characters of `argument` come before `text`."""
        return len(OPTION) + 1

    @classmethod
    def parse(cls, text: str, index: int = 0) -> "Override":
        """``"stage.warmup.lr=1e-5"`` -> parts ``("stage", "warmup", "lr")``, value ``1e-05``.
        Values are TOML, else strings. Raises `OverrideProblem` (E007) for a malformed argument."""
        if "=" not in text:
            raise OverrideProblem(f"--set takes key.path=value, found {text!r}", (0, len(text)), hint="e.g. --set stage.finetune.lr=1e-5")
        key_text, raw = text.split("=", 1)
        key = key_text.strip()
        key_start = len(key_text) - len(key_text.lstrip())
        if not _KEY.fullmatch(key):
            raise OverrideProblem(f"--set key {key!r} is not a dotted key path", (key_start, key_start + len(key)),
                                  hint="e.g. --set run.seed=3 or --set stage[0].steps=100")
        parts: list[PathPart] = []
        spans: list[Span] = []
        for match in _PART.finditer(key):
            parts.append(int(match.group(2)) if match.group(2) is not None else match.group(1))
            spans.append((key_start + match.start(), key_start + match.end()))
        value_text = raw.strip()
        value_start = len(key_text) + 1 + (len(raw) - len(raw.lstrip()))
        try:
            value = tomllib.loads(f"value = {value_text}")["value"]
        except tomllib.TOMLDecodeError:
            value = value_text
        except RecursionError:
            raise OverrideProblem(f"--set {key}: the value nests too deeply to be read", (value_start, value_start + len(value_text)),
                                  path=tuple(parts), hint="a value of the language nests a few levels at most", code="E016") from None
        return cls(text, index, tuple(parts), value, tuple(spans), (value_start, value_start + len(value_text)))

    def problem_span(self, problem: KeyProblem) -> Span:
        """The part of `text` a problem raised while applying this override is about: the key part
        its path ends at (``finetun`` in ``stage.finetun.lr``), else the whole key."""
        if isinstance(problem, OverrideProblem):
            return problem.span
        depth = len(problem.path)
        if 0 < depth <= len(self.part_spans):
            return self.part_spans[depth - 1]
        return self.part_spans[0][0], self.part_spans[-1][1]


def resolve_names(document: Any, parts: Iterable[PathPart]) -> tuple[PathPart, ...]:
    """`parts` as an index path into `document`: an entry of an array of named tables addressed
    by name (``stage.warmup``) becomes its index (``stage[0]``); what is not there stays as written."""
    node = document
    out: list[PathPart] = []
    for part in parts:
        if isinstance(node, list) and isinstance(part, str):
            index = next((i for i, item in enumerate(node) if isinstance(item, dict) and item.get("name") == part), None)
            if index is not None:
                part = index
        out.append(part)
        if isinstance(node, dict) and isinstance(part, str):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            node = None
    return tuple(out)


def written_overrides(texts: Iterable[str], document: Any) -> list[tuple[Override, tuple[PathPart, ...]]]:
    """Each readable override of `texts` with the index path (in `document`) it wrote."""
    out = []
    for index, text in enumerate(texts):
        try:
            override = Override.parse(text, index)
        except OverrideProblem:
            continue
        out.append((override, resolve_names(document, override.parts)))
    return out
