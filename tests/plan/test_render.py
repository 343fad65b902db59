"""`staged plan --dry-run` text: what each stage trains, its named groups and their LRs, its schedule."""

from stagedsl.plan.render import render_plan

from .conftest import OCEC, compile_text


def test_each_stage_shows_its_groups_schedule_and_what_it_trains(builtin_registry):
    plan = compile_text(OCEC.format(heads_extra=""), builtin_registry)
    text = render_plan(plan)
    heads, unfreeze = text.split("stage 2: ")
    assert "stage 1: heads  —  14 steps ≈ 2 epochs" in heads and "✗ backbone" in heads
    assert "optimizer: adamw" in heads and "schedule: constant" in heads  # the registered defaults, shown
    assert "group default        lr 0.0001" in heads
    assert "group backbone       lr 5e-06" in unfreeze and "group margin         lr 0.0003, weight_decay 0" in unfreeze
    assert "◐ backbone" in unfreeze and "init: stage `heads` best" in unfreeze
    assert f"[hash {plan.stage_hashes['heads']}]" in heads and f"[hash {plan.stage_hashes['unfreeze']}]" in unfreeze
