"""On CUDA: bf16 and fp16 (GradScaler) plans train to finite values; resident data; weights saved on the CPU."""

from __future__ import annotations

import pytest
import torch

from stagedsl.engine.checkpointing.weights import read_weights
from stagedsl.engine.runner import run_plan

from .conftest import make_plan, make_stage

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed", "32"])
def test_a_plan_runs_on_cuda(engine_registry, tmp_path, precision):
    plan = make_plan(make_stage("a", steps=8, grad_clip=1.0, accumulate=2), make_stage("b", steps=4), out=tmp_path, precision=precision)
    result = run_plan(plan, registry=engine_registry, device="cuda")
    assert result.summary["device"].startswith("cuda") and result.summary["precision"] == precision
    assert all(v == v for v in result.stages["b"]["last_values"].values())
    weights = read_weights(tmp_path / "stages/b/last.safetensors")
    assert all(w.device.type == "cpu" and torch.isfinite(w).all() for w in weights.values())
