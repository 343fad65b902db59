"""Gate decisions: evaluate a stage's condition and say what the run does next.

A gate with ``check = "end"`` is decided once, after the stage's final evaluation.
A gate with ``check = "eval"`` is a guard decided at *every* evaluation of the stage
(including the final one): while it passes the stage goes on; the first failure applies
``on_fail`` at once (``warn`` logs and goes on, checking again at the next evaluation).

``on_fail``: ``stop`` ends the run (`GateStopped`, exit code 3, later stages not run);
``retry`` re-runs the stage from its init (fresh optimizer, new data order), at most
``max_retries`` times, then stops; ``goto`` ends the stage and jumps to the named later
stage, skipping those between; ``warn`` logs a warning and goes on.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional

import attrs

from stagedsl.plan.model import GatePlan
from stagedsl.spec.gates import evaluate_gate, gate_metrics, render_gate

CONTINUE, STOP, RETRY, GOTO, WARN = "continue", "stop", "retry", "goto", "warn"


@attrs.frozen
class GateDecision:
    """One decision of one gate: the values it saw, whether it passed, what happens next."""

    stage: str
    gate: str
    check: str
    condition: str
    values: dict
    passed: bool
    action: str
    goto: Optional[str] = None
    attempt: int = 0
    step: int = 0
    stage_step: int = 0
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The decision as JSON-ready data."""
        return attrs.asdict(self)

    def describe(self) -> str:
        """One line: gate, values, result and action."""
        shown = ", ".join(f"{k} = {_fmt(v)}" for k, v in self.values.items())
        result = "passed" if self.passed else "failed"
        action = {CONTINUE: "continue", STOP: "stop the run", RETRY: f"retry the stage (attempt {self.attempt + 2})",
                  GOTO: f"go to stage `{self.goto}`", WARN: "warn and continue"}[self.action]
        note = f" ({self.note})" if self.note else ""
        return f"gate `{self.gate}` of stage `{self.stage}` {result}: {shown}; needs {self.condition} -> {action}{note}"


def _fmt(value: Optional[float]) -> str:
    if value is None:
        return "missing"
    return f"{value:.4g}"  # the screen shows 4 significant digits; the decision record keeps the value


def decide(gate: GatePlan, values: Mapping[str, float], *, stage: str, attempt: int, step: int, stage_step: int) -> GateDecision:
    """Evaluate `gate` on `values` and choose the action (see the module docstring)."""
    names = list(gate.metrics) or gate_metrics(gate.expr)
    seen = {name: (float(values[name]) if name in values and values[name] is not None else None) for name in names}
    passed = bool(evaluate_gate(gate.expr, {k: v for k, v in seen.items() if v is not None}))
    note = ""
    missing = [name for name, value in seen.items() if value is None or math.isnan(value)]
    if missing:
        note = f"no value for {', '.join(missing)}; available: {', '.join(sorted(values)) or 'none'}"
    if passed:
        action = CONTINUE
    elif gate.on_fail == "retry":
        if attempt < gate.max_retries:
            action = RETRY
        else:
            action = STOP
            note = (note + "; " if note else "") + f"{gate.max_retries} retr{'y' if gate.max_retries == 1 else 'ies'} used"
    elif gate.on_fail in (STOP, GOTO, WARN):
        action = gate.on_fail
    else:
        action = STOP
        note = (note + "; " if note else "") + f"unknown on_fail `{gate.on_fail}`"
    return GateDecision(
        stage=stage,
        gate=gate.when,
        check=gate.check,
        condition=render_gate(gate.expr),
        values=seen,
        passed=passed,
        action=action,
        goto=gate.goto if action == GOTO else None,
        attempt=attempt,
        step=step,
        stage_step=stage_step,
        note=note,
    )
