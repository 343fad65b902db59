"""The sections of one run's report, each a small function of a `RunView` (plain data in, HTML out).

A section function returns a `Section` or None (nothing to show). `run_sections` lists
them in page order; a page with several runs (a matrix's members, a search's trials)
calls it once per run with its own `anchor`, so section ids stay unique.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import attrs

from stagedsl.plan.model import StagePlan
from stagedsl.plan.render import human_count
from stagedsl.report.diagnosis import Hint
from stagedsl.report.figures import SYMBOL, Figure, gate_text
from stagedsl.report.page import Section, badge, code, escape, facts, figure, paragraph, table
from stagedsl.report.rundata import RunData, number
from stagedsl.report.timeline import final_spans, stage_spans

STATUS_KIND = {"completed": "ok", "early_stopped": "ok", "gate_goto": "warn", "stopped_by_gate": "bad", "stopped": "bad",
               "failed": "bad", "interrupted": "warn", "running": "warn", "retrying": "warn", "skipped": "muted",
               "not_run": "muted", "pending": "muted"}


@attrs.frozen
class RunView:
    """One run as a report shows it: the data, its figures (by file stem), its hints, an id prefix."""

    run: RunData
    figures: tuple[Figure, ...] = ()
    hints: tuple[Hint, ...] = ()
    anchor: str = ""

    def figure(self, stem: str) -> Optional[Figure]:
        """The figure whose file name ends in ``<stem>.png``."""
        return next((f for f in self.figures if f.file.endswith(f"{stem}.png")), None)


def status_badge(status: str) -> str:
    """A run or stage status as a coloured label."""
    return badge(status.replace("_", " "), STATUS_KIND.get(status, "muted"))


def duration(seconds: Any) -> str:
    """``3.1 s``, ``2 min 05 s``, ``1 h 03 min``; an em dash when unknown."""
    value = number(seconds)
    if value is None:
        return "—"
    if value < 60:
        return f"{value:.1f} s"
    minutes, secs = divmod(int(round(value)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def value(v: Any) -> str:
    """A metric value in 4 significant digits."""
    n = number(v)
    return "—" if n is None else f"{n:.4g}"


def _args(args: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in args.items())


def overview(view: RunView) -> Section:
    """What ran: model, data, parameters, hash, run settings, how it ended."""
    run, plan, summary = view.run, view.run.plan, view.run.summary
    total = sum(plan.parameters.values())
    rows = [
        ("status", status_badge(run.status)),
        ("model", f"{code(plan.model.name)} {escape(_args(plan.model.args))}"),
        ("parameters", f"{human_count(total)} ({total:,} in {len(plan.parameters)} tensors)"),
        ("data", f"{code(plan.data.name)} {escape(_args(plan.data.args))}"),
        ("batches", escape(f"batch {plan.data.batch_size}, eval batch {plan.data.eval_batch_size}"
                           + (f"; {plan.data.batches_per_epoch} batches per epoch" if plan.data.batches_per_epoch else "")
                           + ("; sizes " + ", ".join(f"{k} {v}" for k, v in plan.data.sizes.items()) if plan.data.sizes else ""))),
        ("plan hash", code(plan.hash) + (f" (the run started under {code(summary['plan_hash'])})"
                                        if summary.get("plan_hash") and summary["plan_hash"] != plan.hash else "")),
        ("spec", code(plan.spec_file) if plan.spec_file else "—"),
        ("run", escape(f"device {summary.get('device', plan.run.device)}, precision {summary.get('precision', plan.run.precision)}, "
                       f"seed {plan.run.seed}, world size {summary.get('world_size', 1)}")),
        ("steps", escape(f"{summary.get('global_steps', '—')} of {sum(s.steps for s in plan.stages)} planned, "
                         f"in {len(plan.stages)} stage{'s' if len(plan.stages) != 1 else ''}; wall time {duration(summary.get('wall_time_s'))}")),
        ("run directory", code(run.path)),
    ]
    if summary.get("stopped_by_gate"):
        rows.insert(1, ("stopped by", f'<span class="failed">{escape(gate_text(summary["stopped_by_gate"]))}</span>'))
    resumes = summary.get("resumes") or []
    if resumes:
        rows.append(("resumed", escape(f"{len(resumes)}× (staged resume)")))
    body = facts(rows)
    if run.notes:
        body += "".join(paragraph(note, "note") for note in run.notes)
    return Section(f"{view.anchor}overview", "Run", body)


def diagnosis(view: RunView) -> Section:
    """The hints the curves support, or what was checked when there is none."""
    if not view.hints:
        body = paragraph("Nothing stands out in the curves: checked for training loss rising or turning non-finite (LR too "
                         "high), validation loss rising while training loss falls (overfitting), an LR cut below 1e-3× its "
                         "start by a metric-driven schedule, and validation loss still falling at a stage's end.")
    else:
        items = "".join(f'<li class="{escape(h.severity)}"><b>step {h.step}</b> — {escape(h.message)}</li>' for h in view.hints)
        body = f'<ol class="hints">{items}</ol>' + paragraph("The numbers mark the same places on the figures.", "note")
    return Section(f"{view.anchor}diagnosis", "Diagnosis", body)


def figure_section(stem: str, title: str, missing: str) -> Callable[[RunView], Section]:
    """A section showing the figure ``<stem>.png``, or a line saying why there is none."""

    def section(view: RunView) -> Section:
        found = view.figure(stem)
        body = figure(found.file, found.title, found.caption) if found else paragraph(missing, "note")
        return Section(f"{view.anchor}{stem}", title, body)

    section.__doc__ = f"The {title.lower()} figure."
    return section


def _lrs(stage: StagePlan) -> str:
    text = ", ".join(f"{g.name} {g.lr:.3g}" for g in stage.groups)
    return text + ("" if stage.scheduler.name == "constant" else f"; {stage.scheduler.name}")


def _starts_from(stage: StagePlan) -> str:
    if stage.init is None:
        return "the weights as the previous stage left them" if stage.index else "fresh weights (the run's seed)"
    if stage.init.source == "stage":
        return f"{stage.init.which} of {stage.init.stage}"
    return f"file {stage.init.path}" + ("" if stage.init.strict else " (non-strict)")


def _best(stage: StagePlan, record: dict, start: Optional[int]) -> str:
    if number(record.get("best_value")) is None:
        return "—"
    best_step = record.get("best_step")
    at = f" at step {start + best_step}" if isinstance(best_step, int) and start is not None else ""
    return f"{record.get('monitor') or stage.eval.monitor} ({record.get('mode') or stage.eval.mode}) {value(record['best_value'])}{at}"


def _early_stop(stage: StagePlan, record: dict) -> str:
    if stage.early_stop is None:
        return "—"
    if record.get("early_stopped"):
        return f"stopped after {record.get('steps')} steps"
    ran = record.get("status") not in (None, "pending", "not_run", "skipped")
    return f"{'not triggered ' if ran else ''}(patience {stage.early_stop.patience})"


def _gate(record: dict) -> str:
    decision = record.get("gate")
    if not isinstance(decision, dict):
        return "—"
    passed = bool(decision.get("passed"))
    return f'<span class="{"passed" if passed else "failed"}">{SYMBOL[passed]} {"passed" if passed else "failed"}</span> → ' \
           f"{escape(decision.get('action'))}"


def _reused(reused: Any) -> str:
    """Where an adopted stage came from (``from trials/0``), "—" for a stage the run trained itself."""
    if reused in (None, False, ""):
        return "—"
    if isinstance(reused, dict) and reused.get("from"):
        return f"from {reused['from']}"
    return reused if isinstance(reused, str) else "yes"


def _attempts(stage: StagePlan, record: dict) -> str:
    attempts = int(record.get("attempts") or 0)
    if not attempts:
        return "—"
    retries = attempts - 1
    return f"{attempts} ({retries} retr{'y' if retries == 1 else 'ies'})" if retries else "1"


def stages(view: RunView) -> Section:
    """Per stage: status, steps, time, speed, what trained, LRs, best, early stop, hand-off, gate, reuse, attempts."""
    run = view.run
    starts = {name: span.start for name, span in final_spans(stage_spans(run)).items()}
    rows = []
    for stage in run.plan.stages:
        record = run.stage_record(stage.name)
        trainable = sum(v[0] for v in stage.modules.values())
        total = sum(v[1] for v in stage.modules.values())
        steps = f"{record.get('steps', 0)} / {stage.steps}" + (f" (≈{stage.epochs:.3g} ep)" if stage.epochs else "")
        reused = record.get("reused")
        rows.append([
            str(stage.index + 1), code(stage.name), status_badge(str(record.get("status") or "pending")), escape(steps),
            escape(duration(record.get("wall_time_s")) if record.get("steps") else "—"),
            escape(value(record.get("steps_per_s"))), escape(f"{human_count(trainable)} of {human_count(total)}"),
            escape(_lrs(stage)), escape(_best(stage, record, starts.get(stage.name))), escape(_early_stop(stage, record)), escape(_starts_from(stage)),
            _gate(record), escape(_reused(reused)),
            escape(_attempts(stage, record)),
        ])
    header = ["#", "stage", "status", "steps", "wall time", "steps/s", "trainable", "LR by group", "best checkpoint",
              "early stop", "starts from", "gate", "reused", "attempts"]
    body = table(header, rows, numeric=(0, 3, 4, 5), raw=True)
    body += paragraph("steps: taken / planned. Steps in \"best checkpoint\" count over the whole run, as in the figures. reused: a stage taken from an earlier run with the same stage plan (search). "
                      "attempts: how often the stage ran (a gate with on_fail = \"retry\" runs it again).", "note")
    return Section(f"{view.anchor}stages", "Stages", body)


def gates(view: RunView) -> Section:
    """Every gate decision: the values it saw against the condition, and what the run did."""
    decisions = view.run.gate_decisions
    gated = [s for s in view.run.plan.stages if s.gate is not None]
    if not decisions:
        text = "The plan has no gate." if not gated else \
            f"No gate was decided (gated stages: {', '.join(s.name for s in gated)} — not reached)."
        return Section(f"{view.anchor}gates", "Gate decisions", paragraph(text, "note"))
    rows = []
    for d in decisions:
        passed = bool(d.get("passed"))
        seen = ", ".join(f"{k} = {value(v)}" if v is not None else f"{k} missing" for k, v in (d.get("values") or {}).items())
        action = escape(d.get("action")) + (f" {code(d.get('goto'))}" if d.get("goto") else "")
        rows.append([code(d.get("stage")), escape(d.get("attempt", 0) + 1 if isinstance(d.get("attempt"), int) else "—"),
                     escape(d.get("step")), escape(d.get("check")), code(d.get("condition")), escape(seen),
                     f'<span class="{"passed" if passed else "failed"}">{SYMBOL[passed]} {"passed" if passed else "failed"}</span>',
                     action, escape(d.get("note") or "")])
    header = ["stage", "attempt", "step", "checked at", "condition", "value", "result", "then", "note"]
    return Section(f"{view.anchor}gates", "Gate decisions", table(header, rows, numeric=(1, 2), raw=True))


def lints(view: RunView) -> Section:
    """The plan's lint warnings (what `staged plan` warned about before the run)."""
    warnings = view.run.plan.warnings
    if not warnings:
        return Section(f"{view.anchor}warnings", "Plan warnings", paragraph("The plan had no lint warning.", "note"))
    rows = [[code(w.get("code")), escape(w.get("message")), code(w.get("path")) if w.get("path") else "—", escape(w.get("hint"))]
            for w in warnings]
    return Section(f"{view.anchor}warnings", "Plan warnings", table(["code", "warning", "at", "help"], rows, raw=True))


RUN_SECTIONS: tuple[Callable[[RunView], Optional[Section]], ...] = (
    overview,
    diagnosis,
    figure_section("loss", "Loss", "No loss was logged (the run has no metrics.jsonl events yet)."),
    figure_section("metrics", "Validation metrics", "No validation metric besides val/loss was logged."),
    figure_section("lr", "Learning rate", "No learning rate was logged."),
    stages,
    gates,
    lints,
)
"""The sections of a single run's report, in page order."""


def run_sections(view: RunView) -> list[Section]:
    """Every section of one run."""
    return [s for s in (make(view) for make in RUN_SECTIONS) if s is not None]
