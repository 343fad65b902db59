"""Selectors resolve to parameter names; one that matches nothing gets a did-you-mean."""

import pytest

from stagedsl.errors import PlanError

from .conftest import OCEC, compile_text


def test_glob_that_matches_nothing_suggests_the_module(builtin_registry):
    with pytest.raises(PlanError) as info:
        compile_text(OCEC.format(heads_extra="").replace('freeze = ["backbone.**"]', 'freeze = ["backbon.**"]'), builtin_registry)
    problem = info.value.problems[0]
    assert problem.code == "E060" and problem.path == "stage[0].freeze[0]"
    assert problem.hint == 'did you mean "backbone.**"?'
