"""The benchmark scripts run: the suite's cheapest rows in --quick, and the GPU check's --smoke mode on the CPU.

No figure is asserted (timings are the machine's); what is checked is that each script runs
to its end and prints the table a user records in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _script(name: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "STAGEDSL_DISABLE_PLUGIN_AUTOLOAD": "1"}
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / name), *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)


def test_the_suite_prints_one_table_with_its_cheapest_rows():
    done = _script("run.py", "--quick", "--rows", "compile,search")
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    table = [line for line in lines if line.startswith("| ")]
    assert table[0].startswith("| row | measured | baseline (same run) | ratio: median [min, max]")
    assert sum("load + compile" in line for line in table) == 3
    search = [line for line in table if line.startswith("| search")]
    assert len(search) == 2 and all("search / one run" in line for line in search), search  # with and without reuse


def test_an_unknown_row_is_refused():
    done = _script("run.py", "--rows", "warp-drive")
    assert done.returncode == 2 and "unknown rows ['warp-drive']" in done.stderr


@pytest.mark.slow
def test_the_gpu_check_runs_its_smoke_mode_on_the_cpu():
    done = _script("gpu_check.py", "--smoke", "--steps", "8", "--window", "2")
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| pde") or line.startswith("| ocec")]
    assert len(rows) == 2
    assert "| ocec (tiny) | pretrain |" in rows[1] and "| yes |" in rows[1]  # channels_last for the conv model
