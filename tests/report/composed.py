"""The composed runs the report tests draw, made once per session like the runs in `conftest`:

- `matrix_run`: seed 002's pair classifier at its smallest (tests/matrix's PAIRS, one seed):
  members plain-s1 and fused-s1, ensembles mean and stack, and in every member a gate that passes
  and one that fails (and warns);
- `search_run`: a grid search on the smallest PDE surrogate whose trials end every way: complete,
  pruned (a gate stops the plan) and failed (a learning rate that blows the weights up);
- `matrix_report`, `search_report`: their pages, with what `staged report --json` printed (`WRITTEN`).

A test module imports the fixtures it uses from here (``from .composed import matrix_run``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import _once, _shared_root

MATRIX = """\
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
metrics = ["accuracy", "f1"]
eval = { every = "2 steps", monitor = "val/accuracy" }
log_every = 2

[[stage]]
name = "head"
steps = 4
freeze = ["encoder.layer2.**"]
gate = { when = "val/accuracy >= 0.0", on_fail = "stop" }

[[stage]]
name = "all"
steps = 4
init = { stage = "head", which = "best" }
gate = { when = "val/f1 > 2.0", on_fail = "warn" }

[matrix]
seeds = [1]

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
"""tests/matrix's PAIRS at one seed, with f1 and a gate on each stage (PAIRS cannot be imported from here: this
folder is a package of its own under pytest's importlib mode)."""

SEARCH = """\
[run]
name = "lrsearch"
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
eval = { every = "2 steps", monitor = "val/loss" }
log_every = 2

[[stage]]
name = "warmup"
steps = 4
freeze = ["transformer.**"]

[[stage]]
name = "finetune"
steps = 4
init = { stage = "warmup", which = "best" }
gate = { when = "val/mse < 1e9", on_fail = "stop" }

[search]
metric = "val/mse"
sampler = "grid"

[search.space]
"stage.finetune.lr" = [1e-3, 1e-4, 1e30]
"stage.finetune.gate.when" = ["val/mse < 1e9", "val/mse < 0.0"]
"""


def _composed(folder: Path, command: str, text: str, *extra: str) -> None:
    from stagedsl.cli.app import run_cli
    from stagedsl.registry import Registry, set_registry

    folder.mkdir(parents=True, exist_ok=True)
    spec = folder / "spec.toml"
    spec.write_text(text)
    set_registry(Registry.load(autoload=False))
    try:
        rc = run_cli([command, str(spec), "--out", str(folder / "run"), *extra])
    finally:
        set_registry(None)
    assert rc == 0, f"staged {command} exited {rc}"


@pytest.fixture(scope="session")
def matrix_run(tmp_path_factory, worker_id) -> Path:
    """A tiny matrix run: members plain-s1 and fused-s1, ensembles mean and stack (read only)."""
    return _once(_shared_root(tmp_path_factory, worker_id), "matrix",
                 lambda f: _composed(f, "run", MATRIX, "--jobs", "1")) / "run"


@pytest.fixture(scope="session")
def search_run(tmp_path_factory, worker_id) -> Path:
    """A tiny grid search with complete, pruned and failed trials (read only)."""
    return _once(_shared_root(tmp_path_factory, worker_id), "search", lambda f: _composed(f, "search", SEARCH)) / "run"


WRITTEN = "written.json"
"""Where the report fixtures keep what `staged report --json` printed."""


def _report_of(run: Path, folder: Path) -> None:
    import contextlib
    import io

    from stagedsl.cli.app import run_cli

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert run_cli(["report", str(run), "--out", str(folder), "--json"]) == 0
    (folder / WRITTEN).write_text(printed.getvalue())


@pytest.fixture(scope="session")
def matrix_report(matrix_run, tmp_path_factory, worker_id) -> Path:
    """`staged report` of `matrix_run`, written once: the page's folder."""
    return _once(_shared_root(tmp_path_factory, worker_id), "matrix_report", lambda f: _report_of(matrix_run, f))


@pytest.fixture(scope="session")
def search_report(search_run, tmp_path_factory, worker_id) -> Path:
    """`staged report` of `search_run`, written once: the page's folder."""
    return _once(_shared_root(tmp_path_factory, worker_id), "search_report", lambda f: _report_of(search_run, f))
