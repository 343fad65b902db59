"""Fixtures for export tests: a registry with the built-ins plus a small test plugin,
and `make_run`, which writes a run directory the way the engine does (plan.json,
summary.json, stages/<stage>/{best,last}.safetensors) for a real model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import pytest

import stagedsl
from stagedsl.export.options import resolve_options
from stagedsl.plan.model import (
    DataPlan,
    EvalPlan,
    LossPlan,
    LossTerm,
    PieceRef,
    Plan,
    RunPlan,
    StagePlan,
)
from stagedsl.registry import Registry

SPECS = Path(__file__).resolve().parents[2] / "specs"


# -- the test plugin ----------------------------------------------------------------------
def drifting_linear(features: int = 4):
    """A model whose Python-side state changes each call: tracing freezes it, so ONNX disagrees."""
    import torch

    class Drifting(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(features, features)
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            return self.linear(x) * float(self.calls)

    return Drifting()


def masked_linear(features: int = 6, outputs: int = 3):
    """A model that casts a boolean mask to float itself, as masked models (METR's missing 0s) do."""
    import torch

    class Masked(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(features, outputs)

        def forward(self, x):
            mask = (x > 0).float()
            return self.linear(x * mask)

    return Masked()


def branching_linear(features: int = 6, outputs: int = 3):
    """Data-dependent Python control flow: torch.export refuses it, the TorchScript tracer takes one branch."""
    import torch

    class Branching(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(features, outputs)

        def forward(self, x):
            if x.abs().sum() >= 0:  # always true; a tracer records this branch
                return self.linear(x)
            return -self.linear(x)

    return Branching()


def scaled_classifier(features: int = 6, classes: int = 3, scale: float = 1.0, offset: float = 0.0):
    """A linear classifier with logits ``scale * (W x + b) + shift``: large ones with a big `scale`; with an
    `offset`, `shift` is stored as ``offset + [0, 0.05, 0.1, ...]`` and the offset taken off in the forward
    pass, so the weights' float16 copy (spacing 0.5 near 1000) loses what tells the classes apart."""
    import torch

    class Scaled(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(features, classes)
            self.shift = torch.nn.Parameter(offset + 0.05 * torch.arange(classes, dtype=torch.float32))

        def forward(self, x):
            return self.linear(x) * scale + ((self.shift + 0.0 * x[:, :1]) - offset)  # not constant-folded at export

    return Scaled()


def table(n_train: int = 48, n_val: int = 40, features: int = 6, outputs: int = 3, classes: int = 0, seed: int = 0, parts: int = 1):
    """Random features -> a fixed random linear map (regression) or its argmax (classes > 0);
    with `parts` > 1 the features come as that many input tensors."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(features, max(outputs, classes or 1), generator=generator)
    splits = {}
    for name, n in (("train", n_train), ("val", n_val)):
        x = torch.randn(n, features, generator=generator)
        y = x @ weight
        inputs = x if parts == 1 else tuple(x.tensor_split(parts, dim=1))
        splits[name] = stagedsl.TensorSplit(inputs, y.argmax(dim=1) if classes else y)
    train = torch.cat(splits["train"].inputs, dim=1) if parts > 1 else splits["train"].inputs
    return stagedsl.DataSplits(train=splits["train"], val=splits["val"] if n_val else None,
                               stats={"mean": train.mean(dim=0), "std": train.std(dim=0), "kind": "table"})


def npz_weights(suffix: str = "weights"):
    """A registered exporter: the model's weights as an .npz file."""

    def export(context):
        import numpy as np

        path = context.out / f"model.{suffix}.npz"
        np.savez(path, **{k: v.numpy() for k, v in context.model.state_dict().items()})
        return [path]

    return export


class ExportTestPlugin:
    """Pieces only the export tests use."""

    @stagedsl.hookimpl
    def register_models(self, register):
        register("export_drifting", drifting_linear)
        register("export_masked", masked_linear)
        register("export_branching", branching_linear)
        register("export_scaled", scaled_classifier)

    @stagedsl.hookimpl
    def register_datasets(self, register):
        register("export_table", table)

    @stagedsl.hookimpl
    def register_exporters(self, register):
        register("npz_weights", npz_weights)


def load_registry() -> Registry:
    """The built-ins and the test plugin, nothing autoloaded."""
    return Registry.load(autoload=False, plugins=[("export-tests", ExportTestPlugin())])


@pytest.fixture(scope="session")
def export_registry() -> Registry:
    """Shared by every export test: do not add plugins to it."""
    return load_registry()


@pytest.fixture
def process_registry(export_registry):
    """`export_registry` installed as the process-wide registry for one test."""
    stagedsl.set_registry(export_registry)
    yield export_registry
    stagedsl.set_registry(None)


# -- run directories -------------------------------------------------------------------
MODELS = {
    "mlp": (PieceRef("mlp", {"in_features": 6, "hidden": [16, 16], "out_features": 3}),
            PieceRef("export_table", {"features": 6, "outputs": 3})),
    "pde_transformer": (PieceRef("pde_transformer", {"channels": 2, "size": 8, "patch": 4, "dim": 16, "depth": 1, "heads": 2}),
                        PieceRef("pde_synthetic", {"n_train": 8, "n_val": 12, "size": 8, "channels": 2, "dt_steps": 2})),
    "ocec_net": (PieceRef("ocec_net", {"in_channels": 1, "size": 12, "width": 4, "embed": 8, "num_classes": 2}),
                 PieceRef("ocec_eyes", {"n_train": 32, "n_val": 24, "size": 12})),
}
"""Tiny arguments of each built-in model, with a dataset that fits it."""

METRICS = {
    "mlp": (PieceRef("mse"),),
    "pde_transformer": (PieceRef("mse"), PieceRef("nrmse")),
    "ocec_net": (PieceRef("accuracy", {"num_classes": 2}), PieceRef("f1", {"num_classes": 2})),
}
"""The stage metrics each model's runs name (built-in metric pieces)."""


def stage_plan(name: str, index: int = 0, metrics: tuple = ()) -> StagePlan:
    return StagePlan(
        index=index, name=name, steps=4, epochs=None, lr=1e-3, trainable=(), frozen=(), frozen_norm="eval", groups=(),
        optimizer=PieceRef("adamw"), scheduler=PieceRef("constant"), scheduler_monitor=None,
        loss=LossPlan("sum", (LossTerm("mse"),)), metrics=tuple(metrics), eval=EvalPlan(every=None),
    )


def make_plan(model: PieceRef, data: PieceRef, *, stages=("fit",), metrics=(), export: Optional[dict] = None) -> Plan:
    return Plan(
        run=RunPlan(name="export-test", seed=0, device="cpu", precision="32", out="runs"),
        model=model,
        data=DataPlan(name=data.name, args=data.args, batch_size=8, eval_batch_size=8),
        stages=tuple(stage_plan(name, i, metrics) for i, name in enumerate(stages)),
        export=resolve_options(export) if export is not None else None,
    )


def warm_up(model, splits, steps: int = 3) -> None:
    """A few optimiser steps in train mode, so BatchNorm statistics and weights are not the init's."""
    import torch

    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)
    for step in range(steps):
        inputs, target = splits.train[[(8 * step + i) % len(splits.train) for i in range(8)]]
        output = model(*inputs) if isinstance(inputs, tuple) else model(inputs)
        loss = (output.float() ** 2).mean() if not target.is_floating_point() or output.shape != target.shape else ((output - target) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()


def write_run(registry: Registry, root: Path, which="mlp", *, stages=("fit",), metrics=None, export=None, summary=True,
              checkpoints=None) -> Path:
    """A run directory for one of `MODELS` (or a ``(model, data)`` pair of `PieceRef`s)."""
    import torch

    from stagedsl.engine.checkpointing.weights import save_weights
    from stagedsl.run_dir import RunDir

    model_ref, data_ref = MODELS[which] if isinstance(which, str) else which
    if metrics is None:
        metrics = METRICS.get(which, ()) if isinstance(which, str) else ()
    plan = make_plan(model_ref, data_ref, stages=stages, metrics=metrics, export=export)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / "plan.json").write_text(plan.to_json(), encoding="utf-8")
    torch.manual_seed(0)
    model = registry.get("models", model_ref.name).factory(**model_ref.args)
    splits = registry.get("datasets", data_ref.name).factory(**data_ref.args)
    warm_up(model, splits)
    for stage in checkpoints if checkpoints is not None else stages:
        for kind in ("best", "last"):
            save_weights(model, RunDir(root).weights(stage, kind))
    if summary:
        stages_summary = {s: {"best": {"val/loss": 0.5, "step": 4}, "last": {"val/loss": 0.6, "step": 4}} for s in stages}
        (root / "summary.json").write_text(json.dumps({"stages": stages_summary}), encoding="utf-8")
    return root


@pytest.fixture(scope="session")
def make_run(export_registry):
    """``make_run(root, "mlp" | (model, data), stages=..., export=..., summary=...) -> run_dir``."""

    def make(root: Path, which="mlp", **kwargs) -> Path:
        return write_run(export_registry, root, which, **kwargs)

    return make


@pytest.fixture(scope="session")
def exported(tmp_path_factory, make_run, export_registry):
    """``exported(key) -> (run_dir, report)``: each built-in model of `MODELS`, trained a
    little and exported once per session with every format and pruning. Read only."""
    from stagedsl.export.runner import export_run

    done = {}

    def get(key: str):
        if key not in done:
            run_dir = make_run(tmp_path_factory.mktemp(key) / "run", key)
            done[key] = (run_dir, export_run(run_dir, registry=export_registry, options={"prune": {"amount": 0.3}}))
        return done[key]

    return get
