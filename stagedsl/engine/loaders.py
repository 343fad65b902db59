"""Batch sources for the run's splits, built once per run.

Three paths, fastest first:

- a `stagedsl.TensorSplit` (with ``workers = 0``) is read by `TensorBatches`: one index
  tensor per epoch (shuffled by the placement's generator), sliced per batch, and the
  split indexed with it — no DataLoader, no Python list of indices, no collation. On
  CUDA the split's tensors are moved to the GPU once when they fit (`Placement.resident`);
- any other split with ``__getitems__`` is fetched a whole batch at a time through a
  DataLoader: a `BatchSampler` hands it a list of indices and the result passes through
  untouched (``batch_size=None``; default_collate would be wrong here);
- any other map-style dataset goes through the ordinary per-sample DataLoader.

Under torchrun each process reads its own share of every epoch (`Placement.train_order`,
`Placement.train_sampler`: DistributedSampler's split of the one seeded order) and of the
validation split. The shuffle generator is re-seeded at each stage start, so the sources live for the run.
It orders the training data and nothing else (a DataLoader draws its workers' base seed
from a second generator), so its state at an epoch's start plus the number of batches
drawn since is the exact data position: `Loaders.skip_train(n)` makes the next epoch
pass over its first `n` batches without fetching them, which is how a resumed run
continues mid-epoch with the exact next batch.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Optional, Union

import attrs
import torch
from torch.utils.data import BatchSampler, DataLoader

from stagedsl.data import TensorSplit
from stagedsl.engine.placement import Placement
from stagedsl.engine.seeding import worker_init_fn
from stagedsl.errors import RunError
from stagedsl.plan.model import DataPlan


def whole_batch(batch: Any) -> Any:
    """Collate function of batched fetches: the dataset already returned the batch."""
    return batch


class TensorBatches:
    """Batches of an in-memory `TensorSplit` by tensor indexing (see the module docstring)."""

    def __init__(self, split: TensorSplit, *, batch_size: int, drop_last: bool, order: Optional[Callable[[], torch.Tensor]],
                 count: Optional[int] = None):
        """`order`: one epoch's sample order (this process's share of it under torchrun); None = every
        sample in sequence (batches are views). `count`: how many samples an order holds (default all)."""
        self.split = split
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.order = order
        self.count = len(split) if count is None else count
        self.device = split.target.device
        self.skip = 0  # batches the next pass leaves out (a resumed epoch); applied once

    def __len__(self) -> int:
        n, size = self.count, self.batch_size
        return n // size if self.drop_last else -(-n // size)

    def __iter__(self) -> Iterator[Any]:
        split, size = self.split, self.batch_size
        first, self.skip = self.skip * size, 0
        if self.order is None:  # in sequence: slices (views of contiguous tensors, copies otherwise)
            n = len(split)
            stop = n - n % size if self.drop_last else n
            for start in range(first, stop, size):
                inputs, target = split[start:start + size]
                if isinstance(inputs, tuple):
                    yield tuple(t.contiguous() for t in inputs), target.contiguous()
                else:
                    yield inputs.contiguous(), target.contiguous()
            return
        order = self.order()
        if order.device != self.device:
            order = order.to(self.device, non_blocking=True)  # no host sync at an epoch's start
        n = len(order)
        stop = n - n % size if self.drop_last else n
        inputs, target = split.inputs, split.target
        if isinstance(inputs, tuple):
            for start in range(first, stop, size):
                index = order[start:start + size]
                yield tuple(t.index_select(0, index) for t in inputs), target.index_select(0, index)
        else:
            for start in range(first, stop, size):
                index = order[start:start + size]
                yield inputs.index_select(0, index), target.index_select(0, index)


class SkippingSampler(torch.utils.data.Sampler):
    """A training sampler whose next pass can leave out its first indices (a resumed epoch).

    The skip is taken when the pass starts drawing, not when ``iter()`` is called: a
    DataLoader makes (and drops) a sampler iterator before the one it uses.
    """

    def __init__(self, sampler: torch.utils.data.Sampler):
        self.sampler = sampler
        self.skip = 0

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[int]:
        skip, self.skip = self.skip, 0
        for position, index in enumerate(self.sampler):
            if position >= skip:
                yield index


BatchSource = Union[DataLoader, TensorBatches]


@attrs.define
class Loaders:
    """The run's batch sources, the generator that orders the training data, and the workers' one."""

    train: BatchSource
    val: Optional[BatchSource]
    generator: torch.Generator
    worker_generator: Optional[torch.Generator] = None  # a DataLoader's base seed for its workers
    skipper: Optional[SkippingSampler] = None
    batch_size: int = 1

    def skip_train(self, batches: int) -> None:
        """Make the training source's next pass leave out its first `batches` batches."""
        if isinstance(self.train, TensorBatches):
            self.train.skip = batches
        elif self.skipper is not None:
            self.skipper.skip = batches * self.batch_size


def fetches_batches(dataset: Any) -> bool:
    """Whether `dataset` answers a list of indices with one batch."""
    return callable(getattr(dataset, "__getitems__", None))


def _pin(dataset: Any, placement: Placement) -> bool:
    if not placement.pin_memory:
        return False
    tensor = getattr(dataset, "target", None)  # a TensorSplit already on the GPU cannot be pinned
    return not (isinstance(tensor, torch.Tensor) and tensor.device.type != "cpu")


def make_loader(
    dataset: Any,
    *,
    batch_size: int,
    sampler: torch.utils.data.Sampler,
    drop_last: bool,
    workers: int,
    placement: Placement,
    generator: Optional[torch.Generator],
) -> DataLoader:
    """One DataLoader: batched fetch for ``__getitems__`` datasets, per-sample otherwise."""
    common: dict[str, Any] = dict(
        num_workers=workers,
        pin_memory=_pin(dataset, placement),
        generator=generator,
    )
    if workers > 0:
        common.update(worker_init_fn=worker_init_fn, persistent_workers=True)
    if fetches_batches(dataset):
        batches = BatchSampler(sampler, batch_size=batch_size, drop_last=drop_last)
        return DataLoader(dataset, sampler=batches, batch_size=None, collate_fn=whole_batch, **common)
    return DataLoader(dataset, sampler=sampler, batch_size=batch_size, drop_last=drop_last, **common)


def build_loaders(splits: Any, data: DataPlan, placement: Placement) -> Loaders:
    """The training and validation batch sources of a run."""
    if splits.train is None:
        raise RunError(f"dataset `{data.name}` returned no training split", code="E405")
    generator = torch.Generator()
    if type(splits.train) is TensorSplit and data.workers == 0:
        train_split = placement.resident(splits.train)
        val_split = placement.resident(splits.val) if type(splits.val) is TensorSplit else None
        train = TensorBatches(train_split, batch_size=data.batch_size, drop_last=data.drop_last,
                              order=placement.train_order(len(train_split), shuffle=data.shuffle, generator=generator),
                              count=placement.train_count(len(train_split)))
        val = None
        if val_split is not None:
            share = placement.eval_order(len(val_split))
            val = TensorBatches(val_split, batch_size=data.eval_batch_size, drop_last=False, order=share,
                                count=len(share()) if share is not None else None)
        if val is None and splits.val is not None:
            val = make_loader(splits.val, batch_size=data.eval_batch_size, sampler=placement.eval_sampler(splits.val),
                              drop_last=False, workers=0, placement=placement, generator=None)
        return Loaders(train=train, val=val, generator=generator, batch_size=data.batch_size)
    workers_generator = torch.Generator()
    skipper = SkippingSampler(placement.train_sampler(splits.train, shuffle=data.shuffle, generator=generator))
    train = make_loader(
        splits.train,
        batch_size=data.batch_size,
        sampler=skipper,
        drop_last=data.drop_last,
        workers=data.workers,
        placement=placement,
        generator=workers_generator,
    )
    val = None
    if splits.val is not None:
        val = make_loader(
            splits.val,
            batch_size=data.eval_batch_size,
            sampler=placement.eval_sampler(splits.val),
            drop_last=False,
            workers=data.workers,
            placement=placement,
            generator=None,
        )
    return Loaders(train=train, val=val, generator=generator, worker_generator=workers_generator, skipper=skipper,
                   batch_size=data.batch_size)
