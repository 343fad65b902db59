"""`staged resume`: a thin face over `stagedsl.api.resume_run`.

Imported when the CLI starts, so nothing heavy (torch) is imported at module level.
Errors are raised as stagedsl errors for the app to render: exit code 0 done, 1 failure
while running, 2 bad usage or a refused change (E431), 3 stopped by a gate, 128 + N when
a signal stopped it again (after saving).
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from stagedsl.cli.launch import (
    MasterAddrOpt,
    MasterPortOpt,
    NnodesOpt,
    NodeRankOpt,
    NprocOpt,
    RdzvBackendOpt,
    RdzvEndpointOpt,
    RdzvIdOpt,
)


def add_commands(app: typer.Typer) -> None:
    """Add `resume` to the `staged` app."""
    app.command("resume")(resume)


def resume(
    run_dir: Path = typer.Argument(..., help="The run directory to continue (holds plan.json, spec.toml and stages/).",
                                   show_default=False, metavar="RUN_DIR"),
    set_: Optional[List[str]] = typer.Option(None, "--set", "-s", help="Change a key from the resume point on: "
                                             "--set stage.finetune.lr=1e-5 (repeatable); only what has not run yet.",
                                             metavar="KEY=VALUE"),
    force: bool = typer.Option(False, "--force", help="Accept --set changes to finished stages, the model or the data "
                                                      "(recorded as forced)."),
    device: Optional[str] = typer.Option(None, "--device", help='Continue on another device ("cpu", "cuda", "cuda:1", "auto").',
                                         metavar="DEVICE"),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", help="Matrix runs: members trained at once, each in its own process (a search: trials).",
                                       metavar="N"),
    member: Optional[List[str]] = typer.Option(None, "--member", "-m", help="Matrix runs: finish only the members matching this glob (repeatable).",
                                               metavar="GLOB"),
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
    """Continue a run exactly where it stopped, from its newest good checkpoint (optionally with --set changes).

    A run that already completed is not trained again: it says so and shows its table
    (exit 0). A matrix run finishes its unfinished members and builds its ensembles again;
    a search goes on with its study. With --nproc N a run goes on as N processes, also when
    it started with another number of them, as long as they divide its global batch.
    """
    from stagedsl.cli.app import debugging
    from stagedsl.cli.launch import launch, launch_options, worker_argv
    from stagedsl.cli.matrix_commands import refuse_matrix_options, resume_matrix_dir
    from stagedsl.engine import distributed
    from stagedsl.matrix.layout import MatrixDir

    launching = launch_options(nproc, nnodes=nnodes, node_rank=node_rank, rdzv_endpoint=rdzv_endpoint, rdzv_backend=rdzv_backend,
                               rdzv_id=rdzv_id, master_addr=master_addr, master_port=master_port)
    processes = distributed.from_environment()
    if not processes.distributed and MatrixDir.holds_matrix(run_dir):
        return resume_matrix_dir(run_dir, jobs=jobs, members=member, device=device, overrides=set_, force=force,
                                 launching=launching)
    from stagedsl.errors import Problem, UsageError
    from stagedsl.search.layout import SearchDir

    if not processes.distributed and SearchDir.holds_search(run_dir):
        from stagedsl.cli.search_commands import resume_search_dir

        if nproc:
            raise UsageError([Problem(code="E090", message=f"{run_dir} is a search: its trials run one process each, so --nproc does not apply",
                                      path="--nproc", hint=f"`staged search {run_dir} --jobs N` goes on with N trials at once")])
        refused = [n for n, v in (("--set", set_), ("--force", force), ("--member", member)) if v]
        return resume_search_dir(run_dir, trials=None, jobs=jobs, device=device, refused=refused, json_=json_)
    refuse_matrix_options(jobs=jobs, member=member)
    from stagedsl.api import resume_run
    from stagedsl.cli.app import RunReport, export_at_end, show_result
    from stagedsl.cli.output import say
    from stagedsl.engine.resuming import read_run_plan
    from stagedsl.registry import get_registry
    from stagedsl.run_dir import RunDir

    layout = RunDir(run_dir)
    if launching is not None:
        if launching.local:
            read_run_plan(layout)  # E415 here, before any process starts
        code = launch(launching, worker_argv("resume", run_dir, [("--set", set_), ("--force", force), ("--device", device),
                                                                 ("--json", json_)]), run_dir=run_dir,
                      debug=debugging())
        if code:
            raise typer.Exit(code)
        return  # rank 0 showed the table
    if not processes.is_writer:  # under torchrun: the others never read the run directory
        resume_run(run_dir, overrides=set_ or (), force=force, device=device, registry=get_registry())
        return
    plan = read_run_plan(layout) if layout.plan.is_file() else None
    with RunReport(plan, json_=json_):
        result = resume_run(run_dir, overrides=set_ or (), force=force, device=device, registry=get_registry(),
                            warn=lambda message: say(f"warning: {message}", err=True))
    plan = read_run_plan(layout)  # a resume with --set may have changed it
    if result.already_complete:
        show_result(result.summary, result.run_dir, plan, json_=json_,
                    headline=f"{run_dir} is already complete: nothing to resume, nothing trained")
        return
    show_result(result.summary, result.run_dir, plan, json_=json_)
    if plan.export is not None:
        export_at_end(result.run_dir)
