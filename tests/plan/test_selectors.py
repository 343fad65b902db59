"""Selectors resolve to parameter names; one that matches nothing gets a did-you-mean."""

from pathlib import Path

import pytest

from stagedsl.errors import PlanError

from .conftest import OCEC, compile_text


def test_glob_that_matches_nothing_suggests_the_module(builtin_registry):
    with pytest.raises(PlanError) as info:
        compile_text(OCEC.format(heads_extra="").replace('freeze = ["backbone.**"]', 'freeze = ["backbon.**"]'), builtin_registry)
    problem = info.value.problems[0]
    assert problem.code == "E060" and problem.path == "stage[0].freeze[0]"
    assert problem.hint == 'did you mean "backbone.**"?'


def test_a_glob_that_stops_short_of_the_subtree_suggests_the_subtree(builtin_registry):
    """`backbone.*` reaches one segment below `backbone`, where there are no parameters: `**` is meant."""
    with pytest.raises(PlanError) as info:
        compile_text(OCEC.format(heads_extra="").replace('freeze = ["backbone.**"]', 'freeze = ["backbone.*"]'), builtin_registry)
    assert info.value.problems[0].hint == 'did you mean "backbone.**"?'


PDE_SPEC = Path(__file__).resolve().parents[2] / "specs" / "pde.toml"
FREEZE = 'freeze = ["transformer.**"]'  # stage[0] of specs/pde.toml


def pde(old: str = FREEZE, new: str = FREEZE) -> str:
    text = PDE_SPEC.read_text()
    assert text.count(old) == 1
    return text.replace(old, new)


def _warnings(text, registry, code="W005"):
    return [w for w in compile_text(text, registry, file="spec.toml", profile="tiny").warnings if w["code"] == code]


def test_a_selection_that_leaves_part_of_a_module_it_names_is_a_warning(builtin_registry):
    text = pde(new='freeze = ["transformer.*"]')
    plan = compile_text(text, builtin_registry, file="spec.toml", profile="tiny")
    under = [name for name in plan.parameters if name.startswith("transformer.")]
    assert len(under) > 2
    [warning] = _warnings(text, builtin_registry)
    assert warning["severity"] == "warning" and warning["path"] == "stage[0].freeze[0]"
    assert warning["message"] == f"`transformer.*` selects 1 of the {len(under)} parameter tensors under `transformer`"
    assert warning["hint"].startswith('did you mean "transformer.**"?')
    line = text.splitlines().index('freeze = ["transformer.*"]') + 1
    assert (warning["line"], warning["column"], warning["end_column"]) == (line, 11, 11 + len('"transformer.*"'))  # on the value
    # the plan is what the user wrote: only transformer.position frozen
    assert plan.stages[0].frozen == ("transformer.position",)


@pytest.mark.parametrize("selection", [
    'freeze = ["transformer.**"]',  # the whole subtree
    'freeze = ["decoder_2d.*"]',  # every parameter of the module is one segment below it
    'freeze = ["transformer.*.weight"]',  # a pattern inside the module, not the module
    'freeze = ["re:transformer\\\\.[^.]*"]',  # another strategy's syntax
])
def test_selections_that_mean_what_they_select_are_not_warned_about(selection, builtin_registry):
    assert _warnings(pde(new=selection), builtin_registry) == []


def test_the_warning_covers_train_and_groups_too(builtin_registry):
    text = pde('train = ["transformer.**"]', 'train = ["transformer.*", "decoder_2d.**"]\ngroups = [{ name = "t", params = ["transformer.*"] }]')
    assert [w["path"] for w in _warnings(text, builtin_registry)] == ["stage[1].train[0]", "stage[1].groups[0].params[0]"]


def test_the_plan_command_shows_the_warning_and_succeeds(tmp_path, builtin_registry, capsys):
    from stagedsl.cli.app import run_cli

    spec = tmp_path / "spec.toml"
    spec.write_text(pde(new='freeze = ["transformer.*"]'))
    assert run_cli(["plan", str(spec), "--profile", "tiny", "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert "warning[W005]: `transformer.*` selects 1 of the" in err and '= help: did you mean "transformer.**"?' in err
