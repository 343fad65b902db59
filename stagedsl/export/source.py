"""What an export reads: a run directory's plan, summary and checkpoint, and the data.

A run directory (written by the engine) holds ``plan.json``, an optional
``summary.json`` and ``stages/<stage>/{best,last}.safetensors``. `open_run` picks the
stage and checkpoint; `build_model` and `build_data` go through the registry, as the
engine does; `load_weights` reads weights through safetensors only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Sequence

import attrs

from stagedsl.errors import CheckpointError, Problem, UsageError, did_you_mean
from stagedsl.plan.model import PieceRef, Plan, StagePlan
from stagedsl.run_dir import RunDir


@attrs.frozen
class RunSource:
    """The run directory being exported, with the stage and checkpoint chosen."""

    run_dir: Path
    plan: Plan
    summary: dict
    stage: StagePlan
    which: str
    checkpoint: Path

    @property
    def stage_summary(self) -> dict:
        """The stage's entry of ``summary.json`` (empty when there is none)."""
        entry = (self.summary.get("stages") or {}).get(self.stage.name)
        return entry if isinstance(entry, dict) else {}

    @property
    def checkpoint_metrics(self) -> dict:
        """The metrics the run recorded for the exported checkpoint (best effort).

        ``summary["stages"][stage][which]`` when the summary has it; else, from the
        engine's stage record: for "last" its ``last_values``; for "best" the monitored
        metric's ``best_value`` at ``best_step``, with the ``last_values`` when the best
        evaluation was the stage's last one.
        """
        entry = self.stage_summary
        if isinstance(entry.get(self.which), dict):
            return dict(entry[self.which])
        last = entry.get("last_values") if isinstance(entry.get("last_values"), dict) else {}
        if self.which == "last":
            return {**last, "step": entry["steps"]} if "steps" in entry else dict(last)
        if entry.get("monitor") is None or entry.get("best_value") is None:
            return {}
        best = {entry["monitor"]: entry["best_value"], "step": entry.get("best_step")}
        return {**last, **best} if entry.get("best_step") is not None and entry.get("best_step") == entry.get("steps") else best


def checkpoint_path(run_dir: Path, stage: str, which: str) -> Path:
    """Where the engine writes a stage's `which` ("best" | "last") checkpoint."""
    return RunDir(run_dir).weights(stage, which)


def read_plan(run_dir: Path) -> Plan:
    """The run's ``plan.json``; a `UsageError` when the folder is not a run directory."""
    path = RunDir(run_dir).plan
    if not run_dir.is_dir():
        raise UsageError([Problem(code="E501", message=f"run directory `{run_dir}` does not exist")])
    if not path.is_file():
        raise UsageError(
            [Problem(code="E501", message=f"`{run_dir}` is not a run directory: it has no plan.json",
                     hint="pass the folder `staged run` wrote (it holds plan.json and stages/)")]
        )
    try:
        return Plan.from_json(path.read_text(encoding="utf-8"))
    except Exception as exc:  # a corrupt or foreign plan.json
        raise UsageError(
            [Problem(code="E501", message=f"cannot read `{path}`: {type(exc).__name__}: {exc}", file=str(path))]
        ) from None


def read_summary(run_dir: Path) -> tuple[dict, Optional[str]]:
    """``summary.json`` (best effort): the data and, when it could not be read, why."""
    path = RunDir(run_dir).summary
    if not path.is_file():
        return {}, None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return {}, f"summary.json could not be read ({exc}); metrics.json will be empty"
    return (data if isinstance(data, dict) else {}), None


def open_run(run_dir: Path | str, *, stage: Optional[str] = None, which: str = "best") -> RunSource:
    """Read the run directory and choose the checkpoint to export.

    `stage` defaults to the last stage of the plan that has a `which` checkpoint.
    """
    run_dir = Path(run_dir)
    plan = read_plan(run_dir)
    summary, _ = read_summary(run_dir)
    names = [s.name for s in plan.stages]
    if stage is not None:
        if stage not in names:
            raise UsageError(
                [Problem(code="E508", message=f"the plan has no stage `{stage}` (stages: {', '.join(names)})",
                         hint=did_you_mean(stage, names))]
            )
        chosen = plan.stage(stage)
        path = checkpoint_path(run_dir, chosen.name, which)
        if not path.is_file():
            have = _stages_with(run_dir, plan, which)
            raise CheckpointError(
                [Problem(code="E502", message=f"stage `{stage}` has no {which} checkpoint: `{path}` does not exist",
                         hint=f"stages with a {which} checkpoint: {', '.join(have)}" if have else "has the stage run?")]
            )
        return RunSource(run_dir, plan, summary, chosen, which, path)
    for candidate in reversed(plan.stages):
        path = checkpoint_path(run_dir, candidate.name, which)
        if path.is_file():
            return RunSource(run_dir, plan, summary, candidate, which, path)
    raise CheckpointError(
        [Problem(code="E502", message=f"no stage of `{run_dir}` has a {which} checkpoint "
                 f"(looked for {checkpoint_path(Path(), '<stage>', which)})", hint="has the run finished a stage?")]
    )


def _stages_with(run_dir: Path, plan: Plan, which: str) -> list[str]:
    return [s.name for s in plan.stages if checkpoint_path(run_dir, s.name, which).is_file()]


def build_model(ref: PieceRef, registry: Any) -> "torch.nn.Module":  # noqa: F821
    """Build the model piece on the CPU, in float32 and eval mode (E503 when its factory fails)."""
    return registry.build("models", ref.name, ref.args, at="model", phase="export").float().eval()


def load_weights(model: "torch.nn.Module", path: Path | str) -> None:  # noqa: F821
    """Load a safetensors state dict into `model` strictly (shared tensors may be stored once).

    A ``module.`` (DDP) or ``_orig_mod.`` (torch.compile) prefix on every key is removed.
    Anything missing, unexpected or of the wrong shape is a `CheckpointError`.
    """
    from safetensors.torch import load_file

    path = Path(path)
    try:
        state = load_file(str(path), device="cpu")
    except Exception as exc:
        raise CheckpointError(
            [Problem(code="E504", message=f"cannot read checkpoint `{path}`: {type(exc).__name__}: {exc}", file=str(path))]
        ) from None
    expected = model.state_dict()
    state = _strip_prefixes(state, expected)
    problems: list[str] = []
    for name, tensor in state.items():
        if name in expected and tuple(expected[name].shape) != tuple(tensor.shape):
            problems.append(f"`{name}` has shape {tuple(tensor.shape)} in the checkpoint, {tuple(expected[name].shape)} in the model")
    if not problems:
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [name for name in missing if not _is_alias_of_loaded(name, expected, state)]
        if missing:
            problems.append(f"missing: {_few(missing)}")
        if unexpected:
            problems.append(f"unexpected: {_few(unexpected)}")
    if problems:
        raise CheckpointError(
            [Problem(code="E505", message=f"checkpoint `{path}` does not fit the model: " + "; ".join(problems), file=str(path),
                     hint="was the run's model built with other arguments?")]
        )


def _strip_prefixes(state: dict, expected: dict) -> dict:
    for prefix in ("module.", "_orig_mod."):
        if state and not (set(state) & set(expected)) and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def _is_alias_of_loaded(name: str, expected: dict, state: dict) -> bool:
    target = expected[name]
    for other, tensor in expected.items():
        if other != name and other in state and tensor.data_ptr() == target.data_ptr() and tensor.shape == target.shape:
            return True
    return False


def _few(names: Sequence[str], n: int = 5) -> str:
    shown = ", ".join(f"`{x}`" for x in list(names)[:n])
    return shown + (f" and {len(names) - n} more" if len(names) > n else "")


def build_data(ref: Any, registry: Any) -> Any:
    """Build the dataset piece (`plan.data`): a `stagedsl.DataSplits` (E506 when its factory fails)."""
    return registry.build("datasets", ref.name, ref.args, at="data", phase="export")


def held_out_split(splits: Any) -> tuple[str, Any]:
    """The split export checks on: validation, else test, else train."""
    for name in ("val", "test", "train"):
        split = getattr(splits, name, None)
        if split is not None and len(split) > 0:
            return name, split
    raise UsageError([Problem(code="E507", message="the dataset has no non-empty split to check the export on")])


def fetch(split: Any, start: int, stop: int) -> tuple[tuple, Any]:
    """Rows ``start:stop`` of a split as ``(inputs as a tuple of tensors, target)``."""
    import torch

    indices = list(range(start, stop))
    if hasattr(split, "__getitems__"):
        inputs, target = split.__getitems__(indices)
    else:
        from torch.utils.data import default_collate

        inputs, target = default_collate([split[i] for i in indices])
    inputs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    return tuple(torch.as_tensor(x) for x in inputs), target


def batch_ranges(length: int, batch_size: int, count: Optional[int] = None, *, vary_last: bool = False) -> list[tuple[int, int]]:
    """Consecutive ``(start, stop)`` row ranges; with `vary_last` the last one is a row
    shorter than the others, so a dynamic batch axis is exercised with a second size."""
    batch_size = max(1, batch_size)
    ranges = [(start, min(start + batch_size, length)) for start in range(0, length, batch_size)]
    if count is not None:
        ranges = ranges[:count]
    if vary_last and len(ranges) >= 2:
        start, stop = ranges[-1]
        if stop - start == batch_size and batch_size > 1:
            ranges[-1] = (start, stop - 1)
    return ranges
