"""The one did-you-mean of stagedsl: case does not hide a match, and the closest name wins."""

import pytest

from stagedsl.errors import closest, did_you_mean


@pytest.mark.parametrize("word, choices, expected", [
    ("adamW", ["adam", "adamw", "sgd"], "adamw"),  # not "adam", which is closer only as written
    ("ADAMW", ["adam", "adamw"], "adamw"),
    ("Steps", ["epochs", "steps"], "steps"),
    ("hubber", ["huber", "l1", "mse"], "huber"),
    ("multistpe", ["multistep", "cosine", "plateau"], "multistep"),
    ("zzz", ["adam", "sgd"], None),
    (3, ["adam"], None),
])
def test_closest(word, choices, expected):
    assert closest(word, choices) == expected


def test_a_match_differing_only_in_case_beats_a_closer_spelling_as_written():
    assert did_you_mean("Adam", ["adamw", "adam"]) == 'did you mean "adam"?'
    assert did_you_mean("adamW", ["adam", "adamw"]) == 'did you mean "adamw"?'


def test_ties_keep_the_order_of_the_choices():
    assert closest("ab", ["ac", "ad"]) == "ac"
    assert closest("ab", ["ad", "ac"]) == "ad"
