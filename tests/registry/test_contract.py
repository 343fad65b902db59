"""The plugin contract is documented: every hook says what it receives, when it is
called and what it returns; every registered built-in piece has a docstring."""

from __future__ import annotations

import inspect

import pytest

from stagedsl.registry import KINDS, hookspecs

HOOKS = [
    (name, function)
    for name, function in inspect.getmembers(hookspecs, inspect.isfunction)
    if hasattr(function, "stagedsl_spec")
]


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


def test_every_built_in_factory_has_a_docstring(builtin_registry):
    entries = builtin_registry.entries()
    assert entries
    undocumented = [f"{e.kind}/{e.name}" for e in entries if not (inspect.getdoc(e.factory) or "").strip()]
    assert undocumented == []
    assert all(e.doc for e in entries)  # the first line, which `staged plugins` shows


def test_every_built_in_factory_signature_can_be_read(builtin_registry):
    for entry in builtin_registry.entries():
        entry.signature()  # the spec's arguments are checked against it


def test_the_plugin_guide_covers_every_hook_and_the_entry_point():
    from pathlib import Path

    guide = (Path(__file__).resolve().parents[2] / "docs" / "plugins.md").read_text()
    for kind in KINDS:
        assert f"register_{kind}" in guide, f"docs/plugins.md does not mention register_{kind}"
    for needle in ("[project.entry-points.stagedsl]", "hookimpl", "STAGEDSL_DISABLE_PLUGIN_AUTOLOAD", "STAGEDSL_BLOCK_PLUGINS",
                   "STAGEDSL_STRICT_PLUGINS", "Registry.load(autoload=False", "examples/stagedsl-example-plugin"):
        assert needle in guide
