"""A Plan is plain data: JSON round trips, a stable hash that follows what the engine will do; read back
strictly, and consistent with itself."""

import json

import attrs
import pytest

from stagedsl.errors import PlanError
from stagedsl.plan.model import ExportPlan, Plan, PrunePlan

from .conftest import OCEC, compile_text


def test_plan_is_json_with_a_stable_hash(builtin_registry):
    plan = compile_text(OCEC.format(heads_extra=""), builtin_registry)
    again = Plan.from_json(plan.to_json())
    assert again == plan and again.hash == plan.hash
    assert plan.hash == compile_text(OCEC.format(heads_extra=""), builtin_registry).hash
    changed = compile_text(OCEC.format(heads_extra=""), builtin_registry, overrides=["stage.heads.lr=2e-4"])
    assert changed.hash != plan.hash


@pytest.mark.parametrize(("edit", "where", "why"), [
    (lambda d: d.update(surprise=1), "surprise", "unknown key"),
    (lambda d: d["stages"][0].update(steps="4"), "stages[0].steps", "expected an integer, found '4'"),
    (lambda d: d["stages"][0].update(on_nonfinite="explode"), "stages[0].on_nonfinite", '''is not one of "stop", "skip"'''),
    (lambda d: d["run"].update(compile="yes"), "run.compile", "expected true or false"),
    (lambda d: d["stages"][0]["groups"][0].update(owner="me"), "stages[0].groups[0].owner", "unknown key"),
], ids=["extra-key", "string-for-int", "bad-choice", "string-for-bool", "nested-extra-key"])
def test_from_dict_is_strict(builtin_registry, edit, where, why):
    data = json.loads(compile_text(OCEC.format(heads_extra=""), builtin_registry).to_json())
    edit(data)
    with pytest.raises(PlanError) as caught:
        Plan.from_dict(data)
    problem = caught.value.problems[0]
    assert problem.code == "E065" and problem.path == where and why in problem.message


def test_a_plan_that_contradicts_itself_is_refused(builtin_registry):
    plan = compile_text(OCEC.format(heads_extra=""), builtin_registry)
    stage = plan.stages[1]
    loose = attrs.evolve(stage, groups=stage.groups[1:])  # some trainable parameters in no group
    with pytest.raises(PlanError) as caught:
        attrs.evolve(plan, stages=(plan.stages[0], loose))
    assert caught.value.problems[0].code == "E066" and "no group holds trainable" in caught.value.problems[0].message
    both = attrs.evolve(stage, frozen=stage.frozen + stage.trainable[:1])
    with pytest.raises(PlanError, match="both trains and freezes"):
        attrs.evolve(plan, stages=(plan.stages[0], both))


def test_export_is_typed_plan_data(builtin_registry):
    text = OCEC.format(heads_extra="") + '\n[export]\nformats = ["onnx"]\nwhich = "last"\nprune = { amount = 0.25 }\n'
    plan = compile_text(text, builtin_registry)
    assert plan.export == ExportPlan(formats=("onnx",), which="last", prune=PrunePlan(0.25))
    assert Plan.from_json(plan.to_json()).export == plan.export
