"""The plan's LR curve comes from the very schedulers the engine builds, per named group."""

import pytest

from stagedsl.plan.schedule import ascii_chart, plan_lr_curve

from .conftest import OCEC, compile_text


def test_the_curve_has_one_value_per_step_for_every_group_of_the_plan(builtin_registry):
    plan = compile_text(OCEC.format(heads_extra='scheduler = { use = "cosine", warmup = 4 }'), builtin_registry)
    curve = plan_lr_curve(plan, builtin_registry)
    assert [c["stage"] for c in curve] == ["heads", "unfreeze"] and curve[1]["start"] == plan.stages[0].steps
    heads = curve[0]["curves"]["default"]
    assert len(heads) == plan.stages[0].steps
    assert heads[0] == pytest.approx(1e-4 / 5) and max(heads) == pytest.approx(1e-4) and heads[-1] < heads[4]
    unfreeze = curve[1]["curves"]
    assert set(unfreeze) == {g.name for g in plan.stages[1].groups}  # the plan's groups, by name
    assert all(v == pytest.approx(5e-6) for v in unfreeze["backbone"])  # constant (the default) at lr_scale 0.05
    assert "█" in ascii_chart(curve)
