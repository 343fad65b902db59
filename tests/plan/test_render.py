"""`staged plan --dry-run` text: what each stage trains, its named groups and their LRs, its schedule;
counts read as English ("1 stage", "≈ 1 epoch")."""

from pathlib import Path

from stagedsl.plan.compile import compile_plan
from stagedsl.plan.render import plural, render_plan
from stagedsl.spec.loader import load_spec

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


SPECS = Path(__file__).resolve().parents[2] / "specs"


def test_plural():
    assert [plural(1, "stage"), plural(3, "stage"), plural(1.0, "epoch"), plural(2.5, "epoch"), plural(0, "step")] == \
        ["1 stage", "3 stages", "1 epoch", "2.5 epochs", "0 steps"]


def test_one_stage_and_one_epoch_are_singular(registry):
    metr = render_plan(compile_plan(load_spec(SPECS / "metr.toml", profile="tiny", overrides=["stage.train.epochs=1", "stage.train.scheduler=\"constant\""],
                                              registry=registry), registry))
    assert "  1 stage, 7 steps in all" in metr and "7 steps ≈ 1 epoch  [hash " in metr
    ocec = render_plan(compile_plan(load_spec(SPECS / "ocec.toml", profile="tiny", registry=registry), registry))
    assert "  3 stages, 12 steps in all" in ocec and "4 steps ≈ 1 epoch  [hash " in ocec
