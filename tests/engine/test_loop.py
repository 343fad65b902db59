"""The step loop: accumulation, early stopping, non-finite losses, batched fetch, precision fallback."""

from __future__ import annotations

import pytest
import torch

from stagedsl import TensorSplit
from stagedsl.engine.checkpointing.weights import read_weights
from stagedsl.engine.loaders import make_loader
from stagedsl.engine.placement import Placement
from stagedsl.engine.runner import run_plan
from stagedsl.errors import RunError
from stagedsl.plan.model import EarlyStopPlan, EvalPlan, PieceRef

from .conftest import make_plan, make_stage, read_jsonl, read_summary


def test_accumulating_micro_batches_equals_one_big_batch(engine_registry, tmp_path):
    sgd = PieceRef("sgd", {"momentum": 0.0})
    data = {"shuffle": False, "drop_last": True}
    big = make_plan(make_stage("s", steps=3, optimizer=sgd, lr=0.1), out=tmp_path / "big", data={**data, "batch_size": 32})
    small = make_plan(make_stage("s", steps=3, optimizer=sgd, lr=0.1, accumulate=2), out=tmp_path / "small", data={**data, "batch_size": 16})
    run_plan(big, registry=engine_registry)
    run_plan(small, registry=engine_registry)
    a, b = (read_weights(tmp_path / r / "stages/s/last.safetensors") for r in ("big", "small"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)


def test_epochs_cycle_until_the_step_budget(engine_registry, tmp_path):
    # 96 samples / batch 16 = 6 batches per epoch; 20 steps = epochs 0..3
    result = run_plan(make_plan(make_stage("s", steps=20, log_every=6), out=tmp_path), registry=engine_registry)
    assert result.stages["s"]["steps"] == 20 and result.stages["s"]["epochs"] == 4
    epochs = [r["epoch"] for r in read_jsonl(tmp_path / "metrics.jsonl") if r["event"] == "train"]
    assert epochs == [0, 1, 2, 3]  # steps 6, 12, 18 end epochs 0-2 with the loader's last batch; 20 is in epoch 3


def test_early_stopping_stops_the_stage(engine_registry, tmp_path):
    # val/loss falls, so in mode "max" it never improves after the first evaluation
    early = EarlyStopPlan(monitor="val/loss", mode="max", patience=2)
    stage = make_stage("s", steps=40, eval=EvalPlan(every=2), early_stop=early)
    result = run_plan(make_plan(stage, make_stage("next", steps=2), out=tmp_path), registry=engine_registry)
    record = result.stages["s"]
    assert record["early_stopped"] and record["status"] == "early_stopped"
    assert record["steps"] == 6  # evaluations at 2 (best), 4 and 6 (no improvement twice)
    assert result.stages["next"]["status"] == "completed"


def test_non_finite_loss_stops_the_run_with_a_run_error(engine_registry, tmp_path):
    plan = make_plan(make_stage("s", steps=8), out=tmp_path, data={"args": {"nan_rows": 96}})
    with pytest.raises(RunError, match="training loss became nan") as caught:
        run_plan(plan, registry=engine_registry)
    assert caught.value.exit_code == 1
    summary = read_summary(tmp_path)
    assert summary["status"] == "failed" and summary["stages"]["s"]["status"] == "failed"


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step")  # step 1 is skipped
def test_skip_mode_drops_non_finite_steps_until_max_nonfinite(engine_registry, tmp_path):
    # the first 16 rows have NaN targets, unshuffled: the first batch of every epoch is skipped
    data = {"args": {"nan_rows": 16}, "shuffle": False}
    skip = make_stage("s", steps=12, on_nonfinite="skip", max_nonfinite=5)
    result = run_plan(make_plan(skip, out=tmp_path / "ok", data=data), registry=engine_registry)
    assert result.state.nonfinite_steps == 2
    weights = read_weights(tmp_path / "ok/stages/s/last.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())
    assert result.stages["s"]["skipped_steps"] == 2
    # 32 NaN rows: two non-finite steps in a row at each epoch's start; max_nonfinite counts them in a row
    two_in_a_row = {"args": {"nan_rows": 32}, "shuffle": False}
    result = run_plan(make_plan(make_stage("s", steps=12, on_nonfinite="skip", max_nonfinite=2), out=tmp_path / "two",
                                data=two_in_a_row), registry=engine_registry)
    assert result.state.nonfinite_steps == 4
    too_many = make_stage("s", steps=12, on_nonfinite="skip", max_nonfinite=1)
    with pytest.raises(RunError, match=r"2 steps in a row.*max_nonfinite = 1"):
        run_plan(make_plan(too_many, out=tmp_path / "bad", data=two_in_a_row), registry=engine_registry)


class CountingSplit(TensorSplit):
    def __init__(self, *args):
        super().__init__(*args)
        self.calls = 0

    def __getitem__(self, index):
        self.calls += 1
        return super().__getitem__(index)


def test_tensor_splits_are_fetched_a_whole_batch_at_a_time():
    split = CountingSplit((torch.arange(10.0).reshape(10, 1), torch.zeros(10, 1)), torch.arange(10))
    placement = Placement.create("cpu", "32")
    loader = make_loader(split, batch_size=4, sampler=placement.train_sampler(split, shuffle=True, generator=torch.Generator().manual_seed(0)),
                         drop_last=False, workers=0, placement=placement, generator=None)
    batches = list(loader)
    assert split.calls == 3
    (first, second), target = batches[0]
    assert isinstance(batches[0], tuple) and first.shape == (4, 1) and second.shape == (4, 1) and target.shape == (4,)
    assert sorted(torch.cat([b[1] for b in batches]).tolist()) == list(range(10))
    assert torch.equal(batches[0][0][0].squeeze(1).long(), batches[0][1])


def test_fp16_on_cpu_falls_back_to_fp32_with_a_notice(engine_registry, tmp_path, capsys):
    result = run_plan(make_plan(make_stage("s", steps=2), out=tmp_path, precision="16-mixed"), registry=engine_registry)
    assert result.summary["precision"] == "32"
    assert "note: precision 16-mixed needs CUDA; running in fp32 on cpu" in capsys.readouterr().err


def test_bf16_mixed_runs_on_cpu(engine_registry, tmp_path):
    result = run_plan(make_plan(make_stage("s", steps=3), out=tmp_path, precision="bf16-mixed"), registry=engine_registry)
    assert result.summary["precision"] == "bf16-mixed"
    assert all(torch.isfinite(torch.tensor(v)) for k, v in result.stages["s"]["last_values"].items())


def test_unknown_device_is_a_run_error(engine_registry, tmp_path):
    with pytest.raises(RunError, match="CUDA is not available") if not torch.cuda.is_available() else pytest.raises(RunError):
        run_plan(make_plan(make_stage("s", steps=1), out=tmp_path), registry=engine_registry,
                 device="cuda" if not torch.cuda.is_available() else "nonsense")


def test_tensor_batches_cover_each_sample_once_per_epoch():
    from stagedsl.engine.loaders import TensorBatches

    split = TensorSplit(torch.arange(10.0).unsqueeze(1), torch.arange(10))
    placement = Placement.create("cpu", "32")
    generator = torch.Generator().manual_seed(0)
    shuffled = TensorBatches(split, batch_size=4, drop_last=False, order=placement.train_order(10, shuffle=True, generator=generator))
    batches = list(shuffled)
    assert len(shuffled) == 3 and [len(t) for _, t in batches] == [4, 4, 2]
    assert sorted(torch.cat([t for _, t in batches]).tolist()) == list(range(10))
    assert all(torch.equal(x.squeeze(1).long(), t) for x, t in batches)
    assert [t.tolist() for _, t in list(shuffled)] != [t.tolist() for _, t in batches]  # a new order each epoch
    in_order = TensorBatches(split, batch_size=4, drop_last=True, order=None)
    assert len(in_order) == 2 and [t.tolist() for _, t in in_order] == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_the_loss_window_folds_without_changing_the_mean():
    from stagedsl.engine.loop import StepLoop

    loop = StepLoop.__new__(StepLoop)
    loop.window, loop._folded_count = [], 0
    values = [float(v) for v in range(1, 10001)]
    for i, value in enumerate(values):
        loop.window.append(torch.tensor(value))
        if len(loop.window) >= 4096:
            loop._fold()
    assert len(loop.window) < 4096
    assert loop.take_window() == pytest.approx(sum(values) / len(values))
    assert loop.take_window() is None
