"""How fast the spec half of the pipeline is.

- `staged validate specs/pde.toml` and `staged plan specs/pde.toml --dry-run` as whole
  commands (new process each, median of N runs; includes Python start-up);
- `compile_plan` of a synthetic model with 10,000 parameter tensors and a 20-stage plan
  with globs, groups and a fraction strategy (target: < 1 s), in process, median of N.

    python benchmarks/spec_speed.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def command_env() -> dict[str, str]:
    """The environment commands are timed in: plugin autoload off, and bytecode cached as an installed package has
    it (``PYTHONDONTWRITEBYTECODE`` would compile every module from source each time; the cache goes to a folder
    outside the repository)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.setdefault("PYTHONPYCACHEPREFIX", os.path.join(tempfile.gettempdir(), "stagedsl-bench-pycache"))
    env["STAGEDSL_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    return env


def alternate_commands(commands: dict[str, list[str]], repeat: int) -> dict[str, list[float]]:
    """Wall seconds of each command, run in turn (one of each, `repeat` times; one warm-up round dropped)."""
    env = command_env()
    times: dict[str, list[float]] = {name: [] for name in commands}
    for round_ in range(repeat + 1):
        for name, args in commands.items():
            start = time.perf_counter()
            subprocess.run(args, check=True, capture_output=True, cwd=ROOT, env=env)
            if round_:
                times[name].append(time.perf_counter() - start)
    return times


def time_command(args: list[str], repeat: int) -> float:
    """Median wall time of a command, in seconds."""
    return statistics.median(alternate_commands({"command": args}, repeat)["command"])


class WideModelPlugin:
    """A test plugin: a model with `blocks` Linear layers (2 tensors each)."""

    from stagedsl import hookimpl

    @hookimpl
    def register_models(self, register):
        def wide(blocks: int = 5000):
            """Many small Linear layers in four top-level modules."""
            import torch.nn as nn

            class Wide(nn.Module):
                def __init__(self):
                    super().__init__()
                    per = blocks // 4
                    self.encoder = nn.ModuleList(nn.Linear(2, 2) for _ in range(per))
                    self.backbone = nn.ModuleList(nn.Linear(2, 2) for _ in range(per))
                    self.transformer = nn.ModuleList(nn.Linear(2, 2) for _ in range(per))
                    self.head = nn.ModuleList(nn.Linear(2, 2) for _ in range(blocks - 3 * per))

                def forward(self, x):
                    return x

            return Wide()

        register("wide", wide)


def wide_spec_text(stages: int = 20, blocks: int = 5000) -> str:
    """A spec of `stages` stages over the wide model (2 x `blocks` tensors): alternating freezes, groups and a fraction."""
    lines = [
        '[model]', 'use = "wide"', f'blocks = {blocks}', '',
        '[data]', 'use = "pde_synthetic"', 'n_train = 64', 'n_val = 16', 'batch_size = 8', '',
        '[defaults]', 'lr = 1e-3', 'loss = "mse"', 'eval = { every = "2 epochs" }', '',
    ]
    freezes = ['["transformer.**"]', '["encoder.**", "head.*.bias"]', '[{ use = "fraction", module = "backbone", fraction = 0.5, end = "first" }]', '["re:^head\\\\.1[0-9]+\\\\..*"]']
    for i in range(stages):
        lines += [
            '[[stage]]', f'name = "s{i}"', 'epochs = 4', f'freeze = {freezes[i % len(freezes)]}',
            'groups = [{ name = "bb", params = ["backbone.**"], lr_scale = 0.1 }, { name = "hd", params = ["head.**.weight"], lr = 1e-4 }]',
            'scheduler = { use = "multistep", milestones = ["1 epoch", "3 epochs"] }',
        ]
        if i:
            lines.append(f'init = {{ stage = "s{i - 1}" }}')
        lines.append("")
    return "\n".join(lines)


def compile_times(repeat: int, *, stages: int = 20, blocks: int = 5000) -> tuple[list[float], int, int]:
    """Seconds of each load+compile of the wide spec; tensors; stages."""
    os.environ["STAGEDSL_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    from stagedsl import Registry
    from stagedsl.plan.compile import compile_plan
    from stagedsl.spec.loader import loads_spec

    registry = Registry.load(autoload=False, plugins=[("wide", WideModelPlugin())])
    text = wide_spec_text(stages, blocks)
    times = []
    plan = None
    for _ in range(repeat):
        start = time.perf_counter()
        spec = loads_spec(text, file="wide.toml", registry=registry)
        plan = compile_plan(spec, registry)
        times.append(time.perf_counter() - start)
    return times, len(plan.parameters), len(plan.stages)


def time_compile(repeat: int) -> tuple[float, int, int]:
    """Median seconds of load+compile of the wide spec (10,000 tensors x 20 stages); tensors; stages."""
    times, tensors, stages = compile_times(repeat)
    return statistics.median(times), tensors, stages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    staged = [sys.executable, "-m", "stagedsl"]
    validate = time_command(staged + ["validate", "specs/pde.toml"], args.repeat)
    plan = time_command(staged + ["plan", "specs/pde.toml", "--dry-run"], args.repeat)
    bare = time_command([sys.executable, "-c", "pass"], args.repeat)
    compile_s, tensors, stages = time_compile(args.repeat)
    print(f"machine: {platform.machine()} {platform.processor() or ''} {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"{'what':<52} {'median':>9}  target")
    print(f"{'python -c pass (start-up floor)':<52} {bare:>8.3f}s")
    print(f"{'staged validate specs/pde.toml':<52} {validate:>8.3f}s  < 0.3 s")
    print(f"{'staged plan specs/pde.toml --dry-run':<52} {plan:>8.3f}s")
    print(f"{f'load + compile: {tensors} tensors x {stages} stages':<52} {compile_s:>8.3f}s  < 1 s")


if __name__ == "__main__":
    main()
