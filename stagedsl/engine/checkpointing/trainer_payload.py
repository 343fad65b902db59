"""A stage attempt's trainer state: captured for a checkpoint, written and read as ``trainer.safetensors``.

``trainer.safetensors`` holds it with no pickle at all: every tensor is a safetensors
entry and the rest (numbers, strings, lists, dicts, tuples) is JSON in the file's
metadata, with each tensor written as ``{"__tensor__": name}`` (`pack` / `unpack`).
Loading it runs no code, and it is written in a few milliseconds even when the
optimizer holds thousands of small tensors (``torch.save`` pickles each one). Content::

    format              1
    optimizer           optimizer.state_dict()
    optimizer_params    parameter names of each group, in order (to map state by name)
    scheduler           scheduler.state_dict() (None without one)
    scaler              GradScaler.state_dict() (None outside fp16)
    rng                 python, numpy (as plain lists), torch, cuda
    data                generator: the order generator's state now;
                        epoch_start: its state when the current epoch began
    loss_window         the micro-batch losses since the last log (float32), for the next log's mean
    loss_window_folded  how many more losses the window's first entry stands for
    auto                resolved "auto" loss arguments {"<loss>/<arg>": value}

The data position itself (epoch, micro-batches drawn in it) is in `RunState`.
"""

from __future__ import annotations

import random
from typing import Any, Optional

import numpy as np
import torch

from stagedsl.engine.checkpointing.safe_io import pickle_refusal, pickled_globals
from stagedsl.engine.checkpointing.weights import looks_pickled
from stagedsl.errors import CheckpointError

STATE_FORMAT = 1
"""Version of the trainer checkpoint format."""
PAYLOAD_KEY = "stagedsl.trainer"
_SCALARS = frozenset({int, float, str, bool, type(None)})
_DTYPES = {torch.float32: "float32", torch.float64: "float64", torch.int64: "int64", torch.uint8: "uint8"}

# -- RNG ---------------------------------------------------------------------------------
def rng_state() -> dict[str, Any]:
    """Every process-wide RNG state, in plain values and tensors."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "python": {"version": py_version, "state": torch.tensor(py_internal, dtype=torch.int64), "gauss": py_gauss},
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Put back what `rng_state` captured (CUDA only when the device count matches)."""
    python = state.get("python")
    if python:
        internal = python["state"].tolist() if isinstance(python["state"], torch.Tensor) else python["state"]
        random.setstate((python["version"], tuple(int(v) for v in internal), python["gauss"]))
    numpy = state.get("numpy")
    if numpy:
        keys = np.asarray(numpy["keys"].numpy() if isinstance(numpy["keys"], torch.Tensor) else numpy["keys"], dtype=np.uint32)
        np.random.set_state((numpy["kind"], keys, numpy["pos"], numpy["has_gauss"], numpy["gauss"]))
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


# -- capture -----------------------------------------------------------------------------
def optimizer_param_names(optimizer: torch.optim.Optimizer, model: torch.nn.Module) -> list[list[str]]:
    """The parameter names of each optimizer group, in the group's order."""
    names = {id(p): n for n, p in model.named_parameters()}
    return [[names.get(id(p), "") for p in group["params"]] for group in optimizer.param_groups]


def _plain(value: Any) -> bool:
    """Whether `value` survives ``torch.load(weights_only=True)``."""
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def capture(*, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, scaler: Any,
            generator: torch.Generator, epoch_start: Optional[torch.Tensor], window: list[torch.Tensor],
            window_folded: int, auto_values: dict[tuple[str, str], Any]) -> dict[str, Any]:
    """The ``trainer.safetensors`` payload of the running attempt (see the module docstring)."""
    return {
        "format": STATE_FORMAT,
        "optimizer": optimizer.state_dict(),
        "optimizer_params": optimizer_param_names(optimizer, model),
        "scheduler": scheduler.state_dict() if scheduler is not None and hasattr(scheduler, "state_dict") else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "rng": rng_state(),
        "data": {"generator": generator.get_state(), "epoch_start": epoch_start},
        "loss_window": torch.stack([loss.detach().float() for loss in window]).cpu() if window else None,
        "loss_window_folded": int(window_folded),
        "auto": {f"{term}/{arg}": value for (term, arg), value in auto_values.items() if _plain(value)},
    }


# -- the file ----------------------------------------------------------------------------
def pack(value: Any) -> tuple[Any, dict[str, torch.Tensor]]:
    """`value` as JSON-ready data with its tensors taken out: (skeleton, {dtype: one flat tensor}).

    Tensors of one dtype are laid end to end in one flat tensor (an optimizer holds
    thousands of small ones; one entry each would cost more than the bytes); the
    skeleton keeps ``{"__tensor__": [dtype, offset, shape]}`` in their place.
    """
    pieces: dict[str, list[torch.Tensor]] = {}
    sizes: dict[str, int] = {}

    def walk(item: Any) -> Any:
        kind = type(item)
        if kind in _SCALARS:
            return item
        if isinstance(item, torch.Tensor):
            tensor = item
            if tensor.device.type != "cpu":
                tensor = tensor.cpu()
            key = _DTYPES.get(tensor.dtype) or str(tensor.dtype).replace("torch.", "")
            offset = sizes.get(key, 0)
            pieces.setdefault(key, []).append(tensor.reshape(-1))
            sizes[key] = offset + tensor.numel()
            return {"__tensor__": [key, offset, list(tensor.shape)]}
        if kind is dict:
            if all(type(k) is str and not k.startswith("__") for k in item):
                return {k: walk(v) for k, v in item.items()}
            return {"__dict__": [[walk(k), walk(v)] for k, v in item.items()]}
        if kind is list or kind is tuple:
            values = list(item) if all(type(v) in _SCALARS for v in item) else [walk(v) for v in item]
            return values if kind is list else {"__tuple__": values}
        if isinstance(item, (np.integer, np.floating, np.bool_)):
            return item.item()
        if isinstance(item, (dict, list, tuple)):  # subclasses (OrderedDict, named tuples): as the plain kind
            return walk(dict(item) if isinstance(item, dict) else (list(item) if isinstance(item, list) else tuple(item)))
        raise TypeError(f"the trainer state cannot hold a {type(item).__name__}")

    with torch.no_grad():
        skeleton = walk(value)
        flat = {key: torch.cat(group) if len(group) > 1 else group[0].clone() for key, group in pieces.items()}
    return skeleton, flat


def unpack(skeleton: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """The inverse of `pack` (each tensor a copy of its own)."""
    def walk(item: Any) -> Any:
        if isinstance(item, list):
            return [walk(v) for v in item]
        if isinstance(item, dict):
            if len(item) == 1:
                (key, inner), = item.items()
                if key == "__tensor__":
                    dtype, offset, shape = inner
                    numel = int(np.prod(shape)) if shape else 1
                    return tensors[dtype][offset:offset + numel].reshape(shape).clone()
                if key == "__tuple__":
                    return tuple(walk(v) for v in inner)
                if key == "__dict__":
                    return {walk(k): walk(v) for k, v in inner}
            return {k: walk(v) for k, v in item.items()}
        return item

    return walk(skeleton)


def write(path: str, payload: dict[str, Any]) -> None:
    """Write a trainer payload to a ``.safetensors`` file (JSON skeleton in its metadata)."""
    write_packed(path, *pack(payload))


def write_packed(path: str, skeleton: Any, tensors: dict[str, torch.Tensor]) -> None:
    """Write `pack`'s output to a ``.safetensors`` file."""
    import json

    from safetensors.torch import save_file

    save_file(tensors, path, metadata={PAYLOAD_KEY: json.dumps(skeleton, separators=(",", ":"))})


def read(path: str) -> dict[str, Any]:
    """Read what `write` wrote (each tensor copied out of the file's memory map by `unpack`)."""
    import json

    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
        skeleton = json.loads(metadata[PAYLOAD_KEY])
    except FileNotFoundError:
        raise CheckpointError(f"trainer state `{path}` does not exist", code="E410") from None
    except Exception as exc:
        if looks_pickled(path):
            raise pickle_refusal(path, pickled_globals(path) or ["a pickle stream"], "trainer state") from None
        raise CheckpointError(f"trainer state `{path}` is unreadable: {type(exc).__name__}: {exc}", code="E414") from None
    payload = unpack(skeleton, tensors)
    if not isinstance(payload, dict):
        raise CheckpointError(f"`{path}` holds no trainer state", code="E414")
    return payload


def auto_values(trainer: dict[str, Any]) -> dict[tuple[str, str], Any]:
    """The saved "auto" loss arguments, keyed (loss, argument)."""
    values = {}
    for key, value in (trainer.get("auto") or {}).items():
        term, _, arg = key.rpartition("/")
        values[(term, arg)] = value
    return values


def loss_window(trainer: dict[str, Any], device: torch.device) -> tuple[list[torch.Tensor], int]:
    """The saved loss window as the step loop keeps it, on `device`."""
    window = trainer.get("loss_window")
    if window is None:
        return [], 0
    return list(window.to(device).unbind()), int(trainer.get("loss_window_folded") or 0)
