"""compile_plan resolves selectors, groups and durations on a meta model, and lints."""

import pytest

from stagedsl.errors import PlanError
from stagedsl.plan.compile import build_meta_model
from stagedsl.spec.loader import loads_spec

from .conftest import OCEC, compile_text


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


def test_a_stage_that_names_no_optimizer_or_scheduler_gets_the_registered_defaults(builtin_registry):
    plan = compile_text(OCEC.format(heads_extra=""), builtin_registry)
    assert [(s.optimizer.name, s.scheduler.name) for s in plan.stages] == [("adamw", "constant")] * 2
    assert [g.name for g in plan.stages[0].groups] == ["default"]  # every trainable parameter, named


def test_epochs_are_not_reported_again_when_the_dataset_cannot_say_its_size(builtin_registry, tmp_path):
    text = OCEC.format(heads_extra='eval = { every = "1 epoch" }').replace(
        'use = "ocec_eyes"\nn_train = 200\nn_val = 50', f'use = "npz"\ntrain = "{tmp_path / "missing.npz"}"')
    with pytest.raises(PlanError) as caught:
        compile_text(text, builtin_registry)
    assert [p.code for p in caught.value.problems] == ["E026"]  # not E026 then an E064 for every duration in epochs
