"""`staged report A B`: what differs in two plans of one spec, and both runs' curves on one figure."""

from __future__ import annotations

import re
from pathlib import Path

from stagedsl.cli.app import compile_spec, run_cli
from stagedsl.report.compare import HALO_ALPHA, plan_differences
from stagedsl.report.draw import PALETTE

from .conftest import assert_not_blank, pixels_near

PDE = Path(__file__).resolve().parents[2] / "specs" / "pde.toml"


def _halo(color: str, alpha: float = HALO_ALPHA) -> str:
    """`color` drawn at `alpha` over white."""
    rgb = [int(color[i:i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(255 - alpha * (255 - c)):02x}" for c in rgb)


def test_plan_differences_read_like_set_paths(registry):
    _, a = compile_spec(PDE, "tiny", [])
    _, b = compile_spec(PDE, "tiny", ["stage.finetune.lr=3e-5", "data.batch_size=4"])
    rows = plan_differences(a, b)
    assert ("stage.finetune.lr", 1e-5, 3e-5) in rows
    assert ("data.batch_size", 8, 4) in rows
    # the default group's LR follows its stage's: not listed twice
    assert not [key for key, _, _ in rows if key.startswith("stage.finetune.groups")]
    assert plan_differences(a, a) == []


def test_a_group_lr_that_changes_on_its_own_is_listed(registry):
    spec = PDE.parent / "ocec.toml"
    _, a = compile_spec(spec, "tiny", [])
    _, b = compile_spec(spec, "tiny", ["stage.unfreeze.groups[0].lr_scale=0.1"])
    keys = [key for key, _, _ in plan_differences(a, b)]
    assert "stage.unfreeze.groups.backbone.lr" in keys


def test_two_runs_side_by_side(gated_run, plain_run, tmp_path, capsys):
    out = tmp_path / "ab"
    assert run_cli(["report", str(gated_run), str(plain_run), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out / "index.html")
    html = (out / "index.html").read_text()
    differences = re.search(r'<section id="plan-differences">(.*?)</section>', html, flags=re.S).group(1)
    assert "<code>stage.warmup_encdec.lr</code></td><td>0.0001</td><td>0.0003</td>" in differences
    assert "stage.transformer.gate" in differences and "stage.finetune.eval.every" in differences
    assert "stage.finetune.lr" not in differences  # the spec sets finetune's lr itself: the same in both
    assert "A: gated_pde" in html and "B: plain_pde" in html
    figure = out / "compare.png"
    assert re.findall(r'<img src="([^"]+)"', html) == ["compare.png"]
    assert_not_blank(figure)
    # B in red; A in blue, drawn light and wide beneath B (a halo where the runs agree)
    assert pixels_near(figure, PALETTE[1], 25) > 200
    assert pixels_near(figure, _halo(PALETTE[0]), 12) > 200


def test_the_default_out_of_a_comparison_is_inside_a(gated_run, plain_run, tmp_path):
    import shutil

    a = tmp_path / "a"
    shutil.copytree(gated_run, a)
    assert run_cli(["report", str(a), str(plain_run)]) == 0
    assert (a / "report" / "vs_plain_pde" / "index.html").is_file()
