"""Read a spec file into a checked `Spec`, or raise one `SpecError` listing every problem.

The layers, in order: the file and what it ``extends`` (deep merge), the selected
``[profile.<name>]``, ``--set key.path=value`` overrides, then ``[defaults]`` under
every stage. The merged document is structured by the cattrs converter and checked
(`stagedsl.spec.check`). Every other profile is checked the same way (keys, types,
plugin names and arguments), so a mistake in a profile is found before the day it is
selected; each such problem is located in the profile. Never imports torch.
"""

from __future__ import annotations

import copy
import os
import re
import tomllib
from pathlib import Path
from typing import Iterable, Mapping, Optional

import attrs

from stagedsl.errors import Problem, SpecError, did_you_mean
from stagedsl.registry import Registry
from stagedsl.spec.check import check_spec
from stagedsl.spec.convert import KeyProblem, flatten_errors, structure_spec
from stagedsl.spec.locate import Location, SourceMap, format_path, parse_path, points_at_key, scan_positions
from stagedsl.spec.merge import apply_defaults, deep_merge, set_path
from stagedsl.spec.overrides import OPTION, Override, OverrideProblem, resolve_names
from stagedsl.spec.model import DATA_LOADER_KEYS, Spec
from stagedsl.spec.names import system_path_problem

_TOML_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)")
MAX_EXTENDS_DEPTH = 16
MAX_SPEC_BYTES = 16 * 2**20
"""The largest spec file (or ``extends`` layer) read: 16 MiB."""
MAX_NESTING = 32
"""How deep tables and arrays may nest in a spec (the language itself needs fewer than 10 levels)."""
MAX_KEYS = 1_000_000
"""How many keys and array items a spec may hold in all."""


def _syntax_problem(exc: tomllib.TOMLDecodeError, file: str) -> Problem:
    message = str(exc)
    match = _TOML_POSITION.search(message)
    line, column = (int(match.group(1)), int(match.group(2))) if match else (None, None)
    return Problem("E006", f"TOML syntax: {_TOML_POSITION.sub('', message).strip()}", file=file, line=line, column=column,
                   hint="check quotes, brackets and `key = value` pairs on this line")


def _read(path: Path, sources: list[tuple[str, str]]) -> Optional[dict]:
    try:
        if path.is_file() and path.stat().st_size > MAX_SPEC_BYTES:
            raise SpecError([_too_big(str(path), path.stat().st_size)])
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError([Problem("E005", f"spec file not found: {path}", file=str(path))]) from None
    except IsADirectoryError:
        raise SpecError([Problem("E005", f"{path} is a folder, not a spec file", file=str(path))]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError([Problem("E005", f"cannot read {path}: {exc}", file=str(path))]) from None
    sources.append((str(path), text))
    return _parse(text, str(path))


def _too_big(file: str, size: int) -> Problem:
    return Problem("E016", f"the spec is {size:,} bytes, more than the {MAX_SPEC_BYTES:,} a spec may have", file=file,
                   hint="a spec describes a plan; data belongs in files its dataset reads")


def _parse(text: str, file: str) -> dict:
    """TOML text to a document, bounded: size, nesting and key count (E016), syntax (E006)."""
    if len(text) > MAX_SPEC_BYTES:
        raise SpecError([_too_big(file, len(text))])
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError([_syntax_problem(exc, file)]) from None
    except RecursionError:
        raise SpecError([_too_deep(file)]) from None
    problem, parts = _bounds(document)
    if problem is not None:
        positions = scan_positions(text)
        found = next((positions[parts[:n]] for n in range(len(parts), 0, -1) if parts[:n] in positions), (None, None))
        raise SpecError([attrs.evolve(problem, file=file, line=found[0], column=found[1])])
    return document


def _too_deep(file: Optional[str], path: Optional[str] = None) -> Problem:
    return Problem("E016", f"the spec nests tables and arrays more than {MAX_NESTING} deep", file=file, path=path,
                   hint="the language nests a few levels at most: flatten the value")


def document_bounds(document: object) -> Optional[Problem]:
    """E016 when `document` nests deeper than `MAX_NESTING` or holds more than `MAX_KEYS` keys and items, else None.

    Walked without recursion, so any depth is measured safely.
    """
    return _bounds(document)[0]


def _bounds(document: object) -> tuple[Optional[Problem], tuple]:
    """`document_bounds`, and the key path where it went too deep."""
    count = 0
    stack = [(document, 0, ())]
    while stack:
        node, depth, path = stack.pop()
        if depth > MAX_NESTING:
            return _too_deep(None, format_path(list(path[:3])) + " ..."), path
        if isinstance(node, dict):
            count += len(node)
            stack.extend((value, depth + 1, path + (key,)) for key, value in node.items())
        elif isinstance(node, list):
            count += len(node)
            stack.extend((value, depth + 1, path + (i,)) for i, value in enumerate(node))
        if count > MAX_KEYS:
            return Problem("E016", f"the spec holds more than {MAX_KEYS:,} keys and array items",
                           hint="a spec describes a plan; data belongs in files its dataset reads"), ()
    return None, ()


def _extends_error(message: str, file: str, text: str, hint: Optional[str] = None) -> SpecError:
    """An E008 pointing at the value of `extends = ...` in `text`."""
    where = SourceMap([(file, text)]).where(("extends",))
    return SpecError([Problem("E008", message, path="extends", hint=hint, **where.fields())])


def _read_with_extends(path: Path, sources: list[tuple[str, str]], chain: tuple[Path, ...] = ()) -> dict:
    document = _read(path, sources)
    parent = document.pop("extends", None)
    if parent is None:
        return document
    base = _read_parent(path, sources[-1][1], parent, sources, chain + (path.resolve(),))
    return deep_merge(base, document)


def _read_parent(path: Path, text: str, parent: object, sources: list[tuple[str, str]], chain: tuple[Path, ...]) -> dict:
    """The layered document that `extends = parent` (written in `path`, whose text is `text`) names."""
    if not isinstance(parent, str):
        raise _extends_error(f"`extends` takes a file path, found {parent!r}", str(path), text)
    parent_path = path.parent / parent
    if "\x00" in parent:
        raise _extends_error(f"`extends` names no file: {parent!r} holds a NUL character", str(path), text)
    system = system_path_problem(parent_path)
    if system is not None:
        raise _extends_error(f"`extends` names {parent!r}: {system}", str(path), text,
                             hint="extend a .toml spec file, relative to the file that extends it")
    if parent_path.is_dir():
        raise _extends_error(f"`extends` names a folder, not a file: {parent}", str(path), text,
                             hint="name the .toml file inside it; the path is relative to the file that extends it")
    if not parent_path.exists():
        raise _extends_error(f"`extends` names a missing file: {parent}", str(path), text,
                             hint="the path is relative to the file that extends it")
    if not parent_path.is_file() or parent_path.suffix.lower() != ".toml":
        what = "not a regular file" if not parent_path.is_file() else "not a .toml file"
        raise _extends_error(f"`extends` names {parent!r}, which is {what}", str(path), text,
                             hint="a spec extends another spec: a .toml file (it is not read, so nothing of it is shown)")
    if parent_path.resolve() in chain:
        cycle = " -> ".join(str(p) for p in (*chain, parent_path.resolve()))
        raise _extends_error(f"`extends` forms a cycle: {cycle}", str(path), text, hint="a spec cannot extend itself, directly or through another")
    if len(chain) >= MAX_EXTENDS_DEPTH:
        raise _extends_error(f"`extends` nests more than {MAX_EXTENDS_DEPTH} files deep", str(path), text)
    return _read_with_extends(parent_path, sources, chain)


def _apply_profile(document: dict, profile: Optional[str]) -> dict:
    profiles = document.pop("profile", {})
    if not isinstance(profiles, dict):
        raise KeyProblem("`profile` must be a table of named profiles", path=("profile",))
    if profile is None:
        return document
    if profile not in profiles:
        raise KeyProblem(
            f"no profile named `{profile}`", path=("profile",), code="E009",
            hint=did_you_mean(profile, profiles) or f"profiles: {', '.join(profiles) or 'none defined'}",
        )
    layer = profiles[profile]
    if not isinstance(layer, dict):
        raise KeyProblem(f"profile `{profile}` must be a table", path=("profile", profile))
    return deep_merge(document, layer, ("profile", profile))


def _problem(sources: SourceMap, path: tuple, message: str, hint: Optional[str], code: str) -> Problem:
    """A problem at `path`, pointing at the value written there (at the key, for a problem with the key)."""
    key_path = format_path(list(path)) or None
    where = sources.where(list(path), on_key=points_at_key(code, message)) if path else Location(sources.sources[0][0])
    return Problem(code, message, path=key_path, hint=hint, **where.fields())


def _apply_overrides(document: dict, texts: tuple[str, ...], file: str) -> tuple[dict, list[tuple[Override, tuple]], list[Problem]]:
    """`document` with every ``--set`` in `texts` applied that can be; the overrides applied (each with
    the index path it wrote) and a problem, pointing into the argument, for each one that cannot be."""
    written, problems = [], []
    for index, text in enumerate(texts):
        override: Optional[Override] = None
        try:
            override = Override.parse(text, index)
            path = resolve_names(document, override.parts)
            document = set_path(document, list(override.parts), override.value)
            written.append((override, path))
        except KeyProblem as exc:
            start, end = exc.span if isinstance(exc, OverrideProblem) else override.problem_span(exc)
            prefix = len(OPTION) + 1
            problems.append(Problem(exc.code, str(exc), file=file, path=format_path(list(exc.path)) or None, hint=exc.hint,
                                    column=prefix + start + 1, end_column=prefix + end + 1, argument=f"{OPTION} {text}", argument_index=index))
    return document, written, problems


def _stage_names(document: dict) -> tuple[str, ...]:
    stages = document.get("stage") if isinstance(document, dict) else None
    if not isinstance(stages, list):
        return ()
    return tuple(str(s.get("name")) if isinstance(s, dict) else "" for s in stages)


def _unique(problems) -> list[Problem]:
    """One report per mistake: a key in [defaults] that is wrong in every stage is reported once."""
    seen = set()
    out = []
    for problem in problems:
        message = re.sub(r"stage `[^`]*`", "stage", problem.message)
        located = problem.line or problem.argument is not None
        key = (problem.code, message, problem.file, problem.line, problem.column, problem.argument_index) if located else id(problem)
        if key not in seen:
            seen.add(key)
            out.append(problem)
    return out


def loads_spec(
    text: str,
    *,
    file: str = "<spec>",
    profile: Optional[str] = None,
    overrides: Iterable[str] = (),
    registry: Optional[Registry] = None,
    root: Optional[str] = None,
    live: Optional[Mapping[str, str]] = None,
) -> Spec:
    """Parse spec text (see `load_spec`); `file` names it in messages and anchors `extends`; `root`
    (default: the folder of `file`) is the folder import paths and path arguments are read from."""
    path = Path(file)
    sources: list[tuple[str, str]] = [(file, text)]
    document = _parse(text, file)
    parent = document.pop("extends", None)
    if parent is not None:
        document = deep_merge(_read_parent(path, text, parent, sources, (path.resolve(),)), document)
    return _finish(document, sources, file, profile, overrides, registry, _Anchor(root or _folder(file), live))


def effective_spec_text(spec: Spec, *, note: str = "") -> str:
    """The spec as it runs (extends, the profile and --set applied) as TOML text, for ``spec.toml``."""
    import tomli_w

    header = f"# effective spec of {spec.file}: extends, profile and --set applied{note}\n"
    return header + tomli_w.dumps(anchored(spec.document or {}, spec.root))


def anchored(document: dict, root: Optional[str]) -> dict:
    """`document` with ``paths_from`` set to `root`, the spec's folder: a copy written elsewhere (a run's
    ``spec.toml``, a search's ``best.toml``) reads the files the original read."""
    if root is None:
        return dict(document)
    return {PATHS_FROM: root, **{k: v for k, v in document.items() if k != PATHS_FROM}}


def load_spec(
    path: str | Path,
    *,
    profile: Optional[str] = None,
    overrides: Iterable[str] = (),
    registry: Optional[Registry] = None,
    live: Optional[Mapping[str, str]] = None,
) -> Spec:
    """Read, layer, structure and check the spec at `path`.

    Plugin names and arguments are checked when a `registry` is given. `live` maps
    ``"model"`` / ``"data"`` to the name of a live object that takes that section's place
    (``<live:Net>``; `stagedsl.run` hands the object over; the data section keeps its
    loader keys). Raises `SpecError` carrying every problem found, each with file, key
    path, line and hint.
    """
    path = Path(path)
    sources: list[tuple[str, str]] = []
    document = _read_with_extends(path, sources)
    return _finish(document, sources, str(path), profile, overrides, registry, _Anchor(_folder(str(path)), live))


@attrs.frozen
class _Anchor:
    """Where the spec sits (the folder its import paths and path arguments are read from) and its live pieces."""

    root: str
    live: Optional[Mapping[str, str]] = None


def _folder(file: str) -> str:
    return str(Path(file).resolve().parent)


def _with_live(document: dict, live: Optional[Mapping[str, str]]) -> dict:
    """`document` with each live section replaced by ``{use = "<live:...>"}`` (``[data]`` keeps its loader keys)."""
    for section, name in (live or {}).items():
        old = document.get(section) if isinstance(document.get(section), dict) else {}
        kept = {key: value for key, value in old.items() if section == "data" and key in DATA_LOADER_KEYS}
        document[section] = {**kept, "use": name}
    return document


PATHS_FROM = "paths_from"
"""Top-level key: the folder the spec's relative paths are read from (default the spec file's own folder).
A run's effective ``spec.toml`` records it, so the copy reads the same files as the original."""


def _paths_from(document: dict, sources: list[tuple[str, str]], file: str, anchor: _Anchor) -> _Anchor:
    """`anchor` with the folder `paths_from` names (relative to the spec's folder), taken out of `document`."""
    value = document.pop(PATHS_FROM, None)
    if value is None:
        return anchor
    if not isinstance(value, str) or not value:
        where = SourceMap(sources).where((PATHS_FROM,))
        raise SpecError([Problem("E089", f"`{PATHS_FROM}` takes a folder path, found {value!r}", path=PATHS_FROM,
                                 hint=f'e.g. {PATHS_FROM} = ".." (relative to this file\'s folder)', **where.fields())])
    return attrs.evolve(anchor, root=os.path.normpath(os.path.join(_folder(file), os.path.expanduser(value))))


def _finish(document: dict, sources: list[tuple[str, str]], file: str, profile: Optional[str],
            overrides: Iterable[str], registry: Optional[Registry], anchor: _Anchor) -> Spec:
    """Layer, structure and check the document as selected; then check every other profile too."""
    anchor = _paths_from(document, sources, file, anchor)
    spec, problems = _layered_spec(document, sources, file, profile, tuple(overrides), registry, anchor, matrix=True)
    seen = {(p.code, p.path, p.message) for p in problems}
    profiles = document.get("profile")
    if isinstance(profiles, dict):
        for name in profiles:
            if name != profile:
                problems += _profile_problems(document, sources, file, name, registry, anchor, seen)
    if problems:
        raise SpecError(_unique(problems))
    return spec


def _layered_spec(document: dict, sources: list[tuple[str, str]], file: str, profile: Optional[str],
                  overrides: tuple[str, ...], registry: Optional[Registry], anchor: _Anchor, *,
                  matrix: bool = False) -> tuple[Optional[Spec], list[Problem]]:
    """The spec with `profile` and `overrides` applied, or the problems that stop it (with `matrix`, the
    `[matrix]` and its variants are checked too)."""
    stage_names = _stage_names(document)
    try:
        layered = _apply_profile(dict(document), profile)
    except KeyProblem as exc:
        if exc.code == "E009":  # the mistake is in the command line's --profile, not in the file: point there
            written = f"--profile {profile}"
            return None, [Problem(exc.code, f"{exc} in {file}", file=file, path=None, hint=exc.hint, argument=written,
                                  column=len("--profile ") + 1, end_column=len(written) + 1)]
        return None, [_problem(SourceMap(sources, profile=profile, stage_names=stage_names), exc.path, str(exc), exc.hint, exc.code)]
    layered, written, problems = _apply_overrides(layered, overrides, file)
    source_map = SourceMap(sources, profile=profile, stage_names=stage_names, overrides=written)
    effective = layered = _with_live(layered, anchor.live)
    try:
        layered = apply_defaults(layered)
    except KeyProblem as exc:
        return None, problems + [_problem(source_map, exc.path, str(exc), exc.hint, exc.code)]
    bounds = document_bounds(layered)
    if bounds is not None:  # a --set value or the layering made it too deep or too big
        return None, problems + [attrs.evolve(bounds, file=file)]
    rows: list[tuple] = []
    removed: list[tuple] = []
    try:
        spec = structure_spec(layered)
    except Exception as exc:  # cattrs raises exception groups; flatten them all
        rows = flatten_errors(exc)
        spec, removed = _structure_without(layered, rows)
        if spec is None:
            return None, problems + [_problem(source_map, *row) for row in rows]
    spec = attrs.evolve(spec, file=file, sources=tuple(sources), document=effective, profile=profile, overrides=overrides,
                        root=anchor.root)
    repairable = all(code in REPAIRABLE for *_, code in rows)
    checks = [row for row in check_spec(spec, registry) if _independent(row, removed, repairable)]
    problems += [_problem(source_map, *row) for row in rows + checks]
    if matrix and not rows:
        problems += _matrix_problems(spec, source_map, registry, problems)
    if spec is not None and spec.search is not None and not rows and not problems:
        problems += _search_problems(spec, source_map, registry)
    return (spec if not rows else None), problems


REPAIRABLE = ("E010", "E011", "E041")
"""Codes of values that have a default (a duration, a choice): every other check can run without them."""
PLUGIN_CODES = ("E020", "E021", "E022", "E023", "E080", "E081", "E082", "E083", "E084", "E085")
"""Codes of the checks of plugin names and arguments: each piece on its own, so they run beside any
shape error that is not in the piece itself."""


def _structure_without(layered: dict, rows: list[tuple]) -> tuple[Optional[Spec], list[tuple]]:
    """The spec with the values `rows` fault left out (and, where leaving one out faults the table it
    was in, that table), and the paths left out; None for the spec when it does not structure even so
    (a required top-level table is wrong, say)."""
    document = copy.deepcopy(layered)
    removed: list[tuple] = []
    pending = [path for path, *_ in rows]
    for _ in range(4):
        for path in sorted(pending, key=_order, reverse=True):  # a later array entry first: the earlier keep their index
            gone = _remove(document, tuple(path))
            if gone is None:
                return None, removed
            removed.append(gone)
        try:
            return structure_spec(document), removed
        except Exception as exc:
            pending = [path for path, *_ in flatten_errors(exc)]
    return None, removed


def _remove(document: dict, path: tuple) -> Optional[tuple]:
    """Delete the value at `path` or, when it is not there (a missing key), its closest ancestor below
    the top; the path deleted, or None."""
    for length in range(len(path), 1 if len(path) > 1 else 0, -1):
        node: object = document
        for part in path[: length - 1]:
            node = _child(node, part)
        key = path[length - 1]
        if _child(node, key) is not _ABSENT:
            del node[key]  # type: ignore[union-attr]
            return path[:length]
    return None


_ABSENT = object()


def _child(node: object, part: object) -> object:
    if isinstance(node, dict) and part in node:
        return node[part]
    if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
        return node[part]
    return _ABSENT


def _order(path: tuple) -> tuple:
    return tuple((0, part, "") if isinstance(part, int) else (1, 0, str(part)) for part in path)


def _overlap(a: tuple, b: tuple) -> bool:
    return a[: len(b)] == b or b[: len(a)] == a


def _independent(row: tuple, removed: list[tuple], repairable: bool) -> bool:
    """Whether a check's `row` on the spec structured without the `removed` values is the user's to see:
    nothing under an array an entry was removed from; with only values that have a default removed,
    every check outside their tables; otherwise only plugin names and arguments that do not touch a
    removed value."""
    path, *_, code = row
    for gone in removed:
        if isinstance(gone[-1], int) and _overlap(path, gone[:-1]):
            return False
        if repairable and path[: len(gone) - 1] == gone[:-1]:
            return False
        if not repairable and _overlap(path, gone):
            return False
    return repairable or code in PLUGIN_CODES


def _profile_problems(document: dict, sources: list[tuple[str, str]], file: str, profile: str,
                      registry: Optional[Registry], anchor: _Anchor, seen: set) -> list[Problem]:
    """What is wrong inside the profile `profile` (not selected): its keys, types, plugin names and
    arguments, as the spec would have them with it; only problems written in the profile itself
    (and not already in `seen`, the problems of the spec as selected)."""
    _, problems = _layered_spec(document, sources, file, profile, (), registry, anchor)
    inside = SourceMap(sources, profile=profile, stage_names=_stage_names(document))
    found = []
    for problem in problems:
        parts = parse_path(problem.path) if problem.path else []
        if (problem.code, problem.path, problem.message) in seen or not inside.written_in_profile(parts):
            continue
        where = f"{problem.path} (profile `{profile}`)" if problem.path else f"profile `{profile}`"
        found.append(attrs.evolve(problem, path=where))
    return found


def _matrix_problems(spec: Spec, source_map: SourceMap, registry: Optional[Registry], base: list[Problem]) -> list[Problem]:
    """`[matrix]` / `[[ensemble]]` and every variant layered over the spec (`stagedsl.spec.matrix`)."""
    from stagedsl.spec.matrix import check_matrix, variant_problems

    problems = [_problem(source_map, *row) for row in check_matrix(spec, registry)]
    if spec.matrix is not None and not problems:
        problems += variant_problems(spec, registry, lambda *row: _problem(source_map, *row), base)
    return problems


def _search_problems(spec: Spec, source_map: SourceMap, registry: Optional[Registry]) -> list[Problem]:
    """`[search]` and every axis of its space, tried against the spec (`stagedsl.spec.search`)."""
    from stagedsl.spec.search import check_search, space_path

    _, rows = check_search(spec, registry)
    return [attrs.evolve(_problem(source_map, *row), path=space_path(row[0])) for row in rows]
