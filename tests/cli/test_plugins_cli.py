"""`staged plugins` shows what a spec may write: every piece's arguments with types and defaults;
`staged plugins NAME` one piece in full (registered, or named by import path); `--json` carries the
signature."""

from __future__ import annotations

import json

from stagedsl.cli.app import run_cli


def test_the_listing_shows_every_pieces_arguments_with_types_and_defaults(registry, capsys):
    assert run_cli(["plugins", "--kind", "losses"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("  cross_entropy "))
    assert lines[at + 1].strip() == "label_smoothing: float = 0.0, weight: list[float] | None = None"
    assert "mse" in out and "no arguments" in out
    assert not [line for line in lines if line and not line.startswith(" ") and line != "losses:"]  # one kind only


def test_one_piece_in_full_with_its_arguments_meta_and_a_spec_line(registry, capsys):
    assert run_cli(["plugins", "fraction"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("freeze strategy `fraction`  (plugin `stagedsl_plugins.freeze`, distribution stagedsl")
    assert "    names: list[str] (supplied by stagedsl)" in out
    assert "    module: str\n" in out and '    end: str = "last"' in out
    assert 'freeze = [{ use = "fraction", module = ..., fraction = ... }]' in out
    assert run_cli(["plugins", "plateau"]) == 0
    assert "registered with: monitored = true; worst_case = \"plateau_worst_case\"" in capsys.readouterr().out


def test_an_import_path_is_shown_as_the_core_calls_it(registry, capsys):
    assert run_cli(["plugins", "torch.optim:SGD", "--kind", "optimizers"]) == 0
    out = capsys.readouterr().out
    assert "optimizer `torch.optim:SGD`  (imported from `torch.optim`, distribution torch" in out
    assert "    param_groups: any (supplied by stagedsl)\n    lr: any (supplied by stagedsl)\n    momentum: float = 0" in out
    assert "params:" not in out


def test_json_carries_each_signature(registry, capsys):
    assert run_cli(["plugins", "--json"]) == 0
    entries = {(e["kind"], e["name"]): e for e in json.loads(capsys.readouterr().out)}
    children = entries[("freeze_strategies", "children")]
    assert {"name": "first", "type": "int | None", "default": None, "required": False, "supplied": False} in children["arguments"]
    assert {"name": "modules", "type": "list", "default": None, "required": False, "supplied": True} in children["arguments"]
    npz = entries[("datasets", "npz")]
    assert npz["arguments"][0] == {"name": "train", "type": "path", "default": None, "required": True, "supplied": False}
    assert npz["meta"] == {"sizes": "npz_sizes"}
    assert run_cli(["plugins", "npz", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["doc"].startswith("Arrays from .npz files")


def test_an_unknown_name_exits_2_with_a_did_you_mean(registry, capsys):
    assert run_cli(["plugins", "crossentropy"]) == 2
    err = capsys.readouterr().err
    assert "error[E020]: no piece named `crossentropy` is registered" in err and 'did you mean "cross_entropy"?' in err
