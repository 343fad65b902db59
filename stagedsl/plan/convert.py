"""The strict converter of plans: JSON data (``plan.json``) back to a `Plan`.

Nothing is coerced and nothing is dropped: an unknown key, ``"4"`` where a count belongs,
a string where a flag belongs or a choice outside its options (``on_nonfinite =
"explode"``) is a `PlanError` (E065) naming the key path, so a plan that was edited by
hand or written by another version is refused whole rather than half-understood. The
rules are the spec language's own (`stagedsl.spec.convert.make_converter`).
"""

from __future__ import annotations

from typing import Any

from stagedsl.errors import PlanError, Problem
from stagedsl.plan.model import Plan
from stagedsl.spec.convert import flatten_errors, make_converter
from stagedsl.spec.locate import format_path

_converter = make_converter()


def structure_plan(data: Any) -> Plan:
    """A `Plan` from plain data, strictly (see the module docstring); E065 listing every problem."""
    if not isinstance(data, dict):
        raise PlanError([Problem(code="E065", message=f"a plan is a table, found {type(data).__name__}")])
    try:
        return _converter.structure(data, Plan)
    except PlanError:
        raise
    except Exception as exc:  # cattrs' exception groups
        problems = []
        for path, message, hint, _ in flatten_errors(exc):
            where = format_path(list(path)) or None
            problems.append(Problem(code="E065", message=f"not a valid plan: `{where or '<plan>'}`: {message}", path=where, hint=hint))
        raise PlanError(problems) from None


__all__ = ["structure_plan"]
