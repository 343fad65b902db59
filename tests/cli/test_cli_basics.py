"""The `staged` command itself: validate imports no torch, exit codes, stdout vs stderr,
and the generated reference docs (docs/cli.md, docs/errors.md) are current."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from stagedsl.cli.app import run_cli
from stagedsl.cli.reference import render_cli_reference

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "specs"


def _child_env() -> dict:
    return {**os.environ, "STAGEDSL_DISABLE_PLUGIN_AUTOLOAD": "1"}


@pytest.mark.parametrize("path", sorted(SPECS.glob("*.toml")), ids=lambda p: p.stem)
def test_validate_imports_no_torch(path):
    code = (
        "import sys; from stagedsl.cli.app import run_cli; "
        f"rc = run_cli(['validate', {str(path)!r}]); "
        "assert rc == 0, rc; "
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchmetrics', 'onnx', 'onnxruntime', 'matplotlib')); "
        "assert 'torch' not in sys.modules, heavy; assert not heavy, heavy"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_child_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


def test_validate_of_a_bad_spec_imports_no_torch_either(tmp_path):
    spec = tmp_path / "bad.toml"
    spec.write_text((SPECS / "pde.toml").read_text().replace('use = "mse"', 'use = "msee"').replace('loss = "mse"', 'loss = "msee"'))
    code = f"import sys; from stagedsl.cli.app import run_cli; rc = run_cli(['validate', {str(spec)!r}]); assert rc == 2, rc; assert 'torch' not in sys.modules"
    result = subprocess.run([sys.executable, "-c", code], env=_child_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "error[E020]" in result.stderr


def test_python_dash_m_stagedsl_is_the_command(tmp_path):
    result = subprocess.run([sys.executable, "-m", "stagedsl", "validate", str(SPECS / "pde.toml"), "--json"],
                            env=_child_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"ok": True, "file": str(SPECS / "pde.toml"), "stages": ["warmup_encdec", "transformer", "finetune"]}
    assert result.stderr == ""


def test_errors_go_to_stderr_and_nothing_to_stdout_unless_json(tmp_path, registry, capsys):
    spec = tmp_path / "bad.toml"
    spec.write_text('[model]\nuse = "mlp"\n')
    assert run_cli(["validate", str(spec)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "error[E001]" in err and "Traceback" not in err
    assert run_cli(["validate", str(spec), "--json"]) == 2  # --json: the errors as data on stdout, for editors and CI
    out, err = capsys.readouterr()
    assert [e["code"] for e in json.loads(out)["errors"]] == ["E001", "E001"] and "error[E001]" in err


def test_a_missing_spec_file_exits_2(tmp_path, registry, capsys):
    assert run_cli(["validate", str(tmp_path / "nope.toml")]) == 2
    err = capsys.readouterr().err
    assert "error[E005]" in err and "nope.toml" in err


def test_a_directory_is_not_a_spec(tmp_path, registry, capsys):
    assert run_cli(["validate", str(tmp_path)]) == 2
    assert "error[E005]" in capsys.readouterr().err


@pytest.mark.parametrize("out", ["/proc/evil", "/sys/x/run", "/dev/shm/../null/run"])
def test_run_out_in_a_system_folder_is_refused_before_anything_is_read(out, tmp_path, registry, capsys):
    spec = tmp_path / "spec.toml"  # not even read: --out is refused first
    assert run_cli(["run", str(spec), "--out", out]) == 2
    err = capsys.readouterr().err
    assert "error[E014]" in err and "a folder of the system's" in err and "= at: --out" in err and "Traceback" not in err


def test_a_spec_that_is_not_utf8_exits_2(tmp_path, registry, capsys):
    spec = tmp_path / "latin1.toml"
    spec.write_bytes('[run]\nname = "caf\xe9"\n'.encode("latin-1"))
    assert run_cli(["validate", str(spec)]) == 2
    assert "error[E005]" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["frobnicate"], ["validate"], ["plan", "--no-such-option", "x.toml"]], ids=["unknown-command", "missing-argument", "unknown-option"])
def test_usage_errors_exit_2(argv, registry, capsys):
    assert run_cli(argv) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_help_exits_0(registry, capsys):
    assert run_cli(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("validate", "plan", "plugins", "schema"):
        assert command in out


def test_plugins_json_lists_every_built_in(registry, capsys):
    assert run_cli(["plugins", "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    names = {(e["kind"], e["name"]) for e in entries}
    assert {("models", "mlp"), ("datasets", "npz"), ("losses", "mse"), ("freeze_strategies", "fraction"), ("schedulers", "plateau")} <= names
    assert all(e["distribution"] == "stagedsl" and e["doc"] for e in entries)
    defaults = {e["kind"]: e["name"] for e in entries if e["default"]}
    assert defaults == {"optimizers": "adamw", "schedulers": "constant", "freeze_strategies": "glob"}  # what a spec gets unnamed


# -- generated docs ----------------------------------------------------------------------------
def test_docs_cli_md_is_current():
    """Regenerate with: python -m stagedsl.cli.reference > docs/cli.md"""
    assert (ROOT / "docs" / "cli.md").read_text() == render_cli_reference(), \
        "docs/cli.md is stale: run `python -m stagedsl.cli.reference > docs/cli.md`"


def test_cli_reference_names_every_option(registry, capsys):
    text = render_cli_reference()
    for command in ("validate", "plan", "plugins", "schema"):
        assert f"## `staged {command}`" in text
    for option in ("--profile", "--set", "--json", "--plot", "--dry-run", "--strict-plugins", "--out"):
        assert f"`{option}`" in text


CODE = re.compile(r"""["']([EW]\d{3})["']""")


def _codes_in_source() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in sorted((ROOT / "stagedsl").rglob("*.py")):
        for code in CODE.findall(path.read_text()):
            found.setdefault(code, []).append(str(path.relative_to(ROOT)))
    return found


def test_every_code_in_the_source_is_documented():
    text = (ROOT / "docs" / "errors.md").read_text()
    documented = set(re.findall(r"^### `?([EW]\d{3})`?", text, flags=re.M))
    used = _codes_in_source()
    assert len(used) > 40
    missing = {code: files for code, files in used.items() if code not in documented}
    assert not missing, f"codes used in stagedsl/ but not documented in docs/errors.md: {missing}"


def test_every_documented_code_has_meaning_example_and_fix():
    text = (ROOT / "docs" / "errors.md").read_text()
    sections = re.split(r"^### ", text, flags=re.M)[1:]
    assert sections
    for section in sections:
        code = section.split()[0].strip("`")
        assert "**Meaning:**" in section, f"{code} has no meaning"
        assert "**Fix:**" in section, f"{code} has no fix"
        assert "```" in section, f"{code} has no example"
