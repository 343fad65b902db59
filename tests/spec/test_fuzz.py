"""Fuzzing the loader and the planner: whatever text arrives, only a `SpecError` or a
`PlanError` may come out (each rendered by the CLI as diagnostics), never a crash.

Three sources of input: random TOML documents over the language's own keys, the real
specs in ``specs/`` parsed, mutated (keys dropped, renamed, added; values swapped for
values of other types) and written back, and arbitrary text and bytes. Examples are
derandomized so CI is deterministic; set ``STAGEDSL_FUZZ_RANDOM=1`` (and raise
``STAGEDSL_FUZZ_EXAMPLES``) to explore new ones.
"""

from __future__ import annotations

import copy
import functools
import importlib
import math
import os
import re
import tomllib
import types
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stagedsl import Registry, hookimpl
from stagedsl.diagnostics import render_problem
from stagedsl.errors import PlanError, SpecError
from stagedsl.plan.compile import compile_plan
from stagedsl.registry import KINDS
from stagedsl.registry.manager import BUILTIN_MODULES
from stagedsl.spec.loader import loads_spec

# -- a tiny TOML writer: enough to re-serialise parsed (and mutated) specs -----------------
# Tables become [headers], arrays of tables [[headers]] (or everything inline, with
# inline=True), the rest `key = value`. It round-trips through tomllib (checked below).
_BARE = re.compile(r"[A-Za-z0-9_-]+")


def toml_key(name: str) -> str:
    """A key, bare when it can be."""
    return name if _BARE.fullmatch(name) else toml_string(name)


def toml_string(text: str) -> str:
    """A TOML basic string."""
    out = ['"']
    for char in text:
        if char == '"':
            out.append('\\"')
        elif char == "\\":
            out.append("\\\\")
        elif char == "\n":
            out.append("\\n")
        elif char == "\t":
            out.append("\\t")
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def toml_value(item: Any) -> str:
    """An inline value."""
    if isinstance(item, bool):
        return "true" if item else "false"
    if isinstance(item, int):
        return str(item)
    if isinstance(item, float):
        if math.isnan(item):
            return "nan"
        if math.isinf(item):
            return "inf" if item > 0 else "-inf"
        return repr(item)
    if isinstance(item, str):
        return toml_string(item)
    if isinstance(item, list):
        return "[" + ", ".join(toml_value(v) for v in item) + "]"
    if isinstance(item, dict):
        return "{ " + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in item.items()) + " }" if item else "{}"
    raise TypeError(f"cannot write {type(item).__name__} as TOML")


def _is_table_array(item: Any) -> bool:
    return isinstance(item, list) and bool(item) and all(isinstance(v, dict) for v in item)


def dumps(document: dict, *, inline: bool = False) -> str:
    """`document` as TOML text."""
    lines: list[str] = []
    _table(document, (), lines, inline)
    return "\n".join(lines) + "\n"


def _table(table: dict, prefix: tuple[str, ...], lines: list[str], inline: bool) -> None:
    nested = []
    for name, item in table.items():
        if not inline and (isinstance(item, dict) or _is_table_array(item)):
            nested.append((name, item))
        else:
            lines.append(f"{toml_key(name)} = {toml_value(item)}")
    for name, item in nested:
        header = ".".join(toml_key(part) for part in (*prefix, name))
        if isinstance(item, dict):
            lines.append(f"\n[{header}]")
            _table(item, (*prefix, name), lines, inline)
        else:
            for element in item:
                lines.append(f"\n[[{header}]]")
                _table(element, (*prefix, name), lines, inline)


SPECS = Path(__file__).resolve().parents[2] / "specs"
SPEC_FILES = sorted(SPECS.glob("*.toml"))
DOCUMENTS = {path.name: tomllib.loads(path.read_text()) for path in SPEC_FILES}

EXAMPLES = int(os.environ.get("STAGEDSL_FUZZ_EXAMPLES", "0")) or None
FUZZ = settings(
    max_examples=EXAMPLES or 300,
    deadline=None,
    derandomize=not os.environ.get("STAGEDSL_FUZZ_RANDOM"),
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

# The language's own words, so random documents get past the first unknown key often.
KEYS = [
    "run", "model", "data", "stage", "defaults", "profile", "extends", "export", "callbacks", "name", "seed", "device",
    "precision", "use", "steps", "epochs", "lr", "optimizer", "scheduler", "loss", "metrics", "train", "freeze", "groups",
    "params", "lr_scale", "eval", "every", "monitor", "mode", "init", "which", "gate", "when", "on_fail", "goto", "sum",
    "blend", "alpha", "weight", "milestones", "batch_size", "n_train", "n_val", "size", "channels", "hidden",
    "in_features", "out_features", "patience", "early_stop", "checkpoint", "log_every", "accumulate", "grad_clip",
    "module", "fraction", "end", "pattern", "formats", "sigma",
]
WORDS = [
    "mse", "adamw", "sgd", "multistep", "plateau", "constant", "cosine", "mlp", "pde_transformer", "pde_synthetic", "npz",
    "ocec_net", "fraction", "glob", "regex", "val/loss", "train/loss", "val/mse", "warmup", "finetune", "best", "last", "stop",
    "goto", "retry", "warn", "min", "max", "auto", "cpu", "32", "16-mixed", "3 epochs", "500 steps", "1 epoch", "10ba",
    "transformer.**", "**", "**.bias", "re:.*", "re:(", "encoder_2d.*", "val/mse >= 0.5", "val/loss < 1 and not (val/mse > 2)",
    "nrmse", "cross_entropy", "spec.toml", "../specs/pde.toml", "1e400 epochs", "1e300 epochs", "nan", "val/",
]

scalars = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.integers(min_value=-3, max_value=40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-2, max_value=2),
    st.booleans(),
    st.sampled_from(WORDS),
    st.text(max_size=12),
)
keys = st.one_of(st.sampled_from(KEYS), st.text(min_size=1, max_size=8))
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=5)),
    max_leaves=20,
)
documents = st.dictionaries(keys, values, max_size=8)


def _small(factory):
    """`factory`, refusing numbers a fuzzer writes but no test can wait for (depth = 2**40
    builds 2**40 layers, even on the meta device); the signature stays the factory's."""

    @functools.wraps(factory)
    def build(*args, **kwargs):
        for name, value in kwargs.items():
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, (int, float)) and not isinstance(item, bool) and abs(item) > 4096:
                    raise ValueError(f"{name} = {item} is too large to build while fuzzing")
        return factory(*args, **kwargs)

    return build


def _guarded(module: object) -> object:
    """A plugin registering what `module` registers, its models behind `_small`."""
    plugin = types.SimpleNamespace()
    for kind in KINDS:
        impl = getattr(module, f"register_{kind}", None)
        if impl is None:
            continue
        if kind == "models":
            def hook(register, impl=impl):
                impl(register=lambda name, factory, **meta: register(name, _small(factory), **meta))
        else:
            def hook(register, impl=impl):
                impl(register=register)
        setattr(plugin, f"register_{kind}", hookimpl(hook))
    return plugin


@pytest.fixture(scope="module")
def fuzz_registry() -> Registry:
    """The built-ins, with model factories that refuse sizes that would take minutes to build."""
    modules = [(name, _guarded(importlib.import_module(name))) for name in BUILTIN_MODULES]
    return Registry.load(builtins=False, autoload=False, plugins=modules)


def check(text: str, *, registry, file: str = "fuzz.toml", profile=None, overrides=()) -> None:
    """Load and compile `text`; only spec and plan errors may escape."""
    try:
        spec = loads_spec(text, file=file, profile=profile, overrides=overrides, registry=registry)
    except SpecError as exc:
        assert exc.problems, "a SpecError must carry its problems"
        for problem in exc.problems:
            assert problem.code.startswith("E") and problem.message
            _renders(problem, file, text)
        return
    try:
        compile_plan(spec, registry)
    except PlanError as exc:
        assert exc.problems, "a PlanError must carry its problems"
        for problem in exc.problems:
            _renders(problem, file, text)


def _renders(problem, file: str, text: str) -> None:
    """The problem renders, its span (when it has one) inside the text or the argument it points into."""
    rendered = render_problem(problem, {file: text})
    assert rendered.startswith(f"error[{problem.code}]")
    if problem.argument is not None:
        assert 1 <= problem.column <= problem.end_column <= len(problem.argument) + 1
    elif problem.line is not None and problem.end_line is not None and problem.file == file:
        lines = text.splitlines() or [""]
        assert problem.line <= problem.end_line <= len(lines) + 1
        assert (problem.end_line, problem.end_column) >= (problem.line, problem.column)


# -- random documents -------------------------------------------------------------------
@FUZZ
@given(document=documents, inline=st.booleans())
def test_random_documents(document, inline, fuzz_registry):
    text = dumps(document, inline=inline)
    assert tomllib.loads(text) is not None  # the emitter writes valid TOML
    check(text, registry=fuzz_registry)


# -- mutations of the real specs -----------------------------------------------------------
def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path inside a parsed document."""
    out = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for name, child in items:
        out.append((*prefix, name))
        out.extend(_paths(child, (*prefix, name)))
    return out


def _parent(document: dict, path: tuple) -> Any:
    node: Any = document
    for part in path[:-1]:
        node = node[part]
    return node


def _typo(name: str, index: int) -> str:
    if len(name) < 2:
        return name + "x"
    index %= len(name) - 1
    return name[:index] + name[index + 1] + name[index] + name[index + 2 :]


OVERRIDES = st.builds(
    lambda k, v: f"{k}={v}",
    st.sampled_from(["run.seed", "stage[0].steps", "stage[1].lr", "stage.train.epochs", "data.batch_size", "model.dim", "stage[0].epochs",
                     "stage[0].eval.every", "stage[0].lr", "defaults.lr", "stage[0].freeze", "stage[-1].x", "stage.nope.lr", "run"]),
    st.sampled_from(["1", "0", "-5", "1e-5", "3", "2.5", '"7 epochs"', "abc", "[1, 2]", "{ a = 1 }", "", "true", '["**"]']),
)


@st.composite
def mutated_specs(draw) -> tuple[str, dict, list[str], str | None]:
    name = draw(st.sampled_from(sorted(DOCUMENTS)))
    document = copy.deepcopy(DOCUMENTS[name])
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        paths = _paths(document)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = _parent(document, path)
        last = path[-1]
        operation = draw(st.sampled_from(["delete", "replace", "rename", "insert", "swap", "number"]))
        if operation == "delete":
            del parent[last]
        elif operation == "replace":
            parent[last] = draw(values)
        elif operation == "rename" and isinstance(parent, dict):
            parent[_typo(last, draw(st.integers(0, 20)))] = parent.pop(last)
        elif operation == "insert" and isinstance(parent, dict):
            parent[draw(keys)] = draw(values)
        elif operation == "swap":
            other = draw(st.sampled_from(paths))
            if other[: len(path)] != path:
                parent[last] = copy.deepcopy(_parent(document, other)[other[-1]])
        elif operation == "number":
            parent[last] = draw(st.sampled_from([0, -1, 1, 2**40, 2**63 - 1, 0.5, -0.0, 1.7e308, float("nan"), float("inf")]))
    profiles = list(document.get("profile", {})) if isinstance(document.get("profile"), dict) else []
    profile = draw(st.sampled_from([None, None, None, "?", *profiles * 2]))
    if profile == "?":
        profile = draw(st.text(max_size=5))
    overrides = draw(st.lists(st.one_of(OVERRIDES, OVERRIDES, OVERRIDES, st.text(max_size=20)), max_size=draw(st.sampled_from([0, 0, 1, 2]))))
    return dumps(document, inline=draw(st.booleans())), document, overrides, profile


@FUZZ
@given(case=mutated_specs())
def test_mutated_real_specs(case, fuzz_registry):
    text, _, overrides, profile = case
    check(text, registry=fuzz_registry, file=str(SPECS / "fuzzed.toml"), profile=profile, overrides=overrides)


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda p: p.name)
def test_real_specs_survive_the_emitter(path, fuzz_registry):
    """The emitter round-trips the real specs, so the mutations start from valid specs."""
    text = dumps(DOCUMENTS[path.name])
    assert tomllib.loads(text) == DOCUMENTS[path.name]
    compile_plan(loads_spec(text, file=str(path), registry=fuzz_registry), fuzz_registry)


# -- arbitrary text -------------------------------------------------------------------------
@FUZZ
@given(text=st.one_of(
    st.text(max_size=300),
    st.binary(max_size=300).map(lambda b: b.decode("utf-8", errors="replace")),
    st.lists(st.sampled_from(['[', ']', '[[stage]]', '=', '"', "'", '{', '}', ',', '\n', 'name', ' ', '.', '#', '"""', '1', 'use',
                              '[model]', '[data]', 'x = 1', 'stage.a = {}', '\\', 'e', '-']), max_size=40).map("".join),
))
def test_arbitrary_text(text, fuzz_registry):
    check(text, registry=fuzz_registry)


@FUZZ
@given(raw=st.binary(max_size=200))
def test_arbitrary_bytes_through_the_file_loader(raw, tmp_path_factory, fuzz_registry):
    from stagedsl.spec.loader import load_spec

    path = tmp_path_factory.mktemp("fuzz") / "spec.toml"
    path.write_bytes(raw)
    try:
        load_spec(path, registry=fuzz_registry)
    except SpecError:
        pass
