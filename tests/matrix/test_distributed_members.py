"""`staged run MATRIX --jobs 2 --nproc 2`: two members at a time, each as two processes (its own torchrun)."""

from __future__ import annotations

import json

import pytest

from stagedsl.cli.app import run_cli

from .fixtures import PAIRS

pytestmark = pytest.mark.slow


def test_two_members_at_a_time_each_as_two_processes(tmp_path, registry, capsys):
    spec = tmp_path / "pairs.toml"
    spec.write_text(PAIRS.replace("seeds = [1, 2]", "seeds = [1]").replace('meta = { use = "logistic" }\nfolds = 3', 'meta = { use = "logistic" }\nfolds = 2'))
    assert run_cli(["run", str(spec), "--out", str(tmp_path / "run"), "--jobs", "2", "--nproc", "2", "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "member plain-s1 (1/2): training as 2 processes" in err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "completed" and sorted(summary["members"]) == ["fused-s1", "plain-s1"]
    for member in ("plain-s1", "fused-s1"):
        record = json.loads((tmp_path / "run" / "members" / member / "summary.json").read_text())
        assert record["world_size"] == 2 and record["status"] == "completed"
        plan = json.loads((tmp_path / "run" / "members" / member / "plan.json").read_text())
        assert plan["distributed"]["global_batch"] == 64
    assert summary["ensembles"]["mean"]["status"] == "completed"
