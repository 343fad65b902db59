"""Search with shared stages trained once: a 6-trial grid over the last stage's LR of a 3-stage plan,
with and without stage reuse, against one full run of the same plan.

The plan is seed 000's shape at a small size (the PDE surrogate: warm up the encoder/decoder,
train the transformer from their best weights, fine-tune everything from the transformer's
best), the stages 3 : 6 : 1 long as in the seed (2000 / 4000 / 2000 steps there: its fine-tune
is a quarter of the plan; here a tenth, so that six trials of it fit in one run's time). Each
repeat times, in an order that rotates from repeat to repeat:

  run       `run_plan` of the spec's plan (one full run, the baseline)
  reuse     `run_search` of its `[search]`, 6 trials, stage reuse on (the default): stages 1-2 once
  no-reuse  the same search with `reuse = false`: every trial trains every stage

all in this process, one thread (`run.threads = 1`), after one untimed warm-up of each. The
figures are the medians over the repeats and their ratios to the run's median (target: reuse
<= 2.0x one run; without reuse about 6x). Usage::

    python benchmarks/search_reuse.py [--repeats N] [--quick]

`measure(repeats, quick)` returns the figures as a dict (for `benchmarks/run.py`).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("STAGEDSL_DISABLE_PLUGIN_AUTOLOAD", "1")

TRIALS = 6
SPEC = """\
[run]
name = "bench"
seed = 0
threads = 1

[model]
use = "pde_transformer"
channels = 2
size = 8
patch = 4
dim = 16
depth = 1
heads = 2

[data]
use = "pde_synthetic"
n_train = 64
n_val = 16
size = 8
channels = 2
batch_size = 8

[defaults]
lr = 1e-3
loss = "mse"
metrics = ["mse"]
eval = {{ every = "{every} steps", monitor = "val/loss" }}
log_every = "{every} steps"

[[stage]]
name = "warmup"
steps = {warmup}
freeze = ["transformer.**"]

[[stage]]
name = "transformer"
steps = {transformer}
train = ["transformer.**"]
init = {{ stage = "warmup", which = "best" }}

[[stage]]
name = "finetune"
steps = {finetune}
lr = 1e-4
init = {{ stage = "transformer", which = "best" }}

[search]
metric = "val/mse"
sampler = "grid"

[search.space]
"stage.finetune.lr" = [1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3]
"""


def spec_text(quick: bool) -> str:
    """The benchmark's spec: 3 : 6 : 1 stage lengths (300 / 600 / 100 steps; a fifth of that with `quick`)."""
    scale = 5 if quick else 1
    return SPEC.format(warmup=300 // scale, transformer=600 // scale, finetune=100 // scale, every=50 // scale)


@contextlib.contextmanager
def _quiet():
    """The engine's progress lines off (they go to stderr) while a case runs."""
    with contextlib.redirect_stderr(io.StringIO()):
        yield


def _cases(spec, registry, folder: Path):
    """The three timed cases, each a function of the repeat number returning stages trained."""
    import attrs

    from stagedsl.engine.runner import run_plan
    from stagedsl.plan.compile import compile_plan
    from stagedsl.search.runner import run_search

    plan = compile_plan(attrs.evolve(spec, search=None), registry)
    no_reuse = attrs.evolve(spec, search=attrs.evolve(spec.search, reuse=False))

    def run(tag: str) -> int:
        run_plan(plan, registry=registry, out=folder / f"run-{tag}", handle_signals=False)
        return len(plan.stages)

    def search(tag: str, which) -> int:
        result = run_search(which, registry=registry, out=folder / tag, overwrite=True, say=lambda _: None)
        assert result.summary["counts"]["complete"] == TRIALS, result.summary["counts"]
        return result.summary["counts"]["stages_trained"]

    return {"run": run, "reuse": lambda tag: search(f"reuse-{tag}", spec), "no-reuse": lambda tag: search(f"noreuse-{tag}", no_reuse)}


def measure(repeats: int = 3, quick: bool = False) -> dict:
    """Time the three cases `repeats` times each (rotating their order); medians, ratios to one run, stages trained."""
    from stagedsl.registry import Registry
    from stagedsl.spec.loader import loads_spec

    registry = Registry.load(autoload=False)
    with tempfile.TemporaryDirectory() as tmp:
        spec_path = Path(tmp) / "bench.toml"
        spec_path.write_text(spec_text(quick))
        spec = loads_spec(spec_path.read_text(), file=str(spec_path), registry=registry)
        cases = _cases(spec, registry, Path(tmp))
        names = list(cases)
        trained = {}
        with _quiet():
            for name in names:  # warm-up: imports, first-use costs
                trained[name] = cases[name]("warm")
        times: dict[str, list[float]] = {name: [] for name in names}
        for repeat in range(repeats):
            order = names[repeat % len(names):] + names[:repeat % len(names)]
            for name in order:
                with _quiet():
                    started = time.perf_counter()
                    cases[name](str(repeat))
                    times[name].append(time.perf_counter() - started)
    medians = {name: statistics.median(values) for name, values in times.items()}
    return {
        "repeats": repeats, "quick": quick, "trials": TRIALS, "seconds": medians, "all": times,
        "ratio_reuse": medians["reuse"] / medians["run"], "ratio_no_reuse": medians["no-reuse"] / medians["run"],
        "stages_trained": trained,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="stages a fifth as long")
    args = parser.parse_args()
    result = measure(args.repeats, args.quick)
    s = result["seconds"]
    print(f"python benchmarks/search_reuse.py --repeats {args.repeats}{' --quick' if args.quick else ''}  "
          f"(load average {os.getloadavg()[0]:.1f})")
    print(f"{'case':<10} {'median s':>9} {'x one run':>10} {'stages trained':>15}  each repeat (s)")
    for name, ratio in (("run", 1.0), ("reuse", result["ratio_reuse"]), ("no-reuse", result["ratio_no_reuse"])):
        each = " ".join(f"{t:.2f}" for t in result["all"][name])
        print(f"{name:<10} {s[name]:>9.2f} {ratio:>10.2f} {result['stages_trained'][name]:>15}  {each}")
    print(f"target: reuse <= 2.0x one run ({'met' if result['ratio_reuse'] <= 2.0 else 'NOT met'}); without reuse ~{TRIALS}x")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
