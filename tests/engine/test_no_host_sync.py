"""The hot path makes no host sync of its own: inside `StepLoop.train_steps` no stagedsl code (the
loop, the objective, the loaders, the built-in plugins) reads a tensor's value into Python.

On the CPU a read shows as a call of ``Tensor.item`` / ``__bool__`` / ``__float__`` / ``__int__``
/ ``tolist`` / ``numpy`` made from a stagedsl frame; on CUDA, ``torch.cuda.set_sync_debug_mode``
turns any synchronising call during the steps into an error (the ``gpu`` marker).
"""

from __future__ import annotations

import sys

import pytest
import torch

from stagedsl.engine.loop import StepLoop
from stagedsl.engine.runner import run_plan
from stagedsl.plan.model import EvalPlan, GroupPlan, LossPlan, LossTerm, PieceRef

from .conftest import MLP_PARAMS, make_plan, make_stage

READS = ("item", "__bool__", "__float__", "__int__", "tolist", "numpy")


class ReadSpy:
    """Records tensor reads whose caller is stagedsl code, while `active` (or always, with `everywhere`)."""

    def __init__(self, monkeypatch, *, everywhere: bool = False):
        self.active = everywhere
        self.reads: list[str] = []
        for name in READS:
            original = getattr(torch.Tensor, name)
            monkeypatch.setattr(torch.Tensor, name, self._wrap(name, original))

    def _wrap(self, name, original):
        spy = self

        def read(tensor, *args, **kwargs):
            if spy.active:
                caller = sys._getframe(1)
                module = caller.f_globals.get("__name__", "")
                if module.startswith("stagedsl"):
                    spy.reads.append(f"{name} in {module}.{caller.f_code.co_name}:{caller.f_lineno}")
            return original(tensor, *args, **kwargs)

        return read

    def around_train_steps(self, monkeypatch) -> None:
        """Be active only while `StepLoop.train_steps` runs."""
        original = StepLoop.train_steps
        spy = self

        def train_steps(loop, n):
            spy.active = True
            try:
                return original(loop, n)
            finally:
                spy.active = False

        monkeypatch.setattr(StepLoop, "train_steps", train_steps)


def busy_plan(tmp_path):
    """Every per-step feature a default stage can use: groups, a warm-up schedule, clipping,
    accumulation, a two-term objective, epochs rolling over mid-stage (96 samples, batch 16)."""
    groups = (GroupPlan("body", MLP_PARAMS[:2], lr=1e-2), GroupPlan("head", MLP_PARAMS[2:], lr=1e-3, weight_decay=0.0))
    stage = make_stage("s", steps=14, groups=groups, trainable=MLP_PARAMS, grad_clip=1.0, accumulate=2, log_every=5,
                       loss=LossPlan("sum", (LossTerm("mse", weight=0.5), LossTerm("l1", weight=2.0))),
                       scheduler=PieceRef("cosine", {"warmup": 3}), eval=EvalPlan(every=7))
    return make_plan(stage, out=tmp_path)


def test_train_steps_reads_no_tensor_value(engine_registry, tmp_path, monkeypatch):
    spy = ReadSpy(monkeypatch)
    spy.around_train_steps(monkeypatch)
    result = run_plan(busy_plan(tmp_path), registry=engine_registry)
    assert result.stages["s"]["steps"] == 14
    assert spy.reads == []


def test_the_spy_sees_the_reads_the_engine_makes_at_its_boundaries(engine_registry, tmp_path, monkeypatch):
    spy = ReadSpy(monkeypatch, everywhere=True)
    run_plan(busy_plan(tmp_path), registry=engine_registry)
    assert any("take_window" in read for read in spy.reads)  # the log's one sync per window: outside train_steps


@pytest.mark.gpu
def test_train_steps_makes_no_cuda_sync(engine_registry, tmp_path, monkeypatch):
    original = StepLoop.train_steps

    def train_steps(loop, n):
        torch.cuda.set_sync_debug_mode("error")
        try:
            return original(loop, n)
        finally:
            torch.cuda.set_sync_debug_mode("default")

    monkeypatch.setattr(StepLoop, "train_steps", train_steps)
    result = run_plan(busy_plan(tmp_path), registry=engine_registry, device="cuda")
    assert result.stages["s"]["steps"] == 14
