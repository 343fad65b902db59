"""Stage hashes: one content hash per stage plan, covering everything that decides its weights.

A stage's outcome (its best and last weights, metrics and gate decision) is a function of
the run's model, data and seed, the stage's own resolved plan, and the weights it starts
from. So its hash covers:

- the run's *root*: the model piece, the data piece and how it is batched (sizes, order,
  workers), the seed, precision, device, compilation, memory format, CPU threads, and the
  plan's callbacks (a callback may change training);
- the stage's own plan, without what only logs (``log_every``, ``checkpoint`` cadence,
  the derived ``modules`` counts); its index is in it (each stage is seeded from the run
  seed and its index);
- where its weights come from, recursively: a stage without ``init`` continues from the
  previous stage's last weights, so it covers the previous stage's hash; ``init = { stage
  = ... }`` covers that stage's hash and ``which``; ``init = { path = ... }`` the path and
  the digest of the file the compiler found there; either covers how the file's keys are
  mapped (``strip_prefix``, ``rename``, ``add_prefix``). A non-strict init keeps the current
  weights where the file has none, so it covers the previous stage's hash as well.

The run's name and folder are not in it: two trials of a search whose first stages
resolve alike get the same hashes there. Pure: reads nothing but the `Plan`.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Optional

import attrs

from stagedsl.plan.model import Plan, StagePlan

HASH_LENGTH = 16
_NOT_DECIDING = ("log_every", "checkpoint", "modules")
"""Stage-plan fields that only log or checkpoint: they change no weight."""


def digest(data: Any) -> str:
    """The content hash of plain data: sha256 of its canonical JSON (sorted keys), `HASH_LENGTH` hex digits."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:HASH_LENGTH]


def root_of(plan: Plan) -> dict[str, Any]:
    """What every stage's outcome depends on, whatever the stage."""
    data = plan.data
    run = plan.run
    return {
        "model": attrs.asdict(plan.model),
        "data": {"name": data.name, "args": data.args, "batch_size": data.batch_size, "eval_batch_size": data.eval_batch_size,
                 "workers": data.workers, "shuffle": data.shuffle, "drop_last": data.drop_last},
        "run": {"seed": run.seed, "device": run.device, "precision": run.precision, "compile": run.compile,
                "channels_last": run.channels_last, "threads": run.threads},
        "callbacks": [attrs.asdict(c) for c in plan.callbacks],
    }


def _own(stage: StagePlan) -> dict[str, Any]:
    data = attrs.asdict(stage)
    for key in _NOT_DECIDING:
        data.pop(key, None)
    return data


def _source(stage: StagePlan, hashes: dict[str, str], previous: str | None) -> dict[str, Any]:
    """Where the stage's starting weights come from, as hashes."""
    init = stage.init
    if init is None:
        return {"continues": previous}
    if init.source == "stage":
        source: dict[str, Any] = {"stage": hashes.get(init.stage or ""), "which": init.which}
    else:
        source = {"path": init.path, "digest": init.digest}
    if init.strip_prefix or init.rename or init.add_prefix:  # the file's keys mapped to the model's decide what loads where
        source["keys"] = {"strip_prefix": init.strip_prefix, "rename": init.rename, "add_prefix": init.add_prefix}
    if not init.strict:
        source["continues"] = previous
    return {"init": source}


def stage_hashes(plan: Plan) -> dict[str, str]:
    """Each stage's content hash, by stage name, in plan order (see the module docstring)."""
    root = digest(root_of(plan))
    hashes: dict[str, str] = {}
    previous = None
    for stage in plan.stages:
        hashes[stage.name] = digest({"root": root, "stage": _own(stage), "from": _source(stage, hashes, previous)})
        previous = hashes[stage.name]
    return hashes


def newest_match(pattern: str) -> Optional[Path]:
    """The file an ``init = { path }`` names: the newest match of the glob (by mtime, then name), or None."""
    matches = [Path(p) for p in glob.glob(os.path.expanduser(pattern), recursive=True) if os.path.isfile(p)]
    return max(matches, key=lambda p: (p.stat().st_mtime, str(p))) if matches else None


def file_digest(path: str | Path) -> str:
    """The sha256 of a file's bytes (what an ``init = { path }`` stage's hash covers)."""
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()[:HASH_LENGTH]


__all__ = ["HASH_LENGTH", "digest", "file_digest", "newest_match", "root_of", "stage_hashes"]
