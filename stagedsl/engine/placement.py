"""Placement: the one seam for where and how tensors run.

Everything that depends on the device, the precision or the process group goes through a
`Placement`: choosing the device (one per local rank under torchrun), moving batches,
wrapping the model (`torch.compile`, channels_last, and DistributedDataParallel, made
again for every stage after its freeze), each process's share of the data, autocast and
the GradScaler, what the processes sum or agree on, and which process writes files
(rank 0 only).

Sharding follows `torch.utils.data.DistributedSampler`: every process draws the same
epoch order (the same seeded generator), pads it to a multiple of the number of
processes with its first indices, and takes every N-th index from its rank on, so the
union of the processes' k-th batches is the k-th batch of one process with the global
batch. Validation is split the same way without padding (no sample counted twice).
"""

from __future__ import annotations

import contextlib
import gc
from typing import Any, Callable, Optional

import torch

from stagedsl.engine import distributed
from stagedsl.engine.distributed import SINGLE, Processes
from stagedsl.errors import Problem, RunError

FP32_NAMES = frozenset({"32", "32-true", "fp32", "float32"})
PRECISIONS = frozenset({"16-mixed", "bf16-mixed"}) | FP32_NAMES
_NOTHING = contextlib.nullcontext()


def resolve_device(name: str, processes: Processes = SINGLE) -> torch.device:
    """`"auto"` is CUDA when available, else CPU; anything else must exist here.

    Under torchrun each process takes the GPU of its local rank (``cuda`` / ``auto``);
    naming one GPU (``cuda:1``) or MPS is refused there (E483).
    """
    if processes.distributed:
        return _rank_device(name, processes)
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as exc:
        raise RunError(f"unknown device `{name}`: {exc}", code="E404") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RunError(f"device `{name}` was asked for but CUDA is not available here; use device \"auto\" or \"cpu\"", code="E404")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise RunError(f"device `{name}` was asked for but MPS is not available here", code="E404")
    return device


def _rank_device(name: str, processes: Processes) -> torch.device:
    wanted = name or "auto"
    if wanted == "cpu":
        return torch.device("cpu")
    if wanted in ("auto", "cuda"):
        if not torch.cuda.is_available():
            if wanted == "cuda":
                raise RunError("device `cuda` was asked for but CUDA is not available here; use device \"auto\" or \"cpu\"",
                               code="E404")
            return torch.device("cpu")
        return torch.device("cuda", processes.local_rank % torch.cuda.device_count())
    raise RunError(f"device `{name}` cannot be used by {processes.world_size} processes: each one takes the GPU of its "
                   "local rank; use device \"cuda\" or \"auto\" (or \"cpu\"), and CUDA_VISIBLE_DEVICES to choose the GPUs",
                   code="E483")


class Placement:
    """Device, precision and process placement of one run."""

    def __init__(self, device: torch.device, precision: str, *, pin_memory: Optional[bool] = None,
                 processes: Processes = SINGLE):
        self.device = device
        self.processes = processes
        self.rank = processes.rank
        self.world_size = processes.world_size
        self.distributed = processes.distributed
        self._ddp: Any = None  # the running stage's DistributedDataParallel wrapper
        self.compile = False
        self.notices: list[str] = []
        self.precision = self._effective_precision(precision)
        self.is_cuda = device.type == "cuda"
        self.pin_memory = self.is_cuda if pin_memory is None else bool(pin_memory and self.is_cuda)
        self.channels_last = False
        self._autocast_dtype = {"16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}.get(self.precision)

    @classmethod
    def create(cls, device: Optional[str], precision: str, *, pin_memory: Optional[bool] = None,
               world_size: int = 1) -> "Placement":
        """The placement for a device name (`"auto"`, `"cpu"`, `"cuda:1"`) and a precision, in this process.

        `world_size` is the plan's number of processes: it must be torchrun's (E482).
        """
        processes = distributed.from_environment()
        if processes.world_size != world_size:
            raise RunError([Problem(
                code="E482", message=f"the plan is for {world_size} process{'es' if world_size != 1 else ''} but this is "
                f"{'one of ' + str(processes.world_size) if processes.distributed else 'a single process'}",
                hint="compile the plan for this number of processes (compile_plan(spec, world_size=N)); from the command "
                     "line `staged run SPEC --nproc N` and `torchrun ... -m stagedsl run SPEC` do")])
        distributed.join(processes)
        placement = cls(resolve_device(device or "auto", processes), precision, pin_memory=pin_memory, processes=processes)
        placement._configure_backends()
        return placement

    # -- precision ---------------------------------------------------------------
    def _effective_precision(self, precision: str) -> str:
        precision = str(precision)
        if precision not in PRECISIONS:
            raise RunError(f"unknown precision `{precision}`; use one of 32, 16-mixed, bf16-mixed", code="E404")
        if precision in FP32_NAMES:
            return "32"
        kind = self.device.type
        if precision == "16-mixed" and kind != "cuda":
            self.notices.append(f"precision 16-mixed needs CUDA; running in fp32 on {kind}")
            return "32"
        if precision == "bf16-mixed":
            if kind == "cuda" and not torch.cuda.is_bf16_supported():
                self.notices.append("precision bf16-mixed is not supported by this GPU; running in fp32")
                return "32"
            if not torch.amp.is_autocast_available(kind):
                self.notices.append(f"precision bf16-mixed has no autocast on {kind}; running in fp32")
                return "32"
        return precision

    def _configure_backends(self) -> None:
        if self.is_cuda and torch.cuda.get_device_capability(self.device)[0] >= 8:
            torch.set_float32_matmul_precision("high")  # TF32 matmuls on Ampere and newer
        if self.is_cuda:
            torch.backends.cudnn.benchmark = True

    def autocast(self) -> Any:
        """The autocast context of the step (a shared no-op context in fp32)."""
        if self._autocast_dtype is None:
            return _NOTHING
        return torch.autocast(self.device.type, dtype=self._autocast_dtype)

    def grad_scaler(self) -> Optional[torch.amp.GradScaler]:
        """A GradScaler for fp16 training, else None."""
        if self.precision == "16-mixed":
            return torch.amp.GradScaler(self.device.type)
        return None

    # -- processes ---------------------------------------------------------------
    @property
    def is_writer(self) -> bool:
        """Whether this process writes files (rank 0)."""
        return self.rank == 0

    # -- model -------------------------------------------------------------------
    def prepare_model(self, model: torch.nn.Module, *, compile: bool = False, channels_last: bool = False) -> tuple[torch.nn.Module, Callable[..., Any]]:
        """Move `model` to the device; return it and the callable the step loop runs.

        The first is the plain module (its state_dict names are the checkpoint's); the
        second may be compiled (and, later, DDP-wrapped).
        """
        model = model.to(self.device)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
            self.channels_last = True
        forward: Callable[..., Any] = model
        self.compile = compile
        if compile:
            forward = torch.compile(model)
        return model, forward

    def stage_forward(self, model: torch.nn.Module, forward: Callable[..., Any], find_unused: bool = False) -> Callable[..., Any]:
        """What a stage's step loop calls: `forward` itself in one process; under torchrun a new
        DistributedDataParallel of `model` over the parameters that train now (call it after the
        stage's freeze), compiled when the run compiles. The previous stage's wrapper is dropped
        first: its gradient hooks must not fire again."""
        if not self.distributed:
            return forward
        self.drop_wrapper()
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.device.index] if self.is_cuda else None
        self._ddp = DistributedDataParallel(model, device_ids=device_ids, find_unused_parameters=find_unused,
                                            gradient_as_bucket_view=True)
        return torch.compile(self._ddp) if self.compile else self._ddp

    def drop_wrapper(self) -> None:
        """Let the running stage's DDP wrapper go (its reducer's hooks with it)."""
        if self._ddp is not None:
            self._ddp = None
            gc.collect()

    def no_sync(self) -> Any:
        """A context in which backward passes do not reduce gradients (the first micro-batches of an
        accumulated step); a no-op context in one process."""
        return self._ddp.no_sync() if self._ddp is not None else _NOTHING

    # -- data --------------------------------------------------------------------
    def batch_mover(self) -> Optional[Callable[[Any], Any]]:
        """A function moving a batch to the device, or None when nothing needs moving."""
        if self.device.type == "cpu" and not self.channels_last:
            return None
        device = self.device
        non_blocking = self.is_cuda
        channels_last = self.channels_last

        def move(value: Any) -> Any:
            if isinstance(value, torch.Tensor):
                value = value.to(device, non_blocking=non_blocking)
                if channels_last and value.dim() == 4:
                    value = value.contiguous(memory_format=torch.channels_last)
                return value
            if isinstance(value, (tuple, list)):
                return type(value)(move(v) for v in value)
            if isinstance(value, dict):
                return {k: move(v) for k, v in value.items()}
            return value

        return move

    def train_sampler(self, dataset: Any, *, shuffle: bool, generator: torch.Generator) -> torch.utils.data.Sampler:
        """The sampler of this process's training indices (see the module docstring for the split)."""
        if shuffle:
            sampler: torch.utils.data.Sampler = torch.utils.data.RandomSampler(dataset, generator=generator)
        else:
            sampler = torch.utils.data.SequentialSampler(dataset)
        return ShardSampler(sampler, self.rank, self.world_size, pad=True) if self.distributed else sampler

    def train_order(self, n: int, *, shuffle: bool, generator: torch.Generator) -> Optional[Callable[[], torch.Tensor]]:
        """One epoch's order of this process's samples as an index tensor, for in-memory splits
        (None = all of them, in sequence)."""
        rank, world = self.rank, self.world_size
        if not self.distributed:
            return (lambda: torch.randperm(n, generator=generator)) if shuffle else None
        if shuffle:
            return lambda: shard(torch.randperm(n, generator=generator), rank, world, pad=True)
        in_sequence = shard(torch.arange(n), rank, world, pad=True)
        return lambda: in_sequence

    def train_count(self, n: int) -> int:
        """How many of `n` training samples this process sees an epoch."""
        return -(-n // self.world_size)

    def eval_order(self, n: int) -> Optional[Callable[[], torch.Tensor]]:
        """This process's share of `n` validation samples as an index tensor (None = all, in sequence)."""
        if not self.distributed:
            return None
        share = shard(torch.arange(n), self.rank, self.world_size, pad=False)
        return lambda: share

    def resident(self, split: Any) -> Any:
        """An in-memory `TensorSplit` on the GPU when it fits comfortably (no copy per batch), else as is."""
        if not self.is_cuda or split is None:
            return split
        tensors = list(split.inputs) if isinstance(split.inputs, tuple) else [split.inputs]
        tensors.append(split.target)
        size = sum(t.numel() * t.element_size() for t in tensors)
        free, _ = torch.cuda.mem_get_info(self.device)
        if size > min(2 * 2**30, free // 4):
            return split
        from stagedsl.data import TensorSplit

        inputs = split.inputs
        moved = tuple(t.to(self.device) for t in inputs) if isinstance(inputs, tuple) else inputs.to(self.device)
        return TensorSplit(moved, split.target.to(self.device))

    def eval_sampler(self, dataset: Any) -> torch.utils.data.Sampler:
        """The sampler of this process's evaluation indices, in order."""
        sampler = torch.utils.data.SequentialSampler(dataset)
        return ShardSampler(sampler, self.rank, self.world_size, pad=False) if self.distributed else sampler

    # -- what the processes combine ----------------------------------------------------
    def sum_across(self, tensor: torch.Tensor) -> torch.Tensor:
        """`tensor` summed over the processes (in place; itself in one process)."""
        return distributed.sum_(tensor) if self.distributed else tensor

    def all_true(self, flag: bool) -> bool:
        """Whether `flag` holds in every process."""
        return distributed.all_true(flag) if self.distributed else flag

    def any_true(self, flag: bool) -> bool:
        """Whether `flag` holds in any process."""
        return distributed.any_true(flag) if self.distributed else flag

    def agree(self, value: Any) -> Any:
        """Rank 0's `value` in every process (values every decision is then taken from)."""
        return distributed.broadcast(value) if self.distributed else value

    def describe(self) -> str:
        """One line: device and precision (and processes)."""
        text = f"device {self.device}, precision {self.precision}"
        return text + (f", process {self.rank} of {self.world_size}" if self.distributed else "")


def shard(order: torch.Tensor, rank: int, world: int, *, pad: bool) -> torch.Tensor:
    """Every `world`-th index of `order` from `rank` on; with `pad`, `order` first extended by its own
    first indices to a multiple of `world` (so every process gets as many)."""
    if pad and len(order) % world:
        extra = world - len(order) % world
        order = torch.cat([order, order.repeat(-(-extra // len(order)))[:extra]]) if len(order) else order
    return order[rank::world]


class ShardSampler(torch.utils.data.Sampler):
    """A sampler's indices split over the processes like `shard` (DistributedSampler's split of the
    run's own epoch order, so the order stays the run's seeded one)."""

    def __init__(self, sampler: torch.utils.data.Sampler, rank: int, world: int, *, pad: bool):
        self.sampler, self.rank, self.world, self.pad = sampler, rank, world, pad

    def __len__(self) -> int:
        n = len(self.sampler)
        return -(-n // self.world) if self.pad else len(range(self.rank, n, self.world))

    def __iter__(self):
        return iter(shard(torch.as_tensor(list(self.sampler), dtype=torch.long), self.rank, self.world, pad=self.pad).tolist())
