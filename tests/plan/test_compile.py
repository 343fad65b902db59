"""compile_plan resolves selectors, groups and durations on a meta model, and lints."""

import pytest

from stagedsl.errors import PlanError
from stagedsl.plan.compile import build_meta_model, compile_plan
from stagedsl.plan.model import Plan
from stagedsl.spec.loader import loads_spec

OCEC = """
[model]
use = "ocec_net"
width = 8
embed = 16

[data]
use = "ocec_eyes"
n_train = 200
n_val = 50
batch_size = 32

[defaults]
loss = "cross_entropy"
metrics = ["f1"]

[[stage]]
name = "heads"
epochs = 2
lr = 1e-4
freeze = ["backbone.**"]
{heads_extra}

[[stage]]
name = "unfreeze"
epochs = 1.5
lr = 1e-4
freeze = [{{ use = "fraction", module = "backbone", fraction = 0.5, end = "first" }}]
groups = [{{ name = "backbone", params = ["backbone.**"], lr_scale = 0.05 }}, {{ name = "margin", params = ["margin_head.**"], lr = 3e-4, weight_decay = 0.0 }}]
init = {{ stage = "heads" }}
"""


def compile_text(text, registry, **kwargs):
    return compile_plan(loads_spec(text, registry=registry, **kwargs), registry)


def test_selectors_groups_and_epochs_resolve(builtin_registry):
    plan = compile_text(OCEC.format(heads_extra=""), builtin_registry)
    names = list(plan.parameters)
    backbone = [n for n in names if n.startswith("backbone.")]
    heads, unfreeze = plan.stages
    assert plan.data.batches_per_epoch == 7  # ceil(200 / 32)
    assert (heads.steps, unfreeze.steps) == (14, 11)  # 2 epochs; ceil(1.5 * 7)
    assert not set(heads.trainable) & set(backbone)
    assert set(heads.trainable) == set(names) - set(backbone)
    # the last half of the backbone's tensors, in registration order, trains in stage 2
    half = -(-len(backbone) // 2)
    assert [n for n in unfreeze.trainable if n.startswith("backbone.")] == backbone[len(backbone) - half:]
    groups = {g.name: g for g in unfreeze.groups}
    assert groups["backbone"].lr == pytest.approx(5e-6)
    assert groups["margin"].lr == 3e-4 and groups["margin"].weight_decay == 0.0
    assert groups["default"].lr == 1e-4
    assert set(groups["default"].params) == {n for n in unfreeze.trainable if n.startswith("head.")}
    every = [p for g in unfreeze.groups for p in g.params]
    assert sorted(every) == sorted(unfreeze.trainable)  # each trainable tensor in exactly one group, no frozen one


def test_meta_model_holds_no_memory(builtin_registry):
    spec = loads_spec(OCEC.format(heads_extra=""), registry=builtin_registry)
    model = build_meta_model(spec, builtin_registry)
    assert all(p.is_meta for p in model.parameters())


def test_plan_is_json_with_a_stable_hash(builtin_registry):
    plan = compile_text(OCEC.format(heads_extra=""), builtin_registry)
    again = Plan.from_json(plan.to_json())
    assert again == plan and again.hash == plan.hash
    assert plan.hash == compile_text(OCEC.format(heads_extra=""), builtin_registry).hash
    changed = compile_text(OCEC.format(heads_extra=""), builtin_registry, overrides=["stage.heads.lr=2e-4"])
    assert changed.hash != plan.hash


def test_scheduler_durations_become_steps_and_past_the_end_is_an_error(builtin_registry):
    extra = 'scheduler = { use = "multistep", milestones = ["1 epoch", 10], gamma = 0.5 }'
    plan = compile_text(OCEC.format(heads_extra=extra), builtin_registry)
    assert plan.stages[0].scheduler.args == {"milestones": [7, 10], "gamma": 0.5}
    with pytest.raises(PlanError) as info:
        compile_text(OCEC.format(heads_extra='scheduler = { use = "multistep", milestones = ["3 epochs"] }'), builtin_registry)
    problem = info.value.problems[0]
    assert problem.code == "E063" and problem.path == "stage[0].scheduler.milestones[0]" and problem.line is not None


def test_overlapping_groups_and_empty_stage_are_errors(builtin_registry):
    overlap = OCEC.format(heads_extra='groups = [{ name = "a", params = ["head.**"] }, { name = "b", params = ["head.0.*"] }]')
    with pytest.raises(PlanError) as info:
        compile_text(overlap, builtin_registry)
    assert [p.code for p in info.value.problems] == ["E062"]
    nothing = OCEC.format(heads_extra='train = ["backbone.**"]')
    with pytest.raises(PlanError) as info:
        compile_text(nothing, builtin_registry)
    assert info.value.problems[0].code == "E061"


def test_glob_that_matches_nothing_suggests_the_module(builtin_registry):
    with pytest.raises(PlanError) as info:
        compile_text(OCEC.format(heads_extra="").replace('freeze = ["backbone.**"]', 'freeze = ["backbon.**"]'), builtin_registry)
    problem = info.value.problems[0]
    assert problem.code == "E060" and problem.path == "stage[0].freeze[0]"
    assert problem.hint == 'did you mean "backbone.**"?'


def test_lints(builtin_registry):
    plateau = 'scheduler = { use = "plateau", monitor = "val/loss", factor = 0.1, patience = 0 }\neval = { every = 1 }'
    plan = compile_text(OCEC.format(heads_extra=plateau), builtin_registry)
    assert "W001" in [w["code"] for w in plan.warnings]
    long_eval = compile_text(OCEC.format(heads_extra='eval = { every = "5 epochs" }'), builtin_registry)
    assert [w["code"] for w in long_eval.warnings] == ["W002"]
    frozen_group = compile_text(OCEC.format(heads_extra='groups = [{ name = "bb", params = ["backbone.**"] }]'), builtin_registry)
    assert [w["code"] for w in frozen_group.warnings] == ["W004"]
    twice = OCEC.format(heads_extra="") + '\n[[stage]]\nname = "again"\nepochs = 1.5\nlr = 1e-4\nfreeze = [{ use = "fraction", module = "backbone", fraction = 0.5, end = "first" }]\ngroups = [{ name = "backbone", params = ["backbone.**"], lr_scale = 0.05 }, { name = "margin", params = ["margin_head.**"], lr = 3e-4, weight_decay = 0.0 }]\n'
    assert "W003" in [w["code"] for w in compile_text(twice, builtin_registry).warnings]
