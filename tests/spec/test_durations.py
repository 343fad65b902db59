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
