"""Fixtures that make plugins visible as real installed distributions, without network:
a ``<name>-<version>.dist-info`` folder (METADATA + entry_points.txt) and the plugin's
modules in a folder put on ``sys.path`` (or ``PYTHONPATH`` for a subprocess)."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path
from typing import Callable, Optional

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "stagedsl-example-plugin"
EXAMPLE_SRC = EXAMPLE / "src"


def write_distribution(site: Path, name: str, version: str, entry_points: dict[str, str], modules: Optional[dict[str, str]] = None) -> Path:
    """Write an installed-looking distribution `name` into the folder `site`."""
    site.mkdir(parents=True, exist_ok=True)
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: test plugin\n")
    lines = ["[stagedsl]", *(f"{ep} = {target}" for ep, target in entry_points.items())]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    for module, source in (modules or {}).items():
        (site / f"{module}.py").write_text(textwrap.dedent(source))
    return site


@pytest.fixture
def installed(tmp_path, monkeypatch) -> Callable[..., Path]:
    """``installed(name, version, {ep: "module"}, {module: source})``: a distribution on sys.path for one test.

    Plugin autoload is on inside the test (the STAGEDSL_* switches are cleared); the
    plugin modules it wrote or imported are forgotten afterwards."""
    written: list[str] = ["stagedsl_example_plugin"]

    def install(name: str, version: str, entry_points: dict[str, str], modules: Optional[dict[str, str]] = None) -> Path:
        site = write_distribution(tmp_path / "site" / name, name, version, entry_points, modules)
        written.extend(modules or {})
        monkeypatch.syspath_prepend(str(site))
        return site

    monkeypatch.delenv("STAGEDSL_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.delenv("STAGEDSL_STRICT_PLUGINS", raising=False)
    monkeypatch.delenv("STAGEDSL_BLOCK_PLUGINS", raising=False)
    yield install
    for module in list(sys.modules):
        if module.split(".")[0] in written:
            del sys.modules[module]


@pytest.fixture
def example_installed(installed, monkeypatch) -> Path:
    """The example plugin of examples/, as the distribution `stagedsl-example-plugin` 0.1.0."""
    monkeypatch.syspath_prepend(str(EXAMPLE_SRC))
    return installed("stagedsl-example-plugin", "0.1.0", {"example": "stagedsl_example_plugin"})


@pytest.fixture
def child_env() -> Callable[..., dict[str, str]]:
    """``child_env(*paths, **extra)``: the environment of a `python -m stagedsl` child that
    sees `paths` on PYTHONPATH, with plugin autoload on (no STAGEDSL_* switches) plus `extra`."""

    def make(*paths: Path, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("STAGEDSL_")}
        env["PYTHONPATH"] = os.pathsep.join([*(str(p) for p in paths), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        env.update(extra)
        return env

    return make


@pytest.fixture
def example_src() -> Path:
    """The example plugin's source folder (what `pip install` would put on the path)."""
    return EXAMPLE_SRC
