"""How `staged validate` scales with the size of a spec: 1k, 10k and 100k stages, and as many unknown keys.

Validation must be linear in the spec's size (issue 15: 20k stages once took 22 s, quadratic).
For each size the script times `stagedsl.spec.loader.loads_spec` (what `staged validate` runs,
with the built-in registry) against a baseline measured in the same run on the same text: parsing
it with `tomllib`, which is linear. Runs alternate (baseline, validate, baseline, ...) and the
medians are reported. Linear validation keeps the ratio validate / parse flat as the size grows
tenfold; a quadratic step would multiply it by ten at each size.

    python benchmarks/validate_scaling.py [--sizes 1000 10000 100000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import tomllib
from pathlib import Path

os.environ.setdefault("STAGEDSL_DISABLE_PLUGIN_AUTOLOAD", "1")

HEAD = """\
[run]
name = "scaling"
device = "cpu"

[model]
use = "mlp"
in_features = 8
hidden = [4]
out_features = 2

[data]
use = "toy"
batch_size = 4

[defaults]
lr = 1e-3
loss = "mse"
"""


def stages_spec(n: int) -> str:
    """`n` stages, each a few keys."""
    return HEAD + "".join(f'\n[[stage]]\nname = "s{i}"\nsteps = 2\n' for i in range(n))


def unknown_keys_spec(n: int) -> str:
    """One stage with `n` unknown keys (each an E002 with a did-you-mean)."""
    return HEAD + '\n[[stage]]\nname = "only"\nsteps = 2\n' + "".join(f"unknown_{i} = {i}\n" for i in range(n))


def _validate(path: Path, registry) -> int:
    """What `staged validate` does: read, layer and check the file, then render every problem with its line."""
    from stagedsl.diagnostics import render_problems
    from stagedsl.errors import SpecError
    from stagedsl.spec.loader import load_spec

    try:
        load_spec(path, registry=registry)
        return 0
    except SpecError as exc:
        render_problems(exc.problems)
        return len(exc.problems)


def _time(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def measure(kind: str, n: int, repeats: int, registry) -> dict:
    text = (stages_spec if kind == "stages" else unknown_keys_spec)(n)
    parse, validate = [], []
    problems = 0
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "scaling.toml"
        path.write_text(text, encoding="utf-8")
        for _ in range(repeats):  # alternating, so that a busy machine slows both alike
            parse.append(_time(lambda: tomllib.loads(path.read_text(encoding="utf-8"))))
            started = time.perf_counter()
            problems = _validate(path, registry)
            validate.append(time.perf_counter() - started)
    p, v = statistics.median(parse), statistics.median(validate)
    return {"kind": kind, "n": n, "bytes": len(text), "parse_s": p, "validate_s": v, "ratio": v / p, "problems": problems}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from stagedsl import DataSplits, TensorSplit, hookimpl
    from stagedsl.registry import Registry

    class Toy:
        @hookimpl
        def register_datasets(self, register):
            def toy():
                import torch

                return DataSplits(train=TensorSplit(torch.zeros(8, 8), torch.zeros(8, 2)))

            register("toy", toy)

    registry = Registry.load(autoload=False, plugins=[("toy", Toy())])
    print(f"{'spec':<14} {'size':>8} {'bytes':>11} {'parse s':>9} {'validate s':>11} {'validate/parse':>15} {'x per 10x':>10}")
    for kind in ("stages", "unknown keys"):
        previous = None
        for n in args.sizes:
            row = measure(kind, n, args.repeats, registry)
            growth = f"{row['validate_s'] / previous:.1f}" if previous else "-"
            previous = row["validate_s"]
            print(f"{kind:<14} {n:>8} {row['bytes']:>11,} {row['parse_s']:>9.3f} {row['validate_s']:>11.3f} {row['ratio']:>15.1f} {growth:>10}")


if __name__ == "__main__":
    main()
