"""`[matrix]` and `[[ensemble]]` in the spec room: checking them and expanding the members.

A *member* is one variant with one seed. Its document is built by layering, exactly as a
profile is: the spec's merged document (``extends`` and the profile applied) without
``[matrix]`` and ``[[ensemble]]``, then the variant's table (``[matrix.variant.<name>]``,
stages addressed by name), then the ``--set`` overrides again (so a ``--set`` still wins),
then ``run.seed`` and ``run.name``. The result is an ordinary single spec, structured and
checked like one. A mistake inside a variant table is reported where it is written
(``matrix.variant.fusion.model.layers``, its line); one that the variant only provokes
elsewhere names the variant. Never imports torch.
"""

from __future__ import annotations

import fnmatch
from typing import Callable, Iterator, Optional

import attrs

from stagedsl.errors import Problem, SpecError
from stagedsl.registry import Registry, did_you_mean, singular
from stagedsl.spec.check import Row, check_args, check_spec, seed_problem
from stagedsl.spec.convert import KeyProblem, flatten_errors, structure_piece, structure_spec
from stagedsl.spec.locate import PathPart, ScannedText, format_path, points_at_key
from stagedsl.spec.merge import apply_defaults, deep_merge, parse_override, set_path
from stagedsl.spec.model import Spec
from stagedsl.spec.names import name_problem, valid_name

BASE_VARIANT = "base"
"""The one variant of a matrix that declares none: the spec as written."""
FORBIDDEN_IN_VARIANT = ("matrix", "ensemble", "profile", "extends")
Locate = Callable[[tuple, str, Optional[str], str], Problem]


@attrs.frozen
class MemberSpec:
    """One member of a matrix: its name, variant, seed, layered document and checked `Spec`."""

    name: str
    variant: str
    seed: int
    layer: dict
    spec: Spec = attrs.field(repr=False)


def member_name(variant: str, seed: int) -> str:
    """``<variant>-s<seed>``."""
    return f"{variant}-s{seed}"


def variants(spec: Spec) -> dict[str, dict]:
    """The matrix's variant layers by name (``{"base": {}}`` when it declares none)."""
    if spec.matrix is None:
        return {}
    return dict(spec.matrix.variant) or {BASE_VARIANT: {}}


def seeds(spec: Spec) -> tuple[int, ...]:
    """The matrix's seeds (the spec's `run.seed` when it gives none)."""
    if spec.matrix is None:
        return ()
    return tuple(spec.matrix.seeds) or (spec.run.seed,)


def member_names(spec: Spec) -> list[str]:
    """Every member's name, variant by variant, seed by seed."""
    return [member_name(v, s) for v in variants(spec) for s in seeds(spec)]


# -- checks ------------------------------------------------------------------------------
def check_matrix(spec: Spec, registry: Optional[Registry]) -> list[Row]:
    """Problems of `[matrix]` and `[[ensemble]]` themselves (the variants' layers are `variant_problems`)."""
    rows: list[Row] = []
    if spec.matrix is None:
        if spec.ensembles:
            rows.append((("ensemble",), "`[[ensemble]]` combines the members of a `[matrix]`, and this spec has none",
                         "add [matrix] with seeds and/or [matrix.variant.<name>] tables", "E073"))
        return rows
    matrix = spec.matrix
    for key in ("jobs", "threads"):
        if getattr(matrix, key) < 1:
            rows.append((("matrix", key), f"`{key}` must be at least 1, found {getattr(matrix, key)}", None, "E012"))
    for j, seed in enumerate(matrix.seeds):
        if seed_problem(seed):
            rows.append((("matrix", "seeds", j), seed_problem(seed), None, "E012"))
        elif list(matrix.seeds).index(seed) != j:
            rows.append((("matrix", "seeds", j), f"seed {seed} is listed twice", "each seed makes one member per variant", "E074"))
    for name, layer in matrix.variant.items():
        at = ("matrix", "variant", name)
        if not valid_name(name):
            rows.append((at, *name_problem(name, "variant"), "E070"))
        elif not valid_name(member_name(name, max(seeds(spec), default=0))):
            rows.append((at, f"member names `{member_name(name, max(seeds(spec)))}` would be longer than 64 characters", "shorten the variant's name", "E070"))
        if not isinstance(layer, dict):
            rows.append((at, f"a variant is a table of spec keys, found {layer!r}", f"e.g. [matrix.variant.{name}] model = {{ layers = [2, 2, 2] }}", "E003"))
            continue
        for key in FORBIDDEN_IN_VARIANT:
            if key in layer:
                rows.append((at + (key,), f"a variant cannot set `{key}`", "a variant is a partial spec layered over the file; keep `" + key + "` at the top level", "E075"))
        run = layer.get("run")
        if isinstance(run, dict) and "seed" in run:
            rows.append((at + ("run", "seed"), "a variant cannot set `run.seed`: `[matrix] seeds` gives every member its seed", "list the seeds in [matrix] seeds", "E075"))
    rows += _check_ensembles(spec, registry)
    return rows




def _check_ensembles(spec: Spec, registry: Optional[Registry]) -> list[Row]:
    rows: list[Row] = []
    names = [e.name for e in spec.ensembles]
    members = member_names(spec)
    for i, ensemble in enumerate(spec.ensembles):
        at = ("ensemble", i)
        if not valid_name(ensemble.name):
            rows.append((at + ("name",), *name_problem(ensemble.name, "ensemble"), "E070"))
        elif names.index(ensemble.name) != i:
            rows.append((at + ("name",), f"ensemble name `{ensemble.name}` is used twice", "give every ensemble its own name", "E071"))
        if ensemble.folds < 2:
            rows.append((at + ("folds",), f"`folds` must be at least 2, found {ensemble.folds}", None, "E012"))
        if not ensemble.members:
            rows.append((at + ("members",), "`members` selects no member", 'e.g. members = ["*"]', "E072"))
        for j, pattern in enumerate(ensemble.members):
            if not any(fnmatch.fnmatchcase(m, pattern) for m in members):
                rows.append((at + ("members", j), f"`{pattern}` matches no member", did_you_mean(pattern, members) or f"members: {', '.join(members)}", "E072"))
        if registry is not None:
            rows += list(_check_ensemble_piece(ensemble, at, registry))
    return rows


def _check_ensemble_piece(ensemble, at: tuple, registry: Registry) -> Iterator[Row]:
    entry = registry.find("ensembles", ensemble.use)
    if entry is None:
        names = registry.names("ensembles")
        yield (at + ("use",), f"no ensemble named `{ensemble.use}` is registered", did_you_mean(ensemble.use, names) or f"registered: {', '.join(names)}", "E020")
        return
    yield from check_args(entry, ensemble.args, at, auto={})
    for argument, kind in (entry.meta.get("pieces") or {}).items():
        if argument not in ensemble.args:
            continue
        path = at + (argument,)
        try:
            piece = structure_piece(ensemble.args[argument])
        except KeyProblem as problem:
            yield (path + problem.path, str(problem), problem.hint, problem.code)
            continue
        found = registry.find(kind, piece.use)
        if found is None:
            names = registry.names(kind)
            use_path = path + ("use",) if isinstance(ensemble.args[argument], dict) else path
            yield (use_path, f"no {singular(kind)} named `{piece.use}` is registered", did_you_mean(piece.use, names) or f"registered: {', '.join(names)}", "E020")
            continue
        yield from check_args(found, piece.args, path, auto={})


# -- members -----------------------------------------------------------------------------
def member_document(spec: Spec, variant: str, seed: int) -> dict:
    """The layered document of one member (see the module docstring), before `[defaults]`."""
    document = {k: v for k, v in (spec.document or {}).items() if k not in ("matrix", "ensemble", "search")}
    document = deep_merge(document, variants(spec)[variant], ("matrix", "variant", variant))
    for override in spec.overrides:
        parts, value = parse_override(override)
        if parts and parts[0] not in ("matrix", "ensemble"):
            document = set_path(document, parts, value)
    run = dict(document.get("run") or {})
    run["seed"] = seed
    run["name"] = member_name(variant, seed)
    run.setdefault("threads", spec.matrix.threads)
    document["run"] = run
    return document


def structure_document(document: dict, registry: Optional[Registry], *, root: Optional[str] = None) -> tuple[Optional[Spec], list[Row]]:
    """A layered document (before `[defaults]`) as a checked single `Spec`, or the rows of what is wrong
    (a matrix member's, a search trial's); `root` is the folder of the spec it came from (paths are read from it)."""
    try:
        layered = apply_defaults(document)
        spec = structure_spec(layered)
    except KeyProblem as exc:
        return None, [(exc.path, str(exc), exc.hint, exc.code)]
    except Exception as exc:  # cattrs' exception groups
        return None, flatten_errors(exc)
    spec = attrs.evolve(spec, root=root)
    return spec, check_spec(spec, registry)


def expand_members(spec: Spec, registry: Optional[Registry] = None) -> list[MemberSpec]:
    """Every member of `spec`'s matrix as a checked single `Spec` (a `SpecError` if one is wrong)."""
    out = []
    for variant in variants(spec):
        for seed in seeds(spec):
            document = member_document(spec, variant, seed)
            member, rows = structure_document(document, registry, root=spec.root)
            if rows:
                raise SpecError([Problem(code, f"member `{member_name(variant, seed)}`: {message}", file=spec.file, path=format_path(list(path)), hint=hint)
                                 for path, message, hint, code in rows])
            member = attrs.evolve(member, file=spec.file, sources=spec.sources, document=document, profile=spec.profile)
            out.append(MemberSpec(member_name(variant, seed), variant, seed, variants(spec)[variant], member))
    return out


def variant_problems(spec: Spec, registry: Optional[Registry], locate: Locate, base: list[Problem]) -> list[Problem]:
    """Every problem a variant brings, located in its table where it is written there.

    Each variant is checked once (seeds change only `run.seed`). `locate` places a key
    path of the member document in the spec's files; problems already in `base` (the
    spec's own) are not repeated.
    """
    if spec.matrix is None or not all(isinstance(v, dict) for v in spec.matrix.variant.values()):
        return []
    seen = {(p.code, p.path, p.message) for p in base}
    positions = [(file, ScannedText(text)) for file, text in spec.sources]
    problems = []
    for variant in variants(spec):
        if not valid_name(variant):
            continue
        try:
            document = member_document(spec, variant, seeds(spec)[0])
        except KeyProblem as exc:
            problems.append(_in_variant(spec, variant, exc.path, str(exc), exc.hint, exc.code, positions, locate))
            continue
        member, rows = structure_document(document, registry, root=spec.root)
        stage_names = [s.get("name") if isinstance(s, dict) else None for s in document.get("stage") or []]
        for path, message, hint, code in rows:
            written = _as_written(tuple(path), stage_names)
            problem = _in_variant(spec, variant, written, message, hint, code, positions, locate)
            if problem.path and problem.path.startswith("matrix.variant.") or (code, problem.path, message) not in seen:
                problems.append(problem)
    return problems


def _as_written(path: tuple, stage_names: list) -> tuple:
    """A member path with its stage index replaced by the stage's name, as a layer writes it."""
    if len(path) >= 2 and path[0] == "stage" and isinstance(path[1], int) and path[1] < len(stage_names) and stage_names[path[1]]:
        return ("stage", stage_names[path[1]]) + path[2:]
    return path


def _in_variant(spec: Spec, variant: str, path: tuple, message: str, hint: Optional[str], code: str,
                positions: list, locate: Locate) -> Problem:
    prefixes = [("matrix", "variant", variant)]
    if spec.profile is not None:
        prefixes.insert(0, ("profile", spec.profile, "matrix", "variant", variant))
    for length in range(len(path), 0, -1):
        for prefix in prefixes:
            key = prefix + path[:length]
            for file, scanned in positions:
                where = scanned.location(file, key, on_key=points_at_key(code, message) or length < len(path))
                if where is not None:
                    shown = format_path(list(("matrix", "variant", variant) + path))
                    return Problem(code, message, path=shown, hint=hint, **where.fields())
    located = locate(_as_index(path, spec), f"variant `{variant}`: {message}", hint, code)
    return located


def _as_index(path: tuple, spec: Spec) -> tuple[PathPart, ...]:
    """A written path (stage by name) back to the index form the spec's own locator takes."""
    names = [s.name for s in spec.stages]
    if len(path) >= 2 and path[0] == "stage" and isinstance(path[1], str) and path[1] in names:
        return ("stage", names.index(path[1])) + path[2:]
    return path


__all__ = ["BASE_VARIANT", "MemberSpec", "check_matrix", "expand_members", "member_document", "member_name", "member_names",
           "seeds", "structure_document", "valid_name", "variant_problems", "variants"]
