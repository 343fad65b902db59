"""What the search tests share: a three-stage spec on the smallest PDE surrogate (warm up the
encoder/decoder, train the transformer from its best weights, fine-tune everything from the
transformer's), a `[search]` over the last stage's learning rate, and helpers to read a run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from stagedsl.engine.events import Callback

SPEC = """\
[run]
name = "tiny"
seed = 0
threads = 1

[model]
use = "pde_transformer"
channels = 2
size = 8
patch = 4
dim = 8
depth = 1
heads = 2

[data]
use = "pde_synthetic"
n_train = 16
n_val = 8
size = 8
channels = 2
batch_size = 4

[defaults]
lr = 1e-3
loss = "mse"
metrics = ["mse"]
eval = {{ every = "2 steps", monitor = "val/loss" }}
log_every = 2

[[stage]]
name = "warmup"
steps = 4
freeze = ["transformer.**"]

[[stage]]
name = "middle"
steps = 4
train = ["transformer.**"]
init = {{ stage = "warmup", which = "best" }}{middle_extra}

[[stage]]
name = "finetune"
steps = 4
init = {{ stage = "middle" }}

[search]
metric = "val/mse"
{search}

[search.space]
{space}
"""

GRID = 'sampler = "grid"'
LR_GRID = '"stage.finetune.lr" = [1e-3, 3e-4, 1e-4]'


def spec_text(search: str = GRID, space: str = LR_GRID, middle_extra: str = "") -> str:
    """The spec with its `[search]` keys (`search`), its `[search.space]` lines (`space`) and extra keys in stage 2."""
    return SPEC.format(search=search, space=space, middle_extra=middle_extra)


@pytest.fixture
def write_spec(tmp_path):
    """``write_spec(**parts)`` writes `spec_text(**parts)` to tmp_path/spec.toml and returns its path."""

    def write(**parts) -> Path:
        path = tmp_path / "spec.toml"
        path.write_text(spec_text(**parts))
        return path

    return write


class StageCounter(Callback):
    """Counts how often each stage starts training, across every run it is passed to."""

    def __init__(self):
        self.starts: dict[str, int] = {}

    def stage_start(self, state) -> None:
        self.starts[state.stage_name] = self.starts.get(state.stage_name, 0) + 1


def weights(run_dir: Path, stage: str, which: str = "last") -> dict[str, torch.Tensor]:
    from stagedsl.engine.checkpointing.weights import read_weights

    return read_weights(Path(run_dir) / "stages" / stage / f"{which}.safetensors")


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def read_json(path: Path):
    return json.loads(Path(path).read_text())


def events(run_dir: Path, kind: str) -> list[dict]:
    rows = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r.get("event") == kind]
