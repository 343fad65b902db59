"""Tests of the example plugin: its pieces, their registration, and a spec using both."""

from __future__ import annotations

import pytest

import stagedsl_example_plugin
from stagedsl import Registry, SpecError
from stagedsl.plan.compile import compile_plan
from stagedsl.spec.loader import loads_spec
from stagedsl_example_plugin import charbonnier, every_nth

SPEC = """
[model]
use = "mlp"
in_features = 8
hidden = [16, 16]
out_features = 8

[data]
use = "pde_synthetic"
n_train = 8
n_val = 4
size = 2
channels = 2
batch_size = 4

[[stage]]
name = "biases"
steps = 10
lr = 1e-3
loss = { use = "charbonnier", eps = 1e-3 }
freeze = [{ use = "every_nth", module = "layers", n = 2 }]
"""


@pytest.fixture
def registry() -> Registry:
    """The built-ins and this plugin, nothing autoloaded."""
    return Registry.load(autoload=False, plugins=[("example", stagedsl_example_plugin)])


def test_registered(registry):
    assert registry.find("losses", "charbonnier").plugin == "example"
    assert registry.find("freeze_strategies", "every_nth").plugin == "example"


def test_every_nth_selects_every_other_tensor():
    names = ["stem.weight", "layers.0.weight", "layers.0.bias", "layers.2.weight", "layers.2.bias"]
    assert every_nth(names, module="layers", n=2) == ["layers.0.weight", "layers.2.weight"]
    assert every_nth(names, module="layers", n=2, offset=1) == ["layers.0.bias", "layers.2.bias"]
    with pytest.raises(ValueError, match="no module `head`"):
        every_nth(names, module="head")


def test_charbonnier_is_a_smooth_l1():
    import torch

    loss = charbonnier(eps=1e-3)
    prediction, target = torch.tensor([0.0, 3.0]), torch.tensor([0.0, -1.0])
    assert abs(float(loss(prediction, target)) - (1e-3 + 4.0) / 2) < 1e-4


def test_spec_validates_and_compiles(registry):
    plan = compile_plan(loads_spec(SPEC, registry=registry), registry)
    stage = plan.stages[0]
    assert stage.loss.terms[0].name == "charbonnier"
    assert all(name.endswith(".bias") for name in stage.trainable)


def test_misspelt_argument_is_a_spec_error(registry):
    with pytest.raises(SpecError) as caught:
        loads_spec(SPEC.replace("eps = 1e-3", "epsilon = 1e-3"), registry=registry)
    problem = caught.value.problems[0]
    assert problem.code == "E021" and problem.hint == 'did you mean "eps"?'
