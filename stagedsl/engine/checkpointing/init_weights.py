"""A stage's `init`: which file it names (an earlier stage's best/last, or the newest glob match), loaded.

Files are read by `weights.read_weights`: safetensors, or a torch file with
``weights_only=True`` (a pickle payload is refused, E413).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from stagedsl.engine.checkpointing.weights import read_weights
from stagedsl.errors import CheckpointError, Problem
from stagedsl.plan.hashing import newest_match
from stagedsl.plan.model import InitPlan
from stagedsl.run_dir import RunDir


def _strip_prefix(tensors: dict[str, torch.Tensor], expected: set[str]) -> dict[str, torch.Tensor]:
    """Drop a wrapper prefix (``module.``, ``_orig_mod.``) that every key carries and the model lacks."""
    for prefix in ("module.", "_orig_mod."):
        if tensors and not (set(tensors) & expected) and all(k.startswith(prefix) for k in tensors):
            return {k[len(prefix):]: v for k, v in tensors.items()}
    return tensors


def resolve_init_path(init: InitPlan, run_dir: RunDir) -> Path:
    """The file a stage's `init` names: an earlier stage's best/last, or the newest glob match."""
    if init.source == "stage":
        path = run_dir.weights(init.stage, init.which)
        if not path.exists():
            raise CheckpointError(
                [Problem(code="E410", message=f"init checkpoint `{path}` (stage `{init.stage}`, {init.which}) does not exist",
                         hint="run the earlier stage first, or start with --from-stage at it")]
            )
        return path
    if init.source == "path":
        found = newest_match(init.path or "")
        if found is None:
            raise CheckpointError(f"init path `{init.path}` matches no file", code="E410")
        return found
    raise CheckpointError(f"unknown init source `{init.source}`", code="E412")


def load_init(model: nn.Module, init: InitPlan, run_dir: RunDir) -> dict[str, Any]:
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
