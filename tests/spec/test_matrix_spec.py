"""`[matrix]` and `[[ensemble]]` in the language: members are layered like profiles, and a
mistake in a variant or an ensemble is a located error (file, key path, line, hint) from
`staged validate` and `staged plan`, exit 2, no traceback."""

from __future__ import annotations

import re

import pytest

from stagedsl.cli.app import run_cli
from stagedsl.errors import SpecError
from stagedsl.spec.loader import loads_spec
from stagedsl.spec.matrix import expand_members, member_names

from ..matrix.fixtures import PAIRS


def _line_of(text: str, needle: str) -> int:
    """The line of the last occurrence of `needle`."""
    return [i for i, line in enumerate(text.splitlines(), 1) if needle in line][-1]


def test_members_are_variants_times_seeds_layered_like_profiles(builtin_registry):
    spec = loads_spec(PAIRS, registry=builtin_registry)
    assert member_names(spec) == ["plain-s1", "plain-s2", "fused-s1", "fused-s2"]
    members = {m.name: m for m in expand_members(spec, builtin_registry)}
    fused = members["fused-s2"].spec
    assert fused.model.args["fusion"] is True and fused.model.args["layers"] == [1, 1]  # the layer merges into [model]
    assert fused.run.seed == 2 and fused.run.name == "fused-s2"
    assert members["plain-s1"].spec.model.args.get("fusion") is None
    assert fused.matrix is None and fused.ensembles == ()  # a member is a plain single spec
    assert [s.name for s in fused.stages] == ["head", "all"] and fused.stages[1].lr == 3e-3  # [defaults] apply


def test_set_wins_over_a_variant_and_stages_are_addressed_by_name(builtin_registry):
    text = PAIRS.replace("model = { fusion = true }", "model = { fusion = true, width = 6 }\nstage.all = { steps = 8 }")
    spec = loads_spec(text, overrides=["model.width=5"], registry=builtin_registry)
    members = {m.name: m.spec for m in expand_members(spec, builtin_registry)}
    assert members["fused-s1"].model.args["width"] == 5 and members["plain-s1"].model.args["width"] == 5
    assert [s.steps for s in members["fused-s1"].stages] == [4, 8] and [s.steps for s in members["plain-s1"].stages] == [4, 6]


def test_no_variant_and_no_seed_is_one_member(builtin_registry):
    text = PAIRS.split("[matrix]")[0] + "[matrix]\njobs = 1\n"
    spec = loads_spec(text, registry=builtin_registry)
    assert member_names(spec) == ["base-s7"]


WRONG_VARIANTS = [
    # (replace this, with that, code, key path, the line's text, help)
    ("model = { fusion = true }", "model = { fusion = true, layerz = [2, 2] }", "E021",
     "matrix.variant.fused.model.layerz", "layerz", 'did you mean "layers"?'),
    ("model = { fusion = true }", 'model = { fusion = "yes" }', "E023", "matrix.variant.fused.model.fusion", 'fusion = "yes"', None),
    ("model = { fusion = true }", "stage.all = { stpes = 3 }", "E002", "matrix.variant.fused.stage.all.stpes", "stpes", 'did you mean "steps"?'),
    ("model = { fusion = true }", "stage.al = { steps = 3 }", "E007", "matrix.variant.fused.stage.al", "stage.al", 'did you mean "all"?'),
    ("model = { fusion = true }", "run = { seed = 3 }", "E075", "matrix.variant.fused.run.seed", "run = { seed = 3 }", "seeds"),
    ("[matrix.variant.fused]", "[matrix.variant.\".fused\"]", "E070", 'matrix.variant..fused', '".fused"', "letters"),
    ("seeds = [1, 2]", "seeds = [1, 1]", "E074", "matrix.seeds[1]", "seeds = [1, 1]", None),
    ('meta = { use = "logistic" }', 'meta = { use = "logistik" }', "E020", "ensemble[1].meta.use", "logistik", 'did you mean "logistic"?'),
    ('meta = { use = "logistic" }', 'meta = { use = "logistic", c = 2.0 }', "E021", "ensemble[1].meta.c", "c = 2.0", 'did you mean "C"?'),
    ('use = "stacking"', 'use = "stackin"', "E020", "ensemble[1].use", "stackin", 'did you mean "stacking"?'),
    ('name = "mean"\nuse = "mean"', 'name = "mean"\nuse = "mean"\nmembers = ["fusd-*"]', "E072", "ensemble[0].members[0]", "fusd", None),
    ('name = "stack"', 'name = "mean"', "E071", "ensemble[1].name", 'name = "mean"', None),
    ("folds = 3", "folds = 1", "E012", "ensemble[1].folds", "folds = 1", None),
]


@pytest.mark.parametrize(("old", "new", "code", "path", "needle", "hint"), WRONG_VARIANTS, ids=[w[2] + "-" + w[3] for w in WRONG_VARIANTS])
@pytest.mark.parametrize("command", ["validate", "plan"])
def test_a_wrong_variant_or_ensemble_is_a_located_error(tmp_path, registry, capsys, command, old, new, code, path, needle, hint):
    assert old in PAIRS
    text = PAIRS.replace(old, new, 1)
    spec = tmp_path / "pairs.toml"
    spec.write_text(text)
    assert run_cli([command, str(spec)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"error[{code}]" in err, err
    assert f"= at: {path}" in err, err
    assert f"{spec}:{_line_of(text, needle)}:" in err, err
    if hint:
        assert hint in err, err


def test_ensembles_need_a_matrix(builtin_registry):
    text = PAIRS.split("[matrix]")[0] + '[[ensemble]]\nname = "mean"\nuse = "mean"\n'
    with pytest.raises(SpecError) as caught:
        loads_spec(text, registry=builtin_registry)
    assert [p.code for p in caught.value.problems] == ["E073"]


def test_a_mistake_a_variant_only_provokes_elsewhere_names_the_variant(builtin_registry):
    # the variant removes the encoder's second stage, so the base's freeze glob matches nothing there
    text = PAIRS.replace("model = { fusion = true }", "model = { fusion = true, layers = [1] }")
    spec = loads_spec(text, registry=builtin_registry)
    from stagedsl.errors import PlanError
    from stagedsl.matrix.plan import compile_matrix

    with pytest.raises(PlanError) as caught:
        compile_matrix(spec, builtin_registry, out="runs/x")
    problem = caught.value.problems[0]
    assert problem.code == "E060" and problem.message.startswith("variant `fused`:") and problem.path == "stage[0].freeze[0]"
    assert problem.line == _line_of(text, 'freeze = ["encoder.layer2.**"]')


def test_plan_dry_run_shows_the_matrix_and_every_member(tmp_path, registry, capsys):
    spec = tmp_path / "pairs.toml"
    spec.write_text(PAIRS)
    assert run_cli(["plan", str(spec), "--dry-run", "--no-chart"]) == 0
    out = capsys.readouterr().out
    assert "2 variants x 2 seeds = 4 members, 40 steps in all" in out
    for name in ("plain-s1", "plain-s2", "fused-s1", "fused-s2"):
        assert re.search(rf"{name}\s+\w+\s+\d\s+10\s+head 4, all 6", out), out
    assert "model.fusion = true" in out and "stack: stacking of 4 members" in out
    assert "variant plain (member plain-s1" in out and "variant fused (member fused-s1" in out


def test_plan_json_holds_every_member_plan(tmp_path, registry, capsys):
    import json

    spec = tmp_path / "pairs.toml"
    spec.write_text(PAIRS)
    assert run_cli(["plan", str(spec), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [m["name"] for m in data["members"]] == ["plain-s1", "plain-s2", "fused-s1", "fused-s2"]
    assert [m["plan"]["run"]["seed"] for m in data["members"]] == [1, 2, 1, 2]
    assert all(m["plan"]["run"]["threads"] == 1 for m in data["members"])
    assert data["total_steps"] == 40 and data["ensembles"][1]["args"] == {"meta": {"use": "logistic"}}


def test_validate_names_the_members(tmp_path, registry, capsys):
    spec = tmp_path / "pairs.toml"
    spec.write_text(PAIRS)
    assert run_cli(["validate", str(spec)]) == 0
    assert "matrix of 4 members, 2 ensembles" in capsys.readouterr().out


def test_matrix_options_on_a_single_spec_are_refused(tmp_path, registry, capsys):
    spec = tmp_path / "single.toml"
    spec.write_text(PAIRS.split("[matrix]")[0])
    assert run_cli(["run", str(spec), "--jobs", "2", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "error[E710]" in err and "--jobs" in err and "Traceback" not in err


def test_the_docs_cover_matrix_and_ensemble():
    """Regenerate with: python -m stagedsl.spec.reference > docs/language.md; staged schema --out docs/schema.json"""
    import json
    from pathlib import Path

    from stagedsl.spec.reference import language_reference
    from stagedsl.spec.schema import spec_schema

    docs = Path(__file__).resolve().parents[2] / "docs"
    language = (docs / "language.md").read_text()
    assert language == language_reference(), "docs/language.md is stale: run `python -m stagedsl.spec.reference > docs/language.md`"
    assert "## `[matrix]`" in language and "## `[[ensemble]]`" in language and "`<variant>-s<seed>`" in language
    schema = json.loads((docs / "schema.json").read_text())
    assert schema == spec_schema()
    assert set(schema["properties"]["matrix"]["properties"]) == {"seeds", "variant", "jobs", "threads"}
    assert set(schema["properties"]["ensemble"]["items"]["properties"]) == {"name", "use", "members", "folds"}
    errors = (docs / "errors.md").read_text()
    assert all(f"### E07{i}" in errors for i in range(6))


def test_validating_a_matrix_spec_imports_no_torch(specs_dir):
    import subprocess
    import sys

    code = ("import sys; from stagedsl.cli.app import run_cli; "
            f"assert run_cli(['validate', {str(specs_dir / 'compare.toml')!r}]) == 0; "
            "heavy = [m for m in ('torch', 'numpy', 'sklearn', 'lightgbm') if m in sys.modules]; assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
