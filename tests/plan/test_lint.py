"""Lints: legal plans that are probably not what the user meant."""

from .conftest import OCEC, compile_text


def test_lints(builtin_registry):
    plateau = 'scheduler = { use = "plateau", monitor = "val/loss", factor = 0.1, patience = 0 }\neval = { every = 1 }'
    plan = compile_text(OCEC.format(heads_extra=plateau), builtin_registry)
    assert "W001" in [w["code"] for w in plan.warnings]
    long_eval = compile_text(OCEC.format(heads_extra='eval = { every = "5 epochs" }'), builtin_registry)
    assert [w["code"] for w in long_eval.warnings] == ["W002"]
    frozen_group = compile_text(OCEC.format(heads_extra='groups = [{ name = "bb", params = ["backbone.**"] }]'), builtin_registry)
    assert [w["code"] for w in frozen_group.warnings] == ["W004"]
    twice = OCEC.format(heads_extra="") + '\n[[stage]]\nname = "again"\nepochs = 1.5\nlr = 1e-4\nfreeze = [{ use = "fraction", module = "backbone", fraction = 0.5, end = "first" }]\ngroups = [{ name = "backbone", params = ["backbone.**"], lr_scale = 0.05 }, { name = "margin", params = ["margin_head.**"], lr = 3e-4, weight_decay = 0.0 }]\n'
    assert "W003" not in [w["code"] for w in compile_text(twice, builtin_registry).warnings]  # it starts from its own weights
    same_init = twice + 'init = { stage = "heads" }\n'
    assert "W003" in [w["code"] for w in compile_text(same_init, builtin_registry).warnings]
