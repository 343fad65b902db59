"""What a registration may say about a piece beside its factory: typed, checked, per kind.

``register(name, factory, **meta)`` builds the kind's meta class from the keywords. A
keyword the kind does not know (a misspelt ``monitred=True``) or a value of the wrong
type is an error naming the plugin (E102), never silently ignored. Reading is by
attribute (``entry.meta.sizes``); ``entry.meta["sizes"]`` and ``entry.meta.get("sizes")``
work too.

``default = True`` (optimizers, schedulers, freeze strategies) marks the piece a spec
gets when it names none: the optimizer and scheduler of a stage that writes neither, the
strategy a bare selector string (``"encoder.**"``) stands for. ``prefix`` marks the
strategy a selector string starting with it stands for (``"re:"``). Such a strategy is
called with the string (without the prefix) as its ``pattern`` argument. The core names
no piece: the plugins say which ones these are.
"""

from __future__ import annotations

from typing import Any, Callable, Literal, Mapping, Optional

import attrs


def _callable_or_none(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and not callable(value):
        raise TypeError(f"`{attribute.name}` must be a function, found {value!r}")


def _functions(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and callable(v) for k, v in value.items()):
        raise TypeError(f"`{attribute.name}` must map argument names to functions, found {value!r}")


def _bool(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"`{attribute.name}` must be true or false, found {value!r}")


def _one_of(*allowed: str) -> Callable[[Any, attrs.Attribute, Any], None]:
    def check(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if value not in allowed:
            raise TypeError(f"`{attribute.name}` must be one of {', '.join(map(repr, allowed))}, found {value!r}")

    return check


def _prefix(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and (not isinstance(value, str) or not value):
        raise TypeError(f"`{attribute.name}` must be a non-empty string, found {value!r}")


@attrs.frozen
class Meta:
    """Base of the meta classes: readable by attribute, or as a mapping of what was set."""

    def __getitem__(self, key: str) -> Any:
        if key not in attrs.fields_dict(type(self)):
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        """The value of `key`, or `default` when the kind has no such field."""
        return getattr(self, key) if key in attrs.fields_dict(type(self)) else default


@attrs.frozen
class NoMeta(Meta):
    """Kinds whose registrations say nothing beside the factory."""


@attrs.frozen
class DatasetMeta(Meta):
    """``sizes(**args) -> {"train": n, "val": m}``: split lengths without building the data."""

    sizes: Optional[Callable[..., Mapping[str, int]]] = attrs.field(default=None, validator=_callable_or_none)


@attrs.frozen
class LossMeta(Meta):
    """``auto``: argument name -> ``derive(train_dataset) -> value``, for arguments written ``"auto"``."""

    auto: Mapping[str, Callable[[Any], Any]] = attrs.field(factory=dict, validator=_functions)


@attrs.frozen
class MetricMeta(Meta):
    """``mode``: whether larger ("max") or smaller ("min") is better."""

    mode: Literal["min", "max"] = attrs.field(default="max", validator=_one_of("min", "max"))


@attrs.frozen
class OptimizerMeta(Meta):
    """``default``: the optimizer of a stage that names none."""

    default: bool = attrs.field(default=False, validator=_bool)


@attrs.frozen
class SchedulerMeta(Meta):
    """``default``: the scheduler of a stage that names none; ``monitored``: stepped with a metric
    after each evaluation; ``worst_case``: the lowest LR it can reach, for the W001 lint.

    ``worst_case(args, lr, evaluations) -> [lr after each evaluation]`` receives the
    scheduler's arguments from the plan, the stage's LR and how many evaluations the stage
    makes; it returns the LR after each evaluation if the monitored metric never improves.
    """

    default: bool = attrs.field(default=False, validator=_bool)
    monitored: bool = attrs.field(default=False, validator=_bool)
    worst_case: Optional[Callable[[Mapping[str, Any], float, int], list[float]]] = attrs.field(
        default=None, validator=_callable_or_none)


@attrs.frozen
class FreezeStrategyMeta(Meta):
    """``default``: the strategy a bare selector string stands for; ``prefix``: the strategy a
    string starting with it stands for. Both receive the string as ``pattern``."""

    default: bool = attrs.field(default=False, validator=_bool)
    prefix: Optional[str] = attrs.field(default=None, validator=_prefix)


def _kinds_by_argument(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    from stagedsl.registry.hookspecs import KINDS

    if not isinstance(value, Mapping) or not all(isinstance(k, str) and v in KINDS for k, v in value.items()):
        raise TypeError(f"`{attribute.name}` must map argument names to kinds of piece, found {value!r}")


@attrs.frozen
class EnsembleMeta(Meta):
    """``pieces``: argument name -> kind of piece (``{"meta": "meta_learners"}``): the spec writes
    the argument as a piece of that kind, and the factory receives ``make(task)`` building one."""

    pieces: Mapping[str, str] = attrs.field(factory=dict, validator=_kinds_by_argument)


META: dict[str, type[Meta]] = {
    "models": NoMeta,
    "datasets": DatasetMeta,
    "losses": LossMeta,
    "metrics": MetricMeta,
    "optimizers": OptimizerMeta,
    "schedulers": SchedulerMeta,
    "freeze_strategies": FreezeStrategyMeta,
    "ensembles": EnsembleMeta,
    "meta_learners": NoMeta,
    "exporters": NoMeta,
    "callbacks": NoMeta,
}
"""The meta class of each kind."""


def meta_keys(kind: str) -> list[str]:
    """The keywords a registration of `kind` accepts."""
    return [field.name for field in attrs.fields(META.get(kind, NoMeta))]
