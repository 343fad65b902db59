"""The text renderer of problems: carets under the span the problem carries."""

from stagedsl.diagnostics import render_problem
from stagedsl.errors import Problem

TEXT = 'steps = "ten"\nfreeze = ["a",\n  "b"]\nlr = 1e-3\n'


def test_the_carets_cover_the_span():
    problem = Problem("E003", "expected an integer", file="s.toml", path="steps", line=1, column=9, end_line=1, end_column=14)
    assert render_problem(problem, {"s.toml": TEXT}).splitlines()[3:5] == ['1 | steps = "ten"', "  |         ^^^^^"]


def test_a_span_over_several_lines_is_underlined_to_the_end_of_its_first():
    problem = Problem("E003", "expected a string", file="s.toml", line=2, column=10, end_line=3, end_column=7)
    assert render_problem(problem, {"s.toml": TEXT}).splitlines()[4] == '  |          ^^^^^'


def test_without_an_end_the_token_at_the_column_is_underlined():
    problem = Problem("E006", "TOML syntax", file="s.toml", line=4, column=6)
    assert render_problem(problem, {"s.toml": TEXT}).splitlines()[4] == "  |      ^^^^"


def test_a_problem_in_a_command_line_argument_shows_the_argument():
    problem = Problem("E003", "expected an integer, found 'ten'", file="s.toml", path="stage[0].steps", column=22, end_column=25,
                      argument="--set stage[0].steps=ten", argument_index=1)
    assert render_problem(problem, {"s.toml": TEXT}).splitlines() == [
        "error[E003]: expected an integer, found 'ten'",
        " --> --set #2",
        " |",
        " | --set stage[0].steps=ten",
        " |                      ^^^",
        " = at: stage[0].steps",
    ]
