"""The registry: loads plugins through pluggy and answers "which factory is `name`?".

Built-in plugins come from an explicit module list; third-party ones from the
``stagedsl`` entry-point group, one at a time, so a broken plugin is named and skipped
(or fatal with ``strict``). Two plugins registering one name for a kind is an error
naming both. Environment switches (as pytest has):

- ``STAGEDSL_DISABLE_PLUGIN_AUTOLOAD=1``: load no entry-point plugin;
- ``STAGEDSL_STRICT_PLUGINS=1``: a plugin that fails to load is an error, not a warning;
- ``STAGEDSL_BLOCK_PLUGINS=name,name``: skip these entry points (by entry-point name).
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import os
import sys
import warnings
from importlib import metadata
from typing import Any, Callable, Iterable, Optional

import attrs
import pluggy

from stagedsl.errors import PluginError, Problem
from stagedsl.registry import hookspecs
from stagedsl.registry.hookspecs import KINDS, PROJECT

BUILTIN_MODULES: tuple[str, ...] = (
    "stagedsl_plugins.models",
    "stagedsl_plugins.datasets",
    "stagedsl_plugins.losses",
    "stagedsl_plugins.metrics",
    "stagedsl_plugins.optimizers",
    "stagedsl_plugins.schedulers",
    "stagedsl_plugins.freeze",
    "stagedsl_plugins.callbacks",
    "stagedsl_plugins.mesh",
    "stagedsl_plugins.ensembles",
    "stagedsl_plugins.meta_learners",
    "stagedsl_plugins.systems.compare",
)
"""Modules of the built-in plugins, registered exactly like third-party ones."""

ENTRY_POINT_GROUP = PROJECT

ENV_DISABLE_AUTOLOAD = "STAGEDSL_DISABLE_PLUGIN_AUTOLOAD"
ENV_STRICT = "STAGEDSL_STRICT_PLUGINS"
ENV_BLOCK = "STAGEDSL_BLOCK_PLUGINS"


class PluginLoadWarning(UserWarning):
    """A third-party plugin failed to load and was skipped."""


@attrs.frozen
class Entry:
    """One registered piece: its kind, name, factory and where it came from."""

    kind: str
    name: str
    factory: Callable[..., Any]
    plugin: str
    distribution: Optional[str] = None
    version: Optional[str] = None
    meta: dict = attrs.field(factory=dict)

    @property
    def doc(self) -> str:
        """The first line of the factory's docstring."""
        text = inspect.getdoc(self.factory) or ""
        return text.strip().splitlines()[0] if text.strip() else ""

    def signature(self) -> inspect.Signature:
        """The factory's signature, with string annotations resolved where possible."""
        try:
            return inspect.signature(self.factory, eval_str=True)
        except (NameError, TypeError):
            return inspect.signature(self.factory)


SINGULAR = {
    "models": "model", "datasets": "dataset", "losses": "loss", "metrics": "metric", "optimizers": "optimizer",
    "schedulers": "scheduler", "freeze_strategies": "freeze strategy", "ensembles": "ensemble", "meta_learners": "meta-learner",
    "exporters": "exporter",
    "callbacks": "callback",
}


def singular(kind: str) -> str:
    """What one piece of a kind is called: "losses" -> "loss", "freeze_strategies" -> "freeze strategy"."""
    return SINGULAR.get(kind, kind.rstrip("s").replace("_", " "))


def _truthy(value: Optional[str]) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def did_you_mean(word: str, choices: Iterable[str], n: int = 1) -> Optional[str]:
    """The closest of `choices` to `word`, formatted as a hint, or None."""
    if not isinstance(word, str):
        return None
    close = difflib.get_close_matches(word, list(choices), n=n, cutoff=0.5)
    return f'did you mean "{close[0]}"?' if close else None


class Registry:
    """Every registered piece, by kind and name, and the plugins they came from."""

    def __init__(self) -> None:
        self._pm = pluggy.PluginManager(PROJECT)
        self._pm.add_hookspecs(hookspecs)
        self._entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
        self.skipped: list[Problem] = []
        self._dists: dict[str, tuple[Optional[str], Optional[str]]] = {}

    # -- loading -------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        *,
        builtins: bool = True,
        autoload: Optional[bool] = None,
        strict: Optional[bool] = None,
        plugins: Iterable[tuple[str, object]] = (),
    ) -> "Registry":
        """Build a registry with the built-ins, entry-point plugins and `plugins`.

        `autoload` and `strict` default to the environment switches.
        """
        if autoload is None:
            autoload = not _truthy(os.environ.get(ENV_DISABLE_AUTOLOAD))
        if strict is None:
            strict = _truthy(os.environ.get(ENV_STRICT))
        registry = cls()
        if builtins:
            version = _version_of("stagedsl")
            for module_name in BUILTIN_MODULES:
                module = importlib.import_module(module_name)
                registry.add_plugin(module, name=module_name, distribution="stagedsl", version=version)
        if autoload:
            registry._load_entry_points(strict=strict)
        for name, plugin in plugins:
            registry.add_plugin(plugin, name=name)
        return registry

    def _load_entry_points(self, *, strict: bool) -> None:
        blocked = {b.strip() for b in os.environ.get(ENV_BLOCK, "").split(",") if b.strip()}
        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            if ep.name in blocked:
                continue
            dist = getattr(ep, "dist", None)
            dist_name = dist.metadata["Name"] if dist is not None else None
            dist_version = dist.version if dist is not None else None
            try:
                plugin = ep.load()
                self.add_plugin(plugin, name=ep.name, distribution=dist_name, version=dist_version)
            except PluginError:
                raise
            except Exception as exc:  # a broken third-party plugin must not take the CLI down
                problem = Problem(
                    code="E101",
                    message=f"plugin `{ep.name}` from {dist_name or 'an unknown distribution'} "
                    f"failed to load: {type(exc).__name__}: {exc}",
                    hint=f"uninstall or fix it, or skip it with {ENV_BLOCK}={ep.name}",
                )
                if strict:
                    raise PluginError([problem]) from None
                self.skipped.append(problem)
                warnings.warn(str(problem), PluginLoadWarning, stacklevel=2)

    def add_plugin(
        self,
        plugin: object,
        *,
        name: str,
        distribution: Optional[str] = None,
        version: Optional[str] = None,
    ) -> None:
        """Register one plugin object (a module or any object with hook implementations)."""
        before = {kind: dict(entries) for kind, entries in self._entries.items()}
        self._pm.register(plugin, name=name)
        self._dists[name] = (distribution, version)
        try:
            for kind in KINDS:
                hook = getattr(self._pm.hook, f"register_{kind}")
                for impl in hook.get_hookimpls():
                    if impl.plugin_name == name:
                        impl.function(register=self._registrar(kind, name))
        except BaseException:
            self._entries = before
            self._pm.unregister(name=name)
            self._dists.pop(name, None)
            raise

    def remove_plugin(self, name: str) -> None:
        """Unregister a plugin and every piece it registered."""
        self._pm.unregister(name=name)
        self._dists.pop(name, None)
        for kind in KINDS:
            self._entries[kind] = {n: e for n, e in self._entries[kind].items() if e.plugin != name}

    def _registrar(self, kind: str, plugin: str) -> Callable[..., None]:
        distribution, version = self._dists.get(plugin, (None, None))

        def register(name: str, factory: Callable[..., Any], **meta: Any) -> None:
            if not isinstance(name, str) or not name:
                raise PluginError(f"plugin `{plugin}` registered a {singular(kind)} with no name", code="E102")
            if not callable(factory):
                raise PluginError(f"plugin `{plugin}` registered {singular(kind)} `{name}` with a factory that is not callable", code="E102")
            existing = self._entries[kind].get(name)
            if existing is not None:
                raise PluginError(
                    [
                        Problem(
                            code="E100",
                            message=f"{singular(kind)} `{name}` is registered twice: by plugin `{existing.plugin}` "
                            f"({existing.distribution or 'local'}) and by plugin `{plugin}` ({distribution or 'local'})",
                            hint=f"uninstall one of them, or block one with {ENV_BLOCK}",
                        )
                    ]
                )
            self._entries[kind][name] = Entry(kind, name, factory, plugin, distribution, version, dict(meta))

        return register

    # -- lookup --------------------------------------------------------------------
    def names(self, kind: str) -> list[str]:
        """Registered names of one kind, sorted."""
        return sorted(self._entries[kind])

    def find(self, kind: str, name: str) -> Optional[Entry]:
        """The entry for `name`, or None."""
        return self._entries[kind].get(name)

    def get(self, kind: str, name: str) -> Entry:
        """The entry for `name`; a `PluginError` with a did-you-mean if there is none."""
        entry = self.find(kind, name)
        if entry is None:
            raise PluginError(
                [Problem(code="E020", message=f"no {singular(kind)} named `{name}` is registered", hint=did_you_mean(name, self.names(kind)))]
            )
        return entry

    def entries(self, kind: Optional[str] = None) -> list[Entry]:
        """Every entry (of one kind, or all), ordered by kind then name."""
        kinds = [kind] if kind else list(KINDS)
        return [self._entries[k][n] for k in kinds for n in sorted(self._entries[k])]

    def plugin_names(self) -> list[str]:
        """Names of the loaded plugins, in load order."""
        return [name for name, _ in self._pm.list_name_plugin()]


def _version_of(distribution: str) -> Optional[str]:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


_default: Optional[Registry] = None


def get_registry() -> Registry:
    """The process-wide registry, loaded on first use."""
    global _default
    if _default is None:
        _default = Registry.load()
    return _default


def set_registry(registry: Optional[Registry]) -> None:
    """Replace (or, with None, forget) the process-wide registry. Used by tests and the CLI."""
    global _default
    _default = registry
