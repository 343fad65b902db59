"""The processes of a run under torchrun: who this one is, and what they agree on.

torchrun (``staged run --nproc N`` starts it) gives every process ``RANK``, ``WORLD_SIZE``
and ``LOCAL_RANK``; `from_environment` reads them without importing torch. `join` makes
the default process group once: gloo for CPU tensors, plus NCCL for CUDA tensors when
CUDA is there (``"cpu:gloo,cuda:nccl"``: object collectives run on the CPU side).

Rank 0 is the *writer*: it alone reads and writes the run directory. What the others
need from it comes through a collective: `from_writer` runs a function on rank 0 and
hands every process its result (or its error, raised everywhere); `broadcast` sends a
value; `all_true` / `any_true` / `sum_` combine what each process saw, so every decision
(stop, skip a step, best checkpoint, gate) is taken from the same numbers everywhere.
In one process each of them is the identity, with no torch.distributed call.

A peer that died shows in the survivors as a failed collective; `lost_peer` recognises
it so the run ends with E481 instead of a backend's message.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable, Optional, TypeVar

import attrs

from stagedsl.errors import Problem, RunError, StagedError

T = TypeVar("T")

LOST_PEER_MARKS = ("connection closed by peer", "connection reset by peer", "broken pipe", "socket closed",
                   "connection refused", "timed out", "nccl communicator was aborted", "unhandled system error")
"""Lower-case fragments of the errors a collective raises when another process is gone."""


@attrs.frozen
class Processes:
    """This process's place among the run's processes (one process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    node_rank: int = 0

    @property
    def distributed(self) -> bool:
        """Whether the run has several processes."""
        return self.world_size > 1

    @property
    def is_writer(self) -> bool:
        """Whether this process reads and writes the run directory (rank 0)."""
        return self.rank == 0


SINGLE = Processes()


def from_environment(environ: Optional[dict] = None) -> Processes:
    """The processes torchrun describes in the environment (`SINGLE` outside torchrun)."""
    env = os.environ if environ is None else environ
    try:
        world_size = int(env.get("WORLD_SIZE", "1"))
        if world_size <= 1:
            return SINGLE
        return Processes(rank=int(env["RANK"]), world_size=world_size, local_rank=int(env.get("LOCAL_RANK", "0")),
                         node_rank=int(env.get("GROUP_RANK", "0")))
    except (KeyError, ValueError) as exc:
        raise RunError(f"the torchrun environment is incomplete or not numbers ({exc}): RANK, WORLD_SIZE and LOCAL_RANK "
                       "must all be set; start the run with `staged run SPEC --nproc N` or torchrun", code="E482") from None


def join(processes: Processes) -> None:
    """Make the default process group (once) for `processes`; nothing for one process."""
    if not processes.distributed:
        return
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(processes.local_rank % torch.cuda.device_count())
    dist.init_process_group(backend="cpu:gloo,cuda:nccl" if cuda else "gloo")


def leave() -> None:
    """Destroy the default process group, if there is one (the end of a worker)."""
    if "torch.distributed" not in sys.modules:
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        import gc

        gc.collect()  # whatever still holds the group (a DDP reducer in a reference cycle) lets go of it first
        dist.destroy_process_group()


def settle(timeout_s: float = 60.0) -> None:
    """Wait (at most `timeout_s`) until every process gets here: a process that ends on a decision all
    took (a gate, a bad spec, a stop) lets rank 0 finish writing and reporting it before torchrun,
    seeing one process end, stops the rest. Errors (a process that is gone) are passed over."""
    if not _active():
        return
    import datetime

    import torch.distributed as dist

    try:
        if dist.get_backend() == "gloo":
            dist.monitored_barrier(timeout=datetime.timedelta(seconds=timeout_s))
        else:
            dist.barrier()
    except Exception:
        pass


def _active() -> bool:
    if "torch.distributed" not in sys.modules:
        return False
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 outside a process group)."""
    if not _active():
        return 0
    import torch.distributed as dist

    return dist.get_rank()


def broadcast(value: T, *, src: int = 0) -> T:
    """Rank `src`'s `value`, in every process."""
    if not _active():
        return value
    import torch.distributed as dist

    box = [value if dist.get_rank() == src else None]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def from_writer(read: Callable[[], T]) -> T:
    """`read()` run on rank 0 alone; its result (or its error, raised again) in every process."""
    if not _active():
        return read()
    outcome: Any = None
    if rank() == 0:
        try:
            outcome = ("ok", read())
        except StagedError as exc:
            outcome = ("error", type(exc), exc.problems, exc.exit_code)
        except Exception as exc:
            outcome = ("error", RunError, [Problem(code="E400", message=f"rank 0 failed: {type(exc).__name__}: {exc}")], 1)
    outcome = broadcast(outcome)
    if outcome[0] == "ok":
        return outcome[1]
    _, kind, problems, exit_code = outcome
    error = kind.__new__(kind)
    StagedError.__init__(error, problems)
    error.exit_code = exit_code
    raise error


def _flag(value: bool, op: str) -> bool:
    if not _active():
        return value
    import torch
    import torch.distributed as dist

    tensor = torch.tensor([1 if value else 0], dtype=torch.int32)
    dist.all_reduce(tensor, op=dist.ReduceOp.MIN if op == "min" else dist.ReduceOp.MAX)
    return bool(tensor.item())


def all_true(value: bool) -> bool:
    """Whether `value` is true in every process (the same answer everywhere)."""
    return _flag(value, "min")


def any_true(value: bool) -> bool:
    """Whether `value` is true in any process (the same answer everywhere)."""
    return _flag(value, "max")


def sum_(tensor: Any) -> Any:
    """`tensor` summed over the processes, in place (returned)."""
    if _active():
        import torch.distributed as dist

        dist.all_reduce(tensor)
    return tensor


def gather(value: T) -> list[T]:
    """Every process's `value`, by rank."""
    if not _active():
        return [value]
    import torch.distributed as dist

    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out


def check_same(value: Any, what: str, hint: str) -> None:
    """E486 when some process holds another `value` than rank 0 (a plan, a code version)."""
    values = gather(value)
    differ = [r for r, v in enumerate(values) if v != values[0]]
    if differ:
        raise RunError([Problem(code="E486", message=f"rank{'s' if len(differ) > 1 else ''} {', '.join(map(str, differ))} "
                                f"{'have' if len(differ) > 1 else 'has'} another {what} ({values[differ[0]]}) than rank 0 "
                                f"({values[0]})", hint=hint)])


def lost_peer(exc: BaseException) -> bool:
    """Whether `exc` is a collective failing because another process is gone."""
    if "torch.distributed" not in sys.modules:
        return False
    import torch.distributed as dist

    kinds = tuple(k for k in (getattr(dist, "DistBackendError", None), getattr(dist, "DistNetworkError", None)) if k)
    if kinds and isinstance(exc, kinds):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(mark in text for mark in LOST_PEER_MARKS) and (
        "gloo" in text or "nccl" in text or "c10d" in text or "connection" in text)


def raise_failure(exc: Exception, where: str, processes: Processes) -> None:
    """Raise what a failure under torchrun means: another process gone (E481), or a trainable parameter
    DDP saw no gradient for (E487); return for any other failure (the caller's E400)."""
    if lost_peer(exc):
        raise RunError([Problem(code="E481", message=f"{where}: process {processes.rank} of {processes.world_size} lost "
                                "contact with the others (one of them died or was stopped)",
                                hint="the launcher names the process that failed first; the run's last good checkpoint is "
                                     "intact: continue with `staged resume RUN_DIR --nproc N`")]) from exc
    text = str(exc)
    if "find_unused_parameters" in text or "did not receive grad" in text:
        raise RunError([Problem(code="E487", message=f"{where}: DDP found trainable parameters that took no part in "
                                f"the loss: {' '.join(text.split())[:300]}",
                                hint="the plan's graph check follows the model's output, not the loss: freeze the "
                                     "parameters the loss does not use in this stage, or use them")]) from exc


__all__ = ["Processes", "SINGLE", "all_true", "any_true", "broadcast", "check_same", "from_environment", "from_writer",
           "gather", "join", "leave", "lost_peer", "raise_failure", "rank", "settle", "sum_"]
