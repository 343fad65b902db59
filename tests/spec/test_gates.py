"""Gate conditions are parsed by a real parser and evaluated without eval()."""

import pytest

from stagedsl.spec.gates import GateSyntaxError, evaluate_gate, gate_metrics, parse_gate, render_gate


@pytest.mark.parametrize(
    "text, values, expected",
    [
        ("val/f1 >= 0.80", {"val/f1": 0.80}, True),
        ("val/f1 >= 0.80", {"val/f1": 0.7999}, False),
        ("val/f1 > 0.8 and val/loss < 0.5", {"val/f1": 0.9, "val/loss": 0.6}, False),
        ("val/f1 > 0.8 or val/loss < 0.5", {"val/f1": 0.1, "val/loss": 0.4}, True),
        ("not val/acc == 1", {"val/acc": 1.0}, False),
        ("(val/a > 1 or val/b > 1) and val/c < 0", {"val/a": 2, "val/b": 0, "val/c": -1}, True),
        ("val/a > 1 or val/b > 1 and val/c < 0", {"val/a": 2, "val/b": 0, "val/c": 5}, True),  # and binds tighter
        ("0.5 < val/f1", {"val/f1": 0.6}, True),
        ("val/loss <= 1e-3", {"val/loss": 5e-4}, True),
        ("val/f1 != 0", {}, False),  # a missing metric fails the gate
    ],
)
def test_gate_evaluation(text, values, expected):
    assert evaluate_gate(parse_gate(text), values) is expected


def test_nan_metric_fails_every_comparison():
    assert evaluate_gate(parse_gate("val/loss < 1"), {"val/loss": float("nan")}) is False
    assert evaluate_gate(parse_gate("val/loss != 1"), {"val/loss": float("nan")}) is False


@pytest.mark.parametrize(
    "text, column",
    [("val/f1", 7), ("val/f1 >= ", 11), (">= 0.8", 1), ("val/f1 >= 0.8 val/loss", 15), ("(val/f1 > 1", 12), ("val/f1 = 1", 8), ("", 1),
     ("__import__('os') > 1", 12)],
)
def test_gate_syntax_errors_point_at_a_column(text, column):
    with pytest.raises(GateSyntaxError) as info:
        parse_gate(text)
    assert info.value.column == column


def test_parsed_form_is_plain_data_and_renders_back():
    expr = parse_gate("val/f1 >= 0.8 and not (train/loss > 2 or val/loss > 1)")
    assert gate_metrics(expr) == ["val/f1", "train/loss", "val/loss"]
    assert parse_gate(render_gate(expr)) == expr
