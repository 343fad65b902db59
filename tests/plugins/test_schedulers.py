"""Built-in schedulers: step counts in, torch's own schedulers out, per-group LRs kept in ratio."""

import math

import numpy as np
import pytest
import torch
from torch.optim.lr_scheduler import LinearLR, MultiStepLR

from stagedsl import Registry


@pytest.fixture(scope="module")
def registry():
    return Registry.load(autoload=False)


def optimizer(lrs=(1e-3, 1e-5)):
    params = [torch.nn.Parameter(torch.zeros(2)) for _ in lrs]
    return torch.optim.SGD([{"params": [p], "lr": lr, "name": f"g{i}"} for i, (p, lr) in enumerate(zip(params, lrs))], lr=lrs[0], momentum=0.9)


def curve(scheduler, steps):
    lrs = []
    for _ in range(steps):
        lrs.append([g["lr"] for g in scheduler.optimizer.param_groups])
        scheduler.optimizer.step()
        scheduler.step()
    return np.array(lrs)


def make(registry, name, opt, total_steps, **args):
    return registry.get("schedulers", name).factory(opt, total_steps, **args)


def test_multistep_equals_torch_multisteplr_with_milestones_in_steps(registry):
    ours = make(registry, "multistep", optimizer(), 100, milestones=[60, 30, 90], gamma=0.1)
    reference = MultiStepLR(optimizer(), milestones=[30, 60, 90], gamma=0.1)
    got, want = curve(ours, 100), curve(reference, 100)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert got[29][0] == pytest.approx(1e-3) and got[30][0] == pytest.approx(1e-4) and got[99][1] == pytest.approx(1e-8)


def test_constant_warmup_equals_torch_linearlr(registry):
    got = curve(make(registry, "constant", optimizer(), 20, warmup=5), 20)
    want = curve(LinearLR(optimizer(), start_factor=1 / 6, end_factor=1.0, total_iters=5), 20)
    np.testing.assert_allclose(got, want, rtol=1e-9)
    assert got[0][0] == pytest.approx(1e-3 / 6) and got[5][0] == pytest.approx(1e-3) and got[19][1] == pytest.approx(1e-5)


def test_cosine_warms_up_then_decays_to_the_floor_keeping_group_ratios(registry):
    lrs = curve(make(registry, "cosine", optimizer(), 110, warmup=10, min_lr_ratio=0.1), 111)
    assert lrs[0][0] == pytest.approx(1e-3 / 11)
    assert lrs[10][0] == pytest.approx(1e-3)
    assert lrs[60][0] == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5))))
    assert lrs[110][0] == pytest.approx(1e-4)
    assert all(a / b == pytest.approx(100.0) for a, b in lrs)
    assert (np.diff(lrs[10:, 0]) <= 1e-15).all()


def test_linear_decays_to_end_factor(registry):
    lrs = curve(make(registry, "linear", optimizer(), 50, end_factor=0.2), 51)
    assert lrs[0][0] == pytest.approx(1e-3) and lrs[25][0] == pytest.approx(0.6e-3) and lrs[50][0] == pytest.approx(0.2e-3)


def test_onecycle_peaks_at_the_ratio_of_each_group_lr(registry):
    lrs = curve(make(registry, "onecycle", optimizer(), 40, max_lr_ratio=2.0, pct_start=0.25), 40)
    peak = max(range(40), key=lambda i: lrs[i][0])
    assert lrs[peak][0] == pytest.approx(2e-3) and lrs[peak][1] == pytest.approx(2e-5)
    assert lrs[0][0] == pytest.approx(2e-3 / 25)


def test_plateau_patience_counts_evaluations(registry):
    opt = optimizer()
    scheduler = make(registry, "plateau", opt, 1000, factor=0.5, patience=2)
    for value in (1.0, 0.9, 0.95, 0.95):
        scheduler.step(value)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3)
    scheduler.step(0.95)  # third evaluation without improvement
    assert opt.param_groups[0]["lr"] == pytest.approx(5e-4) and opt.param_groups[1]["lr"] == pytest.approx(5e-6)


def test_warmup_must_fit_the_stage_and_state_round_trips(registry):
    with pytest.raises(ValueError, match="shorter than the stage"):
        make(registry, "cosine", optimizer(), 10, warmup=10)
    first = make(registry, "cosine", optimizer(), 100, warmup=10)
    curve(first, 37)
    second = make(registry, "cosine", optimizer(), 100, warmup=10)
    second.optimizer.load_state_dict(first.optimizer.state_dict())  # a resume restores both
    second.load_state_dict(first.state_dict())
    np.testing.assert_allclose(curve(second, 5), curve(first, 5))
