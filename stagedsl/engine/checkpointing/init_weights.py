"""A stage's `init`: which file it names (an earlier stage's best/last, or the newest glob match), loaded.

Files are read by `weights.read_weights`: safetensors, or a torch file with
``weights_only=True`` (a pickle payload is refused, E413) — a plain state dict, or one
under a usual key (a Lightning ``.ckpt``'s ``state_dict``). A file from elsewhere names
its tensors its own way: ``strip_prefix``, ``rename`` and ``add_prefix`` map them to the
model's names (`map_keys`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

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
                         hint="run the earlier stage first, or start with --from-stage at it" + (
                             "; a stage whose every evaluation was non-finite (on_nonfinite = \"skip\") has no best: "
                             "init from its \"last\", or fix its validation data" if init.which == "best" else ""))]
            )
        return path
    if init.source == "path":
        found = newest_match(init.path or "")
        if found is None:
            raise CheckpointError(f"init path `{init.path}` matches no file", code="E410")
        return found
    raise CheckpointError(f"unknown init source `{init.source}`", code="E412")


def map_keys(tensors: dict[str, torch.Tensor], init: InitPlan, path: Path) -> dict[str, torch.Tensor]:
    """The file's tensors under the model's names: `strip_prefix`, then `rename`, then `add_prefix`.

    A prefix or a rename that matches no key of the file is an error (E471): it is a typo, not
    a choice; two keys mapped to one name are E472.
    """
    names = {key: key for key in tensors}
    if init.strip_prefix:
        if not any(key.startswith(init.strip_prefix) for key in names):
            raise CheckpointError([Problem(code="E471", message=f"no key of `{path}` starts with `{init.strip_prefix}` (strip_prefix)",
                                           hint=f"its keys start like: {_few(sorted(names))}")])
        names = {old: new[len(init.strip_prefix):] if new.startswith(init.strip_prefix) else new for old, new in names.items()}
    for source, target in init.rename.items():
        hits = [old for old, new in names.items() if new == source or new.startswith(source + ".")]
        if not hits:
            raise CheckpointError([Problem(code="E471", message=f"rename `{source}`: no key of `{path}` is `{source}` or under `{source}.`",
                                           hint=f"its keys (after strip_prefix) start like: {_few(sorted(names.values()))}")])
        for old in hits:
            names[old] = target + names[old][len(source):]
    if init.add_prefix:
        names = {old: init.add_prefix + new for old, new in names.items()}
    mapped: dict[str, torch.Tensor] = {}
    for old, new in names.items():
        if new in mapped:
            first = next(o for o, n in names.items() if n == new)
            raise CheckpointError([Problem(code="E472", message=f"keys `{first}` and `{old}` of `{path}` both become `{new}`",
                                           hint="narrow the rename or the prefixes so each key keeps its own name")])
        mapped[new] = tensors[old]
    return mapped


def load_init(model: nn.Module, init: InitPlan, run_dir: RunDir) -> dict[str, Any]:
    """Load a stage's init into `model`; return ``{"path", "missing", "unexpected"}`` (every key, sorted).

    The file's keys are mapped first (`map_keys`). With ``strict`` any missing or unexpected
    key is a `CheckpointError` (E411, with the prefix that would fix it when one does);
    without it they are reported and the matching keys load. A tensor whose shape differs
    from the model's always fails (E473), naming it and both shapes.
    """
    path = resolve_init_path(init, run_dir)
    own = model.state_dict()
    expected = set(own)
    tensors = _strip_prefix(map_keys(read_weights(path), init, path), expected)
    missing = sorted(expected - set(tensors))
    unexpected = sorted(set(tensors) - expected)
    shapes = [(name, tuple(tensors[name].shape), tuple(own[name].shape)) for name in own
              if name in tensors and tuple(tensors[name].shape) != tuple(own[name].shape)]
    if shapes:
        listed = "; ".join(f"`{name}` is {list(file)} in the file but {list(model_shape)} in the model" for name, file, model_shape in shapes[:5])
        more = f" (and {len(shapes) - 5} more)" if len(shapes) > 5 else ""
        raise CheckpointError([Problem(code="E473", message=f"checkpoint `{path}` does not fit the model: {listed}{more}",
                                       hint="a shape mismatch is never loaded; give the layer another name in the model (or rename it "
                                            "in the init) so the file's tensor is left out, with strict = false")])
    if init.strict and (missing or unexpected):
        raise CheckpointError(
            [Problem(code="E411",
                     message=f"checkpoint `{path}` does not fit the model: {len(missing)} missing key(s) "
                     f"{_few(missing)}, {len(unexpected)} unexpected key(s) {_few(unexpected)}",
                     hint=_fix(missing, unexpected) or "set strict = false on the init to load the keys that match")]
        )
    model.load_state_dict(tensors, strict=False)
    return {"path": str(path), "missing": missing, "unexpected": unexpected}


def _fix(missing: list[str], unexpected: list[str]) -> Optional[str]:
    """The init key that would make the file's names the model's, when a prefix is what differs."""
    for keys, others, hint in ((unexpected, set(missing), 'the file\'s keys carry a prefix: strip_prefix = "{}"'),
                               (missing, set(unexpected), 'the model\'s keys carry a prefix the file lacks: add_prefix = "{}"')):
        for key in keys:
            for cut, char in enumerate(key):
                if char == "." and key[cut + 1:] in others:
                    return hint.format(key[:cut + 1])
    return None


def _few(names: list[str]) -> str:
    if not names:
        return "[]"
    return "[" + ", ".join(names[:3]) + (", ..." if len(names) > 3 else "") + "]"
