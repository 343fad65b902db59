"""What the matrix, ensemble and eval tests share: seed 002's pieces at their smallest, and
seed 002's own spec trained with its tiny profile."""

from pathlib import Path

import pytest

PAIRS = """\
[run]
name = "pairs"
seed = 7

[model]
use = "pair_classifier"
width = 4
layers = [1, 1]
feat_dim = 8
dropout = 0.0

[data]
use = "digit_pairs"
n_train = 128
n_val = 80
n_test = 40
batch_size = 32
eval_batch_size = 40

[defaults]
lr = 3e-3
loss = "cross_entropy"
metrics = ["accuracy"]
eval = { every = "2 steps", monitor = "val/accuracy" }
log_every = 2

[[stage]]
name = "head"
steps = 4
freeze = ["encoder.layer2.**"]

[[stage]]
name = "all"
steps = 6
init = { stage = "head", which = "best" }

[matrix]
seeds = [1, 2]

[matrix.variant.plain]

[matrix.variant.fused]
model = { fusion = true }

[[ensemble]]
name = "mean"
use = "mean"

[[ensemble]]
name = "stack"
use = "stacking"
meta = { use = "logistic" }
folds = 3
"""

COMPARE = Path(__file__).resolve().parents[2] / "specs" / "compare.toml"


def train_compare(folder: Path) -> Path:
    """`staged run specs/compare.toml --profile tiny` into `folder/run`, with the built-in registry."""
    from stagedsl.cli.app import run_cli
    from stagedsl.registry import Registry, set_registry

    set_registry(Registry.load(autoload=False))
    try:
        assert run_cli(["run", str(COMPARE), "--profile", "tiny", "--out", str(folder / "run")]) == 0
    finally:
        set_registry(None)
    return folder / "run"


@pytest.fixture(scope="module")
def compare_run(tmp_path_factory) -> Path:
    """Seed 002's spec, tiny profile, trained once per test module."""
    return train_compare(tmp_path_factory.mktemp("compare"))
