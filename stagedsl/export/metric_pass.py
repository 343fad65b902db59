"""One pass over the held-out split: the task metric for PyTorch, for the fp16 model and for the
pruned model, and (for a classifier) how often fp16 picks PyTorch's class.

`run_metric_pass` is what `export_run` calls after the fp16 graph is written and before
its verdict: the verdict needs both the metric before/after and the agreement.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import attrs

from stagedsl.errors import ExportError
from stagedsl.export import source as src
from stagedsl.export.checks import Agreement, MetricSet


@attrs.define
class MetricPass:
    """What the pass measured: PyTorch's metric values, the fp16 and pruned ones (when asked), the agreement."""

    before: dict
    fp16: Optional[dict] = None
    pruned: Optional[dict] = None
    agreement: Agreement = attrs.field(factory=Agreement)
    samples: int = 0
    notices: list[str] = attrs.field(factory=list)


def torch_outputs(model: Any, inputs: tuple) -> list:
    """The model's outputs for one batch, as numpy arrays (floats as float32)."""
    import torch

    with torch.no_grad():
        result = model(*inputs)
    if isinstance(result, torch.Tensor):
        result = [result]
    if not isinstance(result, (list, tuple)) or not all(isinstance(r, torch.Tensor) for r in result):
        raise ExportError(f"the model returns {type(result).__name__}; export needs a tensor or a tuple of tensors", code="E510")
    return [r.detach().float().numpy() if r.is_floating_point() else r.detach().numpy() for r in result]


def run_metric_pass(model: Any, split: Any, batch_size: int, refs: Sequence[Any], registry: Any, *,
                    samples: Optional[int] = None, fp16_runner: Optional[Callable[[list], list]] = None,
                    pruned: Any = None) -> MetricPass:
    """Feed at most `samples` held-out rows (None: all) through PyTorch and, when given, the fp16 runner and the pruned model."""
    import torch

    notices: list[str] = []
    before = MetricSet(refs, registry, notices)
    after_fp16 = MetricSet(refs, registry, []) if fp16_runner is not None else None
    after_prune = MetricSet(refs, registry, []) if pruned is not None else None
    agreement = Agreement()
    length = len(split) if samples is None else min(len(split), samples)
    for start, stop in src.batch_ranges(length, batch_size):
        inputs, target = src.fetch(split, start, stop)
        reference = torch.from_numpy(torch_outputs(model, inputs)[0])
        before.update(reference, target)
        if after_fp16 is not None:
            output = torch.from_numpy(fp16_runner([x.numpy() for x in inputs])[0])
            after_fp16.update(output, target)
            agreement.update(reference, output, target)
        if after_prune is not None:
            after_prune.update(torch.from_numpy(torch_outputs(pruned, inputs)[0]), target)
    return MetricPass(before=before.compute(), fp16=after_fp16.compute() if after_fp16 is not None else None,
                      pruned=after_prune.compute() if after_prune is not None else None, agreement=agreement,
                      samples=length, notices=list(dict.fromkeys(notices)))
