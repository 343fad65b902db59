"""Start-up: each command imports only what it needs (timings are benchmarks/run.py's; here, which modules load).

`staged validate` imports neither torch nor pydantic (typer 0.29 coerces options through
pydantic: ~0.06 s CPU on every command, so pyproject keeps typer below it); `staged plan
--dry-run` builds no optimizer, so torch._dynamo (imported by any torch optimizer) stays out.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _loaded_after(argv: list[str], modules: tuple[str, ...]) -> list[str]:
    code = ("import sys; from stagedsl.cli.app import run_cli; "
            f"rc = run_cli({argv!r}); assert rc == 0, rc; "
            f"print(sorted(m for m in {modules!r} if m in sys.modules))")
    env = {**os.environ, "STAGEDSL_DISABLE_PLUGIN_AUTOLOAD": "1"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return eval(done.stdout.strip().splitlines()[-1])


def test_validate_loads_no_torch_and_no_pydantic():
    loaded = _loaded_after(["validate", "specs/pde.toml"], ("torch", "pydantic", "numpy"))
    assert loaded == [], f"{loaded} imported by `staged validate` (typer >= 0.29 imports pydantic: pip install -e .)"


def test_a_dry_run_builds_no_optimizer_and_loads_no_compiler():
    loaded = _loaded_after(["plan", "specs/pde.toml", "--dry-run"], ("torch", "torch._dynamo", "torch._inductor", "torchmetrics",
                                                                      "tensorboard", "onnx"))
    assert loaded == ["torch"]
