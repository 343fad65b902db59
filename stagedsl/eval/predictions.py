"""A trained run's predictions on its validation (and test) split, as arrays, and their file.

The model is the one `staged export` would take: the last stage with a ``best``
checkpoint, built through the registry on the CPU in eval mode, weights read with
safetensors. Outputs are the model's raw outputs (its first tensor when it returns
several) in float32, with the split's targets beside them. A prediction file is one
``.npz`` (no pickles): ``<split>_outputs``, ``<split>_target`` per split and ``meta``, a
JSON string naming the checkpoint (stage, which, size and modification time) so a stale
file is recognised.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Sequence

import attrs
import numpy as np

from stagedsl.errors import Problem, RunError

SPLITS = ("val", "test")
PREDICTION_FORMAT = 1


@attrs.frozen
class RunPredictions:
    """A run's outputs and targets per split, and where they came from."""

    outputs: dict  # split -> float32 array [N, ...]
    targets: dict  # split -> array [N, ...]
    meta: dict

    @property
    def splits(self) -> tuple[str, ...]:
        """The splits predicted."""
        return tuple(self.outputs)

    def save(self, path: Path) -> None:
        """Write the ``.npz`` (through a temp name, so a crash leaves no half file)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, Any] = {"meta": np.array(json.dumps(self.meta))}
        for split in self.outputs:
            arrays[f"{split}_outputs"] = self.outputs[split]
            arrays[f"{split}_target"] = self.targets[split]
        partial = path.with_name(path.name + ".partial.npz")
        np.savez(partial, **arrays)
        partial.replace(path)

    @classmethod
    def load(cls, path: Path) -> "RunPredictions":
        """Read a file `save` wrote."""
        with np.load(Path(path), allow_pickle=False) as archive:
            meta = json.loads(str(archive["meta"]))
            splits = [name[: -len("_outputs")] for name in archive.files if name.endswith("_outputs")]
            return cls({s: archive[f"{s}_outputs"] for s in splits}, {s: archive[f"{s}_target"] for s in splits}, meta)


def checkpoint_identity(path: Path) -> dict:
    """What identifies a checkpoint file's content cheaply: its size and modification time."""
    stat = Path(path).stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def source_of(run_dir: Path) -> Any:
    """The run's checkpoint to predict with (`stagedsl.export.source.open_run`'s choice: last stage, best)."""
    from stagedsl.export.source import open_run

    return open_run(run_dir, which="best")


def is_current(predictions: RunPredictions, run_dir: Path) -> bool:
    """Whether `predictions` were made from the run's present checkpoint."""
    try:
        source = source_of(run_dir)
    except Exception:
        return False
    meta = predictions.meta
    return (meta.get("format") == PREDICTION_FORMAT and meta.get("stage") == source.stage.name
            and meta.get("checkpoint") == checkpoint_identity(source.checkpoint))


def predict_run(run_dir: Path | str, *, registry: Optional[Any] = None, splits: Sequence[str] = SPLITS,
                batch_size: Optional[int] = None) -> RunPredictions:
    """Run the run's model over each of `splits` the dataset has (a `RunError` E700 when it has none of them)."""
    import torch

    from stagedsl.export import source as src

    run_dir = Path(run_dir)
    if registry is None:
        from stagedsl.registry import get_registry

        registry = get_registry()
    source = source_of(run_dir)
    model = src.build_model(source.plan.model, registry)
    src.load_weights(model, source.checkpoint)
    data = src.build_data(source.plan.data, registry)
    size = batch_size or source.plan.data.eval_batch_size or source.plan.data.batch_size
    outputs, targets = {}, {}
    for name in splits:
        split = getattr(data, name, None)
        if split is None or len(split) == 0:
            continue
        chunks, labels = [], []
        with torch.no_grad():
            for start, stop in src.batch_ranges(len(split), size):
                inputs, target = src.fetch(split, start, stop)
                result = model(*inputs)
                if isinstance(result, (tuple, list)):
                    result = result[0]
                chunks.append(result.detach().float().numpy())
                labels.append(torch.as_tensor(target).numpy())
        outputs[name], targets[name] = np.concatenate(chunks), np.concatenate(labels)
    if not outputs:
        raise RunError([Problem(code="E700", message=f"`{run_dir}` has none of the splits {', '.join(splits)} to predict",
                                hint="the dataset returns no validation (or test) split; ensembles and `staged eval` need one")])
    meta = {"format": PREDICTION_FORMAT, "run": source.plan.run.name, "stage": source.stage.name, "which": source.which,
            "checkpoint": checkpoint_identity(source.checkpoint), "monitor": source.stage.eval.monitor}
    return RunPredictions(outputs, targets, meta)


__all__ = ["RunPredictions", "SPLITS", "checkpoint_identity", "is_current", "predict_run", "source_of"]
