"""`staged plan --dry-run` text: counts read as English ("1 stage", "≈ 1 epoch")."""

from __future__ import annotations

from pathlib import Path

from stagedsl.plan.compile import compile_plan
from stagedsl.plan.render import plural, render_plan
from stagedsl.spec.loader import load_spec

SPECS = Path(__file__).resolve().parents[2] / "specs"


def test_plural():
    assert [plural(1, "stage"), plural(3, "stage"), plural(1.0, "epoch"), plural(2.5, "epoch"), plural(0, "step")] == \
        ["1 stage", "3 stages", "1 epoch", "2.5 epochs", "0 steps"]


def test_one_stage_and_one_epoch_are_singular(registry):
    metr = render_plan(compile_plan(load_spec(SPECS / "metr.toml", profile="tiny", overrides=["stage.train.epochs=1", "stage.train.scheduler=\"constant\""],
                                              registry=registry), registry))
    assert "  1 stage, 7 steps in all" in metr and "7 steps ≈ 1 epoch\n" in metr
    ocec = render_plan(compile_plan(load_spec(SPECS / "ocec.toml", profile="tiny", registry=registry), registry))
    assert "  3 stages, 12 steps in all" in ocec and "4 steps ≈ 1 epoch\n" in ocec
