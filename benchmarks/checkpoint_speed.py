"""Checkpoint cost and resume time for the pde and mesh specs at their default cadence.

For each spec (its defaults, on the CPU):

1. **Save time and share.** A full run in which every trainer checkpoint is timed twice:
   the time training waits (`AttemptDriver.save_state`: a snapshot of the weights and of
   every state, the non-finite check, packing; plus waiting for the previous write if it
   is still going), and the background write (`trainer_checkpoints.finish_state`: three files
   written, fsynced and checksummed, manifest, rename, rotation). The baseline is each
   stage's own wall time in the same run (``summary.json``); share = blocking seconds /
   stage seconds (target <= 2 %). The cadence is the spec's: no ``checkpoint.every``, so
   a checkpoint at every evaluation and at each stage's end.
   With ``--baseline`` the spec also runs with trainer checkpoints at stage ends only,
   and each stage's wall time is compared (on a shared machine that difference is
   within the noise of a few percent; the blocking share is the figure).
2. **Resume time.** A second run is stopped a few steps after the first checkpoint of its
   second stage; `resume_run` is then timed until the resumed stage's STAGE_START (the
   newest checkpoint found, checked against its checksums and loaded; plan read, model,
   data and stage rebuilt, optimizer / scheduler / RNG / data position restored): the
   moment training would go on. A fresh ``staged resume`` process adds the import floor
   (``import torch``, ~1.2-1.5 s here) on top.

Usage::

    python benchmarks/checkpoint_speed.py [--specs pde,mesh] [--quick] [--baseline]

``--quick`` shortens every stage 10x (a smoke run; its shares are not the figure).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("STAGEDSL_DISABLE_PLUGIN_AUTOLOAD", "1")

from stagedsl.api import resume_run  # noqa: E402
from stagedsl.engine import driver as driver_module  # noqa: E402
from stagedsl.engine.checkpointing import trainer_checkpoints as checkpoints_module  # noqa: E402
from stagedsl.engine.events import Callback  # noqa: E402
from stagedsl.engine.runner import run_plan  # noqa: E402
from stagedsl.plan.compile import compile_plan  # noqa: E402
from stagedsl.registry import get_registry  # noqa: E402
from stagedsl.spec.loader import load_spec  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
QUICK = {
    "pde": ["stage.warmup_encdec.steps=200", "stage.transformer.steps=400", "stage.finetune.steps=200",
            "defaults.eval.every=\"100 steps\""],
    "mesh": ["stage.converge.epochs=3", "stage.refine.epochs=5"],
}


class SaveTimer:
    """Times every `AttemptDriver.save_state` call (blocking) and every `finish_state` (background), by stage."""

    def __init__(self):
        self.times: dict[str, list[float]] = {}
        self.writes: dict[str, list[float]] = {}
        self.original = driver_module.AttemptDriver.save_state
        self.original_finish = checkpoints_module.finish_state

    def __enter__(self):
        timer = self

        def timed(driver):
            started = time.perf_counter()
            timer.original(driver)
            timer.times.setdefault(driver.stage.name, []).append(time.perf_counter() - started)

        def finish(pending):
            started = time.perf_counter()
            result = timer.original_finish(pending)
            timer.writes.setdefault(pending.record["stage"], []).append(time.perf_counter() - started)
            return result

        driver_module.AttemptDriver.save_state = timed
        checkpoints_module.finish_state = finish
        return self

    def __exit__(self, *exc):
        driver_module.AttemptDriver.save_state = self.original
        checkpoints_module.finish_state = self.original_finish


class StopInSecondStage(Callback):
    """Stops the run at the first log after the second stage's first checkpoint."""

    def __init__(self, stage: str):
        self.stage = stage

    def step_end(self, state):
        if state.stage_name == self.stage and state.last_resume_point and f"/{self.stage}/" in f"/{state.last_resume_point}":
            raise KeyboardInterrupt


class Ready(Exception):
    pass


class StopWhenReady(Callback):
    """Notes when the resumed stage is ready to train, and stops there."""

    def __init__(self):
        self.at = None
        self.stage_step = None

    def stage_start(self, state):
        self.at, self.stage_step = time.perf_counter(), state.stage_step
        raise KeyboardInterrupt


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file())


def measure(name: str, quick: bool, workdir: Path, baseline: bool) -> dict:
    registry = get_registry()
    overrides = ['run.device="cpu"'] + (QUICK[name] if quick else [])
    spec = load_spec(ROOT / "specs" / f"{name}.toml", overrides=overrides, registry=registry)
    plan = compile_plan(spec, registry)
    base_times = {}
    if baseline:
        ends = load_spec(ROOT / "specs" / f"{name}.toml", overrides=overrides + ['defaults.checkpoint.every="1000000 steps"'],
                         registry=registry)
        base = run_plan(compile_plan(ends, registry), registry=registry, out=workdir / f"{name}-ends", handle_signals=False)
        base_times = {stage: record["wall_time_s"] for stage, record in base.stages.items()}

    run_dir = workdir / f"{name}-full"
    with SaveTimer() as timer:
        result = run_plan(plan, registry=registry, out=run_dir, handle_signals=False)
    stages = []
    for stage in plan.stages:
        record = result.stages[stage.name]
        saves = timer.times.get(stage.name, [])
        writes = timer.writes.get(stage.name, [])
        states = sorted((run_dir / "stages" / stage.name / "state").iterdir())
        stages.append({
            "stage": stage.name, "steps": record["steps"], "stage_s": record["wall_time_s"], "checkpoints": len(saves),
            "save_s_median": statistics.median(saves) if saves else 0.0, "save_s_total": sum(saves),
            "write_s_median": statistics.median(writes) if writes else 0.0,
            "share": sum(saves) / record["wall_time_s"] if record["wall_time_s"] else None,
            "checkpoint_bytes": folder_bytes(states[-1]) if states else 0,
            "ends_only_s": base_times.get(stage.name),
        })

    second = plan.stages[1].name
    stopped = workdir / f"{name}-stopped"
    try:
        run_plan(plan, registry=registry, out=stopped, callbacks=[StopInSecondStage(second)], handle_signals=False)
    except KeyboardInterrupt:
        pass
    ready = StopWhenReady()
    started = time.perf_counter()
    try:
        resume_run(stopped, registry=registry, callbacks=[ready], handle_signals=False, warn=lambda message: None)
    except KeyboardInterrupt:
        pass
    summary = json.loads((stopped / "summary.json").read_text())
    return {"spec": name, "stages": stages, "resume_s": ready.at - started if ready.at else None,
            "resume_stage": second, "resume_step": ready.stage_step,
            "stopped_at": summary["global_steps"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--specs", default="pde,mesh")
    parser.add_argument("--quick", action="store_true", help="every stage 10x shorter (smoke run)")
    parser.add_argument("--baseline", action="store_true", help="also run with checkpoints at stage ends only")
    args = parser.parse_args(argv)
    import torch

    print(f"# checkpoint_speed: torch {torch.__version__}, {os.cpu_count()} CPUs, threads {torch.get_num_threads()}"
          f"{', QUICK' if args.quick else ''}", file=sys.stderr)
    rows = []
    with tempfile.TemporaryDirectory(prefix="ckpt-bench-") as tmp:
        for name in args.specs.split(","):
            rows.append(measure(name.strip(), args.quick, Path(tmp), args.baseline))
    print("| spec | stage | steps | stage s | checkpoints | blocking ms (median) | blocking s (total) | share of stage "
          "| background write ms (median) | checkpoint size | stage s, checkpoints at ends only |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        for s in row["stages"]:
            ends = f"{s['ends_only_s']:.2f}" if s["ends_only_s"] else "-"
            print(f"| {row['spec']} | {s['stage']} | {s['steps']} | {s['stage_s']:.2f} | {s['checkpoints']} | "
                  f"{1000 * s['save_s_median']:.1f} | {s['save_s_total']:.3f} | {100 * s['share']:.2f} % | "
                  f"{1000 * s['write_s_median']:.1f} | {s['checkpoint_bytes'] / 1024:.0f} KiB | {ends} |")
    print()
    print("| spec | resume: checkpoint found, checked, loaded, stage rebuilt (s) | resumed at |")
    print("|---|---|---|")
    for row in rows:
        print(f"| {row['spec']} | {row['resume_s']:.3f} | stage {row['resume_stage']} step {row['resume_step']} |")
    worst = max(s["share"] for row in rows for s in row["stages"])
    print(f"\nworst share {100 * worst:.2f} % (target <= 2 %)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
