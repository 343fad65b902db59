"""What a dataset plugin returns, and an in-memory split that fetches whole batches.

`DataSplits` bundles the train/val/test datasets of a dataset piece. `TensorSplit`
holds tensors in memory and answers a list of indices with one batch by tensor
indexing (``__getitems__``), which is what makes the built-in datasets as fast as a
pre-batched loop: no per-sample fetch, no collation.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Union

import attrs



def call_model(model: Any, inputs: Any) -> Any:
    """`model` on one batch's inputs: a tuple or list of them (what ``default_collate`` makes of a
    sample's tuple) spread as arguments, anything else passed as the one argument. Training,
    evaluation and the plan's DDP graph check all call the model through this, so they agree."""
    return model(*inputs) if isinstance(inputs, (tuple, list)) else model(inputs)


@attrs.define
class DataSplits:
    """The splits a dataset factory returns.

    `train` is required; `val` and `test` are optional. `stats` carries statistics a
    user or exporter needs later (normalisation mean/std, class names) as plain data.
    """

    train: Any
    val: Optional[Any] = None
    test: Optional[Any] = None
    stats: dict = attrs.field(factory=dict)


class TensorSplit:
    """An in-memory dataset of aligned tensors: ``split[i] -> (input, target)``.

    `inputs` is a tensor or a tuple of tensors (a model with several inputs); `target`
    a tensor. ``split[list_of_indices]`` and ``split.__getitems__(indices)`` return a
    whole batch at once.
    """

    def __init__(self, inputs: Union["torch.Tensor", Sequence["torch.Tensor"]], target: "torch.Tensor"):  # noqa: F821
        self.inputs = tuple(inputs) if isinstance(inputs, (tuple, list)) else inputs
        self.target = target
        first = self.inputs[0] if isinstance(self.inputs, tuple) else self.inputs
        if len(first) != len(target):
            raise ValueError(f"inputs have {len(first)} rows but target has {len(target)}")

    def __len__(self) -> int:
        return len(self.target)

    def _take(self, index: Any) -> tuple:
        if isinstance(self.inputs, tuple):
            return tuple(t[index] for t in self.inputs), self.target[index]
        return self.inputs[index], self.target[index]

    def __getitem__(self, index: Any) -> tuple:
        if isinstance(index, list):
            import torch

            index = torch.as_tensor(index, dtype=torch.long)
        return self._take(index)

    def __getitems__(self, indices: Sequence[int]) -> tuple:
        """One batch for a list of indices (the DataLoader's batched fetch)."""
        return self[list(indices)]
