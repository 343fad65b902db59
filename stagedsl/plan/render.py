"""`staged plan --dry-run`: a plan as text a person can check before spending compute."""

from __future__ import annotations

import os
from typing import Optional

from stagedsl.plan.model import DistributedStagePlan, Plan, StagePlan
from stagedsl.registry.import_path import is_file_path, is_import_path, short_name


def shown(name: str) -> str:
    """A piece's name as a person reads it: a file import path relative to the working directory when it lies inside it."""
    if not is_import_path(name) or not is_file_path(name):
        return name
    path, _, attr = name.rpartition(":")
    relative = os.path.relpath(path)
    return f"./{relative}:{attr}" if not relative.startswith("..") else name


def human_count(count: int) -> str:
    """1234567 -> '1.2M'."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if count >= size:
            return f"{count / size:.1f}{unit}"
    return str(count)


def plural(count: float, word: str) -> str:
    """``1 stage``, ``2 stages``, ``1.5 epochs`` (numbers as `:g`, 3 significant digits)."""
    shown = f"{count:.3g}" if isinstance(count, float) else str(count)
    return f"{shown} {word}" if shown == "1" else f"{shown} {word}s"


def _duration(stage: StagePlan) -> str:
    text = plural(stage.steps, "step")
    if stage.epochs is not None:
        text += f" ≈ {plural(float(stage.epochs), 'epoch')}"
    if stage.accumulate > 1:
        text += f" (×{stage.accumulate} micro-batches)"
    return text


def _loss(stage: StagePlan) -> str:
    def term(t) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in t.args.items())
        return f"{shown(t.name)}({args})"

    if stage.loss.kind == "blend":
        a, b = stage.loss.terms
        alpha = stage.loss.alpha
        return f"{1 - alpha:g}·{term(a)} + {alpha:g}·{term(b)}  (blend, alpha {alpha:g})"
    return " + ".join((f"{t.weight:g}·" if t.weight != 1 else "") + term(t) for t in stage.loss.terms)


def _ddp(stage: DistributedStagePlan) -> str:
    if not stage.find_unused:
        return "  DDP: find_unused_parameters off (every trainable parameter reaches the output)"
    if stage.check != "traced":
        return f"  DDP: find_unused_parameters on ({stage.check})"
    shown = ", ".join(stage.unused[:3]) + (f", ... ({len(stage.unused)} in all)" if len(stage.unused) > 3 else "")
    return f"  DDP: find_unused_parameters on: trainable but not reaching the output: {shown}"


def render_stage(stage: StagePlan, stage_hash: Optional[str] = None, ddp: Optional[DistributedStagePlan] = None) -> str:
    """One stage as an indented block (with its content hash when given, and its DDP line for a distributed plan)."""
    lines = [f"stage {stage.index + 1}: {stage.name}  —  {_duration(stage)}" + (f"  [hash {stage_hash}]" if stage_hash else "")]
    trainable = sum(v[0] for v in stage.modules.values())
    total = sum(v[1] for v in stage.modules.values())
    lines.append(f"  parameters: {human_count(trainable)} of {human_count(total)} trainable "
                 f"({len(stage.trainable)} tensors trained, {len(stage.frozen)} frozen)")
    for module, (train, size) in stage.modules.items():
        mark = "✓" if train == size else ("✗" if train == 0 else "◐")
        detail = "" if train in (0, size) else f" ({human_count(train)} trained)"
        lines.append(f"    {mark} {module:<24} {human_count(size):>8}{detail}")
    lines.append(f"  optimizer: {shown(stage.optimizer.name)}{_args(stage.optimizer.args)}")
    for group in stage.groups:
        decay = f", weight_decay {group.weight_decay:g}" if group.weight_decay is not None else ""
        lines.append(f"    group {group.name:<14} lr {group.lr:.3g}{decay}  ({len(group.params)} tensors)")
    monitor = f" on {stage.scheduler_monitor}" if stage.scheduler_monitor else ""
    lines.append(f"  schedule: {shown(stage.scheduler.name)}{_args(stage.scheduler.args)}{monitor}")
    lines.append(f"  loss: {_loss(stage)}")
    if stage.metrics:
        lines.append(f"  metrics: {', '.join('val/' + short_name(m.name) for m in stage.metrics)}")
    every = f"every {stage.eval.every} steps and at the end" if stage.eval.every else "at the end"
    lines.append(f"  evaluate: {every}; best by {stage.eval.monitor} ({stage.eval.mode})")
    if stage.early_stop:
        e = stage.early_stop
        lines.append(f"  early stop: {e.monitor} ({e.mode}), patience {e.patience}")
    if stage.init:
        init = stage.init
        source = f"stage `{init.stage}` {init.which}" if init.source == "stage" else f"file {init.path}"
        lines.append(f"  init: {source}{'' if init.strict else ' (non-strict)'}")
    if stage.gate:
        g = stage.gate
        action = f"goto `{g.goto}`" if g.on_fail == "goto" else (f"retry ≤{g.max_retries}×" if g.on_fail == "retry" else g.on_fail)
        lines.append(f"  gate: {g.when}  — otherwise {action} (checked at {g.check})")
    extras = []
    if stage.grad_clip:
        extras.append(f"grad clip {stage.grad_clip:g}")
    if stage.frozen and stage.frozen_norm == "eval":
        extras.append("norm layers of frozen modules in eval mode")
    if extras:
        lines.append("  " + "; ".join(extras))
    if ddp is not None:
        lines.append(_ddp(ddp))
    return "\n".join(lines)


def _sizes_note(plan: Plan) -> str:
    sizes = ", ".join(f"{split} {count}" for split, count in plan.data.sizes.items())
    if plan.data.sizes_from == "built":
        return f"\n  note: the dataset has no `sizes` function, so it was built once while planning to count its splits ({sizes})"
    if plan.data.sizes_from == "live":
        return f"\n  data handed over live: {sizes}"
    return ""


def _args(args: dict) -> str:
    return "(" + ", ".join(f"{k}={v!r}" for k, v in args.items()) + ")" if args else ""


def render_plan(plan: Plan, chart: Optional[str] = None) -> str:
    """The whole plan: header, every stage, the LR chart."""
    run = plan.run
    total = sum(s.steps for s in plan.stages)
    batch = f"batch {plan.data.batch_size}"
    if plan.distributed is not None:
        batch += f" per process x {plan.world_size} processes = {plan.distributed.global_batch} a step"
    lines = [
        f"plan `{run.name}`  ({plan.spec_file or 'spec'}, hash {plan.hash})",
        f"  model: {shown(plan.model.name)}{_args(plan.model.args)}  —  {human_count(sum(plan.parameters.values()))} parameters",
        f"  data: {shown(plan.data.name)}{_args(plan.data.args)}; {batch}"
        + (f"; {plan.data.batches_per_epoch} batches per epoch" if plan.data.batches_per_epoch else "")
        + _sizes_note(plan),
        f"  run: device {run.device}, precision {run.precision}, seed {run.seed}, out {run.out}"
        + (f", {plan.world_size} processes (DDP)" if plan.distributed is not None else ""),
        f"  {plural(len(plan.stages), 'stage')}, {plural(total, 'step')} in all",
        "",
    ]
    hashes = plan.stage_hashes
    ddp = {s.name: s for s in plan.distributed.stages} if plan.distributed is not None else {}
    for stage in plan.stages:
        lines.append(render_stage(stage, hashes[stage.name], ddp.get(stage.name)))
        lines.append("")
    if chart:
        lines.append("learning rate over the plan (log scale):")
        lines.append(chart)
    return "\n".join(lines).rstrip() + "\n"
