"""Loading plugins: collisions name both plugins, a broken plugin is named and skipped
(fatal when strict), the block list and the autoload switch are honoured."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

from stagedsl import PluginError, Registry, hookimpl
from stagedsl.cli.app import run_cli
from stagedsl.registry import set_registry
from stagedsl.registry.manager import PluginLoadWarning

BROKEN = {"broken_plugin": "raise ImportError('needs a library that is not installed')\n"}
CLASHING = {
    "clash_a": """
        from stagedsl import hookimpl

        def smooth(eps: float = 0.1):
            '''A loss.'''

        @hookimpl
        def register_losses(register):
            register("smooth", smooth)
    """,
    "clash_b": """
        from stagedsl import hookimpl

        def smooth(beta: float = 1.0):
            '''Another loss with the same name.'''

        @hookimpl
        def register_losses(register):
            register("smooth", smooth)
    """,
}


def _plugin(**hooks) -> object:
    plugin = types.SimpleNamespace()
    for name, function in hooks.items():
        setattr(plugin, name, hookimpl(function))
    return plugin


def _loss_plugin(loss_name: str) -> object:
    def factory(eps: float = 0.1):
        """A test loss."""

    def register_losses(register):
        register(loss_name, factory)

    return _plugin(register_losses=register_losses)


# -- collisions -------------------------------------------------------------------------------
def test_two_plugins_registering_one_name_is_an_error_naming_both(register_plugin):
    register_plugin(_loss_plugin("charb"), name="first-plugin")
    with pytest.raises(PluginError) as caught:
        register_plugin(_loss_plugin("charb"), name="second-plugin")
    problem = caught.value.problems[0]
    assert problem.code == "E100"
    assert "first-plugin" in problem.message and "second-plugin" in problem.message
    assert "loss `charb` is registered twice" in problem.message


def test_a_plugin_clashing_with_a_built_in_is_an_error_and_leaves_the_registry_intact(registry):
    with pytest.raises(PluginError) as caught:
        registry.add_plugin(_loss_plugin("mse"), name="shadow")
    assert "stagedsl_plugins.losses" in caught.value.problems[0].message and "shadow" in caught.value.problems[0].message
    assert "shadow" not in registry.plugin_names()
    assert registry.find("losses", "mse").plugin == "stagedsl_plugins.losses"


def test_clashing_distributions_name_both(installed):
    installed("clash-a", "1.0", {"a": "clash_a"}, {"clash_a": CLASHING["clash_a"]})
    installed("clash-b", "2.0", {"b": "clash_b"}, {"clash_b": CLASHING["clash_b"]})
    with pytest.raises(PluginError) as caught:
        Registry.load(autoload=True)
    message = caught.value.problems[0].message
    assert "plugin `a` (clash-a)" in message and "plugin `b` (clash-b)" in message


def test_clashing_distributions_exit_2_through_the_cli(installed, child_env):
    sites = [
        installed("clash-a", "1.0", {"a": "clash_a"}, {"clash_a": CLASHING["clash_a"]}),
        installed("clash-b", "2.0", {"b": "clash_b"}, {"clash_b": CLASHING["clash_b"]}),
    ]
    result = subprocess.run([sys.executable, "-m", "stagedsl", "plugins"], env=child_env(*sites), capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "error[E100]" in result.stderr and "clash-a" in result.stderr and "clash-b" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_factory_that_is_not_callable_is_refused(registry):
    plugin = _plugin(register_losses=lambda register: register("nope", 3))
    with pytest.raises(PluginError, match="not callable"):
        registry.add_plugin(plugin, name="bad")
    assert registry.find("losses", "nope") is None


# -- broken plugins ---------------------------------------------------------------------------
def test_a_broken_plugin_is_named_and_skipped(installed):
    installed("broken-dist", "0.3", {"broken": "broken_plugin"}, BROKEN)
    with pytest.warns(PluginLoadWarning, match="broken"):
        registry = Registry.load(autoload=True)
    assert registry.find("losses", "mse") is not None  # the rest still loads
    [problem] = registry.skipped
    assert problem.code == "E101"
    assert "`broken`" in problem.message and "broken-dist" in problem.message and "ImportError" in problem.message
    assert "STAGEDSL_BLOCK_PLUGINS=broken" in problem.hint


def test_a_broken_plugin_is_fatal_when_strict(installed, monkeypatch):
    installed("broken-dist", "0.3", {"broken": "broken_plugin"}, BROKEN)
    with pytest.raises(PluginError) as caught:
        Registry.load(autoload=True, strict=True)
    assert caught.value.problems[0].code == "E101"
    monkeypatch.setenv("STAGEDSL_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError):
        Registry.load(autoload=True)


def test_a_blocked_broken_plugin_is_not_even_imported(installed, monkeypatch):
    installed("broken-dist", "0.3", {"broken": "broken_plugin"}, BROKEN)
    monkeypatch.setenv("STAGEDSL_BLOCK_PLUGINS", "broken")
    registry = Registry.load(autoload=True, strict=True)
    assert registry.skipped == [] and "broken_plugin" not in sys.modules


def test_autoload_off_ignores_a_broken_plugin(installed, monkeypatch):
    installed("broken-dist", "0.3", {"broken": "broken_plugin"}, BROKEN)
    monkeypatch.setenv("STAGEDSL_DISABLE_PLUGIN_AUTOLOAD", "1")
    registry = Registry.load(strict=True)
    assert registry.skipped == [] and "broken_plugin" not in sys.modules
    assert registry.plugin_names() == [name for name in registry.plugin_names() if name.startswith("stagedsl_plugins.")]


def test_staged_plugins_warns_about_a_broken_plugin_and_goes_on(installed, child_env, tmp_path):
    site = installed("broken-dist", "0.3", {"broken": "broken_plugin"}, BROKEN)
    result = subprocess.run([sys.executable, "-m", "stagedsl", "plugins"], env=child_env(site), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "mse" in result.stdout
    assert "E101" in result.stderr and "`broken`" in result.stderr and "broken-dist" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("how", ["env", "option"])
def test_strict_plugins_makes_a_broken_plugin_exit_2(how, installed, child_env):
    site = installed("broken-dist", "0.3", {"broken": "broken_plugin"}, BROKEN)
    env = child_env(site, **({"STAGEDSL_STRICT_PLUGINS": "1"} if how == "env" else {}))
    argv = ["--strict-plugins", "plugins"] if how == "option" else ["plugins"]
    result = subprocess.run([sys.executable, "-m", "stagedsl", *argv], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "error[E101]" in result.stderr and "`broken`" in result.stderr
    assert "Traceback" not in result.stderr


def test_strict_plugins_in_process(installed, capsys):
    installed("broken-dist", "0.3", {"broken": "broken_plugin"}, BROKEN)
    try:
        assert run_cli(["--strict-plugins", "plugins", "--json"]) == 2
    finally:
        set_registry(None)
    assert "error[E101]" in capsys.readouterr().err


def test_the_block_list_takes_several_names(installed, monkeypatch):
    installed("broken-dist", "0.3", {"broken": "broken_plugin"}, BROKEN)
    installed("clash-a", "1.0", {"a": "clash_a"}, {"clash_a": CLASHING["clash_a"]})
    installed("clash-b", "2.0", {"b": "clash_b"}, {"clash_b": CLASHING["clash_b"]})
    monkeypatch.setenv("STAGEDSL_BLOCK_PLUGINS", "broken, b")
    registry = Registry.load(autoload=True, strict=True)
    assert registry.find("losses", "smooth").distribution == "clash-a"
