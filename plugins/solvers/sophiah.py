"""SophiaH (Liu et al. 2023): Sophia with a Hutchinson estimate of the Hessian diagonal.

Every ``k`` steps the loop keeps the backward graph and one Hessian-vector product
with a Rademacher vector ``z`` gives ``h_hat = z * Hz`` at the step's parameters; after the update, ``h = b2*h + (1-b2)*h_hat``. The estimate can be
negative, so the update is ``p -= lr * clip(m / max(rho * h, eps), 1)`` (the paper's form): a
non-positive curvature entry falls back to a sign step instead of reversing it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from framework.partitions import decay_groups
from framework.solver import Solver, StepContext
from plugins.solvers.sophia import SophiaG, SophiaGOptimizer


class SophiaHOptimizer(SophiaGOptimizer):
    """SophiaG's update with ``max(rho * h, eps)`` as denominator and a given curvature estimate."""

    @torch.no_grad()
    def update_hessian_estimate(self, params: list[Tensor], estimates: list[Tensor]) -> None:
        beta2 = self.defaults["betas"][1]
        for p, estimate in zip(params, estimates):
            self._state(p)["hessian"].mul_(beta2).add_(estimate, alpha=1 - beta2)

    def _denominators(self, hessians: list[Tensor], group: dict) -> list[Tensor]:
        denominators = torch._foreach_mul(hessians, group["rho"])
        torch._foreach_clamp_min_(denominators, group["eps"])
        return denominators


class SophiaH(SophiaG):
    """SophiaH; one Hessian-vector product every ``k`` steps."""

    needs_likelihood = False  # Hutchinson's estimate needs only the loss
    runs_sharded = False  # Hessian-vector products differentiate twice, which FSDP's hooks do not reduce

    def __init__(self, *, lr: float, betas: tuple[float, float], rho: float,
                 weight_decay: float, k: int, eps: float) -> None:
        super().__init__(lr=lr, betas=betas, rho=rho, weight_decay=weight_decay, k=k, eps=eps,
                         hessian_batch="same", clip_hessian_gradient=False)  # not used: its curvature is an HVP

    def build(self, model: torch.nn.Module) -> torch.optim.Optimizer:
        return SophiaHOptimizer(decay_groups(model, self.weight_decay), lr=self.lr, betas=self.betas,
                                rho=self.rho, weight_decay=self.weight_decay, eps=self.eps)

    def step(self, ctx: StepContext) -> Tensor:
        if not self.curvature_due(ctx.step):
            return Solver.step(self, ctx)  # a plain first-order step
        # the HVP reuses this step's own forward: the graph is kept on curvature steps only
        loss, params, vectors, products = ctx.hutchinson()
        ctx.finish_step()
        self.optimizer.update_hessian_estimate(params, [v * hv for v, hv in zip(vectors, products)])
        return loss
