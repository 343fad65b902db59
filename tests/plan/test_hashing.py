"""Stage hashes: equal exactly when everything that decides a stage's weights is equal."""

from __future__ import annotations

import json

from stagedsl.plan.model import Plan

from .conftest import compile_text

THREE = """
[run]
name = "{name}"
out = "{out}"

[model]
use = "mlp"
in_features = 4
hidden = [8]
out_features = 2

[data]
use = "npz"
train = "{data}"
batch_size = 4

[defaults]
loss = "mse"
lr = 1e-3

[[stage]]
name = "a"
steps = 4
lr = {a_lr}
log_every = {log_every}

[[stage]]
name = "b"
steps = 4
lr = {b_lr}

[[stage]]
name = "c"
steps = 4
lr = {c_lr}
{c_init}
"""


def _hashes(registry, tmp_path, **changes):
    import numpy as np

    data = tmp_path / "train.npz"
    if not data.exists():
        np.savez(data, x=np.zeros((8, 4), "float32"), y=np.zeros((8, 2), "float32"))
    fields = {"name": "one", "out": "runs/one", "data": data, "a_lr": "1e-3", "b_lr": "1e-3", "log_every": 50, "c_lr": "1e-4", "c_init": "", **changes}
    return compile_text(THREE.format(**fields), registry).stage_hashes


def test_the_name_and_folder_of_a_run_are_not_in_its_stage_hashes(builtin_registry, tmp_path):
    assert _hashes(builtin_registry, tmp_path) == _hashes(builtin_registry, tmp_path, name="two", out="elsewhere/trial-3")


def test_a_change_reaches_its_stage_and_every_stage_after_it(builtin_registry, tmp_path):
    base = _hashes(builtin_registry, tmp_path)
    first = _hashes(builtin_registry, tmp_path, a_lr="3e-4")
    assert all(first[s] != base[s] for s in "abc")
    last = _hashes(builtin_registry, tmp_path, c_lr="3e-5")
    assert (last["a"], last["b"]) == (base["a"], base["b"]) and last["c"] != base["c"]


def test_what_only_logs_does_not_change_a_hash(builtin_registry, tmp_path):
    assert _hashes(builtin_registry, tmp_path, log_every=2) == _hashes(builtin_registry, tmp_path)


def test_a_stage_that_inits_from_an_earlier_one_depends_on_that_one_only(builtin_registry, tmp_path):
    strict = 'init = { stage = "a", which = "best" }'
    base = _hashes(builtin_registry, tmp_path, c_init=strict)
    assert base["c"] != _hashes(builtin_registry, tmp_path)["c"]  # from a's best, not from b's last weights
    changed_b = _hashes(builtin_registry, tmp_path, c_init=strict, b_lr="5e-3")
    assert changed_b["b"] != base["b"] and changed_b["c"] == base["c"]
    loose = 'init = { stage = "a", strict = false }'  # keeps b's weights where a's file has none
    assert _hashes(builtin_registry, tmp_path, c_init=loose, b_lr="5e-3")["c"] != _hashes(builtin_registry, tmp_path, c_init=loose)["c"]


def test_a_file_init_is_hashed_by_the_file_it_names(builtin_registry, tmp_path):
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"one")
    init = f'init = {{ path = "{weights}" }}'
    before = _hashes(builtin_registry, tmp_path, c_init=init)
    weights.write_bytes(b"two")
    after = _hashes(builtin_registry, tmp_path, c_init=init)
    assert before["c"] != after["c"] and before["b"] == after["b"]


def test_plan_json_carries_the_stage_hashes_and_reads_back(builtin_registry, tmp_path):
    import numpy as np

    np.savez(tmp_path / "train.npz", x=np.zeros((8, 4), "float32"), y=np.zeros((8, 2), "float32"))
    plan = compile_text(THREE.format(name="one", out="runs/one", data=tmp_path / "train.npz", a_lr="1e-3", b_lr="1e-3", log_every=50,
                                     c_lr="1e-4", c_init=""), builtin_registry)
    data = json.loads(plan.to_json())
    assert data["stage_hashes"] == plan.stage_hashes and list(data["stage_hashes"]) == ["a", "b", "c"]
    assert Plan.from_json(plan.to_json()) == plan


def test_how_an_init_file_s_keys_are_mapped_is_in_the_hash(builtin_registry, tmp_path):
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"one")
    plain = _hashes(builtin_registry, tmp_path, c_init=f'init = {{ path = "{weights}" }}')
    stripped = _hashes(builtin_registry, tmp_path, c_init=f'init = {{ path = "{weights}", strip_prefix = "module." }}')
    assert plain["c"] != stripped["c"] and plain["b"] == stripped["b"]
