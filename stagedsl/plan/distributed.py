"""A plan for several processes (torchrun / DistributedDataParallel): global batch and each stage's graph check.

With N processes ``data.batch_size`` is each process's batch, so one optimizer step sees
``N x batch_size`` samples (the *global* batch) and an epoch has as many steps as one
process with the global batch would take (``ceil(ceil(n / N) / B) = ceil(n / (N B))``),
which is why a plan's step counts do not depend on N once the global batch is fixed.

DDP reduces the gradients of the parameters it was built with; a trainable parameter
that gets no gradient in a step makes it fail ("Expected to have finished reduction in
the prior iteration", pytorch #22049) unless it was built with ``find_unused_parameters``,
which costs a traversal of the autograd graph every step. So the engine wraps the model
after each stage's freeze (the frozen parameters are not DDP's), and the plan decides per
stage whether that stage's own graph needs the flag: `trace_stages` runs the meta-device
model forward on the shapes of two training samples with the stage's trainable set and
asks autograd which trainable parameters have no path to the output. When the check
cannot run (the data gives no sample, the forward fails on the meta device) the stage
gets the flag, and the plan says why.
"""

from __future__ import annotations

from typing import Any, Optional

import attrs

from stagedsl.data import call_model
from stagedsl.errors import Problem, UsageError
from stagedsl.plan.model import DistributedPlan, DistributedStagePlan, Plan
from stagedsl.registry import Registry

TRACED = "traced"


def distributed_plan(plan: Plan, registry: Registry, world_size: int, *, model: Any = None,
                     data: Any = None) -> Optional[DistributedPlan]:
    """The `DistributedPlan` of `plan` (whose batch is per process) for `world_size` processes; None for one.
    `model` and `data` are the ones the plan was compiled from (a live model is traced on a meta copy)."""
    if world_size <= 1:
        return None
    return DistributedPlan(world_size=world_size, global_batch=plan.data.batch_size * world_size,
                           stages=trace_stages(plan, registry, model=model, data=data))


def for_world_size(plan: Plan, world_size: int, registry: Registry, *, model: Any = None, data: Any = None) -> Plan:
    """`plan` run as `world_size` processes with the same global batch (a resume on another number of processes).

    Each process's batch becomes ``global / world_size`` (E485 when it does not divide);
    step counts stay as they are. The stages' graph checks carry over (they do not depend
    on the number of processes) or are made when the plan had none (on `model` and `data` when
    they are live objects, as in `distributed_plan`).
    """
    if world_size == plan.world_size:
        return plan
    global_batch = plan.data.batch_size * plan.world_size
    if world_size < 1 or global_batch % world_size:
        raise UsageError([Problem(code="E485", message=f"the run's global batch of {global_batch} samples cannot be split "
                                  f"evenly over {world_size} processes",
                                  hint=f"resume with a number of processes that divides {global_batch} (the global batch is "
                                       "what keeps the resumed steps the same)")])
    per_process = attrs.evolve(plan.data, batch_size=global_batch // world_size)
    regrouped = attrs.evolve(plan, data=per_process, distributed=None)
    if world_size == 1:
        return regrouped
    stages = plan.distributed.stages if plan.distributed is not None else trace_stages(regrouped, registry, model=model, data=data)
    return attrs.evolve(regrouped, distributed=DistributedPlan(world_size, global_batch, stages))


def trace_stages(plan: Plan, registry: Registry, *, model: Any = None, data: Any = None) -> tuple[DistributedStagePlan, ...]:
    """Per stage, whether DDP needs ``find_unused_parameters`` (see the module docstring). `model`: the
    model on the meta device, or a live one (copied to it); `data`: live `DataSplits` (default: built)."""
    try:
        inputs = _meta_sample(plan, registry, data)
    except Exception as exc:  # a dataset that cannot give a sample here still runs; the flag keeps DDP safe
        why = f"not traced: the training data gave no sample ({type(exc).__name__}: {_short(exc)})"
        return tuple(DistributedStagePlan(stage.name, True, (), why) for stage in plan.stages)
    try:
        model = _meta_model(plan, registry) if model is None else _on_meta(model)
    except Exception as exc:
        why = f"not traced: the model could not be built on the meta device ({type(exc).__name__}: {_short(exc)})"
        return tuple(DistributedStagePlan(stage.name, True, (), why) for stage in plan.stages)
    return tuple(_trace(model, stage, inputs) for stage in plan.stages)


def _on_meta(model: Any) -> Any:
    """`model` itself when it is on the meta device (the planner's), else a meta copy (a live model is left as it is)."""
    import copy

    if all(p.is_meta for p in model.parameters()):
        return model
    return copy.deepcopy(model).to("meta")


def _trace(model: Any, stage: Any, inputs: Any) -> DistributedStagePlan:
    import torch

    trains = set(stage.trainable)
    params = []
    for name, param in model.named_parameters():
        param.requires_grad_(name in trains)
        if name in trains:
            params.append((name, param))
    try:
        with torch.enable_grad():
            output = call_model(model, inputs)
            leaves = [t for t in _tensors(output) if t.requires_grad]
            if leaves:
                total = sum(t.float().sum() for t in leaves)
                grads = torch.autograd.grad(total, [p for _, p in params], allow_unused=True)
            else:
                grads = [None] * len(params)
    except Exception as exc:
        why = f"not traced: the model's forward failed on the meta device ({type(exc).__name__}: {_short(exc)})"
        return DistributedStagePlan(stage.name, True, (), why)
    unused = tuple(name for (name, _), grad in zip(params, grads) if grad is None)
    return DistributedStagePlan(stage.name, bool(unused), unused, TRACED)


def _meta_model(plan: Plan, registry: Registry) -> Any:
    import torch

    from stagedsl.plan.compile import skip_weight_init

    with torch.device("meta"), skip_weight_init():
        return registry.build("models", plan.model.name, plan.model.args, at="model", phase="plan")


def _meta_sample(plan: Plan, registry: Registry, data: Any = None) -> Any:
    """The model inputs of the first two training samples, as meta tensors (shapes and dtypes only)."""
    splits = data if data is not None else registry.build("datasets", plan.data.name, plan.data.args, at="data", phase="plan")
    train = splits.train
    count = min(2, len(train))
    if callable(getattr(train, "__getitems__", None)):
        inputs, _ = train.__getitems__(list(range(count)))
    else:
        from torch.utils.data import default_collate

        inputs, _ = default_collate([train[i] for i in range(count)])
    return _to_meta(inputs)


def _to_meta(value: Any) -> Any:
    import torch

    if isinstance(value, torch.Tensor):
        return value.to("meta")
    if isinstance(value, (tuple, list)):
        return type(value)(_to_meta(v) for v in value)
    if isinstance(value, dict):
        return {k: _to_meta(v) for k, v in value.items()}
    return value


def _tensors(value: Any) -> list:
    import torch

    if isinstance(value, torch.Tensor):
        return [value] if value.is_floating_point() or value.is_complex() else []
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _tensors(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    return []


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 160 else text[:157] + "..."


__all__ = ["distributed_plan", "for_world_size", "trace_stages"]
