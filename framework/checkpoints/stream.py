"""Training batches as one endless, step-addressed stream.

Lightning would restart a finite loader at every epoch and, after a resume, from the start of the epoch.
Here the problem's loader only defines the epochs: their index order (reshuffled every epoch by the
loader's own generator) is chained end to end, and a stream that starts at step ``n`` replays the first
``n`` index batches without loading them, so the resumed run trains on exactly the batch the uninterrupted
run would have seen next. No draw touches the global random generators, which belong to the solvers.
"""

from __future__ import annotations

from itertools import islice
from typing import Any, Iterable, Iterator

import torch
from torch.utils.data import BatchSampler, DataLoader, IterableDataset, RandomSampler

from framework.distributed.shard import RankSlices, SlicedCollate


class EmptyEpochError(ValueError):
    """The loader yields no batch at all (a batch larger than the data set, with ``drop_last``)."""


class _EndlessEpochs:
    """The items of ``source``'s epochs (each ``iter()`` is one) end to end, from position ``start``.

    Over a sampler the items are indices, so the skipped ones cost nothing; over a loader of an iterable
    data set (which has no indices) the skipped batches are fetched and dropped.
    """

    def __init__(self, source: Iterable[Any], start: int) -> None:
        self.source, self.start = source, start

    def __iter__(self) -> Iterator[Any]:
        skip = self.start
        while True:
            epoch = iter(self.source)  # a new epoch: a shuffling sampler draws its order now
            skipped = sum(1 for _ in islice(epoch, skip)) if skip else 0
            skip -= skipped
            produced = skipped
            for item in epoch:
                produced += 1
                yield item
            if produced == 0:
                raise EmptyEpochError("the training loader yields no batch")


def _own_generator(sampler: Any, seed: int) -> None:
    """A shuffling sampler without a generator would draw from torch's global one: give it its own."""
    inner = sampler.sampler if isinstance(sampler, BatchSampler) else sampler
    if isinstance(inner, RandomSampler) and inner.generator is None:
        inner.generator = torch.Generator().manual_seed(seed)


def step_stream(loader: Iterable[Any], start: int = 0, seed: int = 0, rank: int = 0, world: int = 1) -> Iterable[Any]:
    """The batches of ``loader``'s epochs, end to end and without end, beginning at batch ``start``; with
    ``world`` processes, process ``rank``'s contiguous slice of each (:mod:`framework.distributed.shard`).

    A map-style :class:`DataLoader` becomes a DataLoader over the same data set, collate function and
    workers whose batch sampler chains the original one's epochs (and cuts its index batches, so a process
    loads its own items only); anything else is replayed batch by batch and cut after collation.
    """
    if not isinstance(loader, DataLoader) or isinstance(loader.dataset, IterableDataset):
        endless = _EndlessEpochs(loader, start)
        return endless if world == 1 else RankSlices(endless, rank, world, indices=False)
    workers = {"num_workers": loader.num_workers, "worker_init_fn": loader.worker_init_fn,
               "pin_memory": loader.pin_memory, "timeout": loader.timeout}
    if loader.num_workers:
        workers |= {"prefetch_factor": loader.prefetch_factor, "persistent_workers": loader.persistent_workers}
    # the generator seeds worker processes only; without one, every iter() would draw from the global generator
    private = torch.Generator().manual_seed(seed)
    if loader.batch_sampler is not None:
        _own_generator(loader.batch_sampler, seed)
        batches: Iterable[Any] = _EndlessEpochs(loader.batch_sampler, start)
        if world > 1:
            batches = RankSlices(batches, rank, world, indices=True)
        return DataLoader(loader.dataset, batch_sampler=batches, collate_fn=loader.collate_fn, generator=private,
                          **workers)
    _own_generator(loader.sampler, seed)  # each item is a whole batch: cut after collation
    collate = loader.collate_fn if world == 1 else SlicedCollate(loader.collate_fn, rank, world)
    return DataLoader(loader.dataset, sampler=_EndlessEpochs(loader.sampler, start), batch_size=None,
                      collate_fn=collate, generator=private, **workers)


def own_generators(loader: Iterable[Any], seed: int = 0) -> Iterable[Any]:
    """``loader`` with generators of its own (validation): each ``iter()`` of a DataLoader without one draws
    from torch's global generator, so how often validation runs would change the solvers' random draws."""
    if isinstance(loader, DataLoader):
        if loader.generator is None:
            loader.generator = torch.Generator().manual_seed(seed)
        _own_generator(loader.batch_sampler or loader.sampler, seed)
    return loader


def batches_per_epoch(loader: Iterable[Any]) -> int | None:
    """Batches in one epoch of ``loader``, or None where it has no length."""
    try:
        return len(loader)  # type: ignore[arg-type]
    except TypeError:
        return None
