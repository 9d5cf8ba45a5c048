"""AdamW (Loshchilov & Hutter 2019): ``torch.optim.AdamW``, fused on CUDA, foreach elsewhere."""

from __future__ import annotations

import torch
from torch import nn

from framework.errors import check_betas, check_positive
from framework.partitions import decay_groups
from framework.solver import Solver


class AdamW(Solver):
    """AdamW with decoupled weight decay on matrices only; ``fused`` picks the fused CUDA kernel."""

    runs_sharded = True

    def __init__(
        self,
        *, lr: float,
        betas: tuple[float, float],
        eps: float,
        weight_decay: float,
        fused: bool | None,
    ) -> None:
        super().__init__(lr, weight_decay)
        self.betas = check_betas("optimizer.betas", betas)
        self.eps = check_positive("optimizer.eps", eps)
        self.fused = fused

    def kernel(self, model: nn.Module) -> dict[str, bool | None]:
        """The fused CUDA kernel where the model is on a GPU (unless told), the foreach one elsewhere."""
        fused = next(model.parameters()).is_cuda if self.fused is None else self.fused
        return {"fused": fused or None, "foreach": None if fused else True}

    def build(self, model: nn.Module) -> torch.optim.Optimizer:
        return torch.optim.AdamW(decay_groups(model, self.weight_decay), lr=self.lr, betas=self.betas, eps=self.eps,
                                 **self.kernel(model))
