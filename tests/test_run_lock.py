"""`stagedsl.run_lock`: one writer per run directory, re-entrant in its process, released with it."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from stagedsl.errors import RunError
from stagedsl.run_lock import hold, holder

HOLD_UNTIL_RELEASED = """
import sys, time, pathlib
from stagedsl.run_lock import hold
folder, release = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
with hold(folder, "resume"):
    (folder / "held").write_text("")
    while not release.exists():
        time.sleep(0.02)
"""


def test_a_second_process_is_refused_naming_the_holder_and_the_lock_goes_with_it(tmp_path):
    run_dir, release = tmp_path / "run", tmp_path / "release"
    run_dir.mkdir()
    child = subprocess.Popen([sys.executable, "-c", HOLD_UNTIL_RELEASED, str(run_dir), str(release)])
    try:
        deadline = time.monotonic() + 60
        while not (run_dir / "held").exists():
            assert child.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        with pytest.raises(RunError) as caught:
            with hold(run_dir, "run"):
                pass
        problem = caught.value.problems[0]
        assert problem.code == "E441" and f"in use by process {child.pid} (`staged resume`" in problem.message
        assert f"kill {child.pid}" in problem.hint
    finally:
        release.write_text("")
        child.wait(timeout=60)
    with hold(run_dir, "run"):  # released when its process ended
        assert holder(run_dir)["command"] == "run"


def test_a_lock_file_left_by_a_dead_process_blocks_nobody_and_the_lock_is_reentrant(tmp_path):
    (tmp_path / ".lock").write_text(json.dumps({"pid": 2**22 + 12345, "command": "run"}))  # no such process holds it
    with hold(tmp_path, "resume"):
        with hold(tmp_path, "export"):  # the CLI around the engine: the same process takes it again
            assert holder(tmp_path)["command"] == "resume"
    with hold(tmp_path, "run"):
        pass


def test_only_rank_0_of_a_distributed_run_takes_the_lock(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    with hold(tmp_path / "run", "run"):
        assert not (tmp_path / "run").exists()
