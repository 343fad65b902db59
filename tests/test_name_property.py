"""Property: whatever text is given as a name — a stage, `run.name`, a relative part of `run.out`, a
matrix variant, a ``--set`` value — nothing is ever written outside the sandbox the command runs in.

Hypothesis throws arbitrary text (unicode, separators, ``..``, NUL, 300 characters) at every name.
Each case goes through ``staged validate`` (exit 0 or 2, never a traceback); a name it refuses has
a located error with a safe name offered; a handful of accepted ones are really run (a tiny MLP,
2 steps). After every case the listing of the sandbox's parent (and of ``/``) is what it was.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import tomli_w
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from stagedsl.cli.app import run_cli
from stagedsl.spec.names import safe_name, valid_name

HOSTILE = ["..", "../", "/", "./", "../../../victim", "../../../../../../victim", "a/b", "", ".", "/etc/passwd", "~", "$HOME", "a\x00b", "\\..\\x", "x" * 300,
           ".hidden", "-dash", "CON", "nul", "名字", "e\u0301", "\u202e", "\n", "a b", "*", "?", "stage", "ok_name.1"]
names = st.one_of(
    st.sampled_from(HOSTILE),
    st.text(max_size=70),
    st.text(alphabet=st.sampled_from(list("ab./\\_-~\x00")), max_size=20),
    st.builds(lambda a, b: a + b, st.sampled_from(HOSTILE), st.text(max_size=20)),
)
TARGETS = ("stage", "run_name", "run_out", "variant", "set_stage", "set_run_name", "set_raw")
REAL_RUNS = {"left": 6}

BASE = {
    "run": {"name": "prop", "device": "cpu", "seed": 0},
    "model": {"use": "mlp", "in_features": 8, "hidden": [4], "out_features": 8},
    "data": {"use": "npz", "train": "", "val": "", "batch_size": 4},
    "stage": [{"name": "a", "steps": 2, "lr": 1e-2, "loss": "mse"}],
}


def _listing(folder: Path, skip: Path) -> set[str]:
    found = set()
    for root, dirs, files in os.walk(folder):
        if Path(root) == skip:
            dirs[:] = []
            continue
        dirs[:] = [d for d in dirs if Path(root, d) != skip]
        found.update(os.path.join(root, name) for name in dirs + files)
    return found


@pytest.fixture
def sandbox(tmp_path, registry, monkeypatch):
    box = tmp_path / "sandbox"
    work = box / "w1" / "w2" / "w3" / "w4"
    work.mkdir(parents=True)
    data = box / "data.npz"
    rng = np.random.default_rng(0)
    np.savez(data, x=rng.standard_normal((8, 8), dtype=np.float32), y=rng.standard_normal((8, 8), dtype=np.float32))
    monkeypatch.chdir(work)
    return box, work, data


def _spec(target: str, text: str, data: Path) -> tuple[dict, list[str]]:
    document = {k: (dict(v) if isinstance(v, dict) else [dict(s) for s in v]) for k, v in BASE.items()}
    document["data"].update(train=str(data), val=str(data))
    args: list[str] = []
    if target == "stage":
        document["stage"][0]["name"] = text
    elif target == "run_name":
        document["run"]["name"] = text
    elif target == "run_out":
        document["run"]["out"] = "runs/" + text
    elif target == "variant":
        document["matrix"] = {"seeds": [1], "variant": {text: {"model": {"hidden": [2]}}}}
    elif target == "set_stage":
        args = ["--set", f"stage.a.name={_toml_value(text)}"]
    elif target == "set_run_name":
        args = ["--set", f"run.name={_toml_value(text)}"]
    else:
        args = ["--set", text]
    return document, args


def _toml_value(text: str) -> str:
    return tomli_w.dumps({"v": text})[4:].strip()


@settings(max_examples=500, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(target=st.sampled_from(TARGETS), text=names)
def test_no_name_writes_outside_the_sandbox(target, text, sandbox, capsys):
    box, work, data = sandbox
    if target == "run_out":  # a path may go anywhere the user points it; its relative parts must not climb out of here
        assume("\x00" not in text and box in (work / "runs" / text).resolve().parents)
    document, args = _spec(target, text, data)
    spec = work / "spec.toml"
    spec.write_text(tomli_w.dumps(document), encoding="utf-8")
    parent_before, root_before = _listing(box.parent, box), set(os.listdir("/"))

    code = run_cli(["validate", str(spec), *args])
    out, err = capsys.readouterr()
    assert code in (0, 2) and "Traceback" not in err, err
    name_target = target in ("stage", "run_name", "variant", "set_stage", "set_run_name")
    if name_target and code == 2 and not valid_name(text):
        assert "E013" in err or "E070" in err or "E003" in err, err  # a refused name is a located error
        if "E013" in err:
            assert f'e.g. "{safe_name(text, fallback="stage" if "stage" in target else "run")}"' in err
    if name_target and valid_name(text) and target != "variant":
        assert code == 0, err
    if code == 0 and target != "variant" and REAL_RUNS["left"] > 0:
        REAL_RUNS["left"] -= 1
        out_dir = ["--out", str(box / "runs" / f"case{REAL_RUNS['left']}")] if target != "run_out" else []
        code = run_cli(["run", str(spec), *args, *out_dir])
        err = capsys.readouterr().err
        assert code == 0 or (target == "run_out" and code == 2 and "error[E443]" in err), err  # (an out that is not empty)
    assert _listing(box.parent, box) == parent_before, "a file appeared outside the sandbox"
    assert set(os.listdir("/")) == root_before
