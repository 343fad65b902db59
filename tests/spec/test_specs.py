"""Every spec in ``specs/`` is loaded and compiled, with each of its profiles; the seed
plans are checked where the plan matters (pde's three stages, metr's plateau lint)."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest

from stagedsl.cli.app import run_cli
from stagedsl.plan.compile import compile_plan
from stagedsl.plan.model import Plan
from stagedsl.plan.render import human_count
from stagedsl.spec.loader import load_spec

SPECS = Path(__file__).resolve().parents[2] / "specs"
SPEC_FILES = sorted(SPECS.glob("*.toml"))
PROFILES = [
    pytest.param(path, profile, id=f"{path.stem}-{profile or 'default'}")
    for path in SPEC_FILES
    for profile in [None, *tomllib.loads(path.read_text()).get("profile", {})]
]
PDE = SPECS / "pde.toml"


def test_there_are_specs():
    assert {"pde.toml", "ocec.toml", "metr.toml"} <= {p.name for p in SPEC_FILES}


@pytest.mark.parametrize(("path", "profile"), PROFILES)
def test_every_spec_and_profile_loads_and_compiles(path, profile, builtin_registry):
    spec = load_spec(path, profile=profile, registry=builtin_registry)
    plan = compile_plan(spec, builtin_registry)
    assert [s.name for s in plan.stages] == [s.name for s in spec.stages]
    assert all(stage.steps > 0 and stage.trainable for stage in plan.stages)
    assert Plan.from_json(plan.to_json()).hash == plan.hash


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda p: p.stem)
def test_every_spec_validates_through_the_cli(path, registry, capsys):
    assert run_cli(["validate", str(path)]) == 0
    out, err = capsys.readouterr()
    assert "ok" in out and "error" not in err


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda p: p.stem)
def test_every_spec_starts_with_the_schema_directive(path):
    assert path.read_text().splitlines()[0] == "#:schema ../docs/schema.json"


@pytest.fixture(scope="module")
def pde_json() -> dict:
    from stagedsl.registry import Registry, set_registry

    set_registry(Registry.load(autoload=False))
    try:
        import io
        from contextlib import redirect_stdout

        stdout = io.StringIO()
        with redirect_stdout(stdout):
            assert run_cli(["plan", str(PDE), "--json"]) == 0
    finally:
        set_registry(None)
    return json.loads(stdout.getvalue())


def test_pde_json_stages_train_what_the_seed_says(pde_json):
    stages = pde_json["stages"]
    every = list(pde_json["parameters"])
    assert [s["name"] for s in stages] == ["warmup_encdec", "transformer", "finetune"]
    assert all("name" in s and "trainable" in s for s in stages)
    warmup, transformer, finetune = (s["trainable"] for s in stages)
    assert warmup and not any(n.startswith("transformer.") for n in warmup)
    assert set(warmup) == {n for n in every if not n.startswith("transformer.")}
    assert transformer and all(n.startswith("transformer.") for n in transformer)
    assert set(transformer) == {n for n in every if n.startswith("transformer.")}
    assert finetune == every
    assert [s["steps"] for s in stages] == [1000, 2000, 1000]  # half the seed's: the README's first run stays short
    assert [s["init"] and s["init"]["stage"] for s in stages] == [None, "warmup_encdec", "transformer"]


@pytest.mark.parametrize("profile", ["seed", "full"])
def test_pde_profiles_keep_the_seeds_step_counts(profile, registry):
    from stagedsl.spec.loader import load_spec

    loaded = load_spec(PDE, profile=profile, registry=registry)
    assert [s.steps for s in loaded.stages] == [2000, 4000, 2000]


def test_pde_json_round_trips_with_its_hash(pde_json):
    plan = Plan.from_json(json.dumps(pde_json))
    assert plan.hash == pde_json["hash"]
    assert json.loads(plan.to_json()) == pde_json


def test_pde_dry_run_shows_three_stages_with_counts(pde_json, registry, capsys):
    assert run_cli(["plan", str(PDE), "--dry-run"]) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    assert "3 stages" in out
    for index, stage in enumerate(pde_json["stages"]):
        trained = sum(pde_json["parameters"][n] for n in stage["trainable"])
        total = sum(pde_json["parameters"].values())
        assert re.search(rf"stage {index + 1}: {stage['name']} .* {stage['steps']} steps", out), out
        assert f"parameters: {human_count(trained)} of {human_count(total)} trainable" in out
        assert f"({len(stage['trainable'])} tensors trained, {len(stage['frozen'])} frozen)" in out
    assert "✗ transformer" in out and "✓ transformer" in out


def test_pde_plot_writes_a_png(tmp_path, registry, capsys):
    png = tmp_path / "lr.png"
    assert run_cli(["plan", str(PDE), "--profile", "tiny", "--plot", str(png), "--no-chart"]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(png) in capsys.readouterr().err


def test_metr_plateau_profile_warns_w001(registry, capsys):
    metr = SPECS / "metr.toml"
    assert run_cli(["plan", str(metr), "--profile", "plateau", "--json"]) == 0
    out, err = capsys.readouterr()
    warnings = json.loads(out)["warnings"]
    assert [w["code"] for w in warnings] == ["W001"]
    assert warnings[0]["path"] == "stage[0].scheduler" and warnings[0]["severity"] == "warning"
    assert "warning[W001]" in err and "1 warning" in err
    # the spec as the team fixed it does not warn
    assert run_cli(["plan", str(metr), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["warnings"] == []
