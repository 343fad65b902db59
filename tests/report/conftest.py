"""Report fixtures: real tiny runs of specs/pde.toml, made once per test session (shared by the
xdist workers through a file lock), and helpers to read what the report wrote.

- `gated_run`: the tiny pde run with a gate on every stage — one passes, one fails and warns,
  one fails, retries and stops the run (exit 3) — so the report has every kind of decision,
  and a lint warning (W002);
- `plain_run`: the tiny pde run as the spec has it, with a higher LR (the B of `staged report A B`);
- the matrix and search runs are in `composed` (they need tests/matrix's spec).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import pytest
from filelock import FileLock

ROOT = Path(__file__).resolve().parents[2]
PDE = ROOT / "specs" / "pde.toml"

GATES = [
    "--set", 'stage.warmup_encdec.gate={ when = "val/loss < 1e9", on_fail = "stop" }',
    "--set", 'stage.transformer.gate={ when = "val/mse < 0.0", on_fail = "warn" }',
    "--set", 'stage.finetune.gate={ when = "val/loss < 0.0", on_fail = "retry", max_retries = 1 }',
    "--set", 'stage.finetune.eval.every=500 steps',  # longer than the stage: lint W002, for the warnings section
]


def _shared_root(tmp_path_factory, worker_id: str) -> Path:
    base = tmp_path_factory.getbasetemp()
    return base if worker_id == "master" else base.parent


def _once(root: Path, name: str, make: Callable[[Path], None]) -> Path:
    """`make(folder)` once for every worker of the session; the others wait and reuse the folder."""
    folder = root / name
    with FileLock(str(root / f"{name}.lock")):
        if not (folder / ".done").exists():
            make(folder)
            (folder / ".done").write_text("ok")
    return folder


def _run(folder: Path, *extra: str, expect: int) -> None:
    from stagedsl.cli.app import run_cli

    rc = run_cli(["run", str(PDE), "--profile", "tiny", "--out", str(folder), *extra])
    assert rc == expect, f"staged run exited {rc}"


@pytest.fixture(scope="session")
def gated_run(tmp_path_factory, worker_id) -> Path:
    """A tiny pde run whose gates pass, fail and warn, and fail, retry and stop (read only)."""
    return _once(_shared_root(tmp_path_factory, worker_id), "gated_pde", lambda f: _run(f, *GATES, expect=3))


@pytest.fixture(scope="session")
def plain_run(tmp_path_factory, worker_id) -> Path:
    """A tiny pde run without gates, at a higher LR than the spec's (read only)."""
    return _once(_shared_root(tmp_path_factory, worker_id), "plain_pde",
                 lambda f: _run(f, "--set", "defaults.lr=3e-4", expect=0))


@pytest.fixture(scope="session")
def gated_report(gated_run, tmp_path_factory, worker_id) -> Path:
    """`staged report` of `gated_run`, written once into a folder of its own: the page's folder."""
    def make(folder: Path) -> None:
        from stagedsl.cli.app import run_cli

        assert run_cli(["report", str(gated_run), "--out", str(folder)]) == 0

    return _once(_shared_root(tmp_path_factory, worker_id), "gated_report", make)


def summary(run_dir: Path) -> dict:
    """The run's summary.json."""
    return json.loads((run_dir / "summary.json").read_text())


def require_chromium() -> str:
    """The Chromium binary; skips the test where none is installed (`.ci/run` installs Debian's
    `chromium`), unless STAGEDSL_REQUIRE_CHROMIUM is set — CI sets it once the install worked."""
    import shutil

    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    if os.environ.get("STAGEDSL_REQUIRE_CHROMIUM"):
        pytest.fail("STAGEDSL_REQUIRE_CHROMIUM is set but no chromium is on PATH")
    pytest.skip("Chromium is not installed here (apt-get install chromium)")


def _rgb(png: Path):
    import numpy as np
    from PIL import Image

    with Image.open(png) as image:
        image.verify()
    with Image.open(png) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int16)


def assert_not_blank(png: Path, *, min_size: tuple[int, int] = (300, 200)) -> None:
    """The file opens as an image with Pillow, is big enough, and is a picture, not one flat colour."""
    import numpy as np

    rgb = _rgb(png)
    height, width, _ = rgb.shape
    assert width >= min_size[0] and height >= min_size[1], (png, width, height)
    inked = float((rgb.sum(axis=2) < 3 * 235).mean())
    assert inked > 0.01, f"{png} is (almost) blank: {inked:.2%} of its pixels are not white"
    colours = len(np.unique(rgb.reshape(-1, 3), axis=0))
    assert colours > 20, f"{png} has only {colours} colours"


def pixels_near(png: Path, color: str, tolerance: int = 40) -> int:
    """How many pixels of the image are within `tolerance` (per channel) of `color` ("#rrggbb")."""
    import numpy as np

    target = np.array([int(color[i:i + 2], 16) for i in (1, 3, 5)], dtype=np.int16)
    return int((np.abs(_rgb(png) - target) <= tolerance).all(axis=2).sum())
