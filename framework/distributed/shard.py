"""This process's part of a global batch, and random draws that do not depend on how a batch is cut.

The global batch of a step is cut into contiguous slices, one per process, in rank order (sizes differ by
at most one), so that the processes together hold exactly the batch a single process would train on.
Random numbers drawn per item of the batch (SophiaG's sampled targets) are drawn for the whole global batch
on every process and cut the same way, so that each item gets the number it gets in a single process.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping

import torch
from torch import Tensor


def bounds(size: int, rank: int, world: int) -> tuple[int, int]:
    """``[start, stop)`` of process ``rank``'s slice of ``size`` items split over ``world`` processes."""
    return size * rank // world, size * (rank + 1) // world


@dataclass(frozen=True)
class Shard:
    """Items ``[start, stop)`` of a global batch of ``total`` items (samples or tokens) are this process's."""

    start: int
    stop: int
    total: int

    @property
    def size(self) -> int:
        return self.stop - self.start


#: the slice of the batch whose forward pass the step is computing, where it is not the whole batch
_CURRENT: ContextVar[Shard | None] = ContextVar("optbench_shard", default=None)


def current_shard() -> Shard | None:
    """The slice of the global batch this process holds in the step under way (None: the whole batch)."""
    return _CURRENT.get()


@contextmanager
def holding() -> Iterator[None]:
    """A block (a training step) within which :func:`set_current` says which slice is this process's."""
    token = _CURRENT.set(None)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def set_current(shard: Shard) -> None:
    """This process holds ``shard`` of the batch the step's last forward pass ran on."""
    _CURRENT.set(shard)


def draw_for_rows(fill: Callable[[Tensor], Tensor], like: Tensor) -> Tensor:
    """A random tensor shaped as ``like`` filled by ``fill`` (an in-place sampler such as
    ``Tensor.exponential_``), where ``like``'s first dimension runs over this process's items (or a fixed
    number of rows per item): cut from the tensor a single process draws for the whole global batch."""
    shard = current_shard()
    if shard is None or shard.size == shard.total:
        return fill(torch.empty_like(like))
    rows_per_item, remainder = divmod(like.shape[0], shard.size)
    if remainder:
        raise ValueError(f"a tensor of {like.shape[0]} rows does not match this process's {shard.size} items")
    whole = fill(like.new_empty((shard.total * rows_per_item, *like.shape[1:])))
    return whole[shard.start * rows_per_item: shard.stop * rows_per_item]


def slice_batch(batch: Any, rank: int, world: int) -> Any:
    """Process ``rank``'s slice of a collated batch: tensors are cut along their first dimension, inside
    tuples, lists and mappings; anything else is kept whole."""
    if isinstance(batch, Tensor) and batch.ndim > 0:
        start, stop = bounds(batch.shape[0], rank, world)
        return batch[start:stop]
    if isinstance(batch, Mapping):
        return type(batch)({key: slice_batch(value, rank, world) for key, value in batch.items()})
    if isinstance(batch, (tuple, list)):
        return type(batch)(slice_batch(value, rank, world) for value in batch)
    return batch


class RankSlices:
    """The batches of ``batches`` each cut to process ``rank``'s slice: index lists of a batch sampler
    (``indices``; the items left out are never loaded) or collated batches."""

    def __init__(self, batches: Iterable[Any], rank: int, world: int, indices: bool) -> None:
        self.batches, self.rank, self.world, self.indices = batches, rank, world, indices

    def __iter__(self) -> Iterator[Any]:
        for batch in self.batches:
            if self.indices:
                start, stop = bounds(len(batch), self.rank, self.world)
                yield batch[start:stop]
            else:
                yield slice_batch(batch, self.rank, self.world)


class SlicedCollate:
    """A collate function that cuts each collated batch to process ``rank``'s slice."""

    def __init__(self, collate: Callable[[Any], Any], rank: int, world: int) -> None:
        self.collate, self.rank, self.world = collate, rank, world

    def __call__(self, items: Any) -> Any:
        return slice_batch(self.collate(items), self.rank, self.world)
