"""What the planner builds once before any compute: a loss that refuses its arguments fails `staged plan`
(exit 2, located) instead of the run, a metric, optimizer or scheduler fails `compile_plan` and so
`staged run` before its first stage (the dry run leaves them out: a torch optimizer imports
torch._dynamo, a metric torchmetrics, tests/cli/test_startup.py); a plugin's piece that raises
anything at all is a located error naming the piece, its plugin and distribution, its traceback shown
only with --debug; a dataset without `sizes` is counted by building it once."""

from __future__ import annotations

import types

import pytest

from stagedsl import DataSplits, TensorSplit, hookimpl
from stagedsl.cli.app import run_cli
from stagedsl.errors import PlanError
from stagedsl.plan.render import render_plan

from .conftest import OCEC, compile_text

SPEC = OCEC.format(heads_extra="{extra}")


def spec_file(tmp_path, extra: str = "", text: str = SPEC):
    path = tmp_path / "spec.toml"
    path.write_text(text.replace("{extra}", extra))
    return path


def test_a_loss_argument_out_of_range_fails_the_plan_located_not_the_run(registry, tmp_path, capsys):
    spec = spec_file(tmp_path, 'loss = { use = "cross_entropy", label_smoothing = 1.5 }')
    assert run_cli(["validate", str(spec)]) == 0  # a float where a float belongs: only the factory knows its range
    capsys.readouterr()
    assert run_cli(["plan", str(spec)]) == 2
    err = capsys.readouterr().err
    assert "error[E025]: loss `cross_entropy` (plugin `stagedsl_plugins.losses`, distribution stagedsl" in err
    assert "ValueError: label_smoothing must be in [0, 1), found 1.5" in err
    assert f"--> {spec}:22:" in err and "= at: stage[0].loss" in err
    assert run_cli(["run", str(spec), "--out", str(tmp_path / "run")]) == 2
    assert not (tmp_path / "run").exists()  # nothing ran


@pytest.mark.parametrize(("key", "value", "needle"), [
    ("optimizer", '{ use = "sgd", momentum = -0.5 }', "Invalid momentum value: -0.5"),
    ("scheduler", '{ use = "onecycle", pct_start = 1.5 }', "pct_start"),
    ("metrics", '[{ use = "f1", num_classes = 3, average = "sideways" }]', "average"),
])
def test_optimizers_schedulers_and_metrics_are_built_while_planning(registry, tmp_path, key, value, needle):
    with pytest.raises(PlanError) as caught:
        compile_text(SPEC.replace("{extra}", f"{key} = {value}"), registry)
    problem = caught.value.problems[0]
    assert problem.code == "E025" and needle in problem.message
    assert problem.path.startswith(f"stage[0].{key}") and problem.line is not None


def test_a_refused_optimizer_argument_stops_the_run_before_anything_runs(registry, tmp_path, capsys):
    spec = spec_file(tmp_path, 'optimizer = { use = "sgd", momentum = -0.5 }')
    assert run_cli(["run", str(spec), "--out", str(tmp_path / "run")]) == 2
    assert "Invalid momentum value: -0.5" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # nothing ran


def broken_strategy(names: list[str], depth: int = 1) -> list[str]:
    """A freeze strategy with a bug in it."""
    raise RuntimeError("index bookkeeping went wrong")


def returns_module_names(names: list[str]) -> list[str]:
    """A freeze strategy that returns what is not a parameter name."""
    return ["backbone"]


@pytest.fixture
def third_party(registry):
    plugin = types.SimpleNamespace(register_freeze_strategies=hookimpl(
        lambda register: (register("shaky", broken_strategy), register("modules_only", returns_module_names))))
    registry.add_plugin(plugin, name="acme", distribution="acme-freeze", version="1.2.0")
    yield registry
    registry.remove_plugin("acme")


def test_a_freeze_strategy_raising_runtime_error_exits_2_without_a_traceback(third_party, tmp_path, capsys):
    spec = spec_file(tmp_path, 'train = [{ use = "shaky", depth = 2 }]')
    assert run_cli(["plan", str(spec)]) == 2
    err = capsys.readouterr().err
    assert ("error[E105]: freeze strategy `shaky` (plugin `acme`, distribution acme-freeze 1.2.0) failed: "
            "RuntimeError: index bookkeeping went wrong") in err
    assert "= at: stage[0].train[0]" in err and f"--> {spec}:22:" in err
    assert "a fault of distribution acme-freeze: report it there" in err
    assert "Traceback" not in err
    assert run_cli(["--debug", "plan", str(spec)]) == 2
    debug = capsys.readouterr().err
    assert "--- traceback behind error[E105] (--debug) ---" in debug and "Traceback (most recent call last)" in debug
    assert 'raise RuntimeError("index bookkeeping went wrong")' in debug and "registry/manager.py" not in debug


def test_a_strategy_returning_what_is_not_a_parameter_name_is_named(third_party, tmp_path):
    with pytest.raises(PlanError) as caught:
        compile_text(SPEC.replace("{extra}", 'train = [{ use = "modules_only" }]'), third_party)
    problem = caught.value.problems[0]
    assert problem.code == "E106" and problem.path == "stage[0].train[0]"
    assert problem.message == ("freeze strategy `modules_only` (plugin `acme`, distribution acme-freeze 1.2.0) returned "
                               "`backbone`, which is not a parameter of the model")


def counted_data(n: int = 40):
    """A dataset registered without `sizes`."""
    import torch

    return DataSplits(train=TensorSplit(torch.randn(n, 1, 24, 24), torch.randint(2, (n,))),
                      val=TensorSplit(torch.randn(8, 1, 24, 24), torch.randint(2, (8,))))


def test_a_dataset_without_sizes_is_built_once_to_count_its_epochs(register_plugin):
    registry = register_plugin(types.SimpleNamespace(register_datasets=hookimpl(lambda register: register("counted", counted_data))))
    text = SPEC.replace("{extra}", "").replace('use = "ocec_eyes"\nn_train = 200\nn_val = 50', 'use = "counted"\nn = 40')
    plan = compile_text(text, registry)
    assert plan.data.sizes == {"train": 40, "val": 8} and plan.data.sizes_from == "built"
    assert plan.data.batches_per_epoch == 2 and plan.stages[0].steps == 4  # 2 epochs of 2 batches
    assert "was built once while planning to count its splits (train 40, val 8)" in render_plan(plan)
    steps_only = compile_text(text.replace("epochs = 2\n", "steps = 3\n").replace("epochs = 1.5\n", "steps = 2\n"), registry)
    assert steps_only.data.sizes == {} and steps_only.data.sizes_from is None  # nothing needs its length: not built
