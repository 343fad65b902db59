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

import importlib
import inspect
import os
import warnings
from importlib import metadata
from typing import Any, Callable, Iterable, Mapping, Optional

import attrs
import pluggy

from stagedsl.errors import PluginError, Problem, StagedError, did_you_mean
from stagedsl.registry import hookspecs
from stagedsl.registry.arguments import Argument, arguments, as_paths
from stagedsl.registry.building import accepted, build_failure
from stagedsl.registry.hookspecs import KINDS, OPTIONAL_SUPPLIED, PROJECT, SUPPLIED, singular
from stagedsl.registry.import_path import absolute, adapt, distribution_of, is_import_path, is_live, resolve
from stagedsl.registry.meta import META, Meta, NoMeta, meta_keys

BUILTIN_MODULES: tuple[str, ...] = (
    "stagedsl_plugins.models",
    "stagedsl_plugins.datasets",
    "stagedsl_plugins.losses",
    "stagedsl_plugins.metrics",
    "stagedsl_plugins.optimizers",
    "stagedsl_plugins.schedulers",
    "stagedsl_plugins.freeze",
    "stagedsl_plugins.ensembles",
    "stagedsl_plugins.meta_learners",
    "stagedsl_plugins.systems.pde",
    "stagedsl_plugins.systems.ocec",
    "stagedsl_plugins.systems.metr",
    "stagedsl_plugins.systems.mesh",
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
    """One registered piece: its kind, name, factory, typed meta and where it came from."""

    kind: str
    name: str
    factory: Callable[..., Any]
    plugin: str
    distribution: Optional[str] = None
    version: Optional[str] = None
    meta: Meta = attrs.field(factory=NoMeta)
    parameters: Optional[inspect.Signature] = attrs.field(default=None, eq=False, repr=False)
    """The factory's signature (string annotations resolved); None when it cannot be read."""
    origin: Optional[str] = attrs.field(default=None, eq=False)
    """The file of a piece named by import path; None for a registered piece."""

    @property
    def source(self) -> str:
        """Where the piece comes from, for messages: its plugin and distribution, or the module it was imported from."""
        if self.origin is not None or is_import_path(self.name):
            where = f"imported from `{self.plugin}`"
        else:
            where = f"plugin `{self.plugin}`"
        dist = f"distribution {self.distribution}{' ' + self.version if self.version else ''}" if self.distribution else "local code"
        return f"{where}, {dist}"

    @property
    def doc(self) -> str:
        """The first line of the factory's docstring."""
        text = inspect.getdoc(self.factory) or ""
        return text.strip().splitlines()[0] if text.strip() else ""

    def arguments(self) -> list[Argument]:
        """The factory's arguments as `staged plugins` shows them (type, default, supplied by stagedsl)."""
        return arguments(self.kind, self.parameters)

    def signature(self) -> inspect.Signature:
        """The factory's signature with its annotations resolved; a TypeError when it cannot be read."""
        if self.parameters is None:
            raise TypeError(f"the signature of {singular(self.kind)} `{self.name}` cannot be read")
        return self.parameters


def _truthy(value: Optional[str]) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


class Registry:
    """Every registered piece, by kind and name, and the plugins they came from."""

    def __init__(self) -> None:
        self._pm = pluggy.PluginManager(PROJECT)
        self._pm.add_hookspecs(hookspecs)
        self._entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
        self.skipped: list[Problem] = []
        self._dists: dict[str, tuple[Optional[str], Optional[str]]] = {}
        self._imported: dict[tuple[str, str], Entry] = {}

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
        """Register one plugin object (a module or any object with hook implementations).

        A hook implementation that matches no hook (a misspelt ``register_model``) or takes
        other arguments than its hook is an error naming the plugin (E104), as is any
        registration the contract refuses (E100, E102); the registry is left as it was.
        """
        before = {kind: dict(entries) for kind, entries in self._entries.items()}
        try:
            self._pm.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            raise PluginError([_hook_problem(name, exc)]) from None
        self._dists[name] = (distribution, version)
        try:
            try:
                self._pm.check_pending()
            except pluggy.PluginValidationError as exc:
                raise PluginError([_hook_problem(name, exc)]) from None
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
        label = singular(kind)

        def register(name: str, factory: Callable[..., Any], **meta: Any) -> None:
            if not isinstance(name, str) or not name:
                raise PluginError(f"plugin `{plugin}` registered a {label} with no name", code="E102")
            if not callable(factory):
                raise PluginError(f"plugin `{plugin}` registered {label} `{name}` with a factory that is not callable", code="E102")
            existing = self._entries[kind].get(name)
            if existing is not None:
                raise PluginError([Problem(
                    code="E100",
                    message=f"{label} `{name}` is registered twice: by plugin `{existing.plugin}` "
                    f"({existing.distribution or 'local'}) and by plugin `{plugin}` ({distribution or 'local'})",
                    hint=f"uninstall one of them, or block one with {ENV_BLOCK}",
                )])
            entry = Entry(kind, name, factory, plugin, distribution, version, _meta(kind, name, plugin, meta),
                          _signature(kind, name, plugin, factory))
            if entry.meta.get("default"):
                self._claim_default(entry)
            self._entries[kind][name] = entry

        return register

    def _claim_default(self, entry: Entry) -> None:
        other = self.default(entry.kind)
        if other is not None:
            raise PluginError([Problem(
                code="E100",
                message=f"two plugins register the default {singular(entry.kind)}: `{other.name}` (plugin `{other.plugin}`) "
                f"and `{entry.name}` (plugin `{entry.plugin}`)",
                hint=f"keep default=True on one of them, or block one with {ENV_BLOCK}",
            )])

    # -- lookup --------------------------------------------------------------------
    def names(self, kind: str) -> list[str]:
        """Registered names of one kind, sorted."""
        return sorted(self._entries[kind])

    def find(self, kind: str, name: str, *, root: Optional[str] = None) -> Optional[Entry]:
        """The entry for `name`, or None. An import path (``"pkg.module:attr"``, ``"./file.py:attr"``,
        relative to `root`, the spec's folder) is imported and checked: a `PluginError` (E080–E085)
        when it names nothing that fits."""
        if is_import_path(name):
            return self._import(kind, name, root)
        return self._entries[kind].get(name)

    def get(self, kind: str, name: str, *, root: Optional[str] = None) -> Entry:
        """The entry for `name`; a `PluginError` with a did-you-mean if there is none."""
        entry = self.find(kind, name, root=root)
        if entry is None:
            if is_live(name):
                raise PluginError([Problem(code="E086", message=f"the plan names a live {singular(kind)} `{name}`, which was not handed over",
                                           hint="a live object exists only in the Python process that handed it to stagedsl.run; pass it "
                                                "again (stagedsl.resume_run(run_dir, model=...)), or name it by import path "
                                                "(use = \"./model.py:Net\") so the CLI can rebuild it")])
            raise PluginError(
                [Problem(code="E020", message=f"no {singular(kind)} named `{name}` is registered", hint=did_you_mean(name, self.names(kind)))]
            )
        return entry

    def _import(self, kind: str, name: str, root: Optional[str]) -> Entry:
        """The entry of an import path, resolved once per kind and file or module (`stagedsl.registry.import_path`)."""
        key = (kind, absolute(name, root))
        entry = self._imported.get(key)
        if entry is None:
            obj, module = resolve(name, root)
            factory, signature, meta = adapt(kind, name, obj)
            distribution, version = distribution_of(module.__name__)
            entry = Entry(kind, name, factory, module.__name__, distribution, version,
                          _meta(kind, name, module.__name__, meta), signature, origin=getattr(module, "__file__", None))
            self._imported[key] = entry
        return entry

    def default(self, kind: str) -> Optional[Entry]:
        """The piece registered with ``default=True`` for `kind` (the one a spec gets when it names none), or None."""
        return next((e for e in self._entries[kind].values() if e.meta.get("default")), None)

    def by_prefix(self, kind: str, text: str) -> Optional[tuple[Entry, str]]:
        """The piece registered with a ``prefix`` that `text` starts with, and the rest of `text`; or None."""
        for entry in self._entries[kind].values():
            prefix = entry.meta.get("prefix")
            if prefix and text.startswith(prefix):
                return entry, text[len(prefix):]
        return None

    def build(self, kind: str, name: str, args: Optional[Mapping[str, Any]] = None, /, *, at: Optional[str] = None,
              phase: str = "run", root: Optional[str] = None, **supplied: Any) -> Any:
        """Build the piece `name` of `kind`: its factory called with `args` and what the core `supplied`.

        The one door through which a piece is made, registered or named by import path
        (resolved against `root`, the spec's folder). `supplied` are the arguments the core
        gives a factory itself (`hookspecs.SUPPLIED`: an optimizer's ``param_groups`` and
        ``lr``, a scheduler's ``optimizer`` and ``total_steps``, a strategy's ``names``; and
        `hookspecs.OPTIONAL_SUPPLIED`, passed only to a factory that takes them: a
        strategy's ``modules``). Any failure of the factory becomes one error located at
        `at` (the key path of the piece, e.g. ``stage[1].optimizer``) naming the piece, its
        plugin and distribution, with the traceback kept for ``staged --debug``: a
        `PlanError` while planning (`phase` "plan"; E105 when the exception is not an
        argument's ValueError / TypeError), a `PluginError` while exporting ("export"), a
        `RunError` otherwise. An unknown name is a `PluginError` with a did-you-mean.
        """
        entry = self.get(kind, name, root=root)
        expected, optional = SUPPLIED.get(kind, ()), OPTIONAL_SUPPLIED.get(kind, ())
        if not set(expected) <= set(supplied) <= set(expected) | set(optional):
            raise TypeError(f"a {singular(kind)} is built with {', '.join(expected) or 'nothing'} supplied, "
                            f"not {', '.join(sorted(supplied)) or 'nothing'}")
        try:
            return entry.factory(**accepted(entry.parameters, supplied), **as_paths(entry.parameters, dict(args or {})))
        except StagedError:
            raise
        except Exception as exc:
            raise build_failure(entry, exc, phase=phase, at=at) from exc

    def entries(self, kind: Optional[str] = None) -> list[Entry]:
        """Every entry (of one kind, or all), ordered by kind then name."""
        kinds = [kind] if kind else list(KINDS)
        return [self._entries[k][n] for k in kinds for n in sorted(self._entries[k])]

    def plugin_names(self) -> list[str]:
        """Names of the loaded plugins, in load order."""
        return [name for name, _ in self._pm.list_name_plugin()]


def _meta(kind: str, name: str, plugin: str, meta: dict[str, Any]) -> Meta:
    """The kind's meta object from a registration's keywords; E102 for an unknown keyword or a bad value."""
    known = meta_keys(kind)
    for key in meta:
        if key not in known:
            raise PluginError([Problem(
                code="E102", message=f"plugin `{plugin}` registered {singular(kind)} `{name}` with unknown option `{key}`",
                hint=did_you_mean(key, known) or f"a {singular(kind)} takes {', '.join(known) or 'no option'}",
            )])
    try:
        return META.get(kind, NoMeta)(**meta)
    except TypeError as exc:
        raise PluginError([Problem(code="E102", message=f"plugin `{plugin}` registered {singular(kind)} `{name}`: {exc}")]) from None


def _signature(kind: str, name: str, plugin: str, factory: Callable[..., Any]) -> Optional[inspect.Signature]:
    """The factory's signature with string annotations resolved (E102 when one names nothing); None if unreadable."""
    try:
        return inspect.signature(factory, eval_str=True)
    except (NameError, AttributeError, SyntaxError) as exc:
        raise PluginError([Problem(
            code="E102", message=f"plugin `{plugin}` registered {singular(kind)} `{name}` whose annotations cannot be "
            f"resolved: {type(exc).__name__}: {exc}", hint="import what the annotations name in the factory's module",
        )]) from None
    except (TypeError, ValueError):
        return None  # a callable inspect cannot read (a C function): its arguments go unchecked


def _hook_problem(plugin: str, exc: Exception) -> Problem:
    """E104: a hook implementation pluggy refuses, with the hook it probably meant."""
    hooks = [f"register_{kind}" for kind in KINDS]
    found = [word for word in str(exc).replace("'", " ").replace('"', " ").split() if word.startswith("register")]
    hint = did_you_mean(found[0], hooks) if found else None
    return Problem(code="E104", message=f"plugin `{plugin}` does not fit the hooks: {exc}",
                   hint=hint or f"the hooks are {', '.join(hooks)}")


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
