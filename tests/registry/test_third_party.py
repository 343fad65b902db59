"""The example plugin of ``examples/stagedsl-example-plugin`` as a third-party package:
found through its entry point, listed by ``staged plugins`` with its distribution and
version, and usable from a spec (a loss and a freeze strategy)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from stagedsl import Registry
from stagedsl.cli.app import run_cli
from stagedsl.plan.compile import compile_plan
from stagedsl.registry import set_registry
from stagedsl.spec.loader import load_spec

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "stagedsl-example-plugin"

SPEC = """\
[model]
use = "mlp"
in_features = 8
hidden = [16, 16]
out_features = 8

[data]
use = "pde_synthetic"
n_train = 8
n_val = 4
size = 2
channels = 2
batch_size = 4

[[stage]]
name = "biases"
steps = 10
lr = 1e-3
loss = { use = "charbonnier", eps = 1e-3 }
freeze = [{ use = "every_nth", module = "layers", n = 2 }]

[[stage]]
name = "all"
steps = 10
lr = 1e-4
loss = { blend = ["mse", "charbonnier"], alpha = 0.5 }
init = { stage = "biases" }
"""


def test_the_example_declares_its_entry_point():
    import tomllib

    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["stagedsl"] == {"example": "stagedsl_example_plugin"}
    assert project["name"] == "stagedsl-example-plugin"


def test_autoload_finds_the_installed_example(example_installed):
    registry = Registry.load(autoload=True)
    loss = registry.find("losses", "charbonnier")
    strategy = registry.find("freeze_strategies", "every_nth")
    assert loss is not None and strategy is not None
    assert (loss.plugin, loss.distribution, loss.version) == ("example", "stagedsl-example-plugin", "0.1.0")
    assert strategy.distribution == "stagedsl-example-plugin"
    assert "example" in registry.plugin_names()
    assert registry.skipped == []


def test_autoload_off_does_not_load_it(example_installed, monkeypatch):
    assert Registry.load(autoload=False).find("losses", "charbonnier") is None
    monkeypatch.setenv("STAGEDSL_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert Registry.load().find("losses", "charbonnier") is None
    monkeypatch.setenv("STAGEDSL_DISABLE_PLUGIN_AUTOLOAD", "0")
    assert Registry.load().find("losses", "charbonnier") is not None


def test_block_list_skips_it(example_installed, monkeypatch):
    monkeypatch.setenv("STAGEDSL_BLOCK_PLUGINS", "other, example")
    registry = Registry.load()
    assert registry.find("losses", "charbonnier") is None
    assert "example" not in registry.plugin_names()
    assert registry.skipped == []


def test_a_spec_using_the_example_validates_and_compiles(example_installed, tmp_path, capsys):
    registry = Registry.load(autoload=True)
    path = tmp_path / "spec.toml"
    path.write_text(SPEC)
    plan = compile_plan(load_spec(path, registry=registry), registry)
    biases, everything = plan.stages
    assert biases.loss.terms[0].name == "charbonnier" and biases.loss.terms[0].args == {"eps": 1e-3}
    assert biases.trainable == tuple(n for n in plan.parameters if n.endswith(".bias"))
    assert everything.trainable == tuple(plan.parameters)

    set_registry(registry)
    try:
        assert run_cli(["validate", str(path)]) == 0
        assert run_cli(["plan", str(path), "--json"]) == 0
        out = capsys.readouterr().out
        assert json.loads(out[out.index("{"):])["stages"][0]["name"] == "biases"
        # its arguments are checked against its signature, with a did-you-mean
        path.write_text(SPEC.replace("module = ", "modul = "))
        assert run_cli(["validate", str(path)]) == 2
        err = capsys.readouterr().err
        assert "error[E021]: freeze strategy `every_nth` has no argument `modul`" in err
        assert 'did you mean "module"?' in err
        assert "error[E022]: freeze strategy `every_nth` needs argument `module`" in err
    finally:
        set_registry(None)


def test_staged_plugins_json_lists_it_in_a_subprocess(example_installed, example_src, child_env):
    env = child_env(example_installed, example_src)
    result = subprocess.run([sys.executable, "-m", "stagedsl", "plugins", "--json"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    entries = {(e["kind"], e["name"]): e for e in json.loads(result.stdout)}
    for key in (("losses", "charbonnier"), ("freeze_strategies", "every_nth")):
        entry = entries[key]
        assert (entry["plugin"], entry["distribution"], entry["version"]) == ("example", "stagedsl-example-plugin", "0.1.0")
        assert entry["doc"]
    assert entries[("losses", "mse")]["distribution"] == "stagedsl"


def test_staged_plugins_text_names_the_distribution(example_installed, example_src, child_env):
    env = child_env(example_installed, example_src)
    result = subprocess.run([sys.executable, "-m", "stagedsl", "plugins"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    line = next(l for l in result.stdout.splitlines() if l.strip().startswith("charbonnier"))
    assert "[stagedsl-example-plugin 0.1.0]" in line


def test_the_example_imports_no_torch_to_register(example_src):
    code = (
        "import sys; from stagedsl import Registry; import stagedsl_example_plugin as p; "
        "r = Registry.load(builtins=False, autoload=False, plugins=[('example', p)]); "
        "assert r.find('losses', 'charbonnier'); assert 'torch' not in sys.modules, 'torch imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], env={**_env(), "PYTHONPATH": str(example_src)}, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_the_examples_own_tests_pass(example_src):
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests")],
        env={**_env(), "PYTHONPATH": str(example_src)}, capture_output=True, text=True, timeout=300, cwd=EXAMPLE,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 passed" in result.stdout


def _env() -> dict:
    import os

    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


@pytest.mark.parametrize("name", ["charbonnier", "every_nth"])
def test_example_pieces_are_documented(name, example_src, monkeypatch):
    monkeypatch.syspath_prepend(str(example_src))
    import stagedsl_example_plugin as example

    assert getattr(example, name).__doc__
