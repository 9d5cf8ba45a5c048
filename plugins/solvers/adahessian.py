"""AdaHessian (Yao et al. 2021): Adam whose second moment is a Hutchinson estimate of diag(H)^2.

On curvature steps (every ``k``; the paper uses every step) the loop keeps the backward graph, one
Hessian-vector product with a Rademacher vector ``z`` gives ``D = |z * Hz|``, averaged over the spatial
dimensions of 4-D convolution kernels (the paper's spatial averaging, as the authors' code does; with
``spatial_averaging: false`` per entry, as pytorch-optimizer's port does), and ``v = b2*v + (1-b2)*D*D``.
Each step: ``p -= lr * (m_hat / (sqrt(v_hat)^power + eps) + weight_decay * p)``. The bias correction of
``v`` counts the Hessian updates (the steps, at the paper's ``k = 1``; pytorch-optimizer counts steps
for any ``k``, which under-corrects a ``v`` that was updated fewer times).
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import torch
from torch import Tensor, nn

from framework.errors import check_betas, check_count, check_positive, require
from framework.partitions import trainable
from framework.solver import Solver, StepContext, evaluate_closure


def hutchinson_diagonal(vector: Tensor, product: Tensor, spatial_averaging: bool = True) -> Tensor:
    """``|z * Hz|``, averaged over the kernel's spatial dimensions for a 4-D convolution weight (unless
    ``spatial_averaging`` is false)."""
    diagonal = (vector * product).abs()
    if diagonal.ndim == 4 and spatial_averaging:
        diagonal = diagonal.mean(dim=(2, 3), keepdim=True).expand_as(diagonal).clone()
    return diagonal


class AdaHessianOptimizer(torch.optim.Optimizer):
    """The AdaHessian update; ``update_hessian`` folds a new diagonal estimate into the EMA."""

    def __init__(self, params: Iterable[Any], lr: float, betas: tuple[float, float], eps: float,
                 weight_decay: float, hessian_power: float) -> None:
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay,
                    "hessian_power": hessian_power}
        super().__init__(params, defaults)

    def _state(self, p: Tensor) -> dict:
        state = self.state[p]
        if not state:
            state["step"] = 0
            state["hessian_step"] = 0
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_hessian_diag_sq"] = torch.zeros_like(p)
        return state

    @torch.no_grad()
    def update_hessian(self, params: list[Tensor], diagonals: list[Tensor]) -> None:
        beta2 = self.defaults["betas"][1]
        for p, diagonal in zip(params, diagonals):
            state = self._state(p)
            state["exp_hessian_diag_sq"].mul_(beta2).addcmul_(diagonal, diagonal, value=1 - beta2)
            state["hessian_step"] += 1

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = evaluate_closure(closure)
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            power = group["hessian_power"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self._state(p)
                state["step"] += 1
                state["exp_avg"].mul_(beta1).add_(p.grad, alpha=1 - beta1)
                bias1 = 1 - beta1 ** state["step"]
                bias2 = 1 - beta2 ** max(state["hessian_step"], 1)
                denom = (state["exp_hessian_diag_sq"].sqrt() / math.sqrt(bias2)).pow_(power).add_(group["eps"])
                update = state["exp_avg"] / bias1 / denom
                if group["weight_decay"]:
                    update.add_(p, alpha=group["weight_decay"])
                p.add_(update, alpha=-group["lr"])
        return loss


class AdaHessian(Solver):
    """AdaHessian; ``k`` > 1 re-estimates the Hessian diagonal only every k steps (cheaper)."""

    def __init__(
        self,
        *, lr: float,
        betas: tuple[float, float],
        eps: float,
        weight_decay: float,
        hessian_power: float,
        k: int,
        spatial_averaging: bool,
    ) -> None:
        super().__init__(lr, weight_decay)
        self.betas = check_betas("optimizer.betas", betas)
        self.eps = check_positive("optimizer.eps", eps)
        require(0 < hessian_power <= 1, "optimizer.hessian_power", hessian_power, "must be in (0, 1]")
        self.hessian_power = float(hessian_power)
        self.k = check_count("optimizer.k", k)
        require(isinstance(spatial_averaging, bool), "optimizer.spatial_averaging", spatial_averaging,
                "must be true or false")
        self.spatial_averaging = spatial_averaging

    def build(self, model: nn.Module) -> torch.optim.Optimizer:
        return AdaHessianOptimizer([p for _, p in trainable(model)], lr=self.lr, betas=self.betas,
                                   eps=self.eps, weight_decay=self.weight_decay,
                                   hessian_power=self.hessian_power)

    def curvature_due(self, step: int) -> bool:
        return step % self.k == 0

    def step(self, ctx: StepContext) -> Tensor:
        if self.curvature_due(ctx.step):
            loss, params, vectors, products = ctx.hutchinson()
            self.optimizer.update_hessian(params, [hutchinson_diagonal(v, hv, self.spatial_averaging)
                                                   for v, hv in zip(vectors, products)])
        else:
            loss = ctx.forward_backward()
        ctx.finish_step()
        return loss
