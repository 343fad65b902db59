"""extends, profiles, --set and [defaults] layer as documented."""

from pathlib import Path

import pytest

from stagedsl.errors import SpecError
from stagedsl.spec.loader import load_spec, loads_spec

BASE = """
[model]
use = "mlp"
in_features = 4
hidden = [8]
out_features = 1

[data]
use = "pde_synthetic"
n_train = 16
n_val = 8
batch_size = 4

[defaults]
lr = 1e-3
loss = { use = "huber", delta = 0.5 }
eval = { monitor = "val/loss" }

[[stage]]
name = "a"
steps = 10

[[stage]]
name = "b"
steps = 20
lr = 1e-4
loss = "mse"

[profile.tiny.stage.b]
steps = 2
"""


def test_defaults_merge_into_every_stage_and_a_new_piece_does_not_inherit_arguments(builtin_registry):
    spec = loads_spec(BASE, registry=builtin_registry)
    a, b = spec.stages
    assert (a.lr, b.lr) == (1e-3, 1e-4)
    assert a.loss.terms[0].piece.use == "huber" and a.loss.terms[0].piece.args == {"delta": 0.5}
    assert b.loss.terms[0].piece.use == "mse" and b.loss.terms[0].piece.args == {}


def test_profile_addresses_stages_by_name(builtin_registry):
    spec = loads_spec(BASE, profile="tiny", registry=builtin_registry)
    assert [s.steps for s in spec.stages] == [10, 2]


def test_set_overrides_by_name_index_and_table(builtin_registry):
    spec = loads_spec(BASE, overrides=["stage.b.lr=3e-5", "stage[0].steps=7", "run.seed=9", "data.batch_size=2"], registry=builtin_registry)
    assert spec.stages[1].lr == 3e-5 and spec.stages[0].steps == 7
    assert spec.run.seed == 9 and spec.data.batch_size == 2


def test_set_value_that_is_not_toml_is_a_string(builtin_registry):
    spec = loads_spec(BASE, overrides=["run.device=cpu"], registry=builtin_registry)
    assert spec.run.device == "cpu"


def test_extends_merges_stages_by_name(tmp_path: Path, builtin_registry):
    (tmp_path / "base.toml").write_text(BASE)
    (tmp_path / "child.toml").write_text('extends = "base.toml"\n[[stage]]\nname = "b"\nsteps = 99\n\n[[stage]]\nname = "c"\nsteps = 5\n')
    spec = load_spec(tmp_path / "child.toml", registry=builtin_registry)
    assert [(s.name, s.steps) for s in spec.stages] == [("a", 10), ("b", 99), ("c", 5)]
    assert spec.stages[1].lr == 1e-4  # kept from the base


def test_extends_cycle_is_reported(tmp_path: Path):
    (tmp_path / "a.toml").write_text('extends = "b.toml"\n')
    (tmp_path / "b.toml").write_text('extends = "a.toml"\n')
    with pytest.raises(SpecError) as info:
        load_spec(tmp_path / "a.toml")
    assert info.value.problems[0].code == "E008" and "cycle" in info.value.problems[0].message


def test_profile_that_names_a_missing_stage_is_an_error(builtin_registry):
    with pytest.raises(SpecError) as info:
        loads_spec(BASE + "\n[profile.bad.stage.bb]\nsteps = 1\n", profile="bad", registry=builtin_registry)
    problem = info.value.problems[0]
    assert problem.code == "E007" and problem.hint == 'did you mean "b"?'
