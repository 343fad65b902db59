"""Every profile is checked whether or not it is selected: a mistake in any profile of any shipped
spec (a misspelt key, a word for a number, an unknown plugin) makes `staged validate SPEC` — no
`--profile` — exit 2, with every error located inside that profile."""

from __future__ import annotations

import copy
import re
import tomllib
from pathlib import Path
from typing import Any, Optional

import pytest
import tomli_w

from stagedsl.cli.app import run_cli

SPECS = sorted((Path(__file__).resolve().parents[2] / "specs").glob("*.toml"))
CASES = [
    pytest.param(path, profile, mutation, id=f"{path.stem}-{profile}-{mutation}")
    for path in SPECS
    for profile in tomllib.loads(path.read_text()).get("profile", {})
    for mutation in ("misspelt-key", "word-for-number", "unknown-plugin")
]


def _leaves(table: dict, where: tuple = ()):
    """(parent table, key) of every leaf, depth first in written order."""
    for key, value in table.items():
        if isinstance(value, dict):
            yield from _leaves(value, where + (key,))
        else:
            yield table, key


def _pieces(table: dict):
    """Every table that names a piece with `use`."""
    if "use" in table:
        yield table
    for value in table.values():
        if isinstance(value, dict):
            yield from _pieces(value)


def mutate(profile: dict, mutation: str) -> None:
    """Make one mistake inside `profile`."""
    if mutation == "misspelt-key":
        parent, key = next(_leaves(profile))
        parent[key[:-1] + key[-1] * 2] = parent.pop(key)  # epochs -> epochss
    elif mutation == "word-for-number":
        parent, key = next((p, k) for p, k in _leaves(profile) if isinstance(p[k], (int, float)) and not isinstance(p[k], bool))
        parent[key] = "ten"
    else:
        piece: Optional[dict[str, Any]] = next(_pieces(profile), None)
        if piece is None:
            piece = profile.setdefault("model", {})
        piece["use"] = "no_such_piece"


def profile_lines(text: str, profile: str) -> set[int]:
    """The line numbers of `text` that belong to the tables of `[profile.<profile>]`."""
    inside, lines = False, set()
    for number, line in enumerate(text.splitlines(), 1):
        header = re.match(r"^\[\[?([^\]]+)\]", line)
        if header:
            name = header.group(1).strip()
            inside = name == f"profile.{profile}" or name.startswith(f"profile.{profile}.")
        if inside:
            lines.add(number)
    return lines


@pytest.mark.parametrize(("path", "profile", "mutation"), CASES)
def test_a_mistake_in_any_profile_fails_validate_and_is_located_in_it(path, profile, mutation, tmp_path, registry, capsys):
    document = tomllib.loads(path.read_text())
    document = copy.deepcopy(document)
    mutate(document["profile"][profile], mutation)
    spec = tmp_path / path.name
    text = tomli_w.dumps(document)
    spec.write_text(text)
    assert run_cli(["validate", str(spec)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    located = [int(n) for n in re.findall(rf"--> {re.escape(str(spec))}:(\d+):\d+", err)]
    assert located, err
    assert set(located) <= profile_lines(text, profile), err
    assert f"(profile `{profile}`)" in err


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_the_shipped_specs_and_all_their_profiles_are_clean(path, registry, capsys):
    assert run_cli(["validate", str(path)]) == 0, capsys.readouterr().err
