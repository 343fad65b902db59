"""The benchmark suite: one command, one table. Every ratio is against a baseline measured in the same run.

Rows (``--rows`` picks some; all by default):

- ``overhead``    engine vs the hand-written loop, tiny and medium MLP (`overhead.py`: the two alternate
                  every window inside one run; ratio = median of paired window ratios); Lightning on
                  the tiny case when it is installed
- ``cli``         ``staged validate`` and ``staged plan --dry-run`` on specs/pde.toml as whole commands,
                  run in turn with ``python -c pass`` and ``python -c "import torch"`` (the floors)
- ``compile``     load + compile of a wide model: tensors x stages at three sizes (`spec_speed.py`),
                  time per tensor-stage against the smallest
- ``checkpoint``  the blocking share of checkpoints in each stage's time (`checkpoint_speed.py`, mesh)
- ``ddp``         one process against two (``--nproc 2``, gloo) at the same global batch, in turn:
                  the stage's wall time from each run's summary.json
- ``search``      a search with and without stage reuse against one run of the same plan
                  (`search_reuse.py`)

Each row gives the median with [min, max] over its samples. ``--quick`` makes every row
small (a smoke run: its figures are not for the record). Usage::

    python benchmarks/run.py [--quick] [--rows overhead,cli,...] [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

os.environ.setdefault("STAGEDSL_DISABLE_PLUGIN_AUTOLOAD", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

ROOT = Path(__file__).resolve().parent.parent
ROWS = ("overhead", "cli", "compile", "checkpoint", "ddp", "search")


class Table:
    """The suite's one table: a row per measurement, printed as it comes."""

    def __init__(self):
        self.rows: list[tuple[str, str, str, str, str]] = []
        print("| row | measured | baseline (same run) | ratio: median [min, max] | samples |")
        print("|---|---|---|---|---|", flush=True)

    def add(self, row: str, measured: str, baseline: str = "", ratio: str = "", samples: str = "") -> None:
        self.rows.append((row, measured, baseline, ratio, samples))
        print(f"| {row} | {measured} | {baseline} | {ratio} | {samples} |", flush=True)


def spread(values: list[float], fmt: str = "{:.3f}", unit: str = "") -> str:
    """``median [min, max]`` of `values`."""
    if not values:
        return "-"
    return f"{fmt.format(statistics.median(values))}{unit} [{fmt.format(min(values))}, {fmt.format(max(values))}]"


# -- rows ------------------------------------------------------------------------------------
def overhead_rows(table: Table, quick: bool) -> None:
    import torch

    from overhead import BenchPieces, HandLoop, engine_plan, interleaved, time_lightning

    from stagedsl import Registry

    torch.set_num_threads(1)
    registry = Registry.load(autoload=False, plugins=[("bench", BenchPieces())])
    cases = {"tiny MLP 32-64-64-1": ([32, 64, 64, 1], 8192, 600 if quick else 3000, 100),
             "medium MLP 512-2048-2048-10": ([512, 2048, 2048, 10], 4096, 30 if quick else 200, 10)}
    for label, (widths, n, steps, every) in cases.items():
        with tempfile.TemporaryDirectory() as out:
            result = interleaved(registry, engine_plan(widths, "bench_user_data", n, steps, every, out),
                                 {"hand": HandLoop(widths, n)}, every)
        ratios = [e[0] / h[0] for e, h in zip(result["engine"], result["hand"])]
        engine = statistics.median(w for w, _ in result["engine"]) * 1e3
        hand = statistics.median(w for w, _ in result["hand"]) * 1e3
        table.add(f"engine overhead, {label}, batch 64, 1 thread", f"{engine:.4f} ms/step", f"hand loop {hand:.4f} ms/step",
                  f"{spread(ratios)} engine / hand", f"{len(ratios)} paired windows of {every} steps")
    lightning = time_lightning([32, 64, 64, 1], 8192, 600 if quick else 2000, 100)
    if lightning is None:
        table.add("Lightning, tiny MLP", "n/a (lightning not installed)")
    else:
        hand = HandLoop([32, 64, 64, 1], 8192)
        started = time.perf_counter()
        hand.run(500)
        per_step = (time.perf_counter() - started) / 500
        table.add("Lightning, tiny MLP", f"{lightning[0] * 1e3:.4f} ms/step", f"hand loop {per_step * 1e3:.4f} ms/step",
                  f"{lightning[0] / per_step:.3f} lightning / hand (one run each, not interleaved)", "1")


def cli_rows(table: Table, quick: bool, repeat: int) -> None:
    from spec_speed import alternate_commands

    python = sys.executable
    commands = {
        "python -c pass": [python, "-c", "pass"],
        "import torch": [python, "-c", "import torch"],
        "staged validate specs/pde.toml": [python, "-m", "stagedsl", "validate", "specs/pde.toml"],
        "staged plan specs/pde.toml --dry-run": [python, "-m", "stagedsl", "plan", "specs/pde.toml", "--dry-run"],
    }
    times = alternate_commands(commands, 2 if quick else repeat)
    floor, torch_floor = times["python -c pass"], times["import torch"]
    table.add("staged validate specs/pde.toml (no torch; target <= 0.2 s)", spread(times["staged validate specs/pde.toml"], unit=" s"),
              f"python -c pass {spread(floor, unit=' s')}", "", f"{len(floor)} runs each, in turn")
    plan = times["staged plan specs/pde.toml --dry-run"]
    ratios = [p / t for p, t in zip(plan, torch_floor)]
    table.add("staged plan specs/pde.toml --dry-run (target <= 2.0 s)", spread(plan, unit=" s"),
              f"python -c 'import torch' {spread(torch_floor, unit=' s')}", f"{spread(ratios)} plan / import torch",
              f"{len(plan)} runs each, in turn")


def compile_rows(table: Table, quick: bool, repeat: int) -> None:
    from spec_speed import compile_times

    sizes = [(250, 5), (1250, 10), (2500, 20)] if quick else [(500, 5), (2500, 10), (5000, 20)]
    base = None
    for blocks, stages in sizes:
        times, tensors, count = compile_times(2 if quick else repeat, stages=stages, blocks=blocks)
        per = [t / (tensors * count) * 1e6 for t in times]
        base = base if base is not None else statistics.median(per)
        table.add(f"load + compile, {tensors} tensors x {count} stages", spread(times, unit=" s"),
                  f"{statistics.median(per):.2f} us a tensor-stage", f"{statistics.median(per) / base:.2f} x the smallest's "
                  "time a tensor-stage", f"{len(times)} compiles")


def checkpoint_rows(table: Table, quick: bool) -> None:
    from checkpoint_speed import measure

    with tempfile.TemporaryDirectory(prefix="suite-ckpt-") as tmp:
        row = measure("mesh", quick, Path(tmp), baseline=False)
    for stage in row["stages"]:
        table.add(f"checkpoints, mesh stage {stage['stage']} ({stage['checkpoints']} checkpoints, {stage['steps']} steps;"
                  " target <= 2 %)", f"{stage['save_s_total']:.3f} s blocking (median {1000 * stage['save_s_median']:.1f} ms)",
                  f"stage {stage['stage_s']:.2f} s", f"{100 * stage['share']:.2f} % of the stage", f"{stage['checkpoints']}")
    table.add("resume, mesh (checkpoint found, checked, loaded, stage rebuilt)", f"{row['resume_s']:.3f} s", "", "", "1")


DDP_SPEC = """
[run]
name = "ddp-bench"
seed = 0
device = "cpu"

[model]
use = "mlp"
in_features = 64
hidden = [{hidden}, {hidden}]
out_features = 8

[data]
use = "npz"
train = "{root}/train.npz"
val = "{root}/val.npz"
batch_size = {batch}

[[stage]]
name = "train"
steps = {steps}
lr = 1e-3
loss = "mse"
log_every = "50 steps"
"""


def ddp_rows(table: Table, quick: bool, repeat: int) -> None:
    import numpy as np

    from spec_speed import command_env

    global_batch, steps, hidden = (64, 60, 128) if quick else (256, 300, 512)
    rounds = 1 if quick else max(2, repeat // 2)
    with tempfile.TemporaryDirectory(prefix="suite-ddp-") as tmp:
        root = Path(tmp)
        rng = np.random.default_rng(0)
        for name, n in (("train", 8192), ("val", 512)):
            np.savez(root / f"{name}.npz", x=rng.normal(size=(n, 64)).astype("float32"),
                     y=rng.normal(size=(n, 8)).astype("float32"))
        for processes in (1, 2):
            (root / f"p{processes}.toml").write_text(DDP_SPEC.format(root=root, hidden=hidden, steps=steps,
                                                                     batch=global_batch // processes))
        seconds: dict[int, list[float]] = {1: [], 2: []}
        env = command_env()
        for round_ in range(rounds):
            for processes in (1, 2):
                out = root / f"run-{processes}-{round_}"
                command = [sys.executable, "-m", "stagedsl", "run", str(root / f"p{processes}.toml"), "--out", str(out)]
                command += ["--nproc", "2"] if processes == 2 else []
                subprocess.run(command, check=True, capture_output=True, cwd=ROOT, env=env)
                summary = json.loads((out / "summary.json").read_text())
                assert summary["world_size"] == processes
                seconds[processes].append(summary["stages"]["train"]["wall_time_s"])
    ratios = [two / one for one, two in zip(seconds[1], seconds[2])]
    table.add(f"DDP on the CPU (gloo): 2 processes x batch {global_batch // 2} vs 1 x {global_batch}, MLP 64-{hidden}-{hidden}-8,"
              f" {steps} steps", f"2 processes: stage {spread(seconds[2], unit=' s')}", f"1 process: stage "
              f"{spread(seconds[1], unit=' s')}", f"{spread(ratios)} two / one", f"{rounds} run(s) each, in turn")


def search_rows(table: Table, quick: bool, repeat: int) -> None:
    from search_reuse import TRIALS, measure  # benchmarks/search_reuse.py

    rounds = 1 if quick else max(2, repeat // 2)
    result = measure(rounds, quick)
    every = result["all"]
    for case, label in (("reuse", "stage reuse on"), ("no-reuse", "stage reuse off")):
        ratios = [c / r for c, r in zip(every[case], every["run"])]
        table.add(f"search, {TRIALS} trials over the last of 3 stages, {label} (stages trained: "
                  f"{result['stages_trained'][case]})", spread(every[case], unit=" s"), f"one run {spread(every['run'], unit=' s')}",
                  f"{spread(ratios)} search / one run", f"{rounds} run(s) each, in turn")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every row small: a smoke run, not for the record")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"which rows, of {', '.join(ROWS)}")
    parser.add_argument("--repeat", type=int, default=7, help="runs of each timed command or compile")
    args = parser.parse_args(argv)
    chosen = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = [r for r in chosen if r not in ROWS]
    if unknown:
        parser.error(f"unknown rows {unknown}; choose from {', '.join(ROWS)}")
    import torch

    print(f"machine: {platform.machine()} {os.cpu_count()} CPUs, Python {platform.python_version()}, torch {torch.__version__}"
          f"{', QUICK (smoke run)' if args.quick else ''}; `python benchmarks/run.py {' '.join(argv or sys.argv[1:])}`")
    table = Table()
    started = time.perf_counter()
    runners: dict[str, Callable[[], None]] = {
        "overhead": lambda: overhead_rows(table, args.quick),
        "cli": lambda: cli_rows(table, args.quick, args.repeat),
        "compile": lambda: compile_rows(table, args.quick, args.repeat),
        "checkpoint": lambda: checkpoint_rows(table, args.quick),
        "ddp": lambda: ddp_rows(table, args.quick, args.repeat),
        "search": lambda: search_rows(table, args.quick, args.repeat),
    }
    for row in chosen:
        runners[row]()
    print(f"\n{len(table.rows)} rows in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
