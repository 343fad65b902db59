"""Shared fixtures: a registry with the built-ins only (no autoload), a fixture that
registers a plugin for one test, the real specs, and tiny spec text to mutate."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Plugin autoload off: tests see the built-ins and only what a test registers itself.
os.environ["STAGEDSL_DISABLE_PLUGIN_AUTOLOAD"] = "1"

from stagedsl.registry import Registry, set_registry  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def builtin_registry() -> Registry:
    """The built-in plugins, nothing autoloaded. Shared: do not add plugins to it."""
    return Registry.load(autoload=False)


@pytest.fixture
def registry() -> Registry:
    """A fresh registry with the built-ins, installed as the process registry for one test."""
    fresh = Registry.load(autoload=False)
    set_registry(fresh)
    yield fresh
    set_registry(None)


@pytest.fixture
def register_plugin(registry):
    """Register a plugin object for one test: ``register_plugin(obj, name="x")``; removed after."""
    added = []

    def register(plugin: object, name: str = "test-plugin") -> Registry:
        registry.add_plugin(plugin, name=name)
        added.append(name)
        return registry

    yield register
    for name in added:
        registry.remove_plugin(name)


@pytest.fixture
def specs_dir() -> Path:
    """The repository's specs/ folder."""
    return SPECS


@pytest.fixture
def isolated_imports(tmp_path_factory):
    """Forget the modules (read from the test's temporary folders) and ``sys.path`` entries a test's import paths added."""
    import sys

    base = str(tmp_path_factory.getbasetemp())
    path = list(sys.path)
    yield
    sys.path[:] = path
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", None) or "").startswith(base):
            del sys.modules[name]
