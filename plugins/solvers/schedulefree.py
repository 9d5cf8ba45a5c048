"""Schedule-free AdamW (Defazio et al. 2024) from the authors' ``schedulefree`` package.

No learning-rate schedule: the optimizer keeps the point ``y`` where gradients are taken and the
average ``x`` that is evaluated. It must be switched to ``x`` before validation and back after, which
the loop does through :meth:`Solver.eval_mode` / :meth:`Solver.train_mode`.

The package differs from the paper's Algorithm 1 in two documented ways, pinned by a parity test:
Adam's bias correction sits in the denominator (``g / (sqrt(v / (1 - b2^t)) + eps)``) instead of
scaling the step by ``sqrt(1 - b2^t)``, and the averaging weights are ``max(lr_0..lr_t)^2`` (uniform
after warmup) instead of ``lr_t^2``.
"""

from __future__ import annotations

import torch
from torch import nn

from framework.errors import check_betas, check_count, check_positive
from framework.partitions import decay_groups
from framework.solver import Solver


class ScheduleFreeAdamW(Solver):
    """``schedulefree.AdamWScheduleFree`` with the loop's train/eval switch; it needs no schedule and takes
    none (its warmup is ``optimizer.warmup_steps``)."""

    runs_sharded = True
    schedules_itself = True

    def __init__(self, *, lr: float, betas: tuple[float, float], eps: float,
                 weight_decay: float, warmup_steps: int) -> None:
        super().__init__(lr, weight_decay)
        self.betas = check_betas("optimizer.betas", betas)
        self.eps = check_positive("optimizer.eps", eps)
        self.warmup_steps = check_count("optimizer.warmup_steps", warmup_steps, minimum=0)

    def build(self, model: nn.Module) -> torch.optim.Optimizer:
        import schedulefree

        optimizer = schedulefree.AdamWScheduleFree(decay_groups(model, self.weight_decay), lr=self.lr,
                                                   betas=self.betas, eps=self.eps, warmup_steps=self.warmup_steps)
        optimizer.train()
        return optimizer

    def train_mode(self) -> None:
        if self.optimizer is not None:
            self.optimizer.train()

    def eval_mode(self) -> None:
        if self.optimizer is not None:
            self.optimizer.eval()
