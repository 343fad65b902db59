"""The plugin registry: hook specifications and the manager that loads plugins."""

from stagedsl.errors import did_you_mean
from stagedsl.registry.hookspecs import KINDS, hookimpl, hookspec
from stagedsl.registry.manager import Entry, Registry, get_registry, set_registry, singular

__all__ = ["KINDS", "Entry", "Registry", "did_you_mean", "get_registry", "hookimpl", "hookspec", "set_registry", "singular"]
