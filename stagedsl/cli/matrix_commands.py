"""`staged ensemble`, and the matrix side of `staged run`, `staged plan` and `staged resume`:
thin faces over `stagedsl.matrix` and `stagedsl.ensemble`.

Imported when the CLI starts, so nothing heavy is imported at module level. The results
table goes to stderr with the progress (stdout carries the run directory, as for a
single run; `staged eval RUN_DIR` prints the table as data); a member or ensemble that
failed makes the command exit 1 after everything else was done.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, List, Optional

import typer

from stagedsl.cli.output import say
from stagedsl.matrix.layout import error_text
from stagedsl.errors import Problem, RunError, UsageError

MATRIX_ONLY = "E710"


def add_commands(app: typer.Typer) -> None:
    """Add `ensemble` to the `staged` app."""
    app.command("ensemble")(ensemble)


def refuse_matrix_options(**given: Any) -> None:
    """A `UsageError` when an option that only a matrix takes was given for a single spec."""
    used = [f"--{name}" for name, value in given.items() if value]
    if used:
        raise UsageError([Problem(code=MATRIX_ONLY, message=f"{', '.join(used)} applies to a spec with [matrix] only", path=used[0],
                                  hint="add a [matrix] table (seeds, variants), or leave the option out")])


def _say(message: str) -> None:
    say(message, err=True)


def _finish(result: Any) -> None:
    from stagedsl.matrix.summary import render_summary

    say(render_summary(result.summary), err=True, nl=False)
    pending = result.summary.get("pending") or []
    if pending:
        _say(f"note: {len(pending)} member{'s' if len(pending) != 1 else ''} not trained yet ({', '.join(pending)}): "
             f"`staged resume {result.run_dir}` trains them")
    say(str(result.run_dir))
    problems = [Problem(code="E711", message=f"member `{name}` {m['status']}" + (f": {m['error']}" if m.get("error") else ""))
                for name, m in result.summary["members"].items() if name in result.failed]
    problems += [Problem(code="E711", message=f"ensemble `{name}` failed: "
                         + (error_text(result.summary["ensembles"][name]) or ""))
                 for name in result.failed_ensembles]
    if problems:
        problems[-1] = Problem(code=problems[-1].code, message=problems[-1].message,
                               hint=f"see {Path(result.run_dir) / 'summary.json'}; finish it with `staged resume {result.run_dir}`")
        raise RunError(problems)


def member_processes(launching: Any, jobs: int, device: Optional[str]) -> int:
    """How many processes each member runs as (`launching`: the --nproc launch, or None); E094 for what a
    matrix cannot do: members spread over machines, or more processes than GPUs on CUDA."""
    if launching is None:
        return 1
    if not launching.local:
        raise UsageError([Problem(code="E094", message="a matrix trains its members on this machine: --nnodes and the "
                                  "rendezvous options are for a single run", path="--nnodes",
                                  hint="train one member on several machines: staged run RUN_DIR/members/<member>/spec.toml "
                                       "--nproc N --nnodes M ...")])
    if device not in (None, "cpu"):
        import torch

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if gpus and jobs * launching.nproc > gpus:
            raise UsageError([Problem(code="E094", message=f"--jobs {jobs} x --nproc {launching.nproc} needs "
                                      f"{jobs * launching.nproc} GPUs (one a process), this machine has {gpus}",
                                      path="--nproc", hint=f"lower --jobs or --nproc so that jobs x nproc <= {gpus}")])
    return launching.nproc


def run_matrix_spec(loaded: Any, *, out: Optional[Path], jobs: Optional[int], members: Optional[List[str]], device: Optional[str],
                    overwrite: bool, from_stage: Optional[str], spec_text: str, launching: Any = None) -> None:
    """`staged run` for a spec with [matrix]: train the members (each as --nproc processes), build the ensembles,
    print the table."""
    from stagedsl.matrix.runner import run_matrix
    from stagedsl.registry import get_registry

    if from_stage is not None:
        raise UsageError([Problem(code=MATRIX_ONLY, message="--from-stage applies to a single run, not to a matrix", path="--from-stage",
                                  hint="run one member from a stage: staged run RUN_DIR/members/<member>/spec.toml --from-stage NAME")])
    if jobs is not None and jobs < 1:
        raise UsageError([Problem(code="E090", message=f"--jobs must be at least 1, found {jobs}", path="--jobs")])
    if loaded.export is not None:
        _say("note: a matrix exports no member by itself; export an ensemble with `staged export RUN_DIR --ensemble NAME`")
    nproc = member_processes(launching, jobs or loaded.matrix.jobs, device)
    result = run_matrix(loaded, registry=get_registry(), out=out, jobs=jobs, members=members, device=device, overwrite=overwrite,
                        spec_text=spec_text, say=_say, nproc=nproc)
    _finish(result)


def plan_matrix_spec(loaded: Any, *, json_: bool, chart: bool, plot: Optional[Path] = None, world_size: int = 1) -> None:
    """`staged plan` for a spec with [matrix]: every member compiled, the matrix and each variant's plan shown;
    `plot` draws the first member's LR curve (the members' schedules differ only where their variants do)."""
    from stagedsl.matrix.plan import compile_matrix, render_matrix
    from stagedsl.plan.render import render_plan
    from stagedsl.registry import get_registry

    registry = get_registry()
    out = Path(loaded.run.out_dir)
    matrix = compile_matrix(loaded, registry, out=out, world_size=world_size)
    if json_:
        say(matrix.to_json())
        return
    say(render_matrix(matrix), nl=False)
    shown = set()
    for member in matrix.members:
        if member.variant in shown:
            continue
        shown.add(member.variant)
        say(f"\nvariant {member.variant} (member {member.name}; its seeds differ only in run.seed):")
        curve_text = None
        if chart:
            from stagedsl.plan.schedule import ascii_chart, plan_lr_curve

            curve = plan_lr_curve(member.plan, registry)
            curve_text = ascii_chart(curve) if curve else None
        say(render_plan(member.plan, curve_text), nl=False)
    if plot is not None:
        from stagedsl.cli.plot import plot_lr_curve
        from stagedsl.plan.schedule import plan_lr_curve

        first = matrix.members[0]
        plot_lr_curve(plan_lr_curve(first.plan, registry), plot, title=f"{matrix.name}: {first.name}")
        _say(f"LR curve of member {first.name} drawn to {plot}")
    warnings = [w for m in matrix.members[:1] for w in m.plan.warnings]
    if warnings:
        from stagedsl.diagnostics import render_problems

        say(render_problems([Problem(**w) for w in warnings]), err=True)


def resume_matrix_dir(run_dir: Path, *, jobs: Optional[int], members: Optional[List[str]], device: Optional[str],
                      overrides: Optional[List[str]], force: bool, launching: Any = None) -> None:
    """`staged resume` of a matrix run: finish the unfinished members, rebuild the ensembles."""
    from stagedsl.matrix.runner import resume_matrix
    from stagedsl.registry import get_registry

    if overrides or force:
        raise UsageError([Problem(code=MATRIX_ONLY, message="--set and --force change one run; a matrix resumes its members as planned",
                                  path="--set", hint=f"resume one member with changes: staged resume {run_dir}/members/<member> --set ...")])
    nproc = member_processes(launching, jobs or 1, device)
    _finish(resume_matrix(run_dir, registry=get_registry(), jobs=jobs, members=members, device=device, say=_say, nproc=nproc))


def ensemble(
    run_dir: Path = typer.Argument(..., help="A matrix run directory (holds matrix.json, members/, predictions/).", show_default=False),
    name: Optional[List[str]] = typer.Option(None, "--name", "-n", help="Build only this ensemble (repeatable; default all)."),
    spec: Optional[Path] = typer.Option(None, "--spec", help="Take the [[ensemble]] tables from this spec instead (the run's members stay as they are)."),
    profile: Optional[str] = typer.Option(None, "--profile", "-p", help="A named profile of --spec to apply."),
    set_: Optional[List[str]] = typer.Option(None, "--set", "-s", help="Override a key of --spec (repeatable)."),
    json_: bool = typer.Option(False, "--json", help="Print the ensembles' records as JSON."),
) -> None:
    """(Re)build a matrix run's ensembles from its cached member predictions, without training."""
    from stagedsl.ensemble.build import build_ensembles
    from stagedsl.matrix.layout import MatrixDir
    from stagedsl.matrix.summary import render_summary, write_summary
    from stagedsl.registry import get_registry

    matrix_dir = MatrixDir(run_dir)
    index = matrix_dir.read_index()
    if spec is not None:
        index = _ensembles_from(spec, profile, set_, matrix_dir, index)
    records = build_ensembles(run_dir, registry=get_registry(), names=name or None)
    previous = (matrix_dir.read_json(matrix_dir.summary_file) or {}).get("ensembles") or {}
    summary = write_summary(matrix_dir, index, ensembles={**previous, **records})
    if json_:
        say(json.dumps(records, indent=2, default=str))
    else:
        say(render_summary(summary), nl=False)
    failed = [n for n, r in records.items() if r.get("status") != "completed"]
    if failed:
        raise RunError([Problem(code="E711", message=f"ensemble `{n}` failed: {error_text(records[n])}")
                        for n in failed])


def _ensembles_from(spec: Path, profile: Optional[str], overrides: Optional[List[str]], matrix_dir: Any, index: dict) -> dict:
    """The run's index with the [[ensemble]] tables of `spec` (checked against the run's members)."""
    from stagedsl.matrix.plan import ensemble_entry
    from stagedsl.registry import get_registry
    from stagedsl.spec.loader import load_spec

    loaded = load_spec(spec, profile=profile, overrides=overrides or (), registry=get_registry())
    from stagedsl.spec.matrix import member_names

    names = [m["name"] for m in index["members"]]
    mine = member_names(loaded)
    if mine != names:
        raise UsageError([Problem(code="E702", message=f"{spec}'s matrix has other members ({', '.join(mine)}) than the run ({', '.join(names)})",
                                  hint="use the spec the run was made from, with only its [[ensemble]] tables changed")])
    index = {**index, "ensembles": [ensemble_entry(e) for e in loaded.ensembles]}
    matrix_dir.write_json(matrix_dir.index_file, index)
    return index


__all__ = ["add_commands", "plan_matrix_spec", "refuse_matrix_options", "resume_matrix_dir", "run_matrix_spec"]
