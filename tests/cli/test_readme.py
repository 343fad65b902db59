"""The README's first ten minutes, as written: the quick start, then "Export and predict" for every spec.

The commands are read from the README's own code blocks, so the README cannot drift;
`--profile tiny` is added to `staged run` to keep it to seconds, and the other specs
take the place of `ocec` (with an input file made from their package's input shapes); a
matrix spec (`compare.toml`) has its own README lines and tests.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from stagedsl.cli.app import run_cli

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
SPECS = sorted(p.stem for p in (ROOT / "specs").glob("*.toml") if "\n[matrix]" not in p.read_text(encoding="utf-8"))
"""The single-run specs (a `[matrix]` spec exports its ensembles with `--ensemble NAME` instead)."""


def _block(title: str) -> list[str]:
    """The commands of the first ```bash block under `## title` (one per line or per `&&`), comments removed."""
    section = README.split(f"## {title}\n", 1)[1]
    body = re.search(r"```bash\n(.*?)```", section, flags=re.S).group(1)
    commands: list[str] = []
    for raw in body.splitlines():
        words: list[str] = []
        for word in [*shlex.split(raw, comments=True), "&&"]:
            if word == "&&":
                commands += [shlex.join(words)] if words else []
                words = []
            else:
                words.append(word)
    return commands


def _staged(line: str, *extra: str) -> None:
    argv = shlex.split(line)
    assert argv[0] == "staged", line
    code = run_cli([*argv[1:], *extra])
    assert code == 0, f"`{line}` exited {code}"


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A fresh folder that sees the repository's specs, as a clone would."""
    (tmp_path / "specs").symlink_to(ROOT / "specs")
    (tmp_path / "docs").symlink_to(ROOT / "docs")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.slow
def test_quick_start_runs_as_written(workdir, capsys):
    run = next(command for command in _block("Quick start") if command.startswith("staged run"))
    assert run == "staged run specs/pde.toml"
    _staged(run, "--profile", "tiny")
    out = capsys.readouterr().out
    summary = json.loads((workdir / "runs" / "pde" / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert "run directory: runs/pde" in out and "tensorboard --logdir runs/pde/tb" in out


def _inputs_for(package: Path, path: Path) -> None:
    """An .npz with a few rows of each input the package declares (zeros for integer inputs: valid indices)."""
    config = json.loads((package / "config.json").read_text())
    rng = np.random.default_rng(0)
    arrays = {}
    for spec in config["inputs"]:
        shape = [4 if size is None else size for size in spec["shape"]]
        arrays[spec["name"]] = (np.zeros(shape, dtype=spec["dtype"]) if spec["dtype"].startswith("int")
                                else rng.random(shape, dtype=np.float32).astype(spec["dtype"]))
    np.savez(path, **arrays)


@pytest.mark.slow
@pytest.mark.parametrize("spec", SPECS)
def test_export_and_predict_run_as_written_for_every_spec(spec, workdir, capsys):
    lines = _block("Export and predict")
    assert [line.split()[:2] for line in lines] == [["staged", "run"], ["staged", "export"], ["python", "-c"], ["staged", "predict"]]
    run, export, make_input, predict = (line.replace("ocec", spec) for line in lines)
    _staged(run, "--profile", "tiny")
    _staged(export)
    package = workdir / "runs" / spec / "export" / "package"
    if spec == "ocec":
        subprocess.run(shlex.split(make_input.replace("python", sys.executable, 1)), check=True, cwd=workdir)
    else:
        _inputs_for(package, workdir / shlex.split(predict)[3])
    _staged(predict)
    out_file = workdir / shlex.split(predict)[-1]
    with np.load(out_file) as written:
        assert written.files and all(written[name].shape[0] in (4, 8) for name in written.files)
    report = json.loads((package.parent / "report.json").read_text())
    assert report["passed"] and all(result["passed"] for result in report["formats"].values())
