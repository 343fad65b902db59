"""CPU threads: training speed at 1 vs 2 intra-op threads, quiet and beside one busy process.

Two measurements, each a fresh ``staged run`` process per case (torch's thread pool is
per process), cases alternating within each repeat (the order flips every repeat),
medians reported with the 1-minute load average seen at each case's start:

- ``speed``: training steps/s (steps / stage wall time from ``summary.json``, so start-up
  and export are not in it) of pde (stages cut to 150/150/50 steps) and ocec (1 epoch of 16
  steps per stage), at ``run.threads`` = 1, 2 and "auto", quiet and with a competing process;
  ratio = steps/s at 1 thread / steps/s at 2 threads, per repeat, then the median.
- ``wall``: the whole README command, ``staged run specs/pde.toml``, wall time at
  threads auto / 1 / 2, quiet and with a competing process (``--timeout`` caps a case).

"Competing process": ``python -c "while True: pass"``, started a second before the case
and killed after it. "Quiet" means no process of ours competes; on a shared machine
others may, which is why the load average is printed beside every figure.

Usage::

    python benchmarks/threads.py speed [--repeats 3]
    python benchmarks/threads.py wall [--repeats 1] [--timeout 900] [--profile seed]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STAGED = [sys.executable, "-m", "stagedsl"]
SPEED_CASES = {
    "pde": ["specs/pde.toml", "--set", "stage.warmup_encdec.steps=150", "--set", "stage.transformer.steps=150",
            "--set", "stage.finetune.steps=50"],
    "ocec": ["specs/ocec.toml", "--set", "stage.pretrain.epochs=1", "--set", "stage.heads.epochs=1",
             "--set", "stage.unfreeze.epochs=1", "--set", "stage.heads.gate.on_fail=\"warn\""],
}
THREADS = ("1", "2", '"auto"')
CONDITIONS = (False, True)  # quiet, one busy process


class Competitor:
    """One busy process for the duration of a `with` block (or nothing when `busy` is false)."""

    def __init__(self, busy: bool):
        self.busy, self.process = busy, None

    def __enter__(self) -> "Competitor":
        if self.busy:
            self.process = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            time.sleep(1.0)
        return self

    def __exit__(self, *exc) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()


def run_case(args: list[str], threads: str, busy: bool, timeout: float) -> dict:
    """One `staged run`: wall time, steps/s over the stages, load at its start, and whether it finished."""
    with tempfile.TemporaryDirectory() as out, Competitor(busy):
        load = os.getloadavg()[0]
        command = [*STAGED, "run", *args, "--set", f"run.threads={threads}", "--out", out]
        env = {**os.environ, "STAGEDSL_DISABLE_PLUGIN_AUTOLOAD": "1"}
        started = time.perf_counter()
        try:
            subprocess.run(command, cwd=ROOT, env=env, check=True, timeout=timeout,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:  # stopped at the cap: the steps it reached, from its metrics.jsonl
            wall = time.perf_counter() - started
            steps = _steps_reached(Path(out) / "metrics.jsonl")
            return {"wall_s": wall, "load": load, "finished": False, "steps_per_s": steps / wall if steps else None,
                    "steps": steps}
        wall = time.perf_counter() - started
        summary = json.loads((Path(out) / "summary.json").read_text())
        stages = summary["stages"].values()
        steps = sum(s["steps"] for s in stages)
        seconds = sum(s["wall_time_s"] for s in stages)
        return {"wall_s": wall, "load": load, "finished": True, "steps_per_s": steps / seconds if seconds else None}


def _steps_reached(path: Path) -> int:
    steps = 0
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                steps = max(steps, int(json.loads(line).get("step") or 0))
            except ValueError:
                continue
    return steps


def _cases(names: list[str], repeats: int):
    """(repeat, name, busy, threads) in alternating order: busy/quiet and the thread order flip each repeat."""
    for repeat in range(repeats):
        conditions = CONDITIONS if repeat % 2 == 0 else tuple(reversed(CONDITIONS))
        for busy in conditions:
            for name in names:
                order = THREADS if repeat % 2 == 0 else tuple(reversed(THREADS))
                for threads in order:
                    yield repeat, name, busy, threads


def _label(threads: str) -> str:
    return threads.strip('"')


def speed(repeats: int, timeout: float) -> None:
    results: dict[tuple, list[dict]] = {}
    for repeat, name, busy, threads in _cases(list(SPEED_CASES), repeats):
        result = run_case(SPEED_CASES[name], threads, busy, timeout)
        results.setdefault((name, busy, threads), []).append(result)
        print(f"repeat {repeat} {name:5} {'busy ' if busy else 'quiet'} threads={_label(threads):4} "
              f"{result['steps_per_s'] or 0:8.1f} steps/s  wall {result['wall_s']:6.1f}s  load {result['load']:.2f}", flush=True)
    print("\n| spec | condition | threads | steps/s (median) | load at start (median) | 1-thread / 2-thread speed (median of repeats) |")
    print("|---|---|---|---|---|---|")
    for name in SPEED_CASES:
        for busy in (False, True):
            one, two = results[(name, busy, "1")], results[(name, busy, "2")]
            ratios = [a["steps_per_s"] / b["steps_per_s"] for a, b in zip(one, two) if a["steps_per_s"] and b["steps_per_s"]]
            for threads in THREADS:
                rows = results[(name, busy, threads)]
                rate = statistics.median(r["steps_per_s"] or 0.0 for r in rows)
                load = statistics.median(r["load"] for r in rows)
                ratio = f"{statistics.median(ratios):.2f}x" if threads == "1" and ratios else ""
                print(f"| {name} | {'one busy process' if busy else 'quiet'} | {_label(threads)} | {rate:.1f} | {load:.2f} | {ratio} |")


def wall(repeats: int, timeout: float, profile: str | None) -> None:
    results: dict[tuple, list[dict]] = {}
    args = ["specs/pde.toml", *(["--profile", profile] if profile else [])]
    for repeat, _, busy, threads in _cases(["pde"], repeats):
        result = run_case(args, threads, busy, timeout)
        results.setdefault((busy, threads), []).append(result)
        state = "" if result["finished"] else f" (stopped at the {timeout:.0f}s cap, at step {result['steps']})"
        print(f"repeat {repeat} {'busy ' if busy else 'quiet'} threads={_label(threads):4} wall {result['wall_s']:7.1f}s{state}  "
              f"{result['steps_per_s'] or 0:7.1f} steps/s  load {result['load']:.2f}", flush=True)
    print(f"\n| `staged run {' '.join(args)}` | threads | wall time (median) | steps/s | load at start |")
    print("|---|---|---|---|---|")
    for busy in CONDITIONS:
        for threads in THREADS:
            rows = results[(busy, threads)]
            wall_s = statistics.median(r["wall_s"] for r in rows)
            capped = "≥ " if not all(r["finished"] for r in rows) else ""
            rates = [r["steps_per_s"] for r in rows if r["steps_per_s"]]
            rate = f"{statistics.median(rates):.1f}" if rates else "-"
            load = statistics.median(r["load"] for r in rows)
            print(f"| {'one busy process' if busy else 'quiet'} | {_label(threads)} | {capped}{wall_s:.0f} s | {rate} | {load:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("speed", "wall"))
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds before one case is stopped")
    parser.add_argument("--threads", default=None, help='wall: only these settings, e.g. "1,auto"')
    parser.add_argument("--busy-only", action="store_true", help="wall: only the cases with a competing process")
    parser.add_argument("--profile", default=None, help="wall: a profile of specs/pde.toml (default: none, the README's command)")
    options = parser.parse_args()
    print(f"{os.cpu_count()} cores, {len(os.sched_getaffinity(0))} usable; python {sys.version.split()[0]}", flush=True)
    global THREADS, CONDITIONS
    if options.threads:
        THREADS = tuple(t if t.isdigit() else f'"{t}"' for t in options.threads.split(","))
    if options.busy_only:
        CONDITIONS = (True,)
    if options.what == "speed":
        speed(options.repeats or 3, options.timeout)
    else:
        wall(options.repeats or 1, options.timeout, options.profile)


if __name__ == "__main__":
    main()
