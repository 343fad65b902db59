"""Find where a key path (``stage[1].freeze[0]``) is written: in TOML source text, or in a
``--set`` argument of the command line.

`tomllib` gives values, not positions, so this module scans the (already valid) text
once, recording the span of every key, table header and array element and of every
value. A problem about a wrong value points at the value (``steps = "ten"``: at
``"ten"``), one about a key at the key (an unknown ``stpes``).
"""

from __future__ import annotations

import bisect
import re
from typing import TYPE_CHECKING, Optional, Sequence, Union

import attrs

if TYPE_CHECKING:
    from stagedsl.spec.overrides import Override

PathPart = Union[str, int]
Position = tuple[int, int]  # 1-based line, column
Span = tuple[int, int]  # offsets into a text: start, end (exclusive)

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_BARE_VALUE = re.compile(r"[^,\]\}\n#]*")
KEY_CODES = frozenset({"E002", "E021"})
"""Codes of problems with a key itself (an unknown key, an unknown plugin argument)."""


def points_at_key(code: str, message: str) -> bool:
    """Whether a problem is about the key it names rather than the value written there: an unknown
    key or argument, or a key that stands where a piece needs `use` (E004 "`usex` is not a key here")."""
    return code in KEY_CODES or (code == "E004" and "is not a key here" in message)


def format_path(parts: list[PathPart] | tuple[PathPart, ...]) -> str:
    """``["stage", 1, "freeze", 0]`` -> ``stage[1].freeze[0]``."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + part
    return text


def parse_path(text: str) -> list[PathPart]:
    """The inverse of `format_path`."""
    parts: list[PathPart] = []
    for match in re.finditer(r"([^.\[\]]+)|\[(\d+)\]", text):
        parts.append(int(match.group(2)) if match.group(2) is not None else match.group(1))
    return parts


class _Scanner:
    def __init__(self, text: str):
        self.text = text
        self.pos = 0
        self.keys: dict[tuple, Span] = {}
        self.values: dict[tuple, Span] = {}
        self.array_tables: dict[tuple, int] = {}

    # -- low level -------------------------------------------------------------------
    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_space(self, newlines: bool) -> None:
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char in " \t\r" or (newlines and char == "\n"):
                self.pos += 1
            elif char == "#":
                end = self.text.find("\n", self.pos)
                self.pos = len(self.text) if end < 0 else end
            else:
                break

    def read_string(self) -> str:
        text = self.text
        for quote in ('"""', "'''"):
            if text.startswith(quote, self.pos):
                end = self.pos + 3
                while True:
                    end = text.find(quote, end)
                    if end < 0:
                        end = len(text)
                        break
                    if quote == '"""' and text[end - 1] == "\\" and text[end - 2] != "\\":
                        end += 1
                        continue
                    break
                while text.startswith(quote[0], end + 3):
                    end += 1
                value = text[self.pos + 3 : end]
                self.pos = min(end + 3, len(text))
                return value
        quote = text[self.pos]
        end = self.pos + 1
        while end < len(text) and text[end] != quote:
            if quote == '"' and text[end] == "\\":
                end += 1
            end += 1
        value = text[self.pos + 1 : end]
        self.pos = min(end + 1, len(text))
        return value

    def read_key(self) -> list[tuple[str, Span]]:
        parts = []
        while True:
            self.skip_space(newlines=False)
            start = self.pos
            if self.peek() in ('"', "'"):
                parts.append((self.read_string(), (start, self.pos)))
            else:
                match = _BARE_KEY.match(self.text, self.pos)
                if not match:
                    break
                parts.append((match.group(0), match.span()))
                self.pos = match.end()
            self.skip_space(newlines=False)
            if self.peek() == ".":
                self.pos += 1
                continue
            break
        return parts

    # -- structure -------------------------------------------------------------------
    def resolve(self, names: list[str]) -> tuple:
        path: list[PathPart] = []
        for name in names:
            path.append(name)
            count = self.array_tables.get(tuple(path))
            if count:
                path.append(count - 1)
        return tuple(path)

    def header_end(self, closing: str) -> int:
        end = self.text.find(closing, self.pos)
        return len(self.text) if end < 0 else end + len(closing)

    def scan(self) -> "_Scanner":
        table: tuple = ()
        while True:
            self.skip_space(newlines=True)
            if self.pos >= len(self.text):
                return self
            start = self.pos
            if self.text.startswith("[[", self.pos):
                self.pos += 2
                names = [name for name, _ in self.read_key()]
                parent = self.resolve(names[:-1])
                key = parent + (names[-1],)
                index = self.array_tables.get(key, 0)
                self.array_tables[key] = index + 1
                table = key + (index,)
                self.pos = self.header_end("]]")
                self.keys.setdefault(key, (start, self.pos))
                self.keys[table] = (start, self.pos)
            elif self.peek() == "[":
                self.pos += 1
                names = [name for name, _ in self.read_key()]
                table = self.resolve(names)
                self.pos = self.header_end("]")
                for length in range(1, len(table) + 1):
                    self.keys.setdefault(table[:length], (start, self.pos))
            else:
                self.key_value(table)
            end = self.text.find("\n", self.pos)
            self.pos = len(self.text) if end < 0 else end + 1

    def key_value(self, table: tuple) -> None:
        parts = self.read_key()
        if not parts or self.peek() != "=":
            end = self.text.find("\n", self.pos)
            self.pos = len(self.text) if end < 0 else end
            return
        path = table
        for name, span in parts:
            path = path + (name,)
            self.keys.setdefault(path, span)
        self.pos += 1
        self.skip_space(newlines=False)
        self.value(path)

    def value(self, path: tuple) -> None:
        start = self.pos
        char = self.peek()
        if char == "{":
            self.pos += 1
            while True:
                self.skip_space(newlines=True)
                if self.peek() in ("}", ""):
                    self.pos += 1
                    break
                if self.peek() == ",":
                    self.pos += 1
                    continue
                self.key_value(path)
        elif char == "[":
            self.pos += 1
            index = 0
            while True:
                self.skip_space(newlines=True)
                if self.peek() in ("]", ""):
                    self.pos += 1
                    break
                if self.peek() == ",":
                    self.pos += 1
                    continue
                element = self.pos
                self.value(path + (index,))
                self.keys.setdefault(path + (index,), (element, self.pos))
                index += 1
        elif char in ('"', "'"):
            self.read_string()
        else:
            match = _BARE_VALUE.match(self.text, self.pos)
            self.pos = start + len(match.group(0).rstrip())
        self.values.setdefault(path, (start, min(self.pos, len(self.text))))


@attrs.frozen
class Location:
    """Where a problem stands, as `Problem` fields (see `stagedsl.errors.Problem`)."""

    file: Optional[str] = None
    line: Optional[int] = None
    column: Optional[int] = None
    end_line: Optional[int] = None
    end_column: Optional[int] = None
    argument: Optional[str] = None
    argument_index: Optional[int] = None

    def fields(self) -> dict:
        """The location as keyword arguments of `Problem` / `attrs.evolve(problem, ...)`."""
        return attrs.asdict(self)


class ScannedText:
    """The spans of every key and value written in one TOML text."""

    def __init__(self, text: str):
        self.text = text
        try:
            scanner = _Scanner(text).scan()
            self.keys, self.values = scanner.keys, scanner.values
        except Exception:  # positions are a courtesy: never let them hide the real error
            self.keys, self.values = {}, {}
        self._line_starts = [0] + [match.end() for match in re.finditer("\n", text)]

    def position(self, offset: int) -> Position:
        """The 1-based (line, column) of an offset."""
        line = bisect.bisect_right(self._line_starts, offset)
        return line, offset - self._line_starts[line - 1] + 1

    def span(self, path: tuple, *, on_key: bool = False) -> Optional[Span]:
        """The span of the value written at `path` (of its key with `on_key`, or when it has no
        value of its own: a table header), or None when `path` is not written here."""
        if path not in self.keys:
            return None
        return self.keys[path] if on_key or path not in self.values else self.values[path]

    def location(self, file: Optional[str], path: tuple, *, on_key: bool = False) -> Optional[Location]:
        """Where the value at `path` (its key with `on_key`) is written, in `file` (the name this text
        is read under); None when `path` is not written here."""
        span = self.span(path, on_key=on_key)
        if span is None:
            return None
        (line, column), (end_line, end_column) = self.position(span[0]), self.position(span[1])
        return Location(file, line, column, end_line, end_column)


def scan_positions(text: str) -> dict[tuple, Position]:
    """Map every key path written in `text` to the (line, column) of its key."""
    scanned = ScannedText(text)
    return {path: scanned.position(start) for path, (start, _) in scanned.keys.items()}


class SourceMap:
    """Where keys and values are written across the files a spec was read from (the file, then
    what it extends) and the ``--set`` arguments applied over them.

    A path is looked for where it can have been written, latest layer first: in a ``--set``
    that wrote it (or a table above it), in the selected profile
    (``[profile.P.stage.<name>]``), where the path says, then in ``[defaults]`` for stage
    keys (a ``--set defaults.*`` first); failing all, at its closest written ancestor.
    """

    def __init__(self, sources: list[tuple[str, str]], *, profile: Optional[str] = None, stage_names: tuple[str, ...] = (),
                 overrides: Sequence[tuple["Override", tuple]] = ()):
        self.sources = sources
        self.profile = profile
        self.stage_names = tuple(stage_names)
        self.overrides = list(overrides)
        self._scanned: Optional[list[ScannedText]] = None

    @property
    def _scans(self) -> list[ScannedText]:
        """Every file's spans, scanned once, when the first problem is to be located (a spec
        without problems is never scanned: validation stays linear in its size)."""
        if self._scanned is None:
            self._scanned = [ScannedText(text) for _, text in self.sources]
        return self._scanned

    def _candidates(self, parts: tuple) -> list[tuple]:
        staged = len(parts) >= 2 and parts[0] == "stage" and isinstance(parts[1], int)
        profile = ("profile", self.profile) if self.profile is not None else None
        out = []
        if profile and staged and parts[1] < len(self.stage_names):
            out.append(profile + ("stage", self.stage_names[parts[1]]) + parts[2:])
        elif profile and not staged:
            out.append(profile + parts)
        out.append(parts)
        if staged and len(parts) > 2:
            if profile:
                out.append(profile + ("defaults",) + parts[2:])
            out.append(("defaults",) + parts[2:])
        return out

    def _find(self, parts: tuple) -> Optional[tuple[int, tuple, int]]:
        """(source index, written key path, how many parts of `parts` it stands for) of `parts` or
        its closest written ancestor."""
        for length in range(len(parts), 0, -1):
            for candidate in self._candidates(parts[:length]):
                for source, scan in enumerate(self._scans):
                    if candidate in scan.keys:
                        return source, candidate, length
        return None

    def _in_defaults(self, written: tuple) -> bool:
        return written[:1] == ("defaults",) or (self.profile is not None and written[:3] == ("profile", self.profile, "defaults"))

    def _override(self, parts: tuple) -> Optional[tuple["Override", tuple]]:
        """The last override that wrote `parts` or a table above it, with the index path it wrote."""
        for override, written in reversed(self.overrides):
            if written and parts[: len(written)] == written:
                return override, written
        return None

    def where(self, path: str | list[PathPart] | tuple, *, on_key: bool = False) -> Location:
        """Where the value at `path` is written (its key with `on_key`), or its closest written ancestor."""
        parts = tuple(parse_path(path) if isinstance(path, str) else path)
        found = self._find(parts)
        over = self._override(parts)
        if over is None and len(parts) > 2 and parts[0] == "stage" and isinstance(parts[1], int):
            in_stage = found is not None and found[2] >= 3 and not self._in_defaults(found[1])
            over = None if in_stage else self._override(("defaults",) + parts[2:])
            parts = ("defaults",) + parts[2:] if over is not None else parts
        if over is not None:
            return self._in_override(*over, parts, on_key)
        first = self.sources[0][0] if self.sources else None
        if found is None:
            return Location(file=first)
        source, written, length = found
        return self._scans[source].location(self.sources[source][0], written, on_key=on_key or length < len(parts))

    def _in_override(self, override: "Override", written: tuple, parts: tuple, on_key: bool) -> Location:
        """Where `parts` stands in the argument of `override`, which wrote `written` (a prefix of `parts`)."""
        rest = parts[len(written):]
        start, end = override.part_spans[-1] if on_key else override.value_span
        if rest:
            value_start, value_end = override.value_span
            lead = "value = "
            scan = ScannedText(lead + override.text[value_start:value_end])
            for length in range(len(rest), 0, -1):
                span = scan.span(("value",) + rest[:length], on_key=on_key or length < len(rest))
                if span is not None:
                    start, end = (value_start + offset - len(lead) for offset in span)
                    break
            else:
                start, end = override.value_span
        first = self.sources[0][0] if self.sources else None
        return Location(first, None, override.prefix + start + 1, None, override.prefix + end + 1,
                        argument=override.argument, argument_index=override.index)

    def locate(self, path: str | list[PathPart]) -> tuple[Optional[str], Optional[int], Optional[int]]:
        """(file, line, column) where the key of `path`, or of its closest written ancestor, stands."""
        location = self.where(path, on_key=True)
        return location.file, location.line, location.column

    def written_in_profile(self, path: str | list[PathPart]) -> bool:
        """Whether `path` (or the closest ancestor written) is written inside the selected profile's table."""
        found = self._find(tuple(parse_path(path) if isinstance(path, str) else path))
        return found is not None and self.profile is not None and found[1][:2] == ("profile", self.profile)
