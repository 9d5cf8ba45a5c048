"""Learning-rate schedules, applied by the loop to every solver (``schedule=<name>``).

A schedule is a factor of the step count that multiplies each parameter group's own base learning rate
(through ``torch.optim.lr_scheduler.LambdaLR``), so a solver with several groups (Muon's AdamW part, a
per-group lr) keeps their ratios. Lightning checkpoints the scheduler, so a resumed run continues the
schedule exactly. Step ``t`` (0-based) trains with ``lr = base_lr * factor(t)``; ``total_steps`` is the
run's ``trainer.max_steps``.

- ``constant``: 1 (the default);
- ``warmup-cosine``: linear warmup over ``warmup_steps``, then half a cosine down to ``min_ratio``;
- ``warmup-linear``: linear warmup, then a straight line down to ``min_ratio``;
- ``wsd`` (warmup-stable-decay): linear warmup, flat, then a straight line down to ``min_ratio`` over the
  last ``decay_fraction`` of the steps;
- ``inverse-sqrt``: linear warmup, then ``sqrt(warmup_steps / (t + 1))``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from framework.errors import ConfigError, check_count, require


@dataclass
class Schedule:
    """A learning-rate factor of the step; the base class is the constant schedule."""

    total_steps: int = 1
    warmup_steps: int = 0
    min_ratio: float = 0.0

    name = "constant"

    def __post_init__(self) -> None:
        check_count("trainer.max_steps", self.total_steps)
        check_count("schedule.warmup_steps", self.warmup_steps, minimum=0)
        require(self.warmup_steps < self.total_steps or self.constant, "schedule.warmup_steps",
                self.warmup_steps, f"must be below trainer.max_steps ({self.total_steps})")
        require(isinstance(self.min_ratio, (int, float)) and 0 <= self.min_ratio <= 1, "schedule.min_ratio",
                self.min_ratio, "must be a number in [0, 1] (the final lr as a fraction of the base lr)")

    @property
    def constant(self) -> bool:
        """Whether the lr never changes (the base class): the loop then adds no scheduler at all."""
        return type(self) is Schedule

    def factor(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        return self.after_warmup(step)

    def after_warmup(self, step: int) -> float:
        return 1.0

    def progress(self, step: int, start: int) -> float:
        """How far ``step`` is from ``start`` to the last step, in [0, 1]."""
        return min(max((step - start) / max(self.total_steps - 1 - start, 1), 0.0), 1.0)

    def scheduler(self, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
        return torch.optim.lr_scheduler.LambdaLR(optimizer, self.factor)


@dataclass
class WarmupCosine(Schedule):
    """Linear warmup, then a half cosine from the base lr to ``min_ratio`` of it at the last step."""

    name = "warmup-cosine"

    def after_warmup(self, step: int) -> float:
        cosine = 0.5 * (1 + math.cos(math.pi * self.progress(step, self.warmup_steps)))
        return self.min_ratio + (1 - self.min_ratio) * cosine


@dataclass
class WarmupLinear(Schedule):
    """Linear warmup, then linear decay to ``min_ratio`` at the last step."""

    name = "warmup-linear"

    def after_warmup(self, step: int) -> float:
        return 1 - (1 - self.min_ratio) * self.progress(step, self.warmup_steps)


@dataclass
class WarmupStableDecay(Schedule):
    """Linear warmup, constant, then linear decay to ``min_ratio`` over the last ``decay_fraction`` of the
    steps (Hu et al. 2024, MiniCPM)."""

    decay_fraction: float = 0.2
    name = "wsd"

    def __post_init__(self) -> None:
        super().__post_init__()
        require(isinstance(self.decay_fraction, (int, float)) and 0 < self.decay_fraction <= 1,
                "schedule.decay_fraction", self.decay_fraction, "must be a number in (0, 1]")
        if self.decay_start < self.warmup_steps:
            raise ConfigError("schedule.decay_fraction", self.decay_fraction,
                              f"starts the decay (step {self.decay_start}) inside the warmup "
                              f"({self.warmup_steps} steps)")

    @property
    def decay_start(self) -> int:
        return self.total_steps - round(self.decay_fraction * self.total_steps)

    def after_warmup(self, step: int) -> float:
        if step < self.decay_start:
            return 1.0
        return 1 - (1 - self.min_ratio) * self.progress(step, self.decay_start - 1)


@dataclass
class InverseSqrt(Schedule):
    """Linear warmup, then ``sqrt(warmup_steps / (t + 1))`` (Vaswani et al. 2017); ``1 / sqrt(t + 1)``
    without warmup."""

    name = "inverse-sqrt"

    def after_warmup(self, step: int) -> float:
        return math.sqrt(max(self.warmup_steps, 1) / (step + 1))
