"""Placement: the one seam for where and how tensors run.

Everything that depends on the device, the precision or (later) the process group goes
through a `Placement`: choosing the device, moving batches, wrapping the model
(`torch.compile`, channels_last; DDP later), the training sampler, autocast and the
GradScaler, and which process writes files (rank 0 only).
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Optional

import torch

from stagedsl.errors import RunError

FP32_NAMES = frozenset({"32", "32-true", "fp32", "float32"})
PRECISIONS = frozenset({"16-mixed", "bf16-mixed"}) | FP32_NAMES
_NO_AUTOCAST = contextlib.nullcontext()


def resolve_device(name: str) -> torch.device:
    """`"auto"` is CUDA when available, else CPU; anything else must exist here."""
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


class Placement:
    """Device, precision and process placement of one run (single process for now)."""

    def __init__(self, device: torch.device, precision: str, *, pin_memory: Optional[bool] = None, rank: int = 0, world_size: int = 1):
        self.device = device
        self.rank = rank
        self.world_size = world_size
        self.notices: list[str] = []
        self.requested_precision = precision
        self.precision = self._effective_precision(precision)
        self.is_cuda = device.type == "cuda"
        self.pin_memory = self.is_cuda if pin_memory is None else bool(pin_memory and self.is_cuda)
        self.channels_last = False
        self._autocast_dtype = {"16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}.get(self.precision)

    @classmethod
    def create(cls, device: Optional[str], precision: str, *, pin_memory: Optional[bool] = None) -> "Placement":
        """The placement for a device name (`"auto"`, `"cpu"`, `"cuda:1"`) and a precision."""
        placement = cls(resolve_device(device or "auto"), precision, pin_memory=pin_memory)
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
            return _NO_AUTOCAST
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
        if compile:
            forward = torch.compile(model)
        return model, forward

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
        """The sampler of training indices (a DistributedSampler's place, later)."""
        if shuffle:
            return torch.utils.data.RandomSampler(dataset, generator=generator)
        return torch.utils.data.SequentialSampler(dataset)

    def train_order(self, n: int, *, shuffle: bool, generator: torch.Generator) -> Optional[Callable[[], torch.Tensor]]:
        """One epoch's sample order as an index tensor, for in-memory splits (None = in sequence)."""
        if not shuffle:
            return None
        return lambda: torch.randperm(n, generator=generator)

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
        """The sampler of evaluation indices, in order."""
        return torch.utils.data.SequentialSampler(dataset)

    def describe(self) -> str:
        """One line: device and precision."""
        return f"device {self.device}, precision {self.precision}"
