"""What building a piece takes beside its arguments, and what its failure becomes.

`Registry.build` passes a factory the arguments the core supplies that it takes, and turns
any exception the factory raises into one located error naming the piece, its plugin and
distribution, its traceback kept on the problem for ``staged --debug``.
"""

from __future__ import annotations

import inspect
import traceback
from typing import TYPE_CHECKING, Any, Mapping, Optional

from stagedsl.errors import PlanError, PluginError, Problem, RunError, StagedError
from stagedsl.registry.hookspecs import singular
from stagedsl.registry.import_path import is_import_path

if TYPE_CHECKING:  # pragma: no cover
    from stagedsl.registry.manager import Entry


_BUILD_ERRORS: dict[str, tuple[type[StagedError], dict[Optional[str], str]]] = {
    "plan": (PlanError, {None: "E025", "freeze_strategies": "E024"}),
    "run": (RunError, {None: "E408", "losses": "E406", "metrics": "E407", "ensembles": "E707", "meta_learners": "E707"}),
    "export": (PluginError, {None: "E503", "datasets": "E506"}),
}
"""The error and code a factory's failure becomes, by phase and kind."""

ARGUMENT_FAULTS = (ValueError, TypeError)
"""What a factory raises for arguments it refuses (E024 / E025 while planning); anything else is a fault
of the piece itself (E105)."""


def build_failure(entry: "Entry", exc: Exception, *, phase: str, at: Optional[str]) -> StagedError:
    """The located error a factory's exception becomes (see `Registry.build`), its traceback kept for --debug."""
    error, codes = _BUILD_ERRORS[phase]
    label = singular(entry.kind)
    code = codes.get(entry.kind, codes[None])
    hint = f"check the {label}'s arguments"
    if not isinstance(exc, ARGUMENT_FAULTS):
        if phase == "plan":
            code = "E105"
        if entry.distribution:
            owner = f"a fault of distribution {entry.distribution}: report it there"
        elif entry.origin or is_import_path(entry.name):
            owner = f"a fault in {entry.origin or entry.plugin}"
        else:
            owner = f"a fault of plugin `{entry.plugin}`"
        hint = f"the {label} itself failed, not its arguments ({owner}); `staged --debug ...` shows the traceback"
    verb = "failed" if entry.kind == "freeze_strategies" else "could not be built"  # building a strategy is running it
    return error([Problem(
        code=code, message=f"{label} `{entry.name}` ({entry.source}) {verb}: {type(exc).__name__}: {exc}",
        path=at, hint=hint, trace=plugin_traceback(exc),
    )])


def plugin_traceback(exc: BaseException) -> str:
    """The traceback of an exception raised inside a piece, from the piece's own frames on (the registry's frame left out)."""
    tb = exc.__traceback__
    return "".join(traceback.format_exception(type(exc), exc, tb.tb_next if tb is not None and tb.tb_next is not None else tb))


def accepted(signature: Optional[inspect.Signature], supplied: Mapping[str, Any]) -> dict[str, Any]:
    """The supplied arguments a factory takes (all of them when its signature is unreadable or takes ``**kwargs``)."""
    if signature is None or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values()):
        return dict(supplied)
    return {key: value for key, value in supplied.items() if key in signature.parameters}
