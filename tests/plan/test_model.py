"""A Plan is plain data: JSON round trips, a stable hash that follows what the engine will do."""

from stagedsl.plan.model import Plan

from .conftest import OCEC, compile_text


def test_plan_is_json_with_a_stable_hash(builtin_registry):
    plan = compile_text(OCEC.format(heads_extra=""), builtin_registry)
    again = Plan.from_json(plan.to_json())
    assert again == plan and again.hash == plan.hash
    assert plan.hash == compile_text(OCEC.format(heads_extra=""), builtin_registry).hash
    changed = compile_text(OCEC.format(heads_extra=""), builtin_registry, overrides=["stage.heads.lr=2e-4"])
    assert changed.hash != plan.hash
