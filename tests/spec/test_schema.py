"""`staged schema`: a valid draft 2020-12 JSON Schema that accepts every real spec,
rejects wrong ones, and is the file ``docs/schema.json`` the specs point editors at."""

from __future__ import annotations

import copy
import json
import tomllib
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from stagedsl.cli.app import run_cli

ROOT = Path(__file__).resolve().parents[2]
SPEC_FILES = sorted((ROOT / "specs").glob("*.toml"))
SCHEMA_FILE = ROOT / "docs" / "schema.json"


@pytest.fixture(scope="module")
def schema_text() -> str:
    import io
    from contextlib import redirect_stdout

    stdout = io.StringIO()
    with redirect_stdout(stdout):
        assert run_cli(["schema"]) == 0
    return stdout.getvalue()


@pytest.fixture(scope="module")
def validator(schema_text) -> Draft202012Validator:
    schema = json.loads(schema_text)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def test_schema_is_draft_2020_12(schema_text):
    schema = json.loads(schema_text)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda p: p.stem)
def test_schema_accepts_every_real_spec(path, validator):
    document = tomllib.loads(path.read_text())
    assert list(validator.iter_errors(document)) == []


def _pde() -> dict:
    return tomllib.loads((ROOT / "specs" / "pde.toml").read_text())


def _unknown_top_level(d: dict) -> None:
    d["trainer"] = {"epochs": 3}


def _stage_without_name(d: dict) -> None:
    del d["stage"][1]["name"]


def _wrong_type(d: dict) -> None:
    d["stage"][0]["steps"] = "many"


def _unknown_stage_key(d: dict) -> None:
    d["stage"][0]["stpes"] = 10


def _wrong_run_type(d: dict) -> None:
    d["run"]["seed"] = 1.5


def _bad_duration(d: dict) -> None:
    d["defaults"]["eval"]["every"] = "often"


def _unknown_gate_key(d: dict) -> None:
    d["stage"][0]["gate"] = {"when": "val/loss < 1", "on_fial": "stop"}


def _no_stages(d: dict) -> None:
    d["stage"] = []


def _model_without_use(d: dict) -> None:
    del d["model"]["use"]


def _bad_loss(d: dict) -> None:
    d["stage"][2]["loss"] = {"blend": ["mse"], "alpha": 0.5}


@pytest.mark.parametrize(
    "breaks",
    [_unknown_top_level, _stage_without_name, _wrong_type, _unknown_stage_key, _wrong_run_type, _bad_duration,
     _unknown_gate_key, _no_stages, _model_without_use, _bad_loss],
    ids=lambda f: f.__name__.strip("_"),
)
def test_schema_rejects_wrong_specs(breaks, validator):
    document = copy.deepcopy(_pde())
    breaks(document)
    assert list(validator.iter_errors(document)), f"{breaks.__name__} was accepted"


def test_a_file_that_extends_may_leave_out_the_required_tables(validator):
    assert list(validator.iter_errors({"extends": "pde.toml", "run": {"name": "child"}})) == []
    assert list(validator.iter_errors({"run": {"name": "child"}}))


def test_docs_schema_json_is_current(schema_text):
    """Regenerate with: staged schema --out docs/schema.json"""
    assert SCHEMA_FILE.read_text() == schema_text, "docs/schema.json is stale: run `staged schema --out docs/schema.json`"


def test_schema_out_option_writes_the_same_text(tmp_path, schema_text, capsys):
    out = tmp_path / "schema.json"
    assert run_cli(["schema", "--out", str(out)]) == 0
    assert out.read_text() == schema_text
