"""Diagnosis hints from curves (seed 001's table): each fires on the curve it names, at the right step,
and stays quiet on healthy curves. Runs are real compiled plans with logged events written here."""

from __future__ import annotations

from pathlib import Path

import pytest

from stagedsl.cli.app import compile_spec
from stagedsl.report.diagnosis import diagnose
from stagedsl.report.rundata import RunData

SPECS = Path(__file__).resolve().parents[2] / "specs"


@pytest.fixture(scope="module")
def pde_plan(builtin_registry):
    from stagedsl.registry import set_registry

    set_registry(builtin_registry)
    yield compile_spec(SPECS / "pde.toml", "tiny", [])[1]
    set_registry(None)


def _events(stages: dict[str, dict]) -> list[dict]:
    """stage -> {"start": step, "train": [...], "val": [...], "lr": [...]}: one train value a step, evals spread evenly."""
    events = []
    for name, curves in stages.items():
        start = curves["start"]
        events.append({"event": "stage_start", "stage": name, "step": start, "attempt": 0})
        train, val, lr = curves.get("train", []), curves.get("val", []), curves.get("lr", [])
        every = max(1, len(train) // max(1, len(val))) if val else 0
        for i, loss in enumerate(train):
            step = start + i + 1
            record = {"event": "train", "stage": name, "step": step, "train/loss": loss}
            if lr:
                record["lr/default"] = lr[i]
            events.append(record)
            if every and (i + 1) % every == 0 and (i + 1) // every <= len(val):
                events.append({"event": "eval", "stage": name, "step": step, "val/loss": val[(i + 1) // every - 1]})
    return events


def _run(plan, stages: dict[str, dict]) -> RunData:
    return RunData(path=Path("synthetic"), plan=plan, events=tuple(_events(stages)))


FALLING = [1.0 / (1 + 0.3 * i) for i in range(20)]


def test_healthy_curves_give_no_hint(pde_plan):
    run = _run(pde_plan, {"warmup_encdec": {"start": 0, "train": FALLING, "val": [0.9, 0.6, 0.5, 0.5]}})
    assert diagnose(run, monitored=lambda name: False) == []


def test_training_loss_rising_says_lr_too_high_at_the_step_it_turned(pde_plan):
    curve = [1.0, 0.8, 0.6, 0.5, 0.42, 0.4, 0.41, 0.45, 0.5, 0.56, 0.62, 0.7, 0.78, 0.86, 0.95, 1.0]
    run = _run(pde_plan, {"warmup_encdec": {"start": 0, "train": FALLING}, "transformer": {"start": 20, "train": curve}})
    (hint,) = diagnose(run, monitored=lambda name: False)
    assert hint.kind == "loss_rising" and hint.stage == "transformer"
    assert 25 <= hint.step <= 27  # the low point of the smoothed curve (steps 21..36)
    assert f"step {hint.step}" in hint.message and "learning rate" in hint.message and "too high" in hint.message


def test_a_noisy_but_falling_loss_is_not_rising(pde_plan):
    noisy = [v * (1.3 if i % 4 == 0 else 1.0) for i, v in enumerate(FALLING)]
    run = _run(pde_plan, {"warmup_encdec": {"start": 0, "train": noisy}})
    assert diagnose(run, monitored=lambda name: False) == []


def test_a_non_finite_training_loss_is_named_with_its_step(pde_plan):
    curve = FALLING[:10] + [float("nan")] + FALLING[11:]
    run = _run(pde_plan, {"warmup_encdec": {"start": 0, "train": curve}})
    (hint,) = diagnose(run, monitored=lambda name: False)
    assert hint.kind == "nonfinite" and hint.step == 11 and "step 11" in hint.message


def test_validation_rising_while_training_falls_is_overfitting_from_the_best_step(pde_plan):
    val = [0.9, 0.5, 0.4, 0.46, 0.52, 0.6]  # best at the third evaluation
    run = _run(pde_plan, {"warmup_encdec": {"start": 0, "train": FALLING[:18], "val": val}})
    hints = diagnose(run, monitored=lambda name: False)
    assert [h.kind for h in hints] == ["overfitting"]
    assert hints[0].step == 9  # evaluations every 3 steps: the third is at step 9
    assert "overfitting from step 9" in hints[0].message and "0.4 at step 9" in hints[0].message


def test_validation_and_training_rising_together_is_not_overfitting(pde_plan):
    rising = [0.3, 0.25, 0.2, 0.22, 0.25, 0.3, 0.34, 0.4, 0.45, 0.5, 0.55, 0.6]
    run = _run(pde_plan, {"warmup_encdec": {"start": 0, "train": rising, "val": [0.3, 0.2, 0.3, 0.5]}})
    assert "overfitting" not in [h.kind for h in diagnose(run, monitored=lambda name: False)]


def test_an_lr_collapsed_by_a_monitored_schedule_is_named_with_its_step(registry):
    _, plan = compile_spec(SPECS / "metr.toml", "plateau", ["stage.train.epochs=1"])
    lr = [5e-4 * 0.5 ** (i // 2) for i in range(24)]  # halved every second log: below 5e-7 from the 20th
    run = _run(plan, {"train": {"start": 0, "train": FALLING + FALLING[-4:], "lr": lr}})
    hints = [h for h in diagnose(run) if h.kind == "lr_collapsed"]
    assert len(hints) == 1 and hints[0].step == 21
    assert "plateau on val/masked_mae" in hints[0].message
    assert "from 0.0005 to 4.88e-07 by step 21" in hints[0].message


def test_a_planned_decay_is_not_a_collapse(registry):
    _, plan = compile_spec(SPECS / "metr.toml", "tiny", [])  # multistep: decays by design
    lr = [1e-3 * 0.1 ** (i // 6) for i in range(24)]
    run = _run(plan, {"train": {"start": 0, "train": FALLING + FALLING[-4:], "lr": lr}})
    assert [h for h in diagnose(run) if h.kind == "lr_collapsed"] == []


def test_validation_still_falling_at_the_end_is_a_note(pde_plan):
    run = _run(pde_plan, {"warmup_encdec": {"start": 0, "train": FALLING, "val": [0.9, 0.7, 0.5, 0.4]}})
    (hint,) = diagnose(run, monitored=lambda name: False)
    assert hint.kind == "still_improving" and hint.severity == "note" and hint.step == 20
    flat = _run(pde_plan, {"warmup_encdec": {"start": 0, "train": FALLING, "val": [0.9, 0.5, 0.499, 0.498]}})
    assert diagnose(flat, monitored=lambda name: False) == []
