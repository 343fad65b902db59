"""Durations are values with units, counted in steps once the epoch length is known."""

import pytest

from stagedsl.spec.durations import Duration, DurationError, parse_duration


@pytest.mark.parametrize(
    "text, expected",
    [("500 steps", Duration(500, "steps")), ("1 step", Duration(1, "steps")), ("3 epochs", Duration(3, "epochs")),
     ("2ep", Duration(2, "epochs")), ("0.5 epochs", Duration(0.5, "epochs")), ("100ba", Duration(100, "steps")), (42, Duration(42, "steps"))],
)
def test_parse(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("bad", ["3 eons", "steps", "", "1.5 steps", -3, True, 2.5, "five epochs"])
def test_parse_rejects(bad):
    with pytest.raises(DurationError):
        parse_duration(bad)


def test_to_steps_rounds_partial_epochs_up():
    assert parse_duration("30 epochs").to_steps(51) == 1530
    assert parse_duration("0.5 epochs").to_steps(5) == 3
    with pytest.raises(DurationError):
        parse_duration("1 epoch").to_steps(None)


def test_to_steps_counts_optimizer_steps_of_accumulated_micro_batches():
    assert parse_duration("2 epochs").to_steps(10, accumulate=4) == 5  # 20 micro-batches, 4 a step
    assert parse_duration("0.01 epochs").to_steps(10) == 1  # at least one step
    assert parse_duration("12 steps").to_steps(None, accumulate=4) == 12  # steps are steps already
    with pytest.raises(DurationError, match="overflows"):
        parse_duration("1e308 epochs").to_steps(10)


def test_the_spec_holds_durations_parsed_once(builtin_registry):
    from stagedsl.spec.loader import loads_spec

    spec = loads_spec('[model]\nuse = "mlp"\nin_features = 2\nhidden = []\nout_features = 1\n[data]\nuse = "npz"\ntrain = "x.npz"\n'
                      '[[stage]]\nname = "a"\nepochs = 2\nlr = 0.1\nloss = "mse"\nlog_every = "3ba"\neval = { every = 1 }\n', registry=builtin_registry)
    stage = spec.stages[0]
    assert (stage.length, stage.log_every, stage.eval.every) == (Duration(2, "epochs"), Duration(3, "steps"), Duration(1, "steps"))
    assert stage.checkpoint.every is None and stage.optimizer is None  # the planner resolves the default optimizer
