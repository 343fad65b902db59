"""A member of N processes: its command is torchrun's, and CUDA slots get GPUs of their own."""

from __future__ import annotations

import sys

from stagedsl.matrix.jobs import slot_gpus, worker_command
from stagedsl.matrix.layout import MatrixDir


def test_a_member_of_several_processes_is_started_by_torchrun(tmp_path):
    matrix_dir = MatrixDir(tmp_path)
    assert worker_command(matrix_dir, "plain-s1", False, None) == [sys.executable, "-m", "stagedsl.matrix.worker",
                                                                    str(tmp_path), "plain-s1"]
    assert worker_command(matrix_dir, "plain-s1", True, "cpu", 2) == [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "stagedsl.matrix.worker", str(tmp_path), "plain-s1", "--resume", "--device", "cpu"]


def test_gpus_are_left_alone_on_the_cpu():
    assert slot_gpus(1, 2, "cpu", "auto") is None
