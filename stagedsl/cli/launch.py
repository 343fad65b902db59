"""``--nproc N``: the command again as N processes, started by torchrun (`torch.distributed.run`).

``staged run SPEC --nproc 2`` is ``torchrun --nproc-per-node 2 -m stagedsl run SPEC``: this
process becomes torchrun's agent (in process, no extra interpreter), each worker runs the
same command without the launch options and finds its rank in the environment. On one
machine the rendezvous is torchrun's ``--standalone`` (a free local port); for several,
``--nnodes``, ``--node-rank``, ``--rdzv-endpoint``, ``--rdzv-backend``, ``--rdzv-id``,
``--master-addr`` and ``--master-port`` go to torchrun as they are (docs/distributed.md
has a two-machine example).

The workers run the program this one is: ``-m stagedsl``, or the same Python script when
it was started as one (a script that registers its own plugins and calls
`stagedsl.cli.app.run_cli` launches itself).

When a worker fails, torchrun stops the others; the failure is reported here once: a
process that died (a signal, a crash) or failed on its own is named with its rank and
what it said (E480); a decision every process took alike (a bad spec, a gate stopping
the run, a stop signal) was already reported by rank 0 and only its exit code is passed on.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

import attrs
import typer

from stagedsl.errors import Problem, RunError, UsageError

NprocOpt = typer.Option(None, "--nproc", help="Run as N processes on this machine through torchrun (DDP; the spec's "
                        "batch_size is each process's): gloo on CPU, NCCL and one GPU per process on CUDA.")
NnodesOpt = typer.Option(None, "--nnodes", help="torchrun: the number of machines (each runs the command with its --nproc).")
NodeRankOpt = typer.Option(None, "--node-rank", help="torchrun: this machine's rank (static rendezvous with --master-addr).")
RdzvEndpointOpt = typer.Option(None, "--rdzv-endpoint", help="torchrun: HOST:PORT where the machines meet (c10d rendezvous).")
RdzvBackendOpt = typer.Option(None, "--rdzv-backend", help="torchrun: the rendezvous backend (default c10d with an endpoint).")
RdzvIdOpt = typer.Option(None, "--rdzv-id", help="torchrun: the job id every machine gives (c10d rendezvous).")
MasterAddrOpt = typer.Option(None, "--master-addr", help="torchrun: rank 0's machine (static rendezvous).")
MasterPortOpt = typer.Option(None, "--master-port", help="torchrun: rank 0's port (static rendezvous).")

LOST_CONTACT = "E481"
"""The code a survivor reports when another process died: not the cause, so not the one named."""


@attrs.frozen
class Launch:
    """How many processes to start and how they meet (torchrun's options)."""

    nproc: int
    nnodes: int = 1
    node_rank: Optional[int] = None
    rdzv_endpoint: Optional[str] = None
    rdzv_backend: Optional[str] = None
    rdzv_id: Optional[str] = None
    master_addr: Optional[str] = None
    master_port: Optional[int] = None

    @property
    def world_size(self) -> int:
        """Processes in all, over every machine."""
        return self.nproc * self.nnodes

    @property
    def local(self) -> bool:
        """Whether every process runs on this machine (torchrun's standalone rendezvous)."""
        return self.nnodes == 1 and not (self.rdzv_endpoint or self.master_addr or self.rdzv_backend)

    def torchrun_args(self) -> list[str]:
        """torchrun's own options for this launch."""
        args = ["--nproc-per-node", str(self.nproc), "--nnodes", str(self.nnodes)]
        if self.local:
            return [*args, "--standalone"]
        for flag, value in (("--node-rank", self.node_rank), ("--rdzv-endpoint", self.rdzv_endpoint),
                            ("--rdzv-backend", self.rdzv_backend), ("--rdzv-id", self.rdzv_id),
                            ("--master-addr", self.master_addr), ("--master-port", self.master_port)):
            if value is not None:
                args += [flag, str(value)]
        return args


def launch_options(nproc: Optional[int], *, nnodes: Optional[str] = None, node_rank: Optional[int] = None,
                   rdzv_endpoint: Optional[str] = None, rdzv_backend: Optional[str] = None, rdzv_id: Optional[str] = None,
                   master_addr: Optional[str] = None, master_port: Optional[int] = None) -> Optional[Launch]:
    """The launch the options ask for; None to run in this process (no --nproc, or --nproc 1 on this machine alone)."""
    import os

    rendezvous = {"--nnodes": nnodes, "--node-rank": node_rank, "--rdzv-endpoint": rdzv_endpoint, "--rdzv-backend": rdzv_backend,
                  "--rdzv-id": rdzv_id, "--master-addr": master_addr, "--master-port": master_port}
    given = [flag for flag, value in rendezvous.items() if value is not None]
    if nproc is None:
        if given:
            raise UsageError([Problem(code="E093", message=f"{', '.join(given)} says how the processes meet, but --nproc "
                                      "does not say how many to start", path=given[0],
                                      hint="add --nproc N (processes on this machine)")])
        return None
    if nproc < 1:
        raise UsageError([Problem(code="E092", message=f"--nproc must be at least 1, found {nproc}", path="--nproc")])
    if "TORCHELASTIC_RUN_ID" in os.environ or int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        raise UsageError([Problem(code="E095", message="--nproc inside a process torchrun started: it would start "
                                  "processes of its own", path="--nproc",
                                  hint="leave --nproc out under torchrun (torchrun already started the processes)")])
    nodes = _nodes(nnodes)
    launch = Launch(nproc, nodes, node_rank, rdzv_endpoint, rdzv_backend, rdzv_id, master_addr, master_port)
    if nodes > 1 and not (rdzv_endpoint or master_addr):
        raise UsageError([Problem(code="E093", message=f"--nnodes {nodes}: the machines need a meeting point",
                                  path="--nnodes", hint="add --rdzv-endpoint HOST:PORT (the same on every machine), "
                                                        "or --master-addr and --node-rank")])
    return None if launch.world_size == 1 and launch.local else launch


def _nodes(nnodes: Optional[str]) -> int:
    if nnodes is None:
        return 1
    try:
        count = int(nnodes)
    except ValueError:
        raise UsageError([Problem(code="E093", message=f"--nnodes must be one number of machines, found `{nnodes}`",
                                  path="--nnodes", hint="a range (MIN:MAX, elastic) would change the number of processes, "
                                                        "and with it each step's batch: give the number of machines")]) from None
    if count < 1:
        raise UsageError([Problem(code="E093", message=f"--nnodes must be at least 1, found {count}", path="--nnodes")])
    return count


def worker_program() -> list[str]:
    """How torchrun starts the program this process is: ``-m stagedsl``, or the script it was started as."""
    main = sys.modules.get("__main__")
    path = str(getattr(main, "__file__", "") or "")
    if getattr(main, "__spec__", None) is None and path.endswith(".py"):
        return [path]
    return ["-m", "stagedsl"]


def worker_argv(command: str, target: Any, options: Sequence[tuple[str, Any]]) -> list[str]:
    """The command line a worker runs: `command`, its argument, then each given option (lists repeat
    the flag, True is a bare flag, None and False are left out)."""
    argv = [command, str(target)]
    for flag, value in options:
        if value is None or value is False:
            continue
        if value is True:
            argv.append(flag)
        elif isinstance(value, (list, tuple)):
            for item in value:
                argv += [flag, str(item)]
        else:
            argv += [flag, str(value)]
    return argv


def launch(plan: Launch, argv: Sequence[str], *, run_dir: Optional[Path] = None, debug: bool = False) -> int:
    """Run `argv` (a `staged` command line) as `plan`'s processes (with ``--debug`` when `debug`); return the exit
    code to end with.

    Raises `RunError` (E480) naming the process that failed first when one died or failed alone.
    """
    import logging
    import os

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    args = get_args_parser().parse_args([*plan.torchrun_args(), *worker_program(), *(["--debug"] if debug else []), *argv])
    # torchrun would set 1 thread a process (and say so); share this machine's cores instead
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // plan.nproc)))
    for name in ("torch.distributed.elastic", "torch.distributed.run"):
        logging.getLogger(name).setLevel(logging.CRITICAL)  # a failure is reported here, once
    try:
        run(args)
    except ChildFailedError as exc:
        return _failed(exc, plan, run_dir)
    except SignalException as exc:  # Ctrl-C or SIGTERM: torchrun passed it on; rank 0 said where it saved
        return 128 + int(getattr(exc, "sigval", signal.SIGINT))
    return 0


def _failed(exc: Any, plan: Launch, run_dir: Optional[Path]) -> int:
    """The exit code of a decision every process took (rank 0 reported it), or E480 naming the process to blame."""
    failures = dict(exc.failures)
    codes = {rank: failure.exitcode for rank, failure in failures.items()}
    decisions = {code for code in codes.values() if code in (2, 3) or code >= 128}
    blame = {rank: _blame(failure) for rank, failure in failures.items()}
    if decisions and not any(level < 2 and codes[rank] not in decisions for rank, level in blame.items()):
        return codes[0] if codes.get(0) in decisions else min(decisions)
    rank = min(failures, key=lambda r: (blame[r], failures[r].timestamp, r))
    failure = failures[rank]
    how = f"was killed by {failure.signal_name()}" if failure.exitcode < 0 else f"exited with code {failure.exitcode}"
    said = _said(failure)
    where = f"local rank {failure.local_rank}, pid {failure.pid}" + ("" if plan.local else " on its machine")
    raise RunError([Problem(code="E480", message=f"process {rank} of {plan.world_size} ({where}) {how}"
                            + (f": {said}" if said and failure.exitcode >= 0 else "") + "; the other processes were stopped",
                            hint=_resume_hint(run_dir, plan))])


def _blame(failure: Any) -> int:
    """How likely a failed process is the cause, most first: 0 it reported an error of its own, 1 something
    killed it, 2 it exited without a word, 3 torchrun stopped it (after another failed), 4 it lost contact."""
    said = _said(failure)
    if said.startswith(LOST_CONTACT):
        return 4
    if failure.exitcode < 0:
        return 3 if -failure.exitcode in (signal.SIGTERM, signal.SIGINT) else 1
    return 0 if said[:1] == "E" and said[1:4].isdigit() else 2


def _said(failure: Any) -> str:
    message = failure.message
    if isinstance(message, dict):
        message = message.get("message", "")
    text = str(message or "")
    return "" if text.startswith("To enable traceback") else " ".join(text.split())[:400]


def _resume_hint(run_dir: Optional[Path], plan: Launch) -> str:
    last = None
    if run_dir is not None:
        try:
            last = json.loads((Path(run_dir) / "summary.json").read_text()).get("last_checkpoint")
        except (OSError, ValueError, AttributeError):
            last = None
    saved = f"the last good checkpoint is `{last}`" if last else "no trainer checkpoint was written yet"
    return f"{saved}; continue with `staged resume {run_dir or 'RUN_DIR'} --nproc {plan.nproc}`"


def write_error_file(message: str) -> None:
    """In a torchrun worker: leave the error where torchrun's agent reads it (``TORCHELASTIC_ERROR_FILE``)."""
    import os
    import time

    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if not path:
        return
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps({"message": message, "timestamp": int(time.time())}))
    except OSError:
        pass


__all__ = ["Launch", "MasterAddrOpt", "MasterPortOpt", "NnodesOpt", "NodeRankOpt", "NprocOpt", "RdzvBackendOpt",
           "RdzvEndpointOpt", "RdzvIdOpt", "launch", "launch_options", "worker_argv", "worker_program", "write_error_file"]
