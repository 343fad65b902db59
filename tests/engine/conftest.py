"""Engine test fixtures: tiny pieces registered for one test, and a helper building plans.

Plans are built directly (no spec): `make_stage(...)` and `make_plan(...)` fill every
field with small, fast defaults on the built-in ``mlp`` (8 -> 16 -> 2), so a test only
writes what it is about.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
import pytest
import torch
from torch import nn

from stagedsl import DataSplits, TensorSplit, hookimpl
from stagedsl.engine.events import Callback
from stagedsl.plan.model import (
    CheckpointPlan,
    DataPlan,
    EvalPlan,
    GatePlan,
    GroupPlan,
    LossPlan,
    LossTerm,
    PieceRef,
    Plan,
    RunPlan,
    StagePlan,
)
from stagedsl.registry import get_registry
from stagedsl.spec.gates import gate_metrics, parse_gate

MLP_PARAMS = ("layers.0.weight", "layers.0.bias", "layers.2.weight", "layers.2.bias")


# -- pieces ------------------------------------------------------------------------------
def _regression(n: int, seed: int) -> TensorSplit:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    w = torch.linspace(-1, 1, 16).reshape(8, 2)
    y = torch.tanh(x @ w) + 0.05 * torch.randn(n, 2, generator=g)
    y[:, 1] *= 3.0  # channels of different scale, for nrmse's sigma
    return TensorSplit(x, y)


def toy_regression(n_train: int = 96, n_val: int = 32, seed: int = 0, nan_rows: int = 0):
    """8 features -> 2 targets, in memory."""
    train = _regression(n_train, seed)
    if nan_rows:
        train.target[:nan_rows] = float("nan")
    val = _regression(n_val, seed + 1) if n_val else None
    return DataSplits(train=train, val=val)


class PlainSplit(torch.utils.data.Dataset):
    """A user dataset with a per-sample __getitem__ only."""

    def __init__(self, split: TensorSplit):
        self.x, self.y = split.inputs, split.target

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.x[i], self.y[i]


def toy_plain(n_train: int = 96, n_val: int = 32, seed: int = 0):
    """The same data as toy_regression, through a plain per-sample Dataset."""
    splits = toy_regression(n_train, n_val, seed)
    return DataSplits(train=PlainSplit(splits.train), val=PlainSplit(splits.val) if splits.val else None)


class BNNet(nn.Module):
    """encoder (Linear + BatchNorm1d + LayerNorm without parameters) -> head."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.LayerNorm(16, elementwise_affine=False))
        self.head = nn.Linear(16, 2)

    def forward(self, x):
        return self.head(self.encoder(x))


BUILDS = {"count": 0}


class BuildCount(torch.nn.Module):
    """A metric whose value is how many times its factory ran before it (0, 1, 2, ...)."""

    def __init__(self, value: float):
        super().__init__()
        self.value = value

    def update(self, output, target) -> None:
        pass

    def compute(self):
        return torch.tensor(self.value)

    def reset(self) -> None:
        pass


def build_count():
    value = BUILDS["count"]
    BUILDS["count"] += 1
    return BuildCount(float(value))


class EnginePieces:
    """A test plugin: small datasets, a BatchNorm model and a metric counting its builds."""

    @hookimpl
    def register_models(self, register):
        register("bn_net", BNNet)

    @hookimpl
    def register_datasets(self, register):
        register("toy_regression", toy_regression)
        register("toy_plain", toy_plain)

    @hookimpl
    def register_metrics(self, register):
        register("build_count", build_count, mode="max")


@pytest.fixture
def engine_registry(registry, register_plugin):
    """The built-ins plus `EnginePieces`."""
    BUILDS["count"] = 0
    register_plugin(EnginePieces(), name="engine-pieces")
    return registry


# -- plans -------------------------------------------------------------------------------
def make_gate(condition: str, on_fail: str = "stop", *, goto: str | None = None, max_retries: int = 1, check: str = "end") -> GatePlan:
    expr = parse_gate(condition)
    return GatePlan(when=condition, expr=expr, metrics=tuple(gate_metrics(expr)), on_fail=on_fail, goto=goto,
                    max_retries=max_retries, check=check)


def make_stage(name: str, index: int = 0, **fields: Any) -> StagePlan:
    """A stage with small defaults: 12 steps of AdamW at lr 1e-2 on MSE, evaluated at the end.

    Empty `trainable` means every parameter not `frozen`, and the trainable parameters no
    group names join group "default": `make_plan` resolves both against the model, as
    the compiler would.
    """
    defaults: dict[str, Any] = dict(
        index=index,
        name=name,
        steps=12,
        epochs=None,
        lr=1e-2,
        trainable=(),
        frozen=(),
        frozen_norm="eval",
        groups=(),
        optimizer=PieceRef("adamw", {}),
        scheduler=PieceRef("constant", {}),
        scheduler_monitor=None,
        loss=LossPlan("sum", (LossTerm("mse"),)),
        metrics=(PieceRef("mae", {}),),
        eval=EvalPlan(every=None),
        log_every=4,
        checkpoint=CheckpointPlan(),
    )
    defaults.update(fields)
    return StagePlan(**defaults)


def resolve_stage(stage: StagePlan, names: list[str]) -> StagePlan:
    """`stage` with its trainable set and groups made exhaustive over the model's parameter `names`."""
    trainable = tuple(stage.trainable) or tuple(n for n in names if n not in set(stage.frozen))
    frozen = tuple(n for n in names if n not in set(trainable))
    grouped = {n for group in stage.groups for n in group.params}
    rest = tuple(n for n in trainable if n not in grouped)
    groups = tuple(stage.groups)
    if rest or not groups:
        groups = (GroupPlan("default", rest, stage.lr),) + groups
    return attrs.evolve(stage, trainable=trainable, frozen=frozen, groups=groups)


def make_plan(*stages: StagePlan, out: Path | str = "runs/test", model: PieceRef | None = None, data: dict | None = None,
              seed: int = 0, precision: str = "32", callbacks: tuple = ()) -> Plan:
    """A plan of `stages` (re-indexed in order) on the mlp and toy_regression, resolved against the model
    (built once through the process registry, as the compiler builds it)."""
    model = model or PieceRef("mlp", {"in_features": 8, "hidden": [16], "out_features": 2})
    parameters = {n: int(p.numel()) for n, p in get_registry().build("models", model.name, model.args).named_parameters()}
    stages = tuple(attrs.evolve(resolve_stage(stage, list(parameters)), index=i) for i, stage in enumerate(stages))
    data_fields = dict(name="toy_regression", args={}, batch_size=16, eval_batch_size=32, workers=0, shuffle=True, drop_last=False)
    data_fields.update(data or {})
    return Plan(
        run=RunPlan(name="test", seed=seed, device="cpu", precision=precision, out=str(out)),
        model=model,
        data=DataPlan(**data_fields),
        stages=stages,
        callbacks=callbacks,
        parameters=parameters,
    )


# -- reading a run -------------------------------------------------------------------------
def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def read_summary(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / "summary.json").read_text())


class Recorder(Callback):
    """Records every event with a copy of the values the state held."""

    def __init__(self):
        self.events: list[tuple[str, str | None, int]] = []
        self.snapshots: dict[str, dict[str, torch.Tensor]] = {}
        self.optimizer_params: dict[str, list] = {}

    def on_event(self, event, state) -> None:
        self.events.append((event.value, state.stage_name, state.stage_step))
        if event.value == "stage_start":
            model = state.live.model
            self.snapshots[state.stage_name] = {k: v.detach().clone() for k, v in model.state_dict().items()}
            names = {id(p): n for n, p in model.named_parameters()}
            self.optimizer_params[state.stage_name] = [names[id(p)] for g in state.live.optimizer.param_groups for p in g["params"]]
