"""Find where a key path (``stage[1].freeze[0]``) is written in TOML source text.

`tomllib` gives values, not positions, so this module scans the (already valid) text
once, recording the line and column of every key, table header and array element.
"""

from __future__ import annotations

import re
from typing import Optional, Union

PathPart = Union[str, int]
Position = tuple[int, int]  # 1-based line, column

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


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
        self.positions: dict[tuple, Position] = {}
        self.array_tables: dict[tuple, int] = {}

    # -- low level -------------------------------------------------------------------
    def where(self, pos: Optional[int] = None) -> Position:
        pos = self.pos if pos is None else pos
        line = self.text.count("\n", 0, pos) + 1
        column = pos - (self.text.rfind("\n", 0, pos) + 1) + 1
        return line, column

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
                self.pos = end + 3
                return value
        quote = text[self.pos]
        end = self.pos + 1
        while end < len(text) and text[end] != quote:
            if quote == '"' and text[end] == "\\":
                end += 1
            end += 1
        value = text[self.pos + 1 : end]
        self.pos = end + 1
        return value

    def read_key(self) -> list[tuple[str, Position]]:
        parts = []
        while True:
            self.skip_space(newlines=False)
            start = self.where()
            if self.peek() in ('"', "'"):
                parts.append((self.read_string(), start))
            else:
                match = _BARE_KEY.match(self.text, self.pos)
                if not match:
                    break
                parts.append((match.group(0), start))
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

    def scan(self) -> dict[tuple, Position]:
        table: tuple = ()
        while True:
            self.skip_space(newlines=True)
            if self.pos >= len(self.text):
                return self.positions
            start = self.where()
            if self.text.startswith("[[", self.pos):
                self.pos += 2
                names = [name for name, _ in self.read_key()]
                parent = self.resolve(names[:-1])
                key = parent + (names[-1],)
                index = self.array_tables.get(key, 0)
                self.array_tables[key] = index + 1
                table = key + (index,)
                self.positions.setdefault(key, start)
                self.positions[table] = start
                self.pos = self.text.find("]]", self.pos) + 2
            elif self.peek() == "[":
                self.pos += 1
                names = [name for name, _ in self.read_key()]
                table = self.resolve(names)
                for length in range(1, len(table) + 1):
                    self.positions.setdefault(table[:length], start)
                self.pos = self.text.find("]", self.pos) + 1
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
        for name, position in parts:
            path = path + (name,)
            self.positions.setdefault(path, position)
        self.pos += 1
        self.skip_space(newlines=False)
        self.value(path)

    def value(self, path: tuple) -> None:
        char = self.peek()
        if char == "{":
            self.pos += 1
            while True:
                self.skip_space(newlines=True)
                if self.peek() in ("}", ""):
                    self.pos += 1
                    return
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
                    return
                if self.peek() == ",":
                    self.pos += 1
                    continue
                self.positions.setdefault(path + (index,), self.where())
                self.value(path + (index,))
                index += 1
        elif char in ('"', "'"):
            self.read_string()
        else:
            match = re.compile(r"[^,\]\}\n#]*").match(self.text, self.pos)
            self.pos = match.end()


def scan_positions(text: str) -> dict[tuple, Position]:
    """Map every key path written in `text` to its (line, column)."""
    try:
        return _Scanner(text).scan()
    except Exception:  # positions are a courtesy: never let them hide the real error
        return {}


class SourceMap:
    """Positions of keys across the files a spec was read from (the file, then what it extends).

    A key is looked for where it can have been written, most specific first: in the
    selected profile (``[profile.P.stage.<name>]``), where the path says, then in
    ``[defaults]`` for stage keys; failing all, at its closest written ancestor.
    """

    def __init__(self, sources: list[tuple[str, str]], *, profile: Optional[str] = None, stage_names: tuple[str, ...] = ()):
        self.sources = sources
        self.profile = profile
        self.stage_names = tuple(stage_names)
        self._positions = [scan_positions(text) for _, text in sources]

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

    def _find(self, parts: tuple) -> Optional[tuple[str, tuple, Position]]:
        """(file, written key path, position) of `parts` or its closest written ancestor."""
        for length in range(len(parts), 0, -1):
            for candidate in self._candidates(parts[:length]):
                for (file, _), positions in zip(self.sources, self._positions):
                    if candidate in positions:
                        return file, candidate, positions[candidate]
        return None

    def locate(self, path: str | list[PathPart]) -> tuple[Optional[str], Optional[int], Optional[int]]:
        """(file, line, column) where `path`, or its closest written ancestor, stands."""
        found = self._find(tuple(parse_path(path) if isinstance(path, str) else path))
        if found is None:
            return (self.sources[0][0] if self.sources else None), None, None
        file, _, (line, column) = found
        return file, line, column

    def written_in_profile(self, path: str | list[PathPart]) -> bool:
        """Whether `path` (or the closest ancestor written) is written inside the selected profile's table."""
        found = self._find(tuple(parse_path(path) if isinstance(path, str) else path))
        return found is not None and self.profile is not None and found[1][:2] == ("profile", self.profile)
