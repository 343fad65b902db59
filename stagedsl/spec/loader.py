"""Read a spec file into a checked `Spec`, or raise one `SpecError` listing every problem.

The layers, in order: the file and what it ``extends`` (deep merge), the selected
``[profile.<name>]``, ``--set key.path=value`` overrides, then ``[defaults]`` under
every stage. The merged document is structured by the cattrs converter and checked
(`stagedsl.spec.check`). Never imports torch.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Iterable, Optional

import attrs

from stagedsl.errors import Problem, SpecError
from stagedsl.registry import Registry, did_you_mean
from stagedsl.spec.check import check_spec
from stagedsl.spec.convert import KeyProblem, flatten_errors, structure_spec
from stagedsl.spec.locate import SourceMap, format_path, scan_positions
from stagedsl.spec.merge import apply_defaults, deep_merge, parse_override, set_path
from stagedsl.spec.model import Spec

_TOML_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)")
MAX_EXTENDS_DEPTH = 16


def _syntax_problem(exc: tomllib.TOMLDecodeError, file: str) -> Problem:
    message = str(exc)
    match = _TOML_POSITION.search(message)
    line, column = (int(match.group(1)), int(match.group(2))) if match else (None, None)
    return Problem("E006", f"TOML syntax: {_TOML_POSITION.sub('', message).strip()}", file=file, line=line, column=column,
                   hint="check quotes, brackets and `key = value` pairs on this line")


def _read(path: Path, sources: list[tuple[str, str]]) -> Optional[dict]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError([Problem("E005", f"spec file not found: {path}", file=str(path))]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError([Problem("E005", f"cannot read {path}: {exc}", file=str(path))]) from None
    sources.append((str(path), text))
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError([_syntax_problem(exc, str(path))]) from None


def _extends_error(message: str, file: str, text: str, hint: Optional[str] = None) -> SpecError:
    """An E008 pointing at the `extends = ...` line of `text`."""
    line, column = scan_positions(text).get(("extends",), (None, None))
    return SpecError([Problem("E008", message, file=file, path="extends", line=line, column=column, hint=hint)])


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
    if not parent_path.is_file():
        raise _extends_error(f"`extends` names a missing file: {parent}", str(path), text,
                             hint="the path is relative to the file that extends it")
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
    key_path = format_path(list(path)) or None
    file, line, column = sources.locate(list(path)) if path else (sources.sources[0][0], None, None)
    return Problem(code, message, file=file, path=key_path, line=line, column=column, hint=hint)


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
        key = (problem.code, message, problem.file, problem.line, problem.column) if problem.line else id(problem)
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
) -> Spec:
    """Parse spec text (see `load_spec`); `file` names it in messages and anchors `extends`."""
    path = Path(file)
    sources: list[tuple[str, str]] = [(file, text)]
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError([_syntax_problem(exc, file)]) from None
    parent = document.pop("extends", None)
    if parent is not None:
        document = deep_merge(_read_parent(path, text, parent, sources, (path.resolve(),)), document)
    return _finish(document, sources, file, profile, overrides, registry)


def load_spec(
    path: str | Path,
    *,
    profile: Optional[str] = None,
    overrides: Iterable[str] = (),
    registry: Optional[Registry] = None,
) -> Spec:
    """Read, layer, structure and check the spec at `path`.

    Plugin names and arguments are checked when a `registry` is given. Raises
    `SpecError` carrying every problem found, each with file, key path, line and hint.
    """
    path = Path(path)
    sources: list[tuple[str, str]] = []
    document = _read_with_extends(path, sources)
    return _finish(document, sources, str(path), profile, overrides, registry)


def _finish(document: dict, sources: list[tuple[str, str]], file: str, profile: Optional[str],
            overrides: Iterable[str], registry: Optional[Registry]) -> Spec:
    overrides = tuple(overrides)
    source_map = SourceMap(sources, profile=profile, stage_names=_stage_names(document))
    try:
        document = _apply_profile(document, profile)
        for override in overrides:
            parts, value = parse_override(override)
            document = set_path(document, parts, value)
        layered = apply_defaults(document)
    except KeyProblem as exc:
        raise SpecError([_problem(source_map, exc.path, str(exc), exc.hint, exc.code)]) from None
    try:
        spec = structure_spec(layered)
    except Exception as exc:  # cattrs raises exception groups; flatten them all
        rows = flatten_errors(exc)
        raise SpecError(_unique(_problem(source_map, *row) for row in rows)) from None
    spec = attrs.evolve(spec, file=file, sources=tuple(sources), document=document, profile=profile, overrides=overrides)
    problems = [_problem(source_map, *row) for row in check_spec(spec, registry)]
    problems += _matrix_problems(spec, source_map, registry, problems)
    if problems:
        raise SpecError(_unique(problems))
    return spec


def _matrix_problems(spec: Spec, source_map: SourceMap, registry: Optional[Registry], base: list[Problem]) -> list[Problem]:
    """`[matrix]` / `[[ensemble]]` and every variant layered over the spec (`stagedsl.spec.matrix`)."""
    from stagedsl.spec.matrix import check_matrix, variant_problems

    problems = [_problem(source_map, *row) for row in check_matrix(spec, registry)]
    if spec.matrix is not None and not problems:
        problems += variant_problems(spec, registry, lambda *row: _problem(source_map, *row), base)
    return problems
