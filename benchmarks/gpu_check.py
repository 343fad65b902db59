"""GPU check: a small plan in bf16-mixed through the engine against a hand-written loop.

Reports steady-state step time and throughput of both, their ratio, and peak GPU memory
(``torch.cuda.max_memory_allocated``). Both sides: the same MLP, fused AdamW (the
built-in ``adamw`` picks the fused kernel on CUDA; the hand loop asks for it), MSE,
bf16 autocast, data already on the GPU (the engine keeps an in-memory TensorSplit
resident on the device; the hand loop indexes GPU tensors with a random permutation).
The engine logs the loss every ``LOG_EVERY`` steps (its only host sync). As in
``overhead.py`` the two alternate every window (a callback runs the hand loop's
window, synchronised, at each STEP_END) and the figure is the median of paired window
ratios. Also runs short 16-mixed (GradScaler, clipping, accumulation) and fp32 plans
as a smoke check. Exits 0 with a message when there is no CUDA. Usage::

    python benchmarks/gpu_check.py [--steps N] [--repeats N]

Two batch sizes: 512 (the step is short enough that Python and kernel-launch overhead
show) and 4096 (the GPU's work dominates).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("STAGEDSL_DISABLE_PLUGIN_AUTOLOAD", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import attrs  # noqa: E402
import torch  # noqa: E402

from stagedsl.plan.model import PieceRef  # noqa: E402

LOG_EVERY = 100
WIDTHS = [1024, 4096, 4096, 1024]
BATCHES = (512, 4096)  # launch-bound (CPU overhead shows) and GPU-bound
N = 65536
LR = 1e-3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; nothing to check")
        return 0

    from overhead import BenchPieces, HandLoop, engine_plan, interleaved

    from stagedsl import Registry
    from stagedsl.engine.runner import run_plan

    registry = Registry.load(autoload=False, plugins=[("bench", BenchPieces())])
    torch.set_float32_matmul_precision("high")
    print(f"device {torch.cuda.get_device_name()}, torch {torch.__version__}, MLP {WIDTHS}, bf16-mixed, {args.steps} steps x "
          f"{args.repeats} run(s) per batch size; engine and hand loop alternate every {LOG_EVERY} steps; medians over windows")
    for batch in BATCHES:
        memory = _peaks(registry, engine_plan, run_plan, HandLoop, batch)
        print(f"batch {batch:<5} peak memory, each alone ({3 * LOG_EVERY} steps): hand loop {memory['hand'] / 2**20:.1f} MiB, "
              f"engine {memory['engine'] / 2**20:.1f} MiB (both hold the data on the GPU)")
        windows: dict[str, list[float]] = {"engine": [], "hand": []}
        for _ in range(args.repeats):
            hand = HandLoop(WIDTHS, N, device="cuda", batch=batch, autocast_dtype=torch.bfloat16, fused=True)
            hand.run(2 * LOG_EVERY)  # warm up
            with tempfile.TemporaryDirectory() as out:
                plan = engine_plan(WIDTHS, "bench_tensor_data", N, args.steps, LOG_EVERY, out, device="cuda",
                                   precision="bf16-mixed", batch=batch)
                result = interleaved(registry, plan, {"hand": hand}, LOG_EVERY)
            for side in windows:
                windows[side].extend(w for w, _ in result[side])
            del hand
        ratios = [e / h for e, h in zip(windows["engine"], windows["hand"])]
        for side in ("hand", "engine"):
            step = statistics.median(windows[side])
            print(f"batch {batch:<5} {side:<7} {step * 1e3:9.4f} ms/step  {batch / step:12.0f} samples/s")
        low, middle, high = statistics.quantiles(ratios, n=4)
        print(f"batch {batch:<5} engine / hand step time: {statistics.median(ratios):.3f} "
              f"(paired windows: {len(ratios)}, quartiles {low:.3f} / {middle:.3f} / {high:.3f})")

    checks = {
        "16-mixed + clip + accumulate": dict(precision="16-mixed", grad_clip=1.0, accumulate=2),
        "32 (TF32)": dict(precision="32"),
    }
    for label, options in checks.items():
        precision = options.pop("precision")
        with tempfile.TemporaryDirectory() as out:
            plan = engine_plan(WIDTHS, "bench_tensor_data", N, 50, 25, out, device="cuda", precision=precision)
            stage = attrs.evolve(plan.stages[0], metrics=(PieceRef("mae", {}),), **options)
            result = run_plan(attrs.evolve(plan, stages=(stage,)), registry=registry)
        values = result.stages["train"]["last_values"]
        ok = all(v == v and abs(v) < float("inf") for v in values.values())
        print(f"smoke {label:<30} precision {result.summary['precision']:<10} val/loss {values['val/loss']:.4f}  {'ok' if ok else 'NOT FINITE'}")
    return 0


def _peaks(registry, engine_plan, run_plan, HandLoop, batch: int) -> dict[str, int]:  # noqa: N803
    """torch.cuda.max_memory_allocated of each side run alone, from a clean allocator."""
    import gc

    peaks = {}
    for side in ("hand", "engine"):
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        if side == "hand":
            hand = HandLoop(WIDTHS, N, device="cuda", batch=batch, autocast_dtype=torch.bfloat16, fused=True)
            hand.run(3 * LOG_EVERY)
            del hand
        else:
            with tempfile.TemporaryDirectory() as out:
                devnull = open(os.devnull, "w")
                stderr, sys.stderr = sys.stderr, devnull
                try:
                    run_plan(engine_plan(WIDTHS, "bench_tensor_data", N, 3 * LOG_EVERY, LOG_EVERY, out, device="cuda",
                                         precision="bf16-mixed", batch=batch), registry=registry)
                finally:
                    sys.stderr = stderr
                    devnull.close()
        peaks[side] = torch.cuda.max_memory_allocated() - base
    gc.collect()
    return peaks


if __name__ == "__main__":
    sys.exit(main())
