"""Every checkpoint the engine reads or writes, in one place.

Weights: ``stages/<stage>/best.safetensors`` and ``last.safetensors`` hold the model's
state_dict under its own names, written atomically (temp file + ``os.replace``).
Trainer state (the resume seam): ``stages/<stage>/state/step_<n>/`` holds
``model.safetensors``, ``trainer.pt`` (optimizer, scheduler, scaler, RNG and data-order
generator states) and ``run_state.json`` (`RunState.to_dict()`); `save_state` writes
one, `load_state` reads one back. A stage's `init` is resolved and loaded here too.
"""

from __future__ import annotations

import glob
import json
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from stagedsl.engine.state import RunState
from stagedsl.errors import CheckpointError, Problem
from stagedsl.plan.model import InitPlan

BEST = "best"
LAST = "last"
WEIGHTS_SUFFIX = ".safetensors"
STATE_DIR = "state"
TORCH_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")
STATE_DICT_KEYS = ("state_dict", "model", "model_state", "model_state_dict")


def stage_dir(run_dir: Path, stage: str) -> Path:
    """The folder of one stage's checkpoints."""
    return Path(run_dir) / "stages" / stage


def weights_path(run_dir: Path, stage: str, which: str) -> Path:
    """``stages/<stage>/<which>.safetensors``."""
    return stage_dir(run_dir, stage) / f"{which}{WEIGHTS_SUFFIX}"


# -- writing -------------------------------------------------------------------------
def _atomic(path: Path, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def cpu_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state_dict as contiguous CPU tensors that share no storage (tied weights copied)."""
    seen: set[int] = set()
    tensors: dict[str, torch.Tensor] = {}
    for name, value in model.state_dict().items():
        value = value.detach()
        if value.device.type != "cpu":
            value = value.to("cpu")  # a fresh copy per tensor
        elif value.numel():
            pointer = value.untyped_storage().data_ptr()
            if pointer in seen or not value.is_contiguous():
                value = value.contiguous().clone()
            seen.add(pointer)
        tensors[name] = value
    return tensors


def save_weights(model: nn.Module, path: Path, metadata: Optional[dict[str, str]] = None) -> Path:
    """Write the model's weights to a ``.safetensors`` file, atomically."""
    from safetensors.torch import save_file

    tensors = cpu_state_dict(model)
    _atomic(Path(path), lambda tmp: save_file(tensors, tmp, metadata=metadata))
    return Path(path)


# -- reading -------------------------------------------------------------------------
def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """A state_dict from ``.safetensors`` or a torch file (raw, or under a usual key)."""
    path = Path(path)
    try:
        if path.suffix == WEIGHTS_SUFFIX:
            from safetensors.torch import load_file

            return load_file(str(path))
        data = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint `{path}` does not exist", code="E410") from None
    except Exception as exc:
        raise CheckpointError(
            [Problem(code="E412", message=f"cannot read checkpoint `{path}`: {type(exc).__name__}: {exc}",
                     hint="torch files are loaded with weights_only=True; save a plain state_dict")]
        ) from None
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


def _strip_prefix(tensors: dict[str, torch.Tensor], expected: set[str]) -> dict[str, torch.Tensor]:
    """Drop a wrapper prefix (``module.``, ``_orig_mod.``) that every key carries and the model lacks."""
    for prefix in ("module.", "_orig_mod."):
        if tensors and not (set(tensors) & expected) and all(k.startswith(prefix) for k in tensors):
            return {k[len(prefix):]: v for k, v in tensors.items()}
    return tensors


def resolve_init_path(init: InitPlan, run_dir: Path) -> Path:
    """The file a stage's `init` names: an earlier stage's best/last, or the newest glob match."""
    if init.source == "stage":
        path = weights_path(run_dir, init.stage, init.which)
        if not path.exists():
            raise CheckpointError(
                [Problem(code="E410", message=f"init checkpoint `{path}` (stage `{init.stage}`, {init.which}) does not exist",
                         hint="run the earlier stage first, or start with --from-stage at it")]
            )
        return path
    if init.source == "path":
        pattern = os.path.expanduser(init.path or "")
        matches = [Path(p) for p in glob.glob(pattern, recursive=True) if os.path.isfile(p)]
        if not matches:
            raise CheckpointError(f"init path `{init.path}` matches no file", code="E410")
        return max(matches, key=lambda p: (p.stat().st_mtime, str(p)))
    raise CheckpointError(f"unknown init source `{init.source}`", code="E412")


def load_init(model: nn.Module, init: InitPlan, run_dir: Path) -> dict[str, Any]:
    """Load a stage's init into `model`; return ``{"path", "missing", "unexpected"}``.

    With ``strict`` any missing or unexpected key is a `CheckpointError`; without it
    they are reported and the matching keys load. A shape mismatch always fails.
    """
    path = resolve_init_path(init, run_dir)
    tensors = _strip_prefix(read_weights(path), set(model.state_dict()))
    expected = set(model.state_dict())
    missing = sorted(expected - set(tensors))
    unexpected = sorted(set(tensors) - expected)
    if init.strict and (missing or unexpected):
        raise CheckpointError(
            [Problem(code="E411",
                     message=f"checkpoint `{path}` does not fit the model: {len(missing)} missing key(s) "
                     f"{_few(missing)}, {len(unexpected)} unexpected key(s) {_few(unexpected)}",
                     hint="set strict = false on the init to load the keys that match")]
        )
    try:
        model.load_state_dict(tensors, strict=False)
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint `{path}` does not fit the model: {exc}", code="E411") from None
    return {"path": str(path), "missing": missing, "unexpected": unexpected}


def _few(names: list[str]) -> str:
    if not names:
        return "[]"
    return "[" + ", ".join(names[:3]) + (", ..." if len(names) > 3 else "") + "]"


# -- trainer state (the resume seam) -------------------------------------------------
def rng_state(generator: Optional[torch.Generator]) -> dict[str, Any]:
    """Every RNG state a resume needs."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if generator is not None:
        state["data"] = generator.get_state()
    return state


def save_state(
    directory: Path,
    *,
    state: RunState,
    model: nn.Module,
    optimizer: Optional[torch.optim.Optimizer],
    scheduler: Any = None,
    scaler: Optional[torch.amp.GradScaler] = None,
    generator: Optional[torch.Generator] = None,
) -> Path:
    """Write a full trainer checkpoint into `directory` (replaced atomically as a whole)."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        save_weights(model, tmp / f"model{WEIGHTS_SUFFIX}")
        trainer = {
            "optimizer": optimizer.state_dict() if optimizer is not None else None,
            "scheduler": scheduler.state_dict() if scheduler is not None and hasattr(scheduler, "state_dict") else None,
            "scaler": scaler.state_dict() if scaler is not None else None,
            "rng": rng_state(generator),
        }
        torch.save(trainer, tmp / "trainer.pt")
        (tmp / "run_state.json").write_text(json.dumps(state.to_dict(), indent=2, default=_json_default))
        if directory.exists():
            shutil.rmtree(directory)
        os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def load_state(directory: Path) -> dict[str, Any]:
    """Read a trainer checkpoint: ``{"state": RunState, "model": state_dict, "trainer": dict}``."""
    directory = Path(directory)
    if not (directory / "run_state.json").exists():
        raise CheckpointError(f"`{directory}` is not a trainer checkpoint (no run_state.json)", code="E410")
    state = RunState.from_dict(json.loads((directory / "run_state.json").read_text()))
    model = read_weights(directory / f"model{WEIGHTS_SUFFIX}")
    trainer = torch.load(directory / "trainer.pt", map_location="cpu", weights_only=False)
    return {"state": state, "model": model, "trainer": trainer}


def rotate_states(parent: Path, keep_last: int) -> None:
    """Keep the newest `keep_last` trainer checkpoints under `parent`."""
    if keep_last <= 0 or not parent.exists():
        return
    steps = sorted((p for p in parent.iterdir() if p.is_dir() and p.name.startswith("step_")), key=lambda p: p.name)
    for old in steps[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)


def state_path(run_dir: Path, stage: str, stage_step: int) -> Path:
    """``stages/<stage>/state/step_<stage_step>``."""
    return stage_dir(run_dir, stage) / STATE_DIR / f"step_{stage_step:09d}"


def _json_default(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return str(value)
