"""Seeding: one seed makes a CPU run bit-for-bit repeatable.

The run seed seeds model construction. Each stage (and each gate retry of it) is then
seeded from `stage_seed(run_seed, stage_index, attempt)`, so a stage's data order and
random ops do not depend on how much randomness earlier stages drew, and a retry sees a
different shuffle than the attempt it replaces.
"""

from __future__ import annotations

import hashlib
import random
import signal

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python's `random`, NumPy and torch (every device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def stage_seed(run_seed: int, stage_index: int, attempt: int = 0) -> int:
    """A seed for one attempt of one stage, derived from the run seed."""
    digest = hashlib.sha256(f"{run_seed}/{stage_index}/{attempt}".encode()).digest()
    return int.from_bytes(digest[:8], "little") % 2**63


def worker_init_fn(worker_id: int) -> None:
    """Seed `random` and NumPy in a DataLoader worker from the seed torch gave it.

    The worker also ignores SIGINT and SIGTERM: a Ctrl-C (sent to the whole process
    group) or a scheduler's SIGTERM is the main process's to handle (finish the step,
    save, stop), and a worker that died of it would fail the step being finished.
    """
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)
    for name in ("SIGINT", "SIGTERM"):
        number = getattr(signal, name, None)
        if number is not None:
            try:
                signal.signal(number, signal.SIG_IGN)
            except (ValueError, OSError):
                pass
