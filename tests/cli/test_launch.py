"""`--nproc N` and torchrun's options: what is refused before any process starts, the workers' command
line, and how a failed group is reported (which process to blame, or the decision's exit code)."""

from __future__ import annotations

import json
import signal

import pytest
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

from stagedsl.cli.app import run_cli
from stagedsl.cli.launch import Launch, _failed, launch_options, worker_argv, worker_program
from stagedsl.errors import RunError, UsageError


def _code(call) -> str:
    with pytest.raises(UsageError) as info:
        call()
    return info.value.problems[0].code


def test_launch_options_are_checked_before_any_process_starts(monkeypatch):
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert launch_options(None) is None
    assert launch_options(1) is None  # one process on this machine: run here, no torchrun
    assert _code(lambda: launch_options(None, nnodes="2")) == "E093"
    assert _code(lambda: launch_options(0)) == "E092"
    assert _code(lambda: launch_options(2, nnodes="1:2")) == "E093"  # elastic ranges change the batch
    assert _code(lambda: launch_options(2, nnodes="2")) == "E093"  # two machines and no meeting point
    local = launch_options(2)
    assert local.world_size == 2 and local.local and local.torchrun_args() == ["--nproc-per-node", "2", "--nnodes", "1",
                                                                              "--standalone"]
    two = launch_options(4, nnodes="2", node_rank=1, rdzv_endpoint="10.0.0.1:29400", rdzv_id="job7")
    assert two.world_size == 8 and not two.local
    assert two.torchrun_args() == ["--nproc-per-node", "4", "--nnodes", "2", "--node-rank", "1",
                                   "--rdzv-endpoint", "10.0.0.1:29400", "--rdzv-id", "job7"]
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "x")
    assert _code(lambda: launch_options(2)) == "E095"


def test_the_workers_run_the_same_command_without_the_launch_options():
    argv = worker_argv("run", "specs/pde.toml", [("--out", "runs/x"), ("--profile", None), ("--set", ["a=1", "b=2"]),
                                                 ("--overwrite", True), ("--from-stage", None), ("--force", False)])
    assert argv == ["run", "specs/pde.toml", "--out", "runs/x", "--set", "a=1", "--set", "b=2", "--overwrite"]
    assert worker_program() == ["-m", "stagedsl"]  # pytest is not a script of ours


def _failure(tmp_path, rank: int, exitcode: int, said: str | None = None) -> ProcessFailure:
    path = tmp_path / f"error-{rank}.json"
    if said is not None:
        path.write_text(json.dumps({"message": said, "timestamp": 100}))
    return ProcessFailure(local_rank=rank, pid=1000 + rank, exitcode=exitcode, error_file=str(path))


def test_a_group_that_failed_names_the_process_to_blame(tmp_path):
    plan = Launch(2)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "summary.json").write_text(json.dumps({"last_checkpoint": "stages/b/state/step_000000004"}))
    killed = ChildFailedError("w", {0: _failure(tmp_path, 0, 1, "E481: lost contact"),
                                    1: _failure(tmp_path, 1, -signal.SIGKILL)})
    with pytest.raises(RunError) as info:
        _failed(killed, plan, tmp_path / "run")
    problem = info.value.problems[0]
    assert problem.code == "E480" and problem.message.startswith("process 1 of 2 (local rank 1, pid 1001) was killed by SIGKILL")
    assert "step_000000004" in problem.hint and f"staged resume {tmp_path / 'run'} --nproc 2" in problem.hint

    crashed = ChildFailedError("w", {0: _failure(tmp_path, 0, -signal.SIGTERM), 1: _failure(tmp_path, 1, 1, "E400: boom")})
    with pytest.raises(RunError) as info:
        _failed(crashed, plan, None)
    assert "process 1 of 2" in info.value.problems[0].message and "E400: boom" in info.value.problems[0].message


def test_a_decision_every_process_took_passes_its_exit_code_on(tmp_path):
    gate = ChildFailedError("w", {0: _failure(tmp_path, 0, 3, "E420: gate"), 1: _failure(tmp_path, 1, -signal.SIGTERM)})
    assert _failed(gate, Launch(2), None) == 3
    stopped = ChildFailedError("w", {1: _failure(tmp_path, 1, 130, "E440: stopped"), 0: _failure(tmp_path, 0, 130, "E440: stopped")})
    assert _failed(stopped, Launch(2), None) == 130


def test_launch_options_without_nproc_exit_2(tmp_path, capsys, specs_dir):
    assert run_cli(["run", str(specs_dir / "pde.toml"), "--profile", "tiny", "--nnodes", "2"]) == 2
    assert "error[E093]" in capsys.readouterr().err


def test_a_matrix_refuses_members_spread_over_machines():
    from stagedsl.cli.matrix_commands import member_processes

    assert member_processes(None, 2, None) == 1
    assert member_processes(Launch(2), 2, "cpu") == 2
    with pytest.raises(UsageError) as info:
        member_processes(Launch(2, nnodes=2, rdzv_endpoint="h:1"), 1, None)
    assert info.value.problems[0].code == "E094"


def test_staged_plan_shows_the_plan_of_n_processes(capsys, specs_dir):
    assert run_cli(["plan", str(specs_dir / "metr.toml"), "--profile", "tiny", "--nproc", "2", "--no-chart"]) == 0
    out = capsys.readouterr().out
    assert "batch 64 per process x 2 processes = 128 a step" in out and ", 2 processes (DDP)" in out
    assert "DDP: find_unused_parameters off" in out
