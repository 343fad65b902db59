"""Callbacks: plan callbacks through the registry, then run_plan's, called in order at the documented events."""

from __future__ import annotations

import pytest

from stagedsl import Callback, Event, hookimpl
from stagedsl.engine.runner import run_plan
from stagedsl.errors import RunError
from stagedsl.plan.model import EvalPlan, PieceRef

from .conftest import Recorder, make_gate, make_plan, make_stage

ORDER: list[str] = []


class Named(Callback):
    def __init__(self, name: str):
        self.name = name

    def run_start(self, state):  # dispatched by the default on_event
        ORDER.append(self.name)


class CallbackPieces:
    @hookimpl
    def register_callbacks(self, register):
        register("named", Named)


def test_events_fire_in_loop_order_at_log_cadence_only(engine_registry, register_plugin, tmp_path):
    register_plugin(CallbackPieces(), name="callback-pieces")
    ORDER.clear()
    recorder = Recorder()
    stage = make_stage("a", steps=8, log_every=4, eval=EvalPlan(every=4), gate=make_gate("val/loss < 1000"))
    plan = make_plan(stage, out=tmp_path, callbacks=(PieceRef("named", {"name": "from-plan"}),))
    run_plan(plan, registry=engine_registry, callbacks=[Named("passed-in"), recorder])
    assert ORDER == ["from-plan", "passed-in"]
    events = [name for name, _, _ in recorder.events]
    assert events[0] == Event.RUN_START.value and events[-1] == Event.RUN_END.value
    assert events.count("step_end") == 2 and events.count("eval_end") == 2 and events.count("gate_decided") == 1
    assert events.index("stage_start") < events.index("step_end") < events.index("eval_end") < events.index("checkpoint_saved")
    assert events.index("gate_decided") < events.index("stage_end")
    assert [step for name, _, step in recorder.events if name == "step_end"] == [4, 8]


def test_a_crashing_callback_is_a_run_error_naming_it(engine_registry, tmp_path):
    class Broken(Callback):
        def step_end(self, state):
            raise ValueError("boom")

    with pytest.raises(RunError, match="callback Broken failed on step_end: ValueError: boom"):
        run_plan(make_plan(make_stage("a", steps=4), out=tmp_path), registry=engine_registry, callbacks=[Broken()])


def test_the_run_lets_go_of_the_model_and_data_without_the_garbage_collector(engine_registry, tmp_path):
    import gc
    import weakref

    class Watch(Callback):
        def run_start(self, state):
            self.model = weakref.ref(state.live.model)
            self.loader = weakref.ref(state.live.ctx.loaders)

    plan = make_plan(make_stage("a", steps=2, eval=EvalPlan(every=1)), make_stage("b", steps=2), out=tmp_path)
    run_plan(plan, registry=engine_registry)  # first use: some libraries cache exceptions (and frames) on import
    watch = Watch()
    gc.collect()
    gc.disable()
    try:
        result = run_plan(plan, registry=engine_registry, callbacks=[watch])
        assert result.state.live is None
        assert watch.model() is None and watch.loader() is None
    finally:
        gc.enable()


def test_progress_draws_a_bar_on_a_terminal_and_plain_lines_otherwise():
    import io

    from stagedsl.engine.progress import Progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    for stream, expect in ((Terminal(), "warning: careful"), (io.StringIO(), "[s] step 5/10 (50%)  loss 0.5  100 steps/s")):
        progress = Progress(stream=stream)
        progress.stage_start("s", 10)
        progress.update(5, {"loss": 0.5}, 100.0)
        progress.warn("careful")
        progress.stage_end("s", "completed", 10, 1.5, "val/loss", 0.123456789)
        progress.close()
        assert expect in stream.getvalue() and "stage s: completed after 10 steps (1.5s); best val/loss = 0.1235" in stream.getvalue()
