"""Model weights on disk: ``stages/<stage>/best.safetensors`` and ``last.safetensors``.

They hold the model's state_dict under its own names, written atomically (temp file,
fsync, rename, fsync of the folder). A torch file (``.pt``, ``.pth``, ``.ckpt``,
``.bin``) is only ever read with ``weights_only=True``; a stage's `init` is resolved and
loaded by `init_weights`. Trainer checkpoints (the resume seam) are `trainer_checkpoints`'.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from stagedsl.engine.checkpointing.safe_io import atomic_write, torch_load_safe
from stagedsl.errors import CheckpointError, Problem

BEST = "best"
LAST = "last"
TORCH_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")
STATE_DICT_KEYS = ("state_dict", "model", "model_state", "model_state_dict")


def cpu_state_dict(model: nn.Module, *, copy: bool = False) -> dict[str, torch.Tensor]:
    """The model's state_dict as contiguous CPU tensors that share no storage (tied weights copied).

    With `copy`, none shares memory with the model either (a snapshot training can go on from).
    """
    seen: set[int] = set()
    tensors: dict[str, torch.Tensor] = {}
    for name, value in model.state_dict().items():
        value = value.detach()
        if value.device.type != "cpu":
            value = value.to("cpu")  # a fresh copy per tensor
        elif copy:
            value = value.clone(memory_format=torch.contiguous_format)
        elif value.numel():
            pointer = value.untyped_storage().data_ptr()
            if pointer in seen or not value.is_contiguous():
                value = value.contiguous().clone()
            seen.add(pointer)
        tensors[name] = value
    return tensors


def non_finite(tensors: dict[str, torch.Tensor]) -> Optional[str]:
    """The name of the first floating tensor holding a NaN or an infinity, or None.

    One fused norm over all of them first (finite norms mean finite values); only when
    that is not finite, tensor by tensor (a huge finite value can overflow a norm).
    """
    floats = {name: value for name, value in tensors.items() if value.is_floating_point() and value.numel()}
    if not floats:
        return None
    try:
        norms = torch._foreach_norm(list(floats.values()))
        if bool(torch.isfinite(torch.stack([n.float() for n in norms])).all()):
            return None
    except (RuntimeError, AttributeError):
        pass
    for name, value in floats.items():
        if not bool(torch.isfinite(value).all()):
            return name
    return None


def stable_metadata(metadata: Optional[dict[str, str]]) -> Optional[dict[str, str]]:
    """safetensors metadata whose bytes do not vary: several keys are folded into one JSON string.

    (safetensors writes several metadata keys in a random order, so two saves of the same
    weights would differ byte for byte.)
    """
    if not metadata or len(metadata) == 1:
        return metadata
    return {"stagedsl": json.dumps(metadata, sort_keys=True)}


def save_weights(model: nn.Module | dict, path: Path, metadata: Optional[dict[str, str]] = None) -> Path:
    """Write the model's weights (or a CPU state_dict) to a ``.safetensors`` file, atomically and durably."""
    from safetensors.torch import save_file

    tensors = model if isinstance(model, dict) else cpu_state_dict(model)
    atomic_write(Path(path), lambda tmp: save_file(tensors, tmp, metadata=stable_metadata(metadata)))
    return Path(path)


def looks_pickled(path: Path) -> bool:
    """Whether a file starts like a pickle or a torch zip archive (not like safetensors)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4)
    except OSError:
        return False
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """A state_dict from ``.safetensors`` or a torch file (raw, or under a usual key); never runs code."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        if not path.exists():
            raise CheckpointError(f"checkpoint `{path}` does not exist", code="E410")
        try:
            return load_file(str(path))
        except Exception as exc:
            if looks_pickled(path):
                raise CheckpointError([Problem(
                    code="E413", message=f"checkpoint `{path}` is a pickle (torch.save) file named .safetensors; "
                    "it was refused unread, since unpickling can run code", file=str(path),
                    hint="write weights with safetensors.torch.save_file, or name a torch file .pt and keep it "
                         "a plain state_dict")]) from None
            raise CheckpointError([Problem(
                code="E412", message=f"cannot read checkpoint `{path}`: {type(exc).__name__}: {exc}",
                hint="the file is truncated or not safetensors; write it again")]) from None
    data = torch_load_safe(path)
    if isinstance(data, dict):
        for key in STATE_DICT_KEYS:
            if isinstance(data.get(key), dict):
                data = data[key]
                break
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointError(
            f"checkpoint `{path}` holds no state_dict (expected tensors by name, or under one of {', '.join(STATE_DICT_KEYS)})",
            code="E412",
        )
    return data
