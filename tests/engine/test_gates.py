"""Gates: pass, stop (GateStopped, exit 3, later stages not run), goto, retry, warn, eval-time checks."""

from __future__ import annotations

import pytest

from stagedsl.engine.runner import run_plan
from stagedsl.errors import GateStopped
from stagedsl.plan.model import EvalPlan, PieceRef

from .conftest import make_gate, make_plan, make_stage, read_jsonl, read_summary

PASS = "val/mae < 1000"
FAIL = "val/mae < 0.000001"


def test_a_passing_gate_lets_the_next_stage_run(engine_registry, tmp_path):
    plan = make_plan(make_stage("a", steps=4, gate=make_gate(f"{PASS} and train/loss < 1000")), make_stage("b", steps=2), out=tmp_path)
    result = run_plan(plan, registry=engine_registry)
    gate = result.stages["a"]["gate"]
    assert gate["passed"] and gate["action"] == "continue"
    assert set(gate["values"]) == {"val/mae", "train/loss"}
    assert result.stages["b"]["status"] == "completed"


def test_a_failing_stop_gate_raises_gate_stopped_and_later_stages_do_not_run(engine_registry, tmp_path, capsys):
    plan = make_plan(make_stage("a", steps=4, gate=make_gate(FAIL)), make_stage("b", steps=2), out=tmp_path)
    with pytest.raises(GateStopped) as caught:
        run_plan(plan, registry=engine_registry)
    error = caught.value
    assert error.exit_code == 3
    assert "gate `val/mae < 0.000001` of stage `a` failed: val/mae = " in str(error)
    assert "gate `val/mae" not in capsys.readouterr().err  # said once: by the error, not also as a warning
    assert error.result.status == "stopped_by_gate"
    summary = read_summary(tmp_path)
    assert summary["status"] == "stopped_by_gate"
    assert summary["stopped_by_gate"]["stage"] == "a" and summary["stopped_by_gate"]["values"]["val/mae"] > 0
    assert summary["stages"]["a"]["status"] == "stopped"
    assert summary["stages"]["b"]["status"] == "not_run" and summary["stages"]["b"]["steps"] == 0
    assert not (tmp_path / "stages" / "b").exists()
    gates = [r for r in read_jsonl(tmp_path / "metrics.jsonl") if r["event"] == "gate"]
    assert len(gates) == 1 and gates[0]["action"] == "stop" and not gates[0]["passed"]


def test_goto_jumps_to_the_named_stage_and_skips_those_between(engine_registry, tmp_path):
    plan = make_plan(
        make_stage("a", steps=3, gate=make_gate(FAIL, "goto", goto="c")),
        make_stage("b", steps=3),
        make_stage("c", steps=3),
        out=tmp_path,
    )
    result = run_plan(plan, registry=engine_registry)
    assert result.status == "completed"
    assert [result.stages[n]["status"] for n in "abc"] == ["gate_goto", "skipped", "completed"]
    assert not (tmp_path / "stages" / "b").exists()
    assert result.summary["global_steps"] == 6


def test_retry_reruns_the_stage_until_the_gate_passes(engine_registry, tmp_path):
    # build_count is 0 on the first attempt's metrics and 1 on the retry's
    stage = make_stage("a", steps=3, metrics=(PieceRef("build_count", {}),), gate=make_gate("val/build_count >= 1", "retry", max_retries=2))
    result = run_plan(make_plan(stage, make_stage("b", steps=1, metrics=()), out=tmp_path), registry=engine_registry)
    record = result.stages["a"]
    assert record["attempts"] == 2 and record["status"] == "completed"
    assert [d["action"] for d in record["gate_decisions"]] == ["retry", "continue"]
    assert result.state.retries == {"a": 1}
    assert result.summary["global_steps"] == 3 + 3 + 1


def test_retry_stops_when_retries_run_out(engine_registry, tmp_path):
    stage = make_stage("a", steps=2, gate=make_gate(FAIL, "retry", max_retries=2))
    with pytest.raises(GateStopped, match="2 retries used"):
        run_plan(make_plan(stage, make_stage("b", steps=1), out=tmp_path), registry=engine_registry)
    summary = read_summary(tmp_path)
    assert summary["stages"]["a"]["attempts"] == 3
    assert [d["action"] for d in summary["stages"]["a"]["gate_decisions"]] == ["retry", "retry", "stop"]
    assert summary["stages"]["b"]["status"] == "not_run"


def test_warn_logs_and_continues(engine_registry, tmp_path, capsys):
    plan = make_plan(make_stage("a", steps=2, gate=make_gate(FAIL, "warn")), make_stage("b", steps=2), out=tmp_path)
    result = run_plan(plan, registry=engine_registry)
    assert result.stages["a"]["gate"]["action"] == "warn"
    assert result.stages["b"]["status"] == "completed"
    assert "warning: gate `val/mae < 0.000001` of stage `a` failed" in capsys.readouterr().err


def test_an_eval_gate_is_checked_at_every_evaluation_and_stops_at_the_first_failure(engine_registry, tmp_path):
    guard = make_gate("val/loss < 1000", "stop", check="eval")
    result = run_plan(make_plan(make_stage("a", steps=8, eval=EvalPlan(every=2), gate=guard), out=tmp_path), registry=engine_registry)
    assert [d["stage_step"] for d in result.stages["a"]["gate_decisions"]] == [2, 4, 6, 8]

    failing = make_gate("val/loss < 0", "goto", goto="c", check="eval")
    plan = make_plan(make_stage("a", steps=8, eval=EvalPlan(every=2), gate=failing), make_stage("b", steps=1),
                     make_stage("c", steps=1), out=tmp_path / "second")
    result = run_plan(plan, registry=engine_registry)
    assert result.stages["a"]["steps"] == 2 and result.stages["a"]["status"] == "gate_goto"
    assert result.stages["b"]["status"] == "skipped" and result.stages["c"]["status"] == "completed"
