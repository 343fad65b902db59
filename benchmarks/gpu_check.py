"""GPU check: the pde and ocec specs in bf16 through the engine, against a hand-tuned loop on the same pieces.

For each spec the first stage runs twice per setting, side by side: the engine (`run_plan` of the
compiled spec with ``precision = "bf16-mixed"``) and the loop a careful user writes for the same
model, data, loss and optimizer: bf16 autocast, fused AdamW over the stage's parameter groups,
gradient clipping when the stage clips, the training split resident on the GPU (or, when it does
not fit, a DataLoader with pinned memory and ``non_blocking`` copies), ``torch.compile`` on and
off, and ``channels_last`` for the conv model (ocec). The two alternate every window (a callback
at the engine's STEP_END runs the hand loop's window, synchronised) and the ratio is the median
of the paired window ratios with its min and max; throughput is samples per second, peak memory
``torch.cuda.max_memory_allocated`` of each side run alone from a clean allocator.

    python benchmarks/gpu_check.py [--steps N] [--window W] [--pde-profile full] [--ocec-profile pretrained]
    python benchmarks/gpu_check.py --smoke     # the same on the CPU: tiny profiles, a few steps, compile off

Without CUDA (and without ``--smoke``) it says so and exits 0.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

os.environ.setdefault("STAGEDSL_DISABLE_PLUGIN_AUTOLOAD", "1")

import attrs  # noqa: E402
import torch  # noqa: E402

from stagedsl.engine.events import Callback  # noqa: E402
from stagedsl.engine.runner import run_plan  # noqa: E402
from stagedsl.plan.compile import compile_plan  # noqa: E402
from stagedsl.registry import get_registry  # noqa: E402
from stagedsl.spec.loader import load_spec  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CONV = {"ocec"}  # specs whose model is convolutional: channels_last on both sides


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class HandLoop:
    """The hand-tuned loop for one stage of a plan, on its own copy of the model."""

    def __init__(self, plan: Any, registry: Any, device: torch.device, *, compile: bool, channels_last: bool):
        stage = plan.stages[0]
        if stage.loss.kind != "sum" or len(stage.loss.terms) != 1:
            raise SystemExit(f"gpu_check: stage {stage.name} has a composite loss; the hand loop writes one term")
        torch.manual_seed(plan.run.seed)
        model = registry.build("models", plan.model.name, plan.model.args).to(device)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        trains = set(stage.trainable)
        table = dict(model.named_parameters())
        for name, param in table.items():
            param.requires_grad_(name in trains)
        groups = [{"params": [table[n] for n in g.params], "lr": g.lr, **({"weight_decay": g.weight_decay}
                   if g.weight_decay is not None else {})} for g in stage.groups]
        weight_decay = stage.optimizer.args.get("weight_decay", 0.01)
        fused = device.type == "cuda"
        self.optimizer = torch.optim.AdamW(groups, lr=stage.lr, weight_decay=weight_decay, fused=fused or None)
        term = stage.loss.terms[0]
        self.loss = registry.build("losses", term.name, term.args)
        if isinstance(self.loss, torch.nn.Module):
            self.loss = self.loss.to(device)
        self.params = [table[n] for n in stage.trainable]
        self.clip = stage.grad_clip
        self.model = model
        self.forward = torch.compile(model) if compile else model
        self.device, self.channels_last = device, channels_last
        self.batch = plan.data.batch_size
        splits = registry.build("datasets", plan.data.name, plan.data.args)
        x, y = splits.train.inputs, splits.train.target
        self.path = "resident"
        if device.type == "cuda" and (x.numel() * x.element_size() + y.numel() * y.element_size()) < 2 * 2**30:
            x, y = x.to(device), y.to(device)
        elif device.type == "cuda":
            self.path = "pinned"
            x, y = x.pin_memory(), y.pin_memory()
        self.x, self.y = x, y
        self.generator = torch.Generator().manual_seed(0)
        self.batches = iter(self._epoch())
        model.train()

    def _epoch(self):
        n, size = len(self.y), self.batch
        order = torch.randperm(n, generator=self.generator)
        if self.path == "resident":
            order = order.to(self.device)
        for start in range(0, n - size + 1, size):
            index = order[start:start + size]
            x, y = self.x.index_select(0, index), self.y.index_select(0, index)
            if self.path == "pinned":
                x, y = x.pin_memory().to(self.device, non_blocking=True), y.pin_memory().to(self.device, non_blocking=True)
            if self.channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, y

    def run(self, steps: int) -> None:
        forward, loss_fn, optimizer, clip, params = self.forward, self.loss, self.optimizer, self.clip, self.params
        for _ in range(steps):
            try:
                x, y = next(self.batches)
            except StopIteration:
                self.batches = iter(self._epoch())
                x, y = next(self.batches)
            with torch.autocast(self.device.type, dtype=torch.bfloat16):
                loss = loss_fn(forward(x), y)
            loss.backward()
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(params, clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        _sync(self.device)


class Alternate(Callback):
    """At each STEP_END (the log cadence) time the engine's window just ended, then run and time the hand loop's."""

    def __init__(self, hand: HandLoop, window: int, device: torch.device):
        self.hand, self.window, self.device = hand, window, device
        self.engine: list[float] = []
        self.hands: list[float] = []
        self._resumed: Optional[float] = None

    def step_end(self, state) -> None:
        _sync(self.device)
        now = time.perf_counter()
        if self._resumed is not None:
            self.engine.append((now - self._resumed) / self.window)
        started = time.perf_counter()
        self.hand.run(self.window)
        self.hands.append((time.perf_counter() - started) / self.window)
        self._resumed = time.perf_counter()

    def pairs(self) -> list[tuple[float, float]]:
        """(engine, hand) seconds a step, window by window, the first (warm-up, compilation) dropped."""
        return list(zip(self.engine[1:], self.hands[1:len(self.engine)]))


def stage_plan(spec: str, profile: Optional[str], device: str, *, steps: int, window: int, compile: bool,
               channels_last: bool, registry: Any) -> Any:
    """The spec's first stage alone, in bf16, for `steps` steps logged every `window`, evaluated at its end."""
    overrides = [f'run.device="{device}"', 'run.precision="bf16-mixed"', f"run.compile={str(compile).lower()}",
                 f"run.channels_last={str(channels_last).lower()}"]
    plan = compile_plan(load_spec(ROOT / "specs" / f"{spec}.toml", profile=profile, overrides=overrides, registry=registry),
                        registry)
    first = attrs.evolve(plan.stages[0], steps=steps, log_every=window, eval=attrs.evolve(plan.stages[0].eval, every=None),
                         early_stop=None, gate=None, init=None)
    return attrs.evolve(plan, stages=(first,))


def _quiet_run(plan: Any, registry: Any, callbacks: list, out: str) -> Any:
    devnull = open(os.devnull, "w")
    stderr, sys.stderr = sys.stderr, devnull
    try:
        return run_plan(plan, registry=registry, out=out, callbacks=callbacks, handle_signals=False)
    finally:
        sys.stderr = stderr
        devnull.close()


def peak_memory(plan: Any, registry: Any, device: torch.device, *, compile: bool, channels_last: bool, steps: int) -> dict:
    """``max_memory_allocated`` of each side alone (MiB), from a clean allocator; {} on the CPU."""
    if device.type != "cuda":
        return {}
    peaks = {}
    for side in ("hand", "engine"):
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        if side == "hand":
            hand = HandLoop(plan, registry, device, compile=compile, channels_last=channels_last)
            hand.run(steps)
            del hand
        else:
            with tempfile.TemporaryDirectory() as out:
                _quiet_run(attrs.evolve(plan, stages=(attrs.evolve(plan.stages[0], steps=steps),)), registry, [], out)
        peaks[side] = (torch.cuda.max_memory_allocated(device) - base) / 2**20
    gc.collect()
    return peaks


def check(spec: str, profile: Optional[str], device: torch.device, *, steps: int, window: int, compile: bool,
          registry: Any) -> dict:
    """One row: engine vs hand loop for the spec's first stage with `compile` on or off."""
    channels_last = spec in CONV
    plan = stage_plan(spec, profile, device.type, steps=steps, window=window, compile=compile, channels_last=channels_last,
                      registry=registry)
    memory = peak_memory(plan, registry, device, compile=compile, channels_last=channels_last, steps=2 * window)
    hand = HandLoop(plan, registry, device, compile=compile, channels_last=channels_last)
    hand.run(window)  # warm-up (and compilation) outside the timed windows
    clock = Alternate(hand, window, device)
    with tempfile.TemporaryDirectory() as out:
        result = _quiet_run(plan, registry, [clock], out)
    pairs = clock.pairs()
    ratios = [e / h for e, h in pairs]
    batch = plan.data.batch_size
    engine_s = statistics.median(e for e, _ in pairs)
    hand_s = statistics.median(h for _, h in pairs)
    return {"spec": spec, "stage": plan.stages[0].name, "batch": batch, "compile": compile, "channels_last": channels_last,
            "precision": result.summary["precision"], "path": hand.path, "hand_ms": hand_s * 1e3, "engine_ms": engine_s * 1e3,
            "ratio": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios), "windows": len(ratios),
            "engine_samples_s": batch / engine_s, "hand_samples_s": batch / hand_s, **{f"peak_{k}": v for k, v in memory.items()}}


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="on the CPU: tiny profiles, a few steps, compile off (a test runs it)")
    parser.add_argument("--steps", type=int, default=None, help="steps of each engine run (default 600; 12 with --smoke)")
    parser.add_argument("--window", type=int, default=None, help="steps a window (default 50; 3 with --smoke)")
    parser.add_argument("--pde-profile", default="full")
    parser.add_argument("--ocec-profile", default="pretrained")
    args = parser.parse_args(argv)
    if not args.smoke and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; nothing to check (--smoke runs the same on the CPU)")
        return 0
    device = torch.device("cpu") if args.smoke else torch.device("cuda")
    steps = args.steps or (12 if args.smoke else 600)
    window = args.window or (3 if args.smoke else 50)
    profiles = {"pde": "tiny" if args.smoke else args.pde_profile, "ocec": "tiny" if args.smoke else args.ocec_profile}
    compiles = (False,) if args.smoke else (False, True)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        name = torch.cuda.get_device_name(device)
    else:
        name = "CPU (--smoke)"
    print(f"device {name}, torch {torch.__version__}, bf16-mixed, {steps} steps a run, windows of {window} steps, "
          "engine and hand loop alternate every window; ratio = engine / hand step time, median [min, max] of windows")
    print("| spec (profile) | stage | batch | torch.compile | channels_last | hand data | hand ms/step | engine ms/step "
          "| engine / hand | engine samples/s | hand samples/s | peak MiB hand | peak MiB engine |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    registry = get_registry()
    for spec in ("pde", "ocec"):
        for compile in compiles:
            row = check(spec, profiles[spec], device, steps=steps, window=window, compile=compile, registry=registry)
            peaks = (f"{row['peak_hand']:.0f} | {row['peak_engine']:.0f}" if "peak_hand" in row else "- | -")
            print(f"| {spec} ({profiles[spec]}) | {row['stage']} | {row['batch']} | {'on' if compile else 'off'} | "
                  f"{'yes' if row['channels_last'] else 'no'} | {row['path']} | {row['hand_ms']:.3f} | {row['engine_ms']:.3f} | "
                  f"{row['ratio']:.3f} [{row['ratio_min']:.3f}, {row['ratio_max']:.3f}] | {row['engine_samples_s']:.0f} | "
                  f"{row['hand_samples_s']:.0f} | {peaks} |", flush=True)
            if row["precision"] != "bf16-mixed":
                print(f"note: the engine ran in {row['precision']} (no bf16 autocast here)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
