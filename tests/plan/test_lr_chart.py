"""`staged plan`'s LR pictures show every parameter group: the terminal chart marks each group, and
`--plot` draws each in its own colour (seed 004's backbone at lr x 0.05 was invisible)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from stagedsl.cli.app import run_cli
from stagedsl.report.draw import PALETTE

OCEC = Path(__file__).resolve().parents[2] / "specs" / "ocec.toml"


def test_the_terminal_chart_marks_each_group(registry, capsys):
    assert run_cli(["plan", str(OCEC)]) == 0
    out = capsys.readouterr().out
    chart = out[out.index("learning rate over the plan"):].splitlines()
    backbone = [line for line in chart if "▒" in line and "groups:" not in line]
    assert len(backbone) == 1 and backbone[0].lstrip().startswith("5.0e-06")  # lr 1e-4 x 0.05, in stage 3 only
    assert backbone[0].index("▒") > len(backbone[0]) // 2
    assert any(line.lstrip().startswith("1.0e-03") and "█" in line for line in chart)
    assert "groups: █ default   ▒ backbone (unfreeze)" in out


def test_the_plot_draws_every_group_in_its_colour(registry, tmp_path, capsys):
    png = tmp_path / "lr.png"
    assert run_cli(["plan", str(OCEC), "--plot", str(png), "--no-chart"]) == 0
    rgb = np.asarray(Image.open(png).convert("RGB"), dtype=np.int16)
    for color in PALETTE[:2]:  # default, backbone
        target = np.array([int(color[i:i + 2], 16) for i in (1, 3, 5)])
        assert int((np.abs(rgb - target) <= 25).all(axis=2).sum()) > 300, color
    plot_area = rgb[: int(rgb.shape[0] * 0.8)]  # above the legend
    red = (np.abs(plot_area - np.array([0xd6, 0x27, 0x28])) <= 25).all(axis=2)
    columns = np.nonzero(red.any(axis=0))[0]
    assert columns.min() > rgb.shape[1] * 0.5  # the backbone group trains in the last stage only (from step 208 of 368)


def test_plot_without_matplotlib_names_the_extra(registry, tmp_path, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now raises ImportError
    assert run_cli(["plan", str(OCEC), "--plot", str(tmp_path / "lr.png"), "--no-chart"]) == 2
    err = capsys.readouterr().err
    assert "error[E103]" in err and "pip install 'stagedsl[plot]'" in err and not (tmp_path / "lr.png").exists()
