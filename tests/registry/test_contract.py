"""The plugin contract is documented and kept: every hook says what it receives, when it is
called and what it returns; every registered piece has a docstring, a signature whose
annotations resolve and that the spec's argument check understands, and the meta its kind
takes. `contract_problems` is the check, and a deliberately broken plugin shows that it
can fail; the registry refuses what it must refuse (a misspelt hook, a misspelt meta
keyword, an annotation that names nothing, two defaults of one kind)."""

from __future__ import annotations

import inspect
import types
import typing
from pathlib import Path

import pytest

from stagedsl import PluginError, Steps, hookimpl
from stagedsl.registry import KINDS, Registry, hookspecs
from stagedsl.registry.hookspecs import OPTIONAL_SUPPLIED, SUPPLIED
from stagedsl.registry.meta import META

HOOKS = [
    (name, function)
    for name, function in inspect.getmembers(hookspecs, inspect.isfunction)
    if hasattr(function, "stagedsl_spec")
]
UNDERSTOOD = (int, float, str, bool, dict, list, tuple, Steps, Path, type(None), typing.Any)
"""Annotations the spec's argument check (`spec.check._value_problem`) judges values against."""


def _understood(annotation) -> bool:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return True
    if origin in (typing.Union, types.UnionType, list, tuple, dict):
        return all(_understood(a) for a in typing.get_args(annotation) if a is not Ellipsis)
    return annotation in UNDERSTOOD


def contract_problems(registry: Registry) -> list[str]:
    """Every way a registered piece breaks the contract the spec's checks and the engine rely on."""
    problems = []
    for entry in registry.entries():
        label = f"{entry.kind}/{entry.name}"
        if not (inspect.getdoc(entry.factory) or "").strip():
            problems.append(f"{label}: no docstring (`staged plugins` shows its first line)")
        if not isinstance(entry.meta, META[entry.kind]):
            problems.append(f"{label}: meta is {type(entry.meta).__name__}, not {META[entry.kind].__name__}")
        if entry.parameters is None:
            problems.append(f"{label}: its signature cannot be read, so its arguments go unchecked")
            continue
        names = list(entry.parameters.parameters)
        supplied = SUPPLIED.get(entry.kind, ())
        if names[:len(supplied)] != list(supplied):
            problems.append(f"{label}: takes {names[:len(supplied)]} first, the core supplies {list(supplied)}")
        for name, param in entry.parameters.parameters.items():
            if name in supplied + OPTIONAL_SUPPLIED.get(entry.kind, ()):
                continue
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                problems.append(f"{label}: *{name} hides its arguments from the spec's check")
            elif param.annotation is inspect.Parameter.empty or isinstance(param.annotation, str):
                problems.append(f"{label}: `{name}` has no (resolved) annotation")
            elif not _understood(param.annotation):
                problems.append(f"{label}: `{name}: {param.annotation}` is not a type the spec's check understands")
    return problems


def _plugin(**hooks) -> object:
    return types.SimpleNamespace(**{name: hookimpl(function) for name, function in hooks.items()})


def test_every_kind_has_one_register_hook():
    assert sorted(name for name, _ in HOOKS) == sorted(f"register_{kind}" for kind in KINDS)


@pytest.mark.parametrize(("name", "hook"), HOOKS, ids=[name for name, _ in HOOKS])
def test_every_hook_documents_its_contract(name, hook):
    doc = inspect.getdoc(hook) or ""
    for section in ("Receives:", "Called:", "Returns:"):
        assert section in doc, f"{name}'s docstring lacks `{section}`"
    assert doc.splitlines()[0].strip(), f"{name} needs a one-line summary"
    assert list(inspect.signature(hook).parameters) == ["register"]


def test_the_hook_module_explains_registration():
    doc = hookspecs.__doc__
    assert "register(name, factory" in doc and "signature" in doc and "cheap" in doc


def test_every_built_in_piece_keeps_the_contract(builtin_registry):
    assert builtin_registry.entries()
    assert contract_problems(builtin_registry) == []
    assert all(e.doc for e in builtin_registry.entries())  # the first line, which `staged plugins` shows


def test_the_contract_check_finds_a_piece_that_breaks_it():
    def loose(*args, alpha, beta: set = frozenset()):
        pass

    def adam_like(params, lr: float):
        """An optimizer whose first argument is misnamed."""

    class Bad:
        @hookimpl
        def register_losses(self, register):
            register("loose", loose)

        @hookimpl
        def register_optimizers(self, register):
            register("adam_like", adam_like)

    found = "\n".join(contract_problems(Registry.load(builtins=False, autoload=False, plugins=[("bad", Bad())])))
    assert "losses/loose: no docstring" in found
    assert "*args hides its arguments" in found and "`alpha` has no (resolved) annotation" in found
    assert "`beta: <class 'set'>` is not a type" in found
    assert "optimizers/adam_like: takes ['params', 'lr'] first, the core supplies ['param_groups', 'lr']" in found


def test_a_misspelt_hook_is_an_error_naming_the_plugin(registry):
    def register_model(register):
        register("forgotten", lambda: None)

    with pytest.raises(PluginError) as caught:
        registry.add_plugin(_plugin(register_model=register_model), name="typo-plugin")
    problem = caught.value.problems[0]
    assert problem.code == "E104" and "typo-plugin" in problem.message and "register_model" in problem.message
    assert problem.hint == 'did you mean "register_models"?'
    assert "typo-plugin" not in registry.plugin_names()  # nothing of it stays


def test_a_misspelt_meta_keyword_is_an_error_not_ignored(registry):
    def slow(optimizer, total_steps: int):
        """A scheduler."""

    with pytest.raises(PluginError) as caught:
        registry.add_plugin(_plugin(register_schedulers=lambda register: register("slow", slow, monitred=True)), name="meta-typo")
    problem = caught.value.problems[0]
    assert problem.code == "E102" and "unknown option `monitred`" in problem.message and problem.hint == 'did you mean "monitored"?'
    with pytest.raises(PluginError, match="must be one of 'min', 'max'"):
        registry.add_plugin(_plugin(register_metrics=lambda register: register("m", slow, mode="up")), name="meta-value")
    assert registry.find("schedulers", "slow") is None and registry.find("metrics", "m") is None


def test_an_annotation_that_names_nothing_is_refused_at_registration(registry):
    namespace: dict = {}
    exec(compile('def odd(x: "NoSuchType" = 1):\n    """A loss."""\n', "plugin.py", "exec", dont_inherit=True), namespace)
    with pytest.raises(PluginError) as caught:
        registry.add_plugin(_plugin(register_losses=lambda register: register("odd", namespace["odd"])), name="unresolved")
    assert caught.value.problems[0].code == "E102" and "NoSuchType" in caught.value.problems[0].message


def test_two_defaults_of_one_kind_name_both(registry):
    def other(param_groups, lr: float):
        """Another optimizer."""

    with pytest.raises(PluginError) as caught:
        registry.add_plugin(_plugin(register_optimizers=lambda register: register("other", other, default=True)), name="greedy")
    problem = caught.value.problems[0]
    assert problem.code == "E100" and "`adamw`" in problem.message and "`other` (plugin `greedy`)" in problem.message


def test_the_plugin_guide_covers_every_hook_and_the_entry_point():
    guide = (Path(__file__).resolve().parents[2] / "docs" / "plugins.md").read_text()
    for kind in KINDS:
        assert f"register_{kind}" in guide, f"docs/plugins.md does not mention register_{kind}"
    for needle in ("[project.entry-points.stagedsl]", "hookimpl", "STAGEDSL_DISABLE_PLUGIN_AUTOLOAD", "STAGEDSL_BLOCK_PLUGINS",
                   "STAGEDSL_STRICT_PLUGINS", "Registry.load(autoload=False", "examples/stagedsl-example-plugin",
                   "default=True", "worst_case", "registry.build("):
        assert needle in guide
