"""`RunDir` owns the run folder's layout: what a run writes is what `--overwrite` deletes, and
no path it builds leaves the run directory."""

from __future__ import annotations

import pytest

from stagedsl.cli.app import run_cli
from stagedsl.errors import UsageError
from stagedsl.run_dir import RunDir

SPEC = """\
[run]
name = "layout"
device = "cpu"

[model]
use = "mlp"
in_features = 8
hidden = [4]
out_features = 8

[data]
use = "npz"
train = "{train}"
val = "{train}"
batch_size = 4

[defaults]
lr = 1e-2
loss = "mse"
checkpoint = {{ every = 1 }}

[[stage]]
name = "only"
steps = 2

[export]
formats = ["package"]
"""


@pytest.fixture
def spec(tmp_path):
    import numpy as np

    data = tmp_path / "data.npz"
    rng = np.random.default_rng(0)
    np.savez(data, x=rng.standard_normal((8, 8), dtype=np.float32), y=rng.standard_normal((8, 8), dtype=np.float32))
    path = tmp_path / "spec.toml"
    path.write_text(SPEC.format(train=data))
    return path


def test_a_run_writes_only_what_the_layout_owns_and_overwrite_removes_exactly_that(spec, tmp_path, registry, capsys):
    out = tmp_path / "run"
    assert run_cli(["run", str(spec), "--out", str(out)]) == 0
    layout = RunDir(out)
    written = {p.name for p in out.iterdir()}
    assert written == {p.name for p in layout.owned()} - {"report", "trial.json"}  # not report/ (`staged report`) nor trial.json (a search's)
    stale = layout.plan_version("0" * 16)
    stale.write_text("{}")  # a plan an earlier run followed
    mine = out / "notes.txt"
    mine.write_text("not the run's")
    assert run_cli(["run", str(spec), "--out", str(out)]) == 2  # E091: it already holds a run
    assert "E091" in capsys.readouterr().err
    assert run_cli(["run", str(spec), "--out", str(out), "--overwrite"]) == 0
    assert not stale.exists() and mine.read_text() == "not the run's"
    assert {p.name for p in out.iterdir()} == written | {"notes.txt"}


def test_paths_are_built_under_the_run_directory_and_an_escape_is_refused(tmp_path):
    layout = RunDir(tmp_path / "run")
    assert layout.weights("warmup", "best") == tmp_path / "run" / "stages" / "warmup" / "best.safetensors"
    assert layout.trainer_state("warmup", 12, attempt=1).name == "step_000000012_retry1"
    assert layout.relative(layout.trainer_state("warmup", 12)) == "stages/warmup/state/step_000000012"
    for name in ("../../elsewhere", "/etc"):
        with pytest.raises(UsageError) as caught:
            layout.weights(name, "best")
        assert caught.value.problems[0].code == "E417"
    with pytest.raises(UsageError):
        layout.child("..", "sibling")
