"""`staged report RUN_DIR` on real tiny runs: what the page says, and the figures beside it."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from stagedsl.cli.app import run_cli
from stagedsl.plan.model import Plan
from stagedsl.plan.render import human_count
from stagedsl.report.build import write_report
from stagedsl.report.draw import PALETTE
from stagedsl.report.rundata import read_run
from stagedsl.report.timeline import best_marks, handoffs, stage_spans

from .conftest import assert_not_blank, pixels_near, summary


def _section(html: str, section_id: str) -> str:
    match = re.search(rf'<section id="{section_id}">(.*?)</section>', html, flags=re.S)
    assert match, f"no section {section_id}"
    return match.group(1)


def test_the_report_writes_a_page_and_its_figures_into_the_run_dir(gated_report):
    page = gated_report / "index.html"
    html = page.read_text()
    assert html.startswith("<!DOCTYPE html>")
    images = re.findall(r'<img src="([^"]+)"', html)
    assert images == ["loss.png", "metrics.png", "lr.png"]
    for name in images:
        assert_not_blank(gated_report / name)


def test_the_header_names_model_data_parameters_and_hash(gated_report, gated_run):
    plan = Plan.from_json((gated_run / "plan.json").read_text())
    overview = _section((gated_report / "index.html").read_text(), "overview")
    total = sum(plan.parameters.values())
    assert plan.model.name in overview and plan.data.name in overview
    assert f"{human_count(total)} ({total:,} in {len(plan.parameters)} tensors)" in overview
    assert plan.hash in overview
    assert "stopped by gate" in overview and "val/loss &lt; 0" in overview


def test_the_stage_table_has_steps_time_speed_best_and_attempts(gated_report, gated_run):
    stages = _section((gated_report / "index.html").read_text(), "stages")
    records = summary(gated_run)["stages"]
    for name, record in records.items():
        assert f"{record['steps']} / {record['planned_steps']}" in stages
        assert f"{record['steps_per_s']:.4g}" in stages
        assert f"{record['best_value']:.4g} at step" in stages
    assert "best of warmup_encdec" in stages and "best of transformer" in stages  # the init hand-offs
    assert "2 (1 retry)" in stages
    assert stages.count("<td>—</td>") >= 3  # reused: none of these stages came from a search


def test_lint_warnings_and_gate_decisions_are_listed(gated_report):
    html = (gated_report / "index.html").read_text()
    warnings = _section(html, "warnings")
    assert "W002" in warnings and "stage[2].eval.every" in warnings
    gates = _section(html, "gates")
    assert gates.count("✗ failed") == 3 and gates.count("✓ passed") == 1
    assert "retry" in gates and "warn" in gates and "stop" in gates


def test_the_timeline_places_stages_retries_bests_and_handoffs_on_one_axis(gated_run):
    run = read_run(gated_run)
    spans = stage_spans(run)
    assert [(s.label, s.start, s.end) for s in spans] == [
        ("warmup_encdec", 0, 20), ("transformer", 20, 40), ("finetune", 40, 60), ("finetune (retry 1)", 60, 80)]
    bests = {m.stage: m for m in best_marks(run, spans)}
    records = summary(gated_run)["stages"]
    assert bests["finetune"].step == 60 + records["finetune"]["best_step"]  # the final attempt's best
    moves = [(h.stage, h.from_stage, h.from_step, h.to_step) for h in handoffs(run, spans)]
    transformer_best = bests["transformer"].step
    assert moves == [("transformer", "warmup_encdec", bests["warmup_encdec"].step, 20),
                     ("finetune", "transformer", transformer_best, 40), ("finetune", "transformer", transformer_best, 60)]


def test_the_ocec_report_draws_every_group_and_its_early_stop(tmp_path):
    """ocec's third stage trains the backbone at lr x 0.05 in its own group: the LR figure shows it in its colour;
    the same stage has early stopping (not triggered in a few steps), the one before it a gate."""
    run_dir = tmp_path / "ocec"
    spec = Path(__file__).resolve().parents[2] / "specs" / "ocec.toml"
    assert run_cli(["run", str(spec), "--profile", "tiny", "--out", str(run_dir), "--set", "stage.pretrain.epochs=0.5",
                    "--set", "stage.heads.epochs=0.5", "--set", "stage.unfreeze.epochs=0.5"]) == 0
    report = write_report(run_dir)
    assert report.index == run_dir / "report" / "index.html"
    lr = run_dir / "report" / "lr.png"
    assert_not_blank(lr)
    assert pixels_near(lr, PALETTE[1], tolerance=25) > 100  # group backbone (second group, second colour)
    html = report.index.read_text()
    stages = _section(html, "stages")
    assert "default 0.0001, backbone 5e-06" in stages and "not triggered (patience 5)" in stages
    assert "val/f1 &gt;= 0" in _section(html, "gates") and "✓ passed" in _section(html, "gates")


def test_a_run_that_has_not_finished_a_stage_still_renders(tmp_path, gated_run):
    run_dir = tmp_path / "early"
    run_dir.mkdir()
    shutil.copy(gated_run / "plan.json", run_dir / "plan.json")
    lines = (gated_run / "metrics.jsonl").read_text().splitlines()[:4]
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + '\n{"event": "train", "sta')  # killed mid-line
    report = write_report(run_dir)
    html = report.index.read_text()
    assert "no summary.json yet" in html and "1 line(s) of metrics.jsonl could not be read" in html
    assert "warmup_encdec" in _section(html, "stages")
    assert report.figures and all(f.is_file() for f in report.figures)


def test_report_json_lists_what_was_written(gated_run, tmp_path, capsys):
    out = tmp_path / "elsewhere"
    assert run_cli(["report", str(gated_run), "--out", str(out), "--json"]) == 0
    captured = capsys.readouterr()
    written = json.loads(captured.out)
    assert written["index"] == str(out / "index.html") and (out / "index.html").is_file()
    assert [Path(f).name for f in written["figures"]] == ["loss.png", "metrics.png", "lr.png"]
    assert written["sections"][:2] == ["Run", "Diagnosis"]
    assert f"report: {out / 'index.html'}" in captured.err
