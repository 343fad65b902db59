"""What the seed-system tests share: the built-in registry, and short ways to build a piece."""

from __future__ import annotations

import pytest

from stagedsl import Registry


@pytest.fixture(scope="module")
def registry() -> Registry:
    """The built-ins, nothing autoloaded (shared by a module's tests: do not add plugins to it)."""
    return Registry.load(autoload=False)


@pytest.fixture
def dataset(registry):
    """``dataset(name, **args) -> (splits, sizes)``: a dataset's splits and what its `sizes` says of them."""

    def build(name: str, **args):
        entry = registry.get("datasets", name)
        return entry.factory(**args), entry.meta.sizes(**args)

    return build


@pytest.fixture
def piece(registry):
    """``piece(kind, name, **args)``: the piece its registered factory builds (its own errors, unwrapped)."""
    return lambda kind, name, **args: registry.get(kind, name).factory(**args)
