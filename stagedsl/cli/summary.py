"""What `staged run` and `staged resume` print at the end: a table per stage, the total, where to look.

Rendered from ``summary.json``'s content and the plan (for each stage's loss, so a
monitored ``val/loss`` says which loss it is). Numbers carry 4 significant digits; the
JSON files keep full precision.

    stage          status     steps  time  best                      gate
    warmup_encdec  completed   2000   25s  val/loss 0.003944 (mse)   -
    transformer    completed   4000   48s  val/loss 0.0006712 (mse)  -
    finetune       completed   2000   24s  val/loss 0.07521 (nrmse)  -
    note: val/loss is each stage's own loss, so compare it within a stage only:
          mse in warmup_encdec, transformer; nrmse in finetune
    (a stage with a gate: ``passed`` / ``failed -> stop`` in the table, and a line with what the gate saw)
    completed in 1:37 (8000 steps)
    run directory: runs/pde
    TensorBoard:   tensorboard --logdir runs/pde/tb
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any, Optional

from stagedsl.engine.progress import clock, figure
from stagedsl.plan.model import Plan, StagePlan

LOSS_MONITOR = "val/loss"
_STATUS = {"early_stopped": "early stopped", "gate_goto": "gate goto", "not_run": "not run", "stopped_by_gate": "stopped by a gate"}


def loss_label(stage: StagePlan) -> str:
    """The stage's loss in a few characters: ``mse``, ``nrmse``, ``0.5·l1 + smoothness``."""
    loss = stage.loss
    if loss.kind == "blend":
        a, b = loss.terms
        if loss.alpha == 1:
            return b.name
        if loss.alpha == 0:
            return a.name
        return f"{1 - loss.alpha:g}·{a.name} + {loss.alpha:g}·{b.name}"
    return " + ".join((f"{t.weight:g}·" if t.weight != 1 else "") + t.name for t in loss.terms)


def _gate(record: dict) -> str:
    """The table's gate cell: ``passed``, ``failed -> stop``, ``failed -> goto `x```."""
    decision = record.get("gate")
    if not decision:
        return "-"
    text = "passed" if decision["passed"] else "failed"
    if decision["action"] != "continue":
        text += f" -> {decision['action']}" + (f" `{decision['goto']}`" if decision.get("goto") else "")
    return text


def _gate_lines(summary: dict) -> list[str]:
    """Under the table, what each final gate decision saw: ``gate of heads: val/f1 = 0.6455, needs val/f1 >= 0.8``."""
    lines = []
    for name, record in summary.get("stages", {}).items():
        decision = record.get("gate")
        if decision:
            values = ", ".join(f"{key} = {figure(value) if value is not None else 'missing'}"
                               for key, value in decision["values"].items())
            lines.append(f"gate of {name}: {values}, needs {decision['condition']}")
    return lines


def _best(record: dict, stage: Optional[StagePlan]) -> str:
    monitor, best = record.get("monitor"), record.get("best_value")
    if not monitor or best is None:
        return "-"
    which = f" ({loss_label(stage)})" if monitor == LOSS_MONITOR and stage is not None else ""
    return f"{monitor} {figure(best)}{which}"


def _rows(summary: dict, plan: Optional[Plan]) -> list[tuple[str, ...]]:
    stages = {s.name: s for s in plan.stages} if plan is not None else {}
    rows = [("stage", "status", "steps", "time", "best", "gate")]
    for name, record in summary.get("stages", {}).items():
        ran = record.get("status") not in ("pending", "not_run", "skipped")
        reused = bool(record.get("reused"))  # adopted from another run (--reuse, a search): it did not train here
        rows.append((name, "reused" if reused else _STATUS.get(record.get("status"), record.get("status", "?")),
                     str(record.get("steps", 0)) if ran else "-", clock(record.get("wall_time_s")) if ran and not reused else "-",
                     _best(record, stages.get(name)), _gate(record)))
    return rows


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    right = {2, 3}  # numbers align right
    return ["  ".join(cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))).rstrip()
            for row in rows]


def _loss_note(summary: dict, plan: Optional[Plan]) -> Optional[str]:
    """When stages monitor val/loss under different losses, say so: their values do not compare."""
    if plan is None:
        return None
    by_loss: dict[str, list[str]] = {}
    for stage in plan.stages:
        record = summary.get("stages", {}).get(stage.name, {})
        if record.get("monitor") == LOSS_MONITOR and record.get("best_value") is not None:
            by_loss.setdefault(loss_label(stage), []).append(stage.name)
    if len(by_loss) < 2:
        return None
    parts = "; ".join(f"{loss} in {', '.join(names)}" for loss, names in by_loss.items())
    return f"note: {LOSS_MONITOR} is each stage's own loss, so compare it within a stage only:\n      {parts}"


def render_summary(summary: dict, run_dir: Path | str, plan: Optional[Plan] = None, *, headline: Optional[str] = None) -> str:
    """The end-of-run report as plain text (no trailing newline)."""
    lines = [headline] if headline else []
    lines += _table(_rows(summary, plan))
    lines += _gate_lines(summary)
    note = _loss_note(summary, plan)
    if note:
        lines.append(note)
    status = _STATUS.get(summary.get("status"), summary.get("status", "?"))
    steps = summary.get("global_steps", 0)
    stopped = summary.get("stopped_by_gate")
    where = f" at stage `{stopped['stage']}`" if stopped else ""
    lines.append(f"{status}{where} in {clock(summary.get('wall_time_s'))} ({steps} step{'s' if steps != 1 else ''})")
    run_dir = str(run_dir)
    lines.append(f"run directory: {run_dir}")
    lines.append(f"TensorBoard:   tensorboard --logdir {shlex.quote(str(Path(run_dir) / 'tb'))}")
    return "\n".join(lines)


def summary_json(summary: dict, run_dir: Path | str) -> dict[str, Any]:
    """What `--json` prints: the run directory and summary.json's content."""
    return {"run_dir": str(run_dir), "tensorboard": f"tensorboard --logdir {Path(run_dir) / 'tb'}", **summary}
