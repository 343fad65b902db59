"""`staged search`, and the search side of `staged plan`, `staged validate` and `staged run --reuse`:
thin faces over `stagedsl.search`.

Imported when the CLI starts, so nothing heavy is imported at module level. Progress and
the results table go to stderr; stdout carries the run directory (``--json``: the summary).
A search in which no trial completed exits 1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, List, Optional

import typer

from stagedsl.cli.output import say
from stagedsl.errors import Problem, RunError, UsageError


def add_commands(app: typer.Typer) -> None:
    """Add `search` to the `staged` app."""
    app.command("search")(search)


def _say(message: str) -> None:
    say(message, err=True)


def search(
    target: Path = typer.Argument(..., help="A spec with [search], or a search run directory to go on with.", show_default=False, metavar="TARGET"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run directory (default from the spec: runs/<name>).", metavar="DIR"),
    trials: Optional[int] = typer.Option(None, "--trials", "-n", help="How many trials (default the spec's `search.trials`, or every grid point).", metavar="N"),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", help="Trials at once, each in its own process on the study's storage (default `search.jobs`).", metavar="N"),
    storage: Optional[str] = typer.Option(None, "--storage", help="Optuna storage URL (default sqlite:///RUN_DIR/study.db).", metavar="URL"),
    reuse: bool = typer.Option(True, "--reuse/--no-reuse", help="Take a trial's leading stages from an earlier trial whose stage hashes are equal."),
    profile: Optional[str] = typer.Option(None, "--profile", "-p", help="A named profile of the spec to apply.", metavar="NAME"),
    set_: Optional[List[str]] = typer.Option(None, "--set", "-s", help="Override a key: --set stage.finetune.lr=1e-5 (repeatable).", metavar="KEY=VALUE"),
    device: Optional[str] = typer.Option(None, "--device", help='Override the device ("cpu", "cuda", "cuda:1", "auto").', metavar="DEVICE"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the files of an earlier run in the run directory."),
    json_: bool = typer.Option(False, "--json", help="Print the search's summary as JSON."),
) -> None:
    """Run a spec's [search]: each trial a complete run in RUN_DIR/trials/<n>/, stages shared by trials trained once;
    with a search run directory, go on with its study (trials left running are continued)."""
    from stagedsl.registry import get_registry
    from stagedsl.search.layout import SearchDir
    from stagedsl.search.runner import run_search

    for name, value in (("--trials", trials), ("--jobs", jobs)):
        if value is not None and value < 1:
            raise UsageError([Problem(code="E090", message=f"{name} must be at least 1, found {value}", path=name)])
    if target.is_dir():
        if not SearchDir.holds_search(target):
            raise UsageError([Problem(code="E802", message=f"`{target}` is not a search run directory (no search.json)",
                                      hint="pass a spec with [search], or the folder `staged search SPEC` wrote")])
        given = [n for n, v in (("--out", out), ("--storage", storage), ("--profile", profile), ("--set", set_),
                                ("--no-reuse", not reuse), ("--overwrite", overwrite)) if v]
        return resume_search_dir(target, trials=trials, jobs=jobs, device=device, refused=given, json_=json_)
    else:
        from stagedsl.api import effective_spec_text
        from stagedsl.spec.loader import load_spec

        loaded = load_spec(target, profile=profile, overrides=set_ or (), registry=get_registry())
        if loaded.search is None:
            raise UsageError([Problem(code="E090", message=f"{target} has no [search] table", hint="add [search] with a metric and [search.space]; `staged run` runs a spec once")])
        result = run_search(loaded, registry=get_registry(), out=out, trials=trials, jobs=jobs, storage=storage, reuse=reuse,
                            device=device, overwrite=overwrite, spec_text=effective_spec_text(loaded), say=_say)
    _finish(result, json_)


def resume_search_dir(run_dir: Path, *, trials: Optional[int], jobs: Optional[int], device: Optional[str], refused: List[str],
                      json_: bool = False) -> None:
    """`staged search RUN_DIR` (and `staged resume RUN_DIR` of a search): go on with the study."""
    from stagedsl.registry import get_registry
    from stagedsl.search.runner import resume_search

    if refused:
        raise UsageError([Problem(code="E090", message=f"{', '.join(refused)} cannot change a study that has begun", path=refused[0],
                                  hint=f"start a new search from the spec, or go on with `staged search {run_dir}`")])
    _finish(resume_search(run_dir, registry=get_registry(), trials=trials, jobs=jobs, device=device, say=_say), json_)


def _finish(result: Any, json_: bool) -> None:
    from stagedsl.search.summary import render_table

    summary = result.summary
    say(render_table(summary), err=True, nl=False)
    if summary.get("best"):
        _say(f"best spec: {Path(result.run_dir) / 'best.toml'} (staged run runs it)")
    say(json.dumps(summary, indent=2, default=str) if json_ else str(result.run_dir))
    if not summary.get("best"):
        raise RunError([Problem(code="E807", message=f"no trial of search `{summary['run']}` completed",
                                hint=f"see {Path(result.run_dir) / 'summary.json'} for each trial's error")])


def validate_line(loaded: Any) -> str:
    """What `staged validate` adds for a spec with [search]: the axes and the trial count."""
    from stagedsl.registry import get_registry
    from stagedsl.spec.search import check_search, trial_count

    axes, _ = check_search(loaded, get_registry())
    count = trial_count(loaded, axes)
    return (f"; search of {count} trial{'s' if count != 1 else ''} ({loaded.search.sampler}) over "
            + ", ".join(f"{a.key} {a.describe()}" for a in axes))


def plan_search_spec(loaded: Any, *, json_: bool) -> None:
    """`staged plan` for a spec with [search]: the study, the axes, which stages the trials share, the first trial's plan."""
    from stagedsl.registry import get_registry
    from stagedsl.search.plan import compile_search, render_search

    out = Path(loaded.run.out_dir)
    compiled = compile_search(loaded, get_registry(), out=out)
    if json_:
        say(compiled.to_json())
    else:
        say(render_search(compiled), nl=False)


def reuse_start_for(plan: Any, reuse: Path, out: Path, *, say_it: bool = True) -> Any:
    """The start of a run that reuses `reuse`'s finished stages (``staged run --reuse``), said on stderr
    (unless `say_it` is False: a process other than rank 0 under torchrun)."""
    from stagedsl.search.cache import describe_start, reuse_start, source_at

    if reuse.resolve() == out.resolve():
        raise UsageError([Problem(code="E806", message=f"--reuse {reuse} is the run directory itself", path="--reuse",
                                  hint="reuse another run's stages into a new --out, or use --from-stage to rerun later stages here")])
    start = reuse_start(plan, source_at(reuse))
    if say_it:
        _say(f"reuse from {reuse}:\n" + "\n".join(describe_start(plan, start)))
    return start


def describe_reuse(plan: Any, reuse: Path) -> str:
    """``staged plan --dry-run --reuse DIR``: which stages would be reused from `reuse`, which trained."""
    from stagedsl.search.cache import describe_start, reuse_start, source_at

    start = reuse_start(plan, source_at(reuse))
    return f"with --reuse {reuse}:\n" + "\n".join(describe_start(plan, start)) + "\n"


__all__ = ["add_commands", "describe_reuse", "plan_search_spec", "resume_search_dir", "reuse_start_for", "validate_line"]
