"""`resume_run` in this process: gates (retry, goto), a run with no checkpoint yet, a finished run,
a stop signal, `--set` judged against the resume point, and what a resume writes down."""

from __future__ import annotations

import json
import os
import signal

import pytest
import torch

from stagedsl.api import resume_run
from stagedsl.engine.checkpointing import trainer_checkpoints
from stagedsl.engine.checkpointing.weights import read_weights
from stagedsl.engine.events import Callback
from stagedsl.engine.plan_diff import compare
from stagedsl.engine.runner import run_plan
from stagedsl.engine.signals import RunInterrupted
from stagedsl.errors import GateStopped, UsageError
from stagedsl.plan.model import CheckpointPlan, EvalPlan, InitPlan, PieceRef

from .conftest import make_gate, make_plan, make_stage, read_jsonl, read_summary


class Stop(Callback):
    """Stops the run at (event, stage, stage_step, attempt): by raising, or with a real signal."""

    def __init__(self, event, stage, step, attempt=0, signum=None):
        self.at, self.signum, self.done = (event, stage, step, attempt), signum, False

    def on_event(self, event, state):
        if self.done or (event.value, state.stage_name, state.stage_step, state.attempt) != self.at:
            return
        self.done = True
        if self.signum is None:
            raise KeyboardInterrupt("stopped here by the test")
        os.kill(os.getpid(), self.signum)


def _weights(run_dir, stage, which="last"):
    return read_weights(run_dir / "stages" / stage / f"{which}.safetensors")


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _gated_plan(out):
    """s1's gate fails and jumps to s3 (s2 skipped); s3's gate fails, retries once, then stops the run."""
    never = "val/loss < 0"
    return make_plan(
        make_stage("s1", steps=9, eval=EvalPlan(every=4), checkpoint=CheckpointPlan(every=3), log_every=1,
                   gate=make_gate(never, "goto", goto="s3")),
        make_stage("s2", steps=5),
        make_stage("s3", steps=8, eval=EvalPlan(every=3), checkpoint=CheckpointPlan(every=2), log_every=1,
                   gate=make_gate(never, "retry", max_retries=1), scheduler=PieceRef("cosine", {"warmup": 2})),
        out=out,
    )


POINTS = [("gate_decided", "s1", 9, 0), ("step_end", "s3", 5, 0), ("stage_end", "s3", 8, 0),
          ("stage_start", "s3", 0, 1), ("step_end", "s3", 7, 1)]


def test_resumed_runs_through_goto_and_retry_gates_end_bit_identical(engine_registry, tmp_path):
    with pytest.raises(GateStopped):
        run_plan(_gated_plan(tmp_path / "ref"), registry=engine_registry)
    reference = read_summary(tmp_path / "ref")
    for n, point in enumerate(POINTS):
        run_dir = tmp_path / f"run{n}"
        with pytest.raises(KeyboardInterrupt):
            run_plan(_gated_plan(run_dir), registry=engine_registry, callbacks=[Stop(*point)])
        assert read_summary(run_dir)["status"] == "interrupted"
        with pytest.raises(GateStopped):
            resume_run(run_dir, registry=engine_registry)
        summary = read_summary(run_dir)
        assert summary["status"] == "stopped_by_gate", point
        assert [s["status"] for s in summary["stages"].values()] == ["gate_goto", "skipped", "stopped"], point
        assert summary["stages"]["s3"]["attempts"] == 2 and summary["gate_decisions"] == reference["gate_decisions"]
        for stage in ("s1", "s3"):
            for which in ("best", "last"):
                assert _same(_weights(run_dir, stage, which), _weights(tmp_path / "ref", stage, which)), (point, stage, which)


def test_sigterm_in_this_process_saves_at_the_step_and_resumes_exactly(engine_registry, tmp_path):
    def plan(out):
        return make_plan(make_stage("a", steps=10, checkpoint=CheckpointPlan(every=4), log_every=1),
                         make_stage("b", steps=10, checkpoint=CheckpointPlan(every=4), log_every=1), out=out)

    run_plan(plan(tmp_path / "ref"), registry=engine_registry)
    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(RunInterrupted) as caught:
        run_plan(plan(tmp_path / "run"), registry=engine_registry, callbacks=[Stop("step_end", "b", 6, signum=signal.SIGTERM)])
    assert signal.getsignal(signal.SIGTERM) is previous  # the run's handler is gone again
    error = caught.value
    assert error.exit_code == 143 and error.problems[0].code == "E440"
    assert error.checkpoint == "stages/b/state/step_000000006"
    assert f"staged resume {tmp_path / 'run'}" in error.problems[0].hint
    assert trainer_checkpoints.verify_state(tmp_path / "run" / error.checkpoint) is None
    resume_run(tmp_path / "run", registry=engine_registry)
    assert _same(_weights(tmp_path / "run", "b"), _weights(tmp_path / "ref", "b"))


def test_a_run_stopped_before_its_first_checkpoint_starts_over(engine_registry, tmp_path):
    plan = make_plan(make_stage("a", steps=6, checkpoint=CheckpointPlan(every=4), log_every=1), out=tmp_path / "run")
    run_plan(make_plan(*plan.stages, out=tmp_path / "ref"), registry=engine_registry)
    with pytest.raises(KeyboardInterrupt):
        run_plan(plan, registry=engine_registry, callbacks=[Stop("step_end", "a", 2)])
    warnings = []
    result = resume_run(tmp_path / "run", registry=engine_registry, warn=warnings.append)
    assert "starts over" in warnings[0]
    assert result.summary["resumes"][0]["checkpoint"] is None and result.summary["resumes"][0]["at"]["phase"] == "start"
    assert _same(_weights(tmp_path / "run", "a"), _weights(tmp_path / "ref", "a"))
    assert [r["event"] for r in read_jsonl(tmp_path / "run/metrics.jsonl")].count("stage_start") == 1


def test_resuming_a_finished_run_replays_its_end_and_changes_nothing(engine_registry, tmp_path):
    plan = make_plan(make_stage("a", steps=5), make_stage("b", steps=5), out=tmp_path)
    run_plan(plan, registry=engine_registry)
    before = (tmp_path / "stages/b/last.safetensors").read_bytes()
    log = (tmp_path / "metrics.jsonl").read_text()
    result = resume_run(tmp_path, registry=engine_registry)
    assert result.status == "completed"
    assert (tmp_path / "stages/b/last.safetensors").read_bytes() == before
    assert (tmp_path / "metrics.jsonl").read_text().startswith(log.rsplit('{"event": "stage_end"', 1)[0])


def test_a_from_stage_run_checkpoints_its_start_so_a_resume_stays_in_it(engine_registry, tmp_path):
    plan = make_plan(make_stage("a", steps=4), make_stage("b", steps=8, checkpoint=CheckpointPlan(every=5), log_every=1),
                     out=tmp_path)
    run_plan(plan, registry=engine_registry)
    reference = _weights(tmp_path, "b")
    with pytest.raises(KeyboardInterrupt):
        run_plan(plan, registry=engine_registry, from_stage="b", callbacks=[Stop("step_end", "b", 3)])
    assert sorted(p.name for p in (tmp_path / "stages/b/state").iterdir()) == ["step_000000000"]
    resume_run(tmp_path, registry=engine_registry)
    assert _same(_weights(tmp_path, "b"), reference)


def test_resume_takes_a_device_override_and_refuses_what_is_not_a_run(engine_registry, tmp_path):
    with pytest.raises(UsageError, match="not a run directory") as caught:
        resume_run(tmp_path, registry=engine_registry)
    assert caught.value.problems[0].code == "E415"
    plan = make_plan(make_stage("a", steps=4, checkpoint=CheckpointPlan(every=2), log_every=1), out=tmp_path)
    with pytest.raises(KeyboardInterrupt):
        run_plan(plan, registry=engine_registry, callbacks=[Stop("step_end", "a", 3)])
    with pytest.raises(UsageError, match="has no spec.toml") as caught:
        resume_run(tmp_path, registry=engine_registry, overrides=["stage.a.lr=0.1"])
    result = resume_run(tmp_path, registry=engine_registry, device="cpu")
    assert result.summary["resumes"][-1]["device"] == "cpu" and not result.already_complete


def test_resume_of_a_completed_run_trains_nothing(engine_registry, tmp_path):
    run_plan(make_plan(make_stage("a", steps=2), out=tmp_path), registry=engine_registry)
    def files():  # the lock file aside: it only says who held the directory last
        return {p: p.read_bytes() for p in sorted(tmp_path.rglob("*")) if p.is_file() and p.name != ".lock"}

    before = files()
    result = resume_run(tmp_path, registry=engine_registry)
    assert result.already_complete and result.status == "completed" and result.summary["stages"]["a"]["steps"] == 2
    assert files() == before  # not a byte of the run written


# -- judging --set changes -----------------------------------------------------------------------
def _three(**changes):
    stages = {"a": make_stage("a", steps=10), "b": make_stage("b", steps=10, init=InitPlan(source="stage", stage="a")),
              "c": make_stage("c", steps=10)}
    for name, fields in changes.items():
        stages[name] = make_stage(name, **{"steps": 10, **fields})
    return make_plan(*stages.values())


@pytest.mark.parametrize("change, refused", [
    ({"b": {"lr": 1e-3, "init": InitPlan(source="stage", stage="a")}}, None),  # the resumed stage's LR: from now on
    ({"c": {"lr": 1e-3, "optimizer": PieceRef("sgd", {})}}, None),  # a later stage: anything
    ({"b": {"steps": 30, "init": InitPlan(source="stage", stage="a")}}, None),  # a longer resumed stage
    ({"a": {"lr": 1e-3}}, "stage `a` has finished"),
    ({"b": {"init": InitPlan(source="stage", stage="a", which="last")}}, "already started from its init"),
    ({"b": {"steps": 3, "init": InitPlan(source="stage", stage="a")}}, "at step 5 already"),
])
def test_changes_are_judged_against_the_resume_point(change, refused):
    diff = compare(_three(), _three(**change), stage="b", stage_step=5, ended=False)
    reasons = [c.refused for c in diff.changes if c.refused]
    if refused is None:
        assert diff.changes and not reasons
    else:
        assert any(refused in r for r in reasons), reasons


def test_changes_to_the_model_data_seed_or_past_stages_are_refused_and_the_future_is_free():
    old = _three()
    base = old.to_dict()
    new = make_plan(*old.stages[:2], make_stage("d", steps=4), seed=1,
                    model=PieceRef("mlp", {"in_features": 8, "hidden": [32], "out_features": 2}),
                    data={"batch_size": 8})
    diff = compare(old, new, stage="b", stage_step=5, ended=False)
    keys = {c.key: c.refused for c in diff.changes}
    assert keys["stage.c"] is None and keys["stage.d"] is None  # a later stage dropped, another added
    assert "model changed" in keys["model.args.hidden"]
    assert "seed" in keys["run.seed"] and "data changed" in keys["data.batch_size"]
    ended = compare(old, _three(b={"lr": 1e-3, "init": InitPlan(source="stage", stage="a")}), stage="b", stage_step=10,
                    ended=True)
    assert all("(the checkpoint is its end)" in c.refused for c in ended.changes)
    assert base == old.to_dict()
    device = compare(old, make_plan(*old.stages, precision="bf16-mixed"), stage="b", stage_step=5, ended=False)
    assert [(c.key, c.refused) for c in device.changes] == [("run.precision", None)]


def test_a_resumed_stage_with_new_settings_keeps_the_optimizer_state_and_follows_the_new_schedule(engine_registry, tmp_path):
    cosine = PieceRef("cosine", {})
    plan = make_plan(make_stage("a", steps=12, checkpoint=CheckpointPlan(every=4), log_every=1, scheduler=cosine),
                     out=tmp_path)
    with pytest.raises(KeyboardInterrupt):
        run_plan(plan, registry=engine_registry, callbacks=[Stop("step_end", "a", 6)])
    point = trainer_checkpoints.load_state(tmp_path / "stages/a/state/step_000000004")
    saved_moment = point["trainer"]["optimizer"]["state"][0]["exp_avg"]
    # a longer stage at a lower LR: 24 steps of cosine from 1e-3, picked up at step 4
    new = make_plan(make_stage("a", steps=24, lr=1e-3, checkpoint=CheckpointPlan(every=4), log_every=1, scheduler=cosine),
                    out=tmp_path)
    (tmp_path / "plan.json").write_text(new.to_json())  # as a killed `resume --set` would have left it
    (tmp_path / "plans" / f"{new.hash}.json").write_text(new.to_json())
    seen = []

    class Spy(Callback):
        def stage_start(self, state):
            seen.append(state.live.optimizer.state_dict()["state"][0]["exp_avg"].clone())

    result = resume_run(tmp_path, registry=engine_registry, callbacks=[Spy()])
    assert torch.equal(seen[0], saved_moment)
    rows = {r["stage_step"]: r["lr/default"] for r in read_jsonl(tmp_path / "metrics.jsonl") if r["event"] == "train"}
    import math

    expected = {step: 1e-3 * 0.5 * (1 + math.cos(math.pi * (step - 1) / 24)) for step in range(5, 25)}
    assert all(rows[step] == pytest.approx(value) for step, value in expected.items())
    assert result.stages["a"]["steps"] == 24
    changes = {c["key"] for c in result.summary["resumes"][0]["changes"]}
    assert {"stage.a.lr", "stage.a.steps"} <= changes


def test_the_run_log_is_cut_back_to_the_checkpoint_and_tells_where_it_resumed(engine_registry, tmp_path):
    plan = make_plan(make_stage("a", steps=10, checkpoint=CheckpointPlan(every=4), log_every=1), out=tmp_path)
    with pytest.raises(KeyboardInterrupt):
        run_plan(plan, registry=engine_registry, callbacks=[Stop("step_end", "a", 7)])
    resume_run(tmp_path, registry=engine_registry)
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    steps = [r["stage_step"] for r in rows if r["event"] == "train"]
    assert steps == list(range(1, 11))  # steps 5-7 were logged by the stopped run, then cut and redone
    resume = [r for r in rows if r["event"] == "resume"][0]
    assert resume["checkpoint"] == "stages/a/state/step_000000004" and resume["at"]["phase"] == "train"
    assert json.loads((tmp_path / "summary.json").read_text())["resumes"][0]["at"]["global_step"] == 4


def test_a_checkpoint_between_logs_carries_the_loss_window_so_the_next_log_is_exact(engine_registry, tmp_path):
    def plan(out):  # checkpoints at 3, 6, 9; logs at 5, 10: the step-6 checkpoint holds step 6's loss
        return make_plan(make_stage("a", steps=12, checkpoint=CheckpointPlan(every=3), log_every=5, accumulate=2),
                         out=out, data={"name": "toy_plain", "batch_size": 12})

    run_plan(plan(tmp_path / "ref"), registry=engine_registry)
    with pytest.raises(KeyboardInterrupt):
        run_plan(plan(tmp_path / "run"), registry=engine_registry, callbacks=[Stop("checkpoint_saved", "a", 9)])
    (tmp_path / "run/stages/a/state/step_000000009").rename(tmp_path / "run/stages/a/state/.gone.tmp")
    resume_run(tmp_path / "run", registry=engine_registry)
    ours, reference = (read_jsonl(tmp_path / r / "metrics.jsonl") for r in ("run", "ref"))
    losses = [(r["stage_step"], r["train/loss"]) for r in ours if r["event"] == "train"]
    assert losses == [(r["stage_step"], r["train/loss"]) for r in reference if r["event"] == "train"]
    assert [r["at"]["stage_step"] for r in ours if r["event"] == "resume"] == [6]
    assert _same(_weights(tmp_path / "run", "a"), _weights(tmp_path / "ref", "a"))
