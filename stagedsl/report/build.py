"""`write_report`: a run directory in, ``report/index.html`` and its PNG figures out.

The page is a list of sections (`stagedsl.report.sections`), each a function over plain
data read from the run directory. A directory that holds more runs adds sections, not
rework: a matrix run (`stagedsl.report.matrix`) gets a comparison of its members and
ensembles, then each member's ``view_run(read_run(member), out, prefix=f"members/{name}/",
anchor=f"{name}-")`` sections one level down; a search (`stagedsl.report.search`) gets its
trials, best-so-far and parameter importance, then its best trial the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import attrs

import stagedsl
from stagedsl.engine.checkpointing.safe_io import atomic_write_text
from stagedsl.report.diagnosis import Hint, diagnose
from stagedsl.report.figures import draw_run
from stagedsl.report.page import Section, code, escape, paragraph, render_page
from stagedsl.report.rundata import RunData, read_run
from stagedsl.report.sections import RunView, run_sections, status_badge
from stagedsl.matrix.layout import MatrixDir
from stagedsl.run_dir import RunDir
from stagedsl.search.layout import SearchDir

INDEX = "index.html"


@attrs.frozen
class Report:
    """What `write_report` wrote: the page, its figures, the hints it found."""

    index: Path
    figures: tuple[Path, ...]
    hints: tuple[Hint, ...]
    sections: tuple[str, ...]  # section titles, in page order

    def to_dict(self) -> dict:
        """The report as JSON-ready data."""
        return {"index": str(self.index), "figures": [str(f) for f in self.figures], "sections": list(self.sections),
                "hints": [h.to_dict() for h in self.hints]}


def default_out(run_dir: Path) -> Path:
    """Where a run's report goes unless told otherwise: ``RUN_DIR/report``."""
    return RunDir(run_dir).report


def view_run(run: RunData, out: Path, *, prefix: str = "", anchor: str = "") -> RunView:
    """Diagnose one run and draw its figures into `out` (file names starting with `prefix`)."""
    hints = tuple(diagnose(run))
    return RunView(run, tuple(draw_run(run, out, prefix, hints)), hints, anchor)


@attrs.frozen
class Part:
    """A run shown inside a page of several (a matrix's member, a search's best trial)."""

    sections: tuple[Section, ...]
    figures: tuple[Path, ...]
    hints: tuple[Hint, ...]


def run_part(run_dir: Path, out: Path, *, folder: str, id: str, title: str, label: str, facts: str, note: str = "") -> Part:
    """The run in `run_dir` as part of a bigger page: a heading `title` (id `id`) with `facts` and the run's lead under it,
    its sections one level down with `label` in their titles, its figures in ``out/<folder>/``, its hints saying `label`."""
    run = read_run(run_dir)
    view = view_run(run, out, prefix=f"{folder}/", anchor=f"{id}-")
    lead = f"<p class=lead>{escape(facts)} · {run_lead(run)} · {code(run.path)}</p>" + (paragraph(note, "note") if note else "")
    sections = [Section(id, title, lead), *(attrs.evolve(s, title=f"{s.title} · {label}", level=3) for s in run_sections(view))]
    hints = tuple(attrs.evolve(h, message=f"{label}: {h.message}") for h in view.hints)
    return Part(tuple(sections), tuple(out / f.file for f in view.figures), hints)


def run_lead(run: RunData) -> str:
    """The line under a run's title: status, stages, steps, wall time."""
    from stagedsl.report.sections import duration

    summary = run.summary
    count = len(run.plan.stages)
    return (f"{status_badge(run.status)} &nbsp; {count} stage{'s' if count != 1 else ''} · {escape(summary.get('global_steps', '—'))} steps · "
            f"{escape(duration(summary.get('wall_time_s')))} · plan {code(run.plan.hash)}")


def page_footer(*runs: RunData) -> str:
    """Where the page came from; that it needs nothing else."""
    sources = ", ".join(code(r.path) for r in runs)
    return (f"Written by stagedsl {escape(stagedsl.__version__)} (<code>staged report</code>) from {sources}: plan.json, "
            "summary.json and metrics.jsonl. The page is self-contained: its figures are the PNG files beside it; it runs "
            "no script and loads nothing from the network.")


def write_page(out: Path, title: str, lead: str, sections: list[Section], figures: list[Path], hints: list[Hint],
               runs: tuple[RunData, ...] = (), *, footer: Optional[str] = None) -> Report:
    """Write ``out/index.html`` from `sections` and return the `Report` (the footer names `runs` unless given)."""
    index = out / INDEX
    atomic_write_text(index, render_page(title, lead, sections, footer=footer if footer is not None else page_footer(*runs)))
    return Report(index, tuple(figures), tuple(hints), tuple(s.title for s in sections))


def write_report(run_dir: Path | str, out: Optional[Path | str] = None) -> Report:
    """Read `run_dir` (a run, a matrix run or a search) and write its report into `out` (default ``RUN_DIR/report``)."""
    run_dir = Path(run_dir)
    if SearchDir.holds_search(run_dir):
        from stagedsl.report.search import write_search_report

        return write_search_report(run_dir, Path(out) if out is not None else default_out(run_dir))
    if MatrixDir.holds_matrix(run_dir) and not RunDir(run_dir).plan.is_file():
        from stagedsl.report.matrix import write_matrix_report

        return write_matrix_report(run_dir, Path(out) if out is not None else default_out(run_dir))
    run = read_run(run_dir)
    out = Path(out) if out is not None else default_out(run.path)
    out.mkdir(parents=True, exist_ok=True)
    view = view_run(run, out)
    sections = run_sections(view)
    return write_page(out, f"Run report: {run.name}", run_lead(run), sections, [out / f.file for f in view.figures],
                      list(view.hints), (run,))
