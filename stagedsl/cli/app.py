"""The `staged` command: a thin Typer face over spec, plan, engine and export.

Data goes to stdout, diagnostics to stderr; errors are rendered once, here, and mapped
to exit codes: 0 done, 1 failure while running, 2 bad spec or usage, 3 stopped by a gate.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

from stagedsl.cli.command import StagedTyper
from stagedsl.diagnostics import problems_json, render_problems
from stagedsl.cli.launch import (
    MasterAddrOpt,
    MasterPortOpt,
    NnodesOpt,
    NodeRankOpt,
    NprocOpt,
    RdzvBackendOpt,
    RdzvEndpointOpt,
    RdzvIdOpt,
    launch,
    launch_options,
    worker_argv,
    write_error_file,
)
from stagedsl.cli.output import say
from stagedsl.errors import GateStopped, Problem, StagedError, UsageError

app = StagedTyper(
    name="staged",
    help="Declarative staged training for PyTorch: validate, plan, run, resume and export a spec.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

SpecArg = typer.Argument(..., help="The spec file (TOML).", show_default=False, metavar="SPEC")
ProfileOpt = typer.Option(None, "--profile", "-p", help="A named profile of the spec to apply.", metavar="NAME")
SetOpt = typer.Option(None, "--set", "-s", help="Override a key: --set stage.finetune.lr=1e-5 (repeatable).", metavar="KEY=VALUE")
JsonOpt = typer.Option(False, "--json", help="Print machine-readable JSON.")


def _registry(strict: bool = False):
    from stagedsl.registry import Registry, get_registry, set_registry

    if strict:
        registry = Registry.load(strict=True)
        set_registry(registry)
        return registry
    return get_registry()


class _Session:
    """Options of the whole command line."""

    debug = False


def debugging() -> bool:
    """Whether the command line has --debug (the processes --nproc starts get it too)."""
    return _Session.debug


def _version(value: bool) -> None:
    if value:
        from stagedsl import __version__

        say(f"staged (stagedsl) {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    strict_plugins: bool = typer.Option(False, "--strict-plugins", help="Fail when a third-party plugin cannot be loaded."),
    debug: bool = typer.Option(False, "--debug", help="After an error a plugin or your own code caused, print its traceback too."),
    version: bool = typer.Option(False, "--version", help="Print the version and exit.", callback=_version, is_eager=True),
) -> None:
    import os

    _Session.debug = debug  # (the processes --nproc starts get --debug on their command line)
    if strict_plugins:
        os.environ["STAGEDSL_STRICT_PLUGINS"] = "1"  # and so in the processes --nproc starts
        _registry(strict=True)


class _JsonProblems:
    """With --json, a bad spec also prints ``{"ok": false, "errors": [...]}`` on stdout (the error still exits 2)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled

    def __enter__(self) -> "_JsonProblems":
        return self

    def __exit__(self, kind, error, traceback) -> bool:
        if self.enabled and isinstance(error, StagedError):
            say(json.dumps(problems_json(error.problems)))
        return False


@app.command()
def validate(spec: Path = SpecArg, profile: Optional[str] = ProfileOpt, set_: Optional[List[str]] = SetOpt, json_: bool = JsonOpt) -> None:
    """Check a spec (syntax, keys, types, references, plugin names and arguments) without torch."""
    from stagedsl.spec.loader import load_spec

    with _JsonProblems(json_):
        loaded = load_spec(spec, profile=profile, overrides=set_ or (), registry=_registry())
        members = _member_names(loaded)
    if json_:
        extra = {"members": members, "ensembles": [e.name for e in loaded.ensembles]} if loaded.matrix is not None else {}
        if loaded.search is not None:
            from stagedsl.spec.search import check_search, trial_count

            axes, _ = check_search(loaded, _registry())
            extra["search"] = {"sampler": loaded.search.sampler, "trials": trial_count(loaded, axes), "axes": [a.to_dict() for a in axes]}
        say(json.dumps({"ok": True, "file": str(spec), "stages": [s.name for s in loaded.stages], **extra}))
    else:
        count = len(loaded.stages)
        matrix = f"; matrix of {len(members)} members, {len(loaded.ensembles)} ensembles" if loaded.matrix is not None else ""
        if loaded.search is not None:
            from stagedsl.cli.search_commands import validate_line

            matrix += validate_line(loaded)
        say(f"{spec}: ok ({count} stage{'s' if count != 1 else ''}: {', '.join(s.name for s in loaded.stages)}{matrix})")


def _member_names(loaded) -> list[str]:
    from stagedsl.spec.matrix import member_names

    return member_names(loaded)


def _load(spec: Path, profile: Optional[str], overrides: Optional[List[str]]):
    from stagedsl.spec.loader import load_spec

    return load_spec(spec, profile=profile, overrides=overrides or (), registry=_registry())


def compile_spec(spec: Path, profile: Optional[str], overrides: Optional[List[str]], *, loaded=None, world_size: int = 1,
                 build_pieces: bool = True):
    """Load (unless `loaded` is given) and compile a spec with the process registry, for `world_size`
    processes (`build_pieces` as for `compile_plan`)."""
    from stagedsl.plan.compile import compile_plan

    loaded = loaded if loaded is not None else _load(spec, profile, overrides)
    return loaded, compile_plan(loaded, _registry(), world_size=world_size, build_pieces=build_pieces)


def _warnings(plan) -> None:
    if plan.warnings:
        say(render_problems([Problem(**w) for w in plan.warnings]), err=True)


@app.command()
def plan(
    spec: Path = SpecArg,
    dry_run: bool = typer.Option(True, "--dry-run/--no-dry-run", help="Only compile and show the plan (nothing runs either way)."),
    profile: Optional[str] = ProfileOpt,
    set_: Optional[List[str]] = SetOpt,
    json_: bool = JsonOpt,
    plot: Optional[Path] = typer.Option(None, "--plot", help="Draw the LR curve into this PNG file.", metavar="PNG"),
    chart: bool = typer.Option(True, "--chart/--no-chart", help="Show the LR curve in the terminal."),
    nproc: Optional[int] = typer.Option(None, "--nproc", help="Plan for N processes a machine (DDP): the global batch and "
                                        "each stage's find_unused_parameters."),
    nnodes: Optional[str] = typer.Option(None, "--nnodes", help="... on this many machines."),
    reuse: Optional[Path] = typer.Option(None, "--reuse", help="Also show which stages a run with --reuse DIR would take from DIR (a run or a search).", metavar="DIR"),
) -> None:
    """Compile a spec and show every stage: durations, trainable parameters, groups, LR curve, hand-offs, gates, stage hashes
    (every member of a matrix; a search's axes and the stages its trials share)."""
    from stagedsl.plan.render import render_plan
    from stagedsl.plan.schedule import ascii_chart, plan_lr_curve

    with _JsonProblems(json_):
        loaded = _load(spec, profile, set_)
        launching = launch_options(nproc, nnodes=nnodes)
        world_size = launching.world_size if launching is not None else 1
        if loaded.matrix is not None:
            from stagedsl.cli.matrix_commands import plan_matrix_spec

            return plan_matrix_spec(loaded, json_=json_, chart=chart, plot=plot, world_size=world_size)
        if loaded.search is not None and reuse is None:
            from stagedsl.cli.search_commands import plan_search_spec

            return plan_search_spec(loaded, json_=json_)
        _, compiled = compile_spec(spec, profile, set_, loaded=loaded, world_size=world_size, build_pieces=False)
    if json_:
        say(compiled.to_json())
        _warnings(compiled)
        return
    curve = plan_lr_curve(compiled, _registry()) if (chart or plot) else None
    say(render_plan(compiled, ascii_chart(curve) if (chart and curve) else None), nl=False)
    if reuse is not None:
        from stagedsl.cli.search_commands import describe_reuse

        say(describe_reuse(compiled, reuse), nl=False)
    if plot is not None:
        from stagedsl.cli.plot import plot_lr_curve

        plot_lr_curve(curve, plot, title=compiled.run.name)
        say(f"LR curve drawn to {plot}", err=True)
    _warnings(compiled)


def check_out(out: Optional[Path]) -> None:
    """Refuse an ``--out`` inside /proc, /sys or /dev (E014), as the spec check refuses such a ``run.out``."""
    from stagedsl.spec.names import system_path_problem

    problem = system_path_problem(out) if out is not None else None
    if problem:
        raise UsageError([Problem("E014", f"--out: {problem}: no run belongs there", path="--out",
                                  hint="pick a folder for the run, e.g. --out runs/NAME")])


@app.command()
def run(
    spec: Path = SpecArg,
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run directory (default from the spec).", metavar="DIR"),
    profile: Optional[str] = ProfileOpt,
    set_: Optional[List[str]] = SetOpt,
    device: Optional[str] = typer.Option(None, "--device", help='Override the device ("cpu", "cuda", "cuda:1", "auto").', metavar="DEVICE"),
    from_stage: Optional[str] = typer.Option(None, "--from-stage", help="Start at this stage (earlier stages' checkpoints must exist in the run directory).", metavar="STAGE"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Run in a folder that is not empty: delete what an earlier run wrote there (saying what) and nothing else."),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", help="Matrix runs: members trained at once, each in its own process (default the spec's `matrix.jobs`).", metavar="N"),
    member: Optional[List[str]] = typer.Option(None, "--member", "-m", help="Matrix runs: train only the members matching this glob (repeatable).", metavar="GLOB"),
    reuse: Optional[Path] = typer.Option(None, "--reuse", help="Take every leading stage whose stage hash another run (or a search) finished from it instead of training it.", metavar="DIR"),
    json_: bool = typer.Option(False, "--json", help="At the end, print summary.json's content (and the run directory) as JSON instead of the table."),
    nproc: Optional[int] = NprocOpt,
    nnodes: Optional[str] = NnodesOpt,
    node_rank: Optional[int] = NodeRankOpt,
    rdzv_endpoint: Optional[str] = RdzvEndpointOpt,
    rdzv_backend: Optional[str] = RdzvBackendOpt,
    rdzv_id: Optional[str] = RdzvIdOpt,
    master_addr: Optional[str] = MasterAddrOpt,
    master_port: Optional[int] = MasterPortOpt,
) -> None:
    """Run a spec: every stage, its gates, checkpoints and logs; exports at the end if the spec has an [export] section.

    Progress goes to stderr; at the end a table per stage (steps, time, best monitored
    value, gate decision), the total time, the run directory and the TensorBoard command.
    A matrix spec trains every member, then builds its ensembles. With --nproc N the run
    is N processes on this machine (torchrun, DDP; docs/distributed.md).
    """
    from stagedsl.api import effective_spec_text, own_run_dir, prepare_run_dir

    check_out(out)
    loaded = _load(spec, profile, set_)
    launching = launch_options(nproc, nnodes=nnodes, node_rank=node_rank, rdzv_endpoint=rdzv_endpoint, rdzv_backend=rdzv_backend,
                               rdzv_id=rdzv_id, master_addr=master_addr, master_port=master_port)
    if loaded.matrix is not None:
        from stagedsl.cli.matrix_commands import run_matrix_spec

        return run_matrix_spec(loaded, out=out, jobs=jobs, members=member, device=device, overwrite=overwrite,
                               from_stage=from_stage, spec_text=effective_spec_text(loaded), launching=launching)
    from stagedsl.cli.matrix_commands import refuse_matrix_options

    refuse_matrix_options(jobs=jobs, member=member)
    from stagedsl.engine import distributed

    processes = distributed.from_environment()  # one process, or one of torchrun's
    if loaded.search is not None and processes.is_writer and launching is None:  # said once, by rank 0
        say(f"note: {spec} has [search]: `staged run` runs it once as written; `staged search {spec}` runs the study", err=True)
    if reuse is not None and from_stage is not None:
        raise UsageError([Problem("E090", "--reuse and --from-stage both choose where the run starts: give one", path="--reuse")])
    run_dir = Path(out if out is not None else loaded.run.out_dir)
    if launching is not None:  # the same command in N processes; rank 0 writes the run directory and the table
        if launching.local:  # refused or made ready here, the lock let go for the workers to take
            prepare_run_dir(run_dir, overwrite=overwrite, from_stage=from_stage, say=lambda message: say(message, err=True))
        argv = worker_argv("run", spec, [("--out", run_dir), ("--profile", profile), ("--set", set_), ("--device", device),
                                         ("--from-stage", from_stage), ("--reuse", reuse), ("--overwrite", overwrite),
                                         ("--json", json_)])
        code = launch(launching, argv, run_dir=run_dir, debug=_Session.debug)
        if code:
            raise typer.Exit(code)
        return
    from stagedsl.engine.runner import run_plan

    loaded, compiled = compile_spec(spec, profile, set_, loaded=loaded, world_size=processes.world_size)
    if processes.is_writer:
        _warnings(compiled)
    start = None
    if reuse is not None:  # every process takes the same start (the reused run is read, not written)
        from stagedsl.cli.search_commands import reuse_start_for

        start = reuse_start_for(compiled, reuse, run_dir, say_it=processes.is_writer)
    distributed.join(processes)
    with own_run_dir(run_dir, overwrite=overwrite, from_stage=from_stage, say=lambda message: say(message, err=True),
                     distributed=processes.distributed):
        if not processes.is_writer:
            run_plan(compiled, out=run_dir, from_stage=from_stage, start=start, device=device, spec_text=effective_spec_text(loaded))
            return
        with RunReport(compiled, json_=json_):
            result = run_plan(compiled, out=run_dir, from_stage=from_stage, start=start, device=device,
                              spec_text=effective_spec_text(loaded))
        show_result(result.summary, result.run_dir, compiled, json_=json_)  # before the export: a failed export keeps the table
        if compiled.export is not None:
            export_at_end(result.run_dir)


def export_at_end(run_dir: Path) -> None:
    """The export a spec's [export] section asks for, after `staged run` / `staged resume`."""
    from stagedsl.export.runner import export_run

    report = export_run(run_dir)
    say(f"exported: {', '.join(str(f) for f in report.files)}", err=True)


def show_result(summary: dict, run_dir: Path, plan, *, json_: bool, headline: Optional[str] = None) -> None:
    """The end of a run on stdout: the table (or JSON with --json)."""
    from stagedsl.cli.summary import render_summary, summary_json

    if json_:
        data = summary_json(summary, run_dir)
        if headline:
            data["note"] = headline
        say(json.dumps(data, indent=2))
    else:
        say(render_summary(summary, run_dir, plan, headline=headline))


class RunReport:
    """Around a run: when a gate stops it (exit 3), the table is still shown before the error."""

    def __init__(self, plan, *, json_: bool):
        self.plan, self.json_ = plan, json_

    def __enter__(self) -> "RunReport":
        return self

    def __exit__(self, kind, error, traceback) -> bool:
        result = getattr(error, "result", None) if isinstance(error, GateStopped) else None
        if result is not None:
            show_result(result.summary, result.run_dir, self.plan, json_=self.json_)
        return False


@app.command()
def plugins(
    name: Optional[str] = typer.Argument(None, help="One piece to show in full: a registered name or an import path (\"torch.optim:SGD\").", show_default=False, metavar="NAME"),
    kind: Optional[str] = typer.Option(None, "--kind", "-k", help="Only pieces of this kind (models, datasets, losses, metrics, optimizers, schedulers, freeze_strategies, callbacks, ...).", metavar="KIND"),
    json_: bool = JsonOpt,
) -> None:
    """List every registered piece by kind with its arguments (types and defaults), plugin, distribution and version;
    with NAME, one piece in full. `--json` carries each signature."""
    from stagedsl.cli.pieces import list_pieces, show_piece

    registry = _registry()
    if name is None:
        list_pieces(registry, kind=kind, json_=json_)
    else:
        show_piece(registry, name, kind=kind, json_=json_)
    for problem in registry.skipped:
        say(render_problems([problem]), err=True)


@app.command()
def schema(out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the schema to this file instead of stdout.", metavar="FILE")) -> None:
    """Print the JSON Schema (draft 2020-12) of the spec language, for editor completion."""
    from stagedsl.spec.schema import spec_schema

    text = json.dumps(spec_schema(), indent=2)
    if out is None:
        say(text)
    else:
        out.write_text(text + "\n", encoding="utf-8")
        say(f"schema written to {out}", err=True)


def _add_commands() -> None:
    """The commands whose modules live beside this one (export, resume, matrix, eval, report, search)."""
    import importlib

    for module_name in ("stagedsl.cli.export_commands", "stagedsl.cli.resume_commands", "stagedsl.cli.matrix_commands",
                        "stagedsl.cli.eval_commands", "stagedsl.cli.report_commands", "stagedsl.cli.search_commands"):
        importlib.import_module(module_name).add_commands(app)


_add_commands()


def run_cli(argv: Optional[list[str]] = None) -> int:
    """Run the CLI on `argv` and return its exit code; errors are rendered to stderr."""
    try:
        app(args=argv, prog_name="staged")
    except SystemExit as exc:  # usage errors were already printed by Typer
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except StagedError as exc:
        _report(exc)
        return exc.exit_code
    except OSError as exc:  # a full disk, a read-only file system, ... wherever it was met: an error, not a traceback
        from stagedsl.errors import os_failure

        command = next((a for a in (argv or sys.argv[1:]) if not a.startswith("-")), "staged")
        error = os_failure(exc, f"`staged {command}`")
        _report(error)
        return error.exit_code
    except RecursionError:
        say(render_problems([Problem("E016", "the input nests too deeply to be read",
                                     hint="flatten it: tables, arrays and gate conditions nest at most 32 deep")]), err=True)
        return 2
    except KeyboardInterrupt as exc:
        signum = getattr(exc, "signum", None)
        say(f"stopped at once by {'a second signal ' + str(signum) if signum else 'an interrupt'}", err=True)
        return 128 + signum if signum else 130
    finally:
        if "torch.distributed" in sys.modules:  # a worker under torchrun leaves its process group
            from stagedsl.engine import distributed

            distributed.leave()
    return 0


def _report(error: StagedError) -> None:
    """Render an error once. Under torchrun rank 0 says what every process decided alike (a bad spec, a gate,
    a stop); another process speaks only of a failure of its own, marked with its rank. The error is also left
    for torchrun's agent, which names the process that failed first."""
    import os

    text = render_problems(error.problems)
    if _Session.debug:
        for problem in error.problems:
            if problem.trace:
                text += f"\n\n--- traceback behind error[{problem.code}] (--debug) ---\n{problem.trace.rstrip()}"
    if "TORCHELASTIC_RUN_ID" not in os.environ:
        say(text, err=True)
        return
    from stagedsl.engine import distributed

    first = error.problems[0] if error.problems else None
    write_error_file(f"{first.code}: {first.message}" if first else str(error))
    rank = distributed.from_environment().rank
    if rank == 0:
        say(text, err=True)
    elif error.exit_code == 1:
        say("\n".join(f"[rank {rank}] {line}" for line in text.splitlines()), err=True)
    if error.exit_code != 1:  # a decision every process took: rank 0 finishes saying so before any ends
        distributed.settle()


def main() -> None:
    """Entry point of the `staged` console script."""
    sys.exit(run_cli())


__all__ = ["app", "check_out", "compile_spec", "export_at_end", "main", "run_cli", "show_result"]
