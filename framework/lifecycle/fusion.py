"""Fused steps: several optimizer steps in one Lightning training batch, for problems whose step is tiny.

Lightning's loop spends about 0.15 ms a batch on its own hooks, fetcher and bookkeeping (on this repo's CPU
benchmark machine, ``benchmarks/loop_overhead.py``): more than a whole step of a quadratic or a small MLP.
With ``fuse_steps: k`` the training stream is handed to Lightning in groups of ``k`` consecutive batches and
the task runs one optimizer step per batch of the group, each step exactly as it would run alone (its own
global step, learning rate, cost counters, divergence check and row in the loggers). Lightning's loop then
runs once per ``k`` steps: validation, checkpoints, stop signals and the progress bar happen between
groups. So that they happen at the same steps as without fusion, ``k`` divides
``trainer.val_check_interval`` and ``checkpoint.every_n_steps``; the last group stops at
``trainer.max_steps``. A run fused or not writes the same metrics, checkpoints and parameters.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Iterable, Iterator

from omegaconf import DictConfig

from framework.errors import require
from framework.problem import Problem

#: the most steps ``auto`` fuses: a group stays short enough for prompt stop signals and progress
AUTO_MOST = 10
#: ``auto`` fuses where one step (forward and backward) costs at most this many FLOPs
AUTO_FLOPS = 1e8


def check_fuse_steps(cfg: DictConfig) -> None:
    """One :class:`~framework.errors.ConfigError` line for a ``fuse_steps`` that is neither ``auto`` nor a
    number of steps dividing the intervals at which the loop has to stop between two steps."""
    setting = cfg.get("fuse_steps", 1)
    if setting == "auto":
        return
    require(isinstance(setting, int) and not isinstance(setting, bool) and setting >= 1, "fuse_steps", setting,
            "must be auto or an integer >= 1")
    for name, value in _intervals(cfg).items():
        require(value % setting == 0, "fuse_steps", setting, f"must divide {name} ({value}), so that validation "
                                                             f"and checkpoints fall between two groups of fused steps")


def fused_steps(cfg: DictConfig, problem: Problem) -> int:
    """How many steps one Lightning batch runs: ``fuse_steps``, or for ``auto``, up to :data:`AUTO_MOST`
    where a step of ``problem`` costs at most :data:`AUTO_FLOPS` (1 elsewhere), dividing the intervals."""
    setting = cfg.get("fuse_steps", 1)
    if setting != "auto":
        return int(setting)
    most = AUTO_MOST if problem.flops_per_item() * problem.items_per_batch() <= AUTO_FLOPS else 1
    common = math.gcd(*_intervals(cfg).values())  # gcd() of nothing is 0, which every k divides
    return max(k for k in range(1, most + 1) if common % k == 0)


def _intervals(cfg: DictConfig) -> dict[str, int]:
    """The step intervals set in ``cfg`` that fused steps must divide."""
    values = {"trainer.val_check_interval": cfg.trainer.get("val_check_interval"),
              "checkpoint.every_n_steps": cfg.checkpoint.get("every_n_steps")}
    return {name: value for name, value in values.items() if isinstance(value, int) and not isinstance(value, bool)}


class FusedBatches:
    """The training stream in lists of ``k`` consecutive batches (the last one possibly shorter)."""

    def __init__(self, batches: Iterable[Any], k: int) -> None:
        self.batches, self.k = batches, k

    def __iter__(self) -> Iterator[list[Any]]:
        stream = iter(self.batches)
        while group := list(itertools.islice(stream, self.k)):
            yield group
