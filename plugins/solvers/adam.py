"""Adam (Kingma & Ba 2015) with L2 weight decay coupled to the gradient: ``torch.optim.Adam``."""

from __future__ import annotations

import torch
from torch import nn

from framework.partitions import decay_groups
from plugins.solvers.adamw import AdamW


class Adam(AdamW):
    """Adam; ``weight_decay`` is added to the gradient (L2), unlike AdamW's decoupled decay."""

    def build(self, model: nn.Module) -> torch.optim.Optimizer:
        return torch.optim.Adam(decay_groups(model, self.weight_decay), lr=self.lr, betas=self.betas, eps=self.eps,
                                **self.kernel(model))
