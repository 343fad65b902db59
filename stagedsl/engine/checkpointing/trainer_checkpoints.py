"""Trainer checkpoints (the resume seam): ``stages/<stage>/state/step_<n>[_retry<a>]/`` holds

- ``model.safetensors``  the weights;
- ``trainer.safetensors`` optimizer, scheduler, GradScaler, RNG states, data position, loss
                         window, "auto" loss values: tensors as safetensors entries, the rest
                         as JSON in its metadata (`trainer_payload.pack`): no pickle at all;
- ``run_state.json``     `RunState.to_dict()`: stage, step, epoch, best, early stopping,
                         gate decisions, auto loss statistics, plan hash, ...;
- ``best.safetensors``   a hard link to the stage's best weights as they were (when any);
- ``manifest.json``      written last: where the checkpoint is, and each file's size and
                         SHA-256.

`prepare_state` captures a checkpoint (copies of everything, the best weights linked) and
`finish_state` writes it: files fsynced and checksummed, the folder built under a temp
name and renamed into place, so a crash leaves the previous checkpoints intact. The
engine runs `finish_state` on a background thread (`background_writer.CheckpointWriter`);
`save_state` does both at once. `verify_state` checks a folder against its manifest;
`newest_first` orders a run's checkpoints.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import attrs
import torch
from torch import nn

from stagedsl.engine.checkpointing import trainer_payload
from stagedsl.engine.checkpointing.safe_io import fsync_path, pickle_refusal, pickled_globals, sha256_file, write_durable
from stagedsl.engine.checkpointing.weights import cpu_state_dict, looks_pickled, read_weights, stable_metadata
from stagedsl.engine.run_state import RunState
from stagedsl.errors import CheckpointError, Problem
from stagedsl.run_dir import RunDir

STATE_FORMAT = trainer_payload.STATE_FORMAT
MODEL_FILE = "model.safetensors"
TRAINER_FILE = "trainer.safetensors"
RUN_STATE_FILE = "run_state.json"
BEST_FILE = "best.safetensors"
MANIFEST_FILE = "manifest.json"
REQUIRED_FILES = (MODEL_FILE, TRAINER_FILE, RUN_STATE_FILE)
"""What every checkpoint's manifest lists, with their checksums."""


def _state_order(path: Path) -> Optional[tuple[int, int]]:
    """(attempt, step) of a checkpoint folder's name, or None if it is not one."""
    name = path.name
    if not name.startswith("step_"):
        return None
    step, _, retry = name[5:].partition("_retry")
    try:
        return (int(retry) if retry else 0, int(step))
    except ValueError:
        return None


_HASHES: dict[tuple[int, int, int, int], str] = {}


def _file_record(path: Path, *, cached: bool = False) -> dict[str, Any]:
    info = path.stat()
    key = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
    digest = _HASHES.get(key) if cached else None
    if digest is None:
        digest = sha256_file(path)
        if cached:
            _HASHES.clear() if len(_HASHES) > 64 else None
            _HASHES[key] = digest
    return {"bytes": info.st_size, "sha256": digest}


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


@attrs.define(eq=False)
class PendingState:
    """A trainer checkpoint captured in memory (and its temp folder made), not yet written."""

    directory: Path
    tmp: Path
    tensors: dict
    trainer: tuple  # trainer_payload.pack output: (skeleton, flat tensors)
    run_state: str  # run_state.json's text
    record: dict  # the manifest, without its file list
    best: bool  # best.safetensors is linked into tmp


def prepare_state(
    directory: Path,
    *,
    state: RunState,
    model: nn.Module | dict,
    trainer: Optional[dict[str, Any]] = None,
    optimizer: Optional[torch.optim.Optimizer] = None,
    scheduler: Any = None,
    scaler: Optional[torch.amp.GradScaler] = None,
    generator: Optional[torch.Generator] = None,
    best: Optional[Path] = None,
    manifest: Optional[dict[str, Any]] = None,
) -> PendingState:
    """Capture a trainer checkpoint for `directory`: everything copied out of the live objects.

    `model` (a module, or a CPU state_dict the caller no longer changes); `trainer` is the
    ``trainer.safetensors`` payload (`trainer_payload.capture`), or one is made of
    `optimizer`, `scheduler`, `scaler` and the RNG states; `best` (the stage's best
    weights as they are now) is hard-linked into the temp folder at once; `manifest` adds
    entries to ``manifest.json``. `finish_state` writes it (possibly in another thread).
    """
    if trainer is None:
        trainer = {
            "format": STATE_FORMAT,
            "optimizer": optimizer.state_dict() if optimizer is not None else None,
            "scheduler": scheduler.state_dict() if scheduler is not None and hasattr(scheduler, "state_dict") else None,
            "scaler": scaler.state_dict() if scaler is not None else None,
            "rng": trainer_payload.rng_state(),
            "data": {"generator": generator.get_state()} if generator is not None else {},
        }
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=".tmp", dir=directory.parent))
    try:
        tensors = model if isinstance(model, dict) else cpu_state_dict(model, copy=True)
        linked = best is not None and Path(best).exists()
        if linked:
            _link_or_copy(Path(best), tmp / BEST_FILE)
        record = {
            "format": STATE_FORMAT, "kind": "stagedsl trainer state", "run": state.run_name, "plan_hash": state.plan_hash,
            "stage": state.stage_name, "stage_index": state.stage_index, "attempt": state.attempt,
            "stage_step": state.stage_step, "global_step": state.global_step, "epoch": state.epoch,
            "phase": "end" if state.attempt_end else "train", "seq": state.checkpoint_seq,
            "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **(manifest or {}),
        }
        run_state = json.dumps(state.to_dict(), indent=1, default=_json_default)
        return PendingState(directory, tmp, tensors, trainer_payload.pack(trainer), run_state, record, linked)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def finish_state(pending: PendingState) -> Path:
    """Write a captured checkpoint: files fsynced and checksummed, manifest last, folder renamed into place."""
    from safetensors.torch import save_file

    directory, tmp = pending.directory, pending.tmp
    try:
        metadata = stable_metadata({"stage": str(pending.record["stage"]), "step": str(pending.record["stage_step"])})
        write_durable(tmp / MODEL_FILE, lambda p: save_file(pending.tensors, p, metadata=metadata))
        write_durable(tmp / TRAINER_FILE, lambda p: trainer_payload.write_packed(p, *pending.trainer))
        write_durable(tmp / RUN_STATE_FILE, lambda p: Path(p).write_text(pending.run_state))
        files = {name: _file_record(tmp / name) for name in (MODEL_FILE, TRAINER_FILE, RUN_STATE_FILE)}
        if pending.best:
            files[BEST_FILE] = _file_record(tmp / BEST_FILE, cached=True)
        record = {**pending.record, "files": files}
        write_durable(tmp / MANIFEST_FILE, lambda p: Path(p).write_text(json.dumps(record, indent=1)))
        fsync_path(tmp)
        if directory.exists():  # the same step saved again: move the old one aside first
            old = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=".old", dir=directory.parent))
            os.replace(directory, old / directory.name)
            os.replace(tmp, directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, directory)
        fsync_path(directory.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def save_state(directory: Path, **kwargs: Any) -> Path:
    """Write a full trainer checkpoint into `directory` now (`prepare_state` then `finish_state`)."""
    return finish_state(prepare_state(directory, **kwargs))


def read_manifest(directory: Path) -> dict[str, Any]:
    """A checkpoint's ``manifest.json`` (E414 when missing or unreadable)."""
    path = Path(directory) / MANIFEST_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"`{directory}` is not a complete trainer checkpoint (no {MANIFEST_FILE})", code="E414") from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"the manifest of `{directory}` is unreadable: {exc}", code="E414") from None
    if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
        raise CheckpointError(f"the manifest of `{directory}` lists no files", code="E414")
    return data


def verify_state(directory: Path) -> Optional[str]:
    """Why the checkpoint in `directory` cannot be trusted (a missing, truncated or changed file), or None."""
    try:
        manifest = read_manifest(directory)
    except CheckpointError as exc:
        return exc.problems[0].message
    files = manifest["files"]
    lacking = [name for name in REQUIRED_FILES if name not in files]
    if lacking:
        return f"its manifest does not list {', '.join(f'`{n}`' for n in lacking)} (edited?), so nothing in it can be checked"
    for name, expected in files.items():
        if not isinstance(name, str) or "/" in name or name.startswith(".") or not isinstance(expected, dict):
            return f"its manifest lists {name!r}, which is not a file of a checkpoint (edited?)"
        path = Path(directory) / name
        if not path.is_file():
            return f"`{name}` is missing"
        size = path.stat().st_size
        if size != expected.get("bytes"):
            return f"`{name}` has {size} bytes, the manifest says {expected.get('bytes')} (truncated?)"
        if sha256_file(path) != expected.get("sha256"):
            return f"`{name}` does not match its SHA-256 checksum (corrupt or changed)"
    return None


def load_state(directory: Path, *, verify: bool = True) -> dict[str, Any]:
    """Read a trainer checkpoint: ``{"state", "model", "trainer", "manifest", "path"}``.

    With `verify` every file is checked against the manifest first (E414). Nothing is
    unpickled: a pickle put in the place of either file is refused (E413).
    """
    directory = Path(directory)
    if not (directory / RUN_STATE_FILE).exists():
        raise CheckpointError(f"`{directory}` is not a trainer checkpoint (no {RUN_STATE_FILE})", code="E410")
    manifest: dict[str, Any] = {}
    if verify:
        problem = verify_state(directory)
        if problem is not None:
            raise CheckpointError([Problem(code="E414", message=f"trainer checkpoint `{directory}` is corrupt: {problem}",
                                           hint="`staged resume` falls back to the previous checkpoint")])
        manifest = read_manifest(directory)
    path = directory / RUN_STATE_FILE
    if looks_pickled(path):
        raise pickle_refusal(path, pickled_globals(path), what="run state")
    try:
        state = RunState.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except Exception as exc:
        raise CheckpointError([Problem(code="E414", message=f"`{path}` is unreadable: {type(exc).__name__}: {_first_line(exc)}",
                                       hint="a run state is JSON that stagedsl writes; this one was changed after its "
                                            "manifest was written. Delete this checkpoint folder and `staged resume` "
                                            "falls back to the one before it")]) from None
    model = read_weights(directory / MODEL_FILE)
    trainer = trainer_payload.read(directory / TRAINER_FILE)
    return {"state": state, "model": model, "trainer": trainer, "manifest": manifest, "path": directory}


def list_states(run_dir: RunDir) -> list[Path]:
    """Every trainer checkpoint folder of the run (complete or not; temp folders excluded)."""
    found = []
    for parent in run_dir.all_trainer_states():
        found += [p for p in parent.iterdir() if p.is_dir() and _state_order(p) is not None]
    return found


def newest_first(paths: list[Path]) -> list[Path]:
    """Checkpoint folders ordered newest first.

    By the manifest's global step, then stage index (a stage's first checkpoint and the
    previous stage's last share a global step), attempt and stage step. A folder without
    a readable manifest sorts last (a resume passes over it and says so).
    """
    def key(path: Path) -> tuple:
        order = manifest_order(path)
        return (1, *order) if order is not None else (0, 0, 0) + (_state_order(path) or (0, 0)) + (0,)
    return sorted(paths, key=key, reverse=True)


def manifest_order(path: Path) -> Optional[tuple[int, ...]]:
    """(global step, stage index, attempt, stage step, seq) from a checkpoint's manifest; None when it cannot be read."""
    try:
        manifest = json.loads((path / MANIFEST_FILE).read_text())
        return (int(manifest["global_step"]), int(manifest["stage_index"]), int(manifest["attempt"]),
                int(manifest["stage_step"]), int(manifest.get("seq", 0)))
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None


def remove_temp_files(run_dir: RunDir) -> list[Path]:
    """Delete what a write killed half-way left behind (``.<name>.*.tmp`` files and folders)."""
    removed = []
    for path in run_dir.stages.glob("**/.*.tmp"):
        if run_dir.inside(path.parent):
            run_dir.remove(path)
            removed.append(path)
    for path in run_dir.stages.glob("**/.*.old"):
        if run_dir.inside(path.parent):
            run_dir.remove(path)
    return removed


def clear_states(run_dir: RunDir, stage: str) -> None:
    """Delete a stage's trainer checkpoints (a run that starts the stage over)."""
    run_dir.remove(run_dir.trainer_states(stage))


def rotate_states(run_dir: RunDir, parent: Path, keep_last: int) -> None:
    """Keep the newest `keep_last` trainer checkpoints under `parent` (by attempt, then step)."""
    if keep_last <= 0 or not parent.exists():
        return
    steps = sorted((p for p in parent.iterdir() if p.is_dir() and _state_order(p) is not None), key=_state_order)
    for old in steps[:-keep_last]:
        try:
            run_dir.remove(old)
        except OSError:  # an old checkpoint that cannot go yet (a busy network file system): the next rotation tries again
            pass


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def _json_default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return str(value)
