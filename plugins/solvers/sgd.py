"""Stochastic gradient descent with optional (Nesterov) momentum: ``torch.optim.SGD``."""

from __future__ import annotations

import torch
from torch import nn

from framework.errors import check_unit_interval, require
from framework.partitions import decay_groups
from framework.solver import Solver


class SGD(Solver):
    """SGD; weight decay is coupled (added to the gradient) and skips biases and norms."""

    runs_sharded = True

    def __init__(self, *, lr: float, momentum: float, nesterov: bool, weight_decay: float) -> None:
        super().__init__(lr, weight_decay)
        self.momentum = check_unit_interval("optimizer.momentum", momentum)
        require(not nesterov or momentum > 0, "optimizer.nesterov", nesterov, "needs optimizer.momentum > 0")
        self.nesterov = nesterov

    def build(self, model: nn.Module) -> torch.optim.Optimizer:
        return torch.optim.SGD(
            decay_groups(model, self.weight_decay), lr=self.lr, momentum=self.momentum, nesterov=self.nesterov
        )
