"""A search's report: the objective of every trial (coloured by how it ended) with the best so
far, the objective against each parameter, a table of the trials, parameter importance when
Optuna can compute it, then the best trial as the single-run report shows a run.

It reads plain data: ``search.json`` and ``summary.json`` (the trials table the search wrote),
each trial's ``metrics.jsonl`` (the last value a pruned trial saw) and run directory, and, for
the importance only, the study in ``study.db`` through Optuna (the ``search`` extra), from a
copy. It never imports the search's runner and never changes the run.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Optional

import attrs

from stagedsl.report import draw
from stagedsl.report.build import Part, Report, run_part, write_page
from stagedsl.report.figures import Figure
from stagedsl.report.page import Section, badge, code, escape, figure, paragraph, table
from stagedsl.report.rundata import is_finite, read_events
from stagedsl.report.sections import duration, status_badge
from stagedsl.run_dir import RunDir
from stagedsl.search.layout import COMPLETE, FAILED, PRUNED, RUNNING, SearchDir

STATE_COLOR = {COMPLETE: "#1f77b4", PRUNED: "#ff7f0e", FAILED: "#d62728", RUNNING: "#7f7f7f"}
STATE_KIND = {COMPLETE: "ok", PRUNED: "warn", FAILED: "bad", RUNNING: "muted"}
BEST_SO_FAR_COLOR = "#2ca02c"
BEST_COLOR = "#ffd700"


@attrs.frozen
class Trial:
    """One trial as the report shows it (a row of ``summary.json``'s trials, with the last value it logged)."""

    number: int
    state: str
    value: Optional[float]  # the objective (complete trials only)
    params: dict
    wall_time_s: Optional[float] = None
    reused: dict = attrs.field(factory=dict)  # stage -> {"from", "stage", "hash"}
    trained: tuple[str, ...] = ()
    note: str = ""  # why it was pruned or failed
    run_dir: Optional[Path] = None
    last: Optional[tuple[int, float]] = None  # (global step, value) of the metric's last finite evaluation


def _last_value(run_dir: Optional[Path], metric: str) -> Optional[tuple[int, float]]:
    if run_dir is None:
        return None
    events, _ = read_events(RunDir(run_dir).metrics)
    found = None
    for event in events:
        if event.get("event") == "eval" and is_finite(event.get(metric)) and isinstance(event.get("step"), int):
            found = (event["step"], float(event[metric]))
    return found


def read_trials(search_dir: SearchDir, summary: dict) -> list[Trial]:
    """The trials of ``summary.json``, in number order."""
    trials = []
    for row in summary.get("trials") or []:
        if not isinstance(row, dict) or not isinstance(row.get("trial"), int):
            continue
        run_dir = search_dir.root / row["run_dir"] if isinstance(row.get("run_dir"), str) else None
        why = row.get("pruned_by") or {}
        note = why.get("message", "") if isinstance(why, dict) else ""
        if not note and row.get("error"):
            note = row["error"] if isinstance(row["error"], str) else json.dumps(row["error"])
        trials.append(Trial(row["trial"], str(row.get("state")), float(row["value"]) if is_finite(row.get("value")) else None,
                            row.get("params") or {}, row.get("wall_time_s"), row.get("reused") or {}, tuple(row.get("trained") or ()),
                            note, run_dir, _last_value(run_dir, summary.get("metric") or "")))
    return sorted(trials, key=lambda t: t.number)


def _better(direction: str):
    return max if direction == "maximize" else min


def best_so_far(trials: list[Trial], direction: str) -> list[tuple[int, float]]:
    """(trial number, best objective up to it) at every complete trial, in number order."""
    out, best = [], None
    pick = _better(direction)
    for trial in trials:
        if trial.state == COMPLETE and trial.value is not None:
            best = trial.value if best is None else pick(best, trial.value)
            out.append((trial.number, best))
    return out


def _trial_value(trial: Trial) -> Optional[float]:
    """Where a trial sits on the objective axis: its objective, or a pruned trial's last value."""
    if trial.value is not None:
        return trial.value
    return trial.last[1] if trial.state == PRUNED and trial.last else None


def draw_objective(trials: list[Trial], metric: str, direction: str, best: Optional[int], out: Path,
                   name: str = "objective.png") -> Optional[Figure]:
    """The objective of every trial, coloured by state, with the best-so-far line and the best trial starred."""
    if not trials:
        return None
    plt = draw.pyplot("staged report", "report")
    import matplotlib.transforms as transforms
    from matplotlib.ticker import MaxNLocator

    figure_, axes = plt.subplots(figsize=(draw.WIDTH, 4.2))
    values = [v for v in (_trial_value(t) for t in trials) if v is not None]
    log = draw.wants_log(values)
    for state, label in ((COMPLETE, "complete: its objective"), (PRUNED, f"pruned: the last {metric} before it stopped")):
        shown = [(t.number, _trial_value(t)) for t in trials if t.state == state and _trial_value(t) is not None]
        if shown:
            xs, ys = zip(*shown)
            axes.plot(xs, ys, linestyle="none", marker="o", markersize=8, color=STATE_COLOR[state], label=label,
                      markerfacecolor=STATE_COLOR[state] if state == COMPLETE else "white", markeredgewidth=1.8, zorder=4)
    bottom = transforms.blended_transform_factory(axes.transData, axes.transAxes)
    for state, label in ((FAILED, "failed: no value"), (PRUNED, "pruned before any evaluation"), (RUNNING, "running")):
        xs = [t.number for t in trials if t.state == state and _trial_value(t) is None]
        if xs:
            axes.plot(xs, [0.04] * len(xs), transform=bottom, linestyle="none", marker="X", markersize=10,
                      color=STATE_COLOR[state], label=label, zorder=4, clip_on=False)
    line = best_so_far(trials, direction)
    if line:
        xs, ys = zip(*line)
        last = max(t.number for t in trials)
        axes.step(list(xs) + [last], list(ys) + [ys[-1]], where="post", color=BEST_SO_FAR_COLOR, linewidth=1.8,
                  label="best so far", zorder=3)
    chosen = next((t for t in trials if t.number == best and t.value is not None), None)
    if chosen is not None:
        axes.plot([chosen.number], [chosen.value], marker="*", markersize=20, markerfacecolor=BEST_COLOR, markeredgecolor="black",
                  markeredgewidth=0.8, linestyle="none", zorder=5, label=f"best: trial {chosen.number}")
        axes.annotate(f"best: trial {chosen.number}\n{metric} = {chosen.value:.4g}", (chosen.number, chosen.value),
                      xytext=(12, 10), textcoords="offset points", fontsize=8.5, zorder=6,
                      bbox={"boxstyle": "round,pad=0.25", "facecolor": "white", "edgecolor": "#999999", "alpha": 0.9})
    if log:
        axes.set_yscale("log")
    draw.headroom(axes, 0.18, below=0.1, log=log)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlim(min(t.number for t in trials) - 0.6, max(t.number for t in trials) + 0.6)
    draw.label_axes(axes, f"objective per trial ({direction} {metric})", metric, log=log, xlabel="trial")
    draw.legend_below(figure_, *axes.get_legend_handles_labels(), room=0.1, columns=4)
    draw.save(figure_, out / name)
    caption = (f"Each trial's objective: the best {metric} ({'highest' if direction == 'maximize' else 'lowest'}) over the "
               "evaluations of its last stage. Filled blue: complete; hollow orange: pruned (drawn at the last value it logged, "
               "it has no objective); a red ✗ at the bottom: failed. The green step line is the best objective so far, ★ the best "
               "trial.")
    return Figure(name, "Objective per trial", caption)


def _axis_values(trials: list[Trial], key: str) -> tuple[list, bool]:
    """The values `key` took and whether they are numbers (else categories, in order of first appearance)."""
    seen = [t.params.get(key) for t in trials if key in t.params]
    numeric = all(is_finite(v) for v in seen)
    return list(dict.fromkeys(json.dumps(v) for v in seen)) if not numeric else seen, numeric


def draw_params(trials: list[Trial], metric: str, best: Optional[int], out: Path, name: str = "params.png", *,
                axes_spec: tuple = ()) -> Optional[Figure]:
    """The objective against each parameter: one panel per parameter, a point per complete (and pruned) trial.

    `axes_spec` is ``search.json``'s axes: a range searched on a log scale gets a log axis."""
    log_keys = {a.get("key") for a in axes_spec if isinstance(a, dict) and a.get("log")}
    keys = list(dict.fromkeys(k for t in trials for k in t.params))
    placed = [t for t in trials if _trial_value(t) is not None]
    if not keys or not placed:
        return None
    plt = draw.pyplot("staged report", "report")
    per_row = min(len(keys), 3)
    rows = -(-len(keys) // per_row)
    figure_, grid = plt.subplots(rows, per_row, figsize=(draw.WIDTH, 3.0 * rows + 0.5), squeeze=False)
    log_y = draw.wants_log([_trial_value(t) for t in placed])
    for i, key in enumerate(keys):
        axes = grid[i // per_row][i % per_row]
        values, numeric = _axis_values(placed, key)
        position = (lambda v: v) if numeric else (lambda v: values.index(json.dumps(v)))
        for t in placed:
            if key not in t.params:
                continue
            x, y = position(t.params[key]), _trial_value(t)
            color = STATE_COLOR.get(t.state, "#7f7f7f")
            star = t.number == best
            axes.plot([x], [y], linestyle="none", marker="*" if star else "o", markersize=16 if star else 7,
                      markerfacecolor=BEST_COLOR if star else (color if t.state == COMPLETE else "white"),
                      markeredgecolor="black" if star else color, markeredgewidth=1.4, zorder=5 if star else 4)
            axes.annotate(str(t.number), (x, y), xytext=(5, 4), textcoords="offset points", fontsize=7.5, color="#444444")
        axes.margins(x=0.08, y=0.12)
        if numeric and (key in log_keys or draw.wants_log([float(v) for v in values])):
            axes.set_xscale("log")
        if not numeric:
            names = [_shown(json.loads(v)) for v in values]
            axes.set_xticks(range(len(values)), [v if len(v) <= 24 else v[:23] + "…" for v in names], fontsize=8)
            axes.set_xlim(-0.5, len(values) - 0.5)
        if log_y:
            axes.set_yscale("log")
        axes.set_title(key, loc="left", fontsize=9.5)
        axes.set_ylabel(metric if i % per_row == 0 else "", fontsize=8.5)
        axes.grid(True, alpha=0.25)
        axes.tick_params(labelsize=8)
    for j in range(len(keys), rows * per_row):
        grid[j // per_row][j % per_row].set_visible(False)
    figure_.tight_layout()
    draw.save(figure_, out / name)
    caption = (f"{metric} against each parameter of the search space, a point per trial (its number beside it): filled blue "
               "complete, hollow orange pruned (its last value), ★ the best trial. Failed trials have no value and are not drawn.")
    return Figure(name, "Objective against each parameter", caption)


def _shown(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return json.dumps(v) if not isinstance(v, str) else v


def _reused(trial: Trial) -> str:
    if not trial.reused:
        return "—"
    parts = []
    for stage, source in trial.reused.items():
        origin = str(source.get("from") or "") if isinstance(source, dict) else str(source or "")
        head, _, number = origin.rpartition("/")
        origin = f"trial {number}" if head == "trials" and number.isdigit() else origin
        parts.append(f"{stage} (from {origin})" if origin else stage)
    return ", ".join(parts)


def trials_section(trials: list[Trial], metric: str, direction: str, best: Optional[int]) -> Section:
    """Every trial: its parameters, objective, state (and why), time, the stages it reused and trained."""
    keys = list(dict.fromkeys(k for t in trials for k in t.params))
    rows = []
    for t in trials:
        mark = ' <span class="best">★ best</span>' if t.number == best else ""
        number = f"<b>{t.number}</b>{mark}" if t.number == best else f"{t.number}"
        objective = escape(f"{t.value:.6g}") if t.value is not None else (
            escape(f"— (last {t.last[1]:.4g} at step {t.last[0]})") if t.state == PRUNED and t.last else "—")
        rows.append([number, *[escape(_shown(t.params.get(k)) if k in t.params else "—") for k in keys],
                     f"<b>{objective}</b>" if t.number == best else objective,
                     badge(t.state, STATE_KIND.get(t.state, "muted")), escape(t.note or "—"), escape(duration(t.wall_time_s)),
                     escape(_reused(t)), escape(", ".join(t.trained) or "—")])
    header = ["trial", *keys, f"{metric} ({direction})", "state", "why", "time", "reused stages", "trained stages"]
    numeric = [1 + i for i, k in enumerate(keys) if all(is_finite(t.params.get(k)) for t in trials if k in t.params)]
    body = table(header, rows, numeric=(0, *numeric, len(keys) + 1, len(keys) + 4), raw=True, klass="trials")
    body += paragraph("The objective is the best value of the metric over the evaluations of the trial's last stage. Reused "
                      "stages were not trained again: the trial adopted them from the trial named (the same stage hash); "
                      "trained stages ran in the trial itself. Each "
                      "trial is a run directory: `staged report RUN_DIR/trials/<n>` draws one.", "note")
    return Section("trials", "Trials", body)


def importance(search_dir: SearchDir, summary: dict, trials: list[Trial]) -> tuple[Optional[dict[str, float]], str]:
    """Optuna's parameter importance of the study (fANOVA) and a note on it, or None and why it cannot be computed."""
    keys = list(dict.fromkeys(k for t in trials for k in t.params))
    complete = [t for t in trials if t.state == COMPLETE]
    if not trials:
        return None, "No trial has finished yet: there is nothing to compare."
    if len(keys) < 2:
        return None, (f"Parameter importance compares parameters; this search has one ({keys[0] if keys else 'none'}), "
                      "whose share is all of it by definition. How the objective varies with it is in the figure above.")
    if len(complete) < 2:
        return None, f"Parameter importance needs at least two complete trials; this search has {len(complete)}."
    varying = [k for k in keys if len({json.dumps(t.params.get(k)) for t in complete}) > 1]
    if len(varying) < 1:
        return None, "No parameter took more than one value among the complete trials: there is nothing to attribute."
    url = summary.get("storage") or ""
    if not url.startswith("sqlite:///"):
        return None, (f"The study is kept in {url or 'no storage'}; the report reads only a SQLite study file (study.db), "
                      "so it computes no importance here: `optuna-dashboard` on that storage shows it.")
    path = Path(url[len("sqlite:///"):])
    if not path.is_file():
        return None, (f"The study file {path} is not there (a grid search run without Optuna keeps its trials in study.json): "
                      "no importance.")
    try:
        import optuna
    except ImportError:
        return None, "Parameter importance is computed by Optuna: pip install 'stagedsl[search]'."
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="stagedsl-report-") as scratch:
        # Optuna opens a storage to write; it reads a copy, so the run's study is never touched (nor locked)
        for suffix in ("", "-wal"):
            if Path(f"{path}{suffix}").is_file():
                shutil.copyfile(f"{path}{suffix}", Path(scratch) / f"study.db{suffix}")
        try:
            study = optuna.load_study(study_name=summary.get("study"), storage=f"sqlite:///{Path(scratch) / 'study.db'}")
            # fANOVA: Optuna's default and optuna-dashboard's, so the page agrees with it; seeded so two reports agree.
            # (PED-ANOVA, which looks only at the top trials, gave 0 to a grid's learning rate that improved every pair of trials.)
            found = optuna.importance.get_param_importances(study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
        except Exception as exc:  # Optuna refuses for reasons of its own (too few trials, one value): say which
            return None, f"Optuna could not compute the importance: {type(exc).__name__}: {exc}"
    fixed = [k for k in keys if k not in varying]
    note = (f"From {len(complete)} complete trials" + (f"; {', '.join(fixed)} took one value among them, so "
                                                        f"{'its share says' if len(fixed) == 1 else 'their shares say'} little"
                                                        if fixed else "") + ".")
    return {k: float(v) for k, v in found.items()}, note


def draw_importance(found: dict[str, float], out: Path, name: str = "importance.png") -> Figure:
    """Each parameter's share of the objective's variation, as horizontal bars, largest first."""
    plt = draw.pyplot("staged report", "report")
    keys = sorted(found, key=found.get, reverse=True)
    figure_, axes = plt.subplots(figsize=(draw.WIDTH, 0.45 * len(keys) + 1.3))
    ys = list(range(len(keys)))
    axes.barh(ys, [found[k] for k in keys], color=draw.PALETTE[0], height=0.6)
    for y, k in zip(ys, keys):
        axes.text(found[k] + 0.01, y, f"{found[k]:.2f}", va="center", fontsize=8.5)
    axes.set_yticks(ys, keys, fontsize=9)
    axes.invert_yaxis()
    axes.set_xlim(0, max(1.0, max(found.values()) * 1.12))
    draw.label_axes(axes, "parameter importance (Optuna, fANOVA)", "", log=False, xlabel="share of importance (sums to 1)")
    figure_.tight_layout()
    draw.save(figure_, out / name)
    return Figure(name, "Parameter importance", "How much of the objective's variation over the complete trials each parameter "
                  "accounts for (optuna.importance.get_param_importances, normalised to sum to 1). With few trials it is a rough guide.")


def best_part(best: Optional[Trial], out: Path) -> Optional[Part]:
    """The best trial as a run (figures under ``trials/<n>/``); None without one."""
    if best is None or best.run_dir is None or not RunDir(best.run_dir).plan.is_file():
        return None
    params = ", ".join(f"{k} = {_shown(v)}" for k, v in best.params.items())
    return run_part(best.run_dir, out, folder=f"trials/{best.number}", id=f"trial-{best.number}", title=f"Best trial: {best.number}",
                    label=f"trial {best.number}", facts=params)


def write_search_report(run_dir: Path | str, out: Path) -> Report:
    """Read the search run `run_dir` and write its report into `out`."""
    search_dir = SearchDir(run_dir)
    index = search_dir.read_index()
    summary = search_dir.read_json(search_dir.summary_file) or {}
    metric = summary.get("metric") or index.get("metric") or "objective"
    direction = summary.get("direction") or index.get("direction") or "minimize"
    trials = read_trials(search_dir, summary)
    best_number = (summary.get("best") or {}).get("trial")
    best = next((t for t in trials if t.number == best_number), None)
    out.mkdir(parents=True, exist_ok=True)
    drawn = [draw_objective(trials, metric, direction, best_number, out),
             draw_params(trials, metric, best_number, out, axes_spec=tuple(index.get("axes") or ()))]
    sections = [Section("objective", "Objective per trial", figure(drawn[0].file, drawn[0].title, drawn[0].caption) if drawn[0]
                        else paragraph("No trial has finished yet: nothing to draw.", "note"))]
    if drawn[1] is not None:
        sections.append(Section("params", "Objective against each parameter", figure(drawn[1].file, drawn[1].title, drawn[1].caption)))
    sections.append(trials_section(trials, metric, direction, best_number))
    found, why = importance(search_dir, summary, trials)
    if found:
        shown = draw_importance(found, out)
        drawn.append(shown)
        rows = [[code(k), escape(f"{v:.3f}")] for k, v in sorted(found.items(), key=lambda kv: -kv[1])]
        body = (figure(shown.file, shown.title, shown.caption) + table(["parameter", "importance"], rows, numeric=(1,), raw=True)
                + paragraph(why, "note"))
    else:
        body = paragraph(why, "note")
    sections.append(Section("importance", "Parameter importance", body))
    part = best_part(best, out)
    if part is None:
        text = "No trial completed: there is no best trial yet." if best is None else \
            f"Trial {best.number} is the best, but its run directory ({best.run_dir or 'not recorded'}) has no plan.json to draw."
        sections.append(Section("best", "Best trial", paragraph(text, "note")))
    sections += part.sections if part else ()
    counts = summary.get("counts") or {}
    tally = ", ".join(f"{counts.get(s, 0)} {s}" for s in (COMPLETE, PRUNED, FAILED, RUNNING) if counts.get(s) or s == COMPLETE)
    best_text = (f"best: trial {best.number}, {metric} = {best.value:.4g}" if best is not None and best.value is not None
                 else "no best trial yet")
    lead = (f"{status_badge(str(summary.get('status') or 'incomplete'))} &nbsp; search of {len(trials)} of "
            f"{escape(summary.get('trials_planned', index.get('trials', '—')))} trials ({escape(tally)}), sampler "
            f"{code(summary.get('sampler') or index.get('sampler'))} · {escape(direction)} {code(metric)} · {escape(best_text)} · "
            f"stages trained {escape(counts.get('stages_trained', '—'))}, reused {escape(counts.get('stages_reused', '—'))} · "
            f"{escape(duration(summary.get('wall_time_s')))} · {code(search_dir.root)}")
    footer = (f"Written by <code>staged report</code> from {code(search_dir.root)}: search.json, summary.json, the trials' "
              "metrics.jsonl and the best trial's run directory" + (", and a copy of the study in study.db (for the importance)" if found else "")
              + ". The page is self-contained: its figures are the PNG files beside it; it runs no script and loads nothing from the network.")
    figures = [out / f.file for f in drawn if f is not None] + list(part.figures if part else ())
    return write_page(out, f"Search report: {index.get('name') or search_dir.root.name}", lead, sections, figures,
                      list(part.hints if part else ()), footer=footer)
