"""Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms"): sign of an interpolated momentum.

``c = b1*m + (1-b1)*g``; ``p = p*(1 - lr*wd) - lr*sign(c)``; ``m = b2*m + (1-b2)*g``.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch
from torch import Tensor, nn

from framework.errors import check_betas
from framework.partitions import decay_groups
from framework.solver import Solver, evaluate_closure


class LionOptimizer(torch.optim.Optimizer):
    """The Lion update as a multi-tensor (``torch._foreach_*``) torch optimizer."""

    def __init__(self, params: Iterable[Any], lr: float, betas: tuple[float, float], weight_decay: float) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = evaluate_closure(closure)
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads: list[Tensor] = [p.grad for p in params]
            moments = []
            for p in params:
                if "exp_avg" not in self.state[p]:
                    self.state[p]["exp_avg"] = torch.zeros_like(p)
                moments.append(self.state[p]["exp_avg"])
            lr, (beta1, beta2) = group["lr"], group["betas"]
            if group["weight_decay"]:
                torch._foreach_mul_(params, 1 - lr * group["weight_decay"])
            update = torch._foreach_mul(moments, beta1)
            torch._foreach_add_(update, grads, alpha=1 - beta1)
            torch._foreach_add_(params, torch._foreach_sign(update), alpha=-lr)
            torch._foreach_mul_(moments, beta2)
            torch._foreach_add_(moments, grads, alpha=1 - beta2)
        return loss


class Lion(Solver):
    """Lion; the paper advises a learning rate 3-10x smaller and a weight decay 3-10x larger than AdamW's."""

    runs_sharded = True

    def __init__(self, *, lr: float, betas: tuple[float, float], weight_decay: float) -> None:
        super().__init__(lr, weight_decay)
        self.betas = check_betas("optimizer.betas", betas)

    def build(self, model: nn.Module) -> torch.optim.Optimizer:
        return LionOptimizer(decay_groups(model, self.weight_decay), lr=self.lr, betas=self.betas,
                             weight_decay=self.weight_decay)
