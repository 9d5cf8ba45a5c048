"""Newton's method with an exact Hessian, damping and lazy Hessian reuse (for small problems).

Every ``reuse`` steps the loop keeps the backward graph and the full Hessian ``H`` is built from n
batched Hessian-vector products. ``H + tau I`` is Cholesky-factored with the smallest ``tau >= damping``
that makes it positive definite (Nocedal & Wright, Algorithm 3.3: start from ``damping``, or from
``beta - min(diag H)`` when the diagonal is not positive, and double until the factorization
succeeds), so non-convex problems get descent directions. The factor is reused until the next refresh;
each step solves ``(H + tau I) d = g`` with the current gradient and moves ``p -= lr * d``.
A model whose Hessian would not fit in ``max_hessian_mb`` is refused before training.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from framework.errors import ConfigError, check_count, check_nonnegative, check_positive
from framework.partitions import trainable
from framework.solver import Solver, StepContext


class Newton(Solver):
    """Damped Newton steps; the Hessian (and its factor) is refreshed every ``reuse`` steps."""

    def __init__(self, *, lr: float, damping: float, reuse: int, max_hessian_mb: float) -> None:
        super().__init__(lr)
        self.damping = check_nonnegative("optimizer.damping", damping)
        self.reuse = check_count("optimizer.reuse", reuse)
        self.max_hessian_mb = check_positive("optimizer.max_hessian_mb", max_hessian_mb)
        self.factor: Tensor | None = None
        self.tau = 0.0

    def build(self, model: nn.Module) -> torch.optim.Optimizer:
        params = [p for _, p in trainable(model)]
        n = sum(p.numel() for p in params)
        megabytes = n * n * params[0].element_size() / 2**20
        if megabytes > self.max_hessian_mb:
            raise ConfigError("optimizer.max_hessian_mb", self.max_hessian_mb,
                              f"the Hessian of {n:,} parameters needs {megabytes:,.0f} MB; raise it, or use a "
                              "diagonal or first-order method (sophia, adahessian, adamw)")
        # the Newton direction is written into p.grad and applied by plain SGD: p -= lr * d
        return torch.optim.SGD(params, lr=self.lr)

    def curvature_due(self, step: int) -> bool:
        return step % self.reuse == 0 or self.factor is None

    def factorize(self, hessian: Tensor, beta: float = 1e-3) -> tuple[Tensor, float]:
        """Cholesky factor of ``hessian + tau I`` for the smallest positive-definite ``tau >= damping``."""
        if not torch.isfinite(hessian).all():
            raise FloatingPointError("newton: the Hessian has non-finite entries (the run diverged)")
        smallest = hessian.diagonal().min().item()
        tau = self.damping if smallest > 0 else max(self.damping, beta - smallest)
        eye = torch.eye(len(hessian), dtype=hessian.dtype, device=hessian.device)
        while True:
            factor, info = torch.linalg.cholesky_ex(hessian + tau * eye)
            if info.item() == 0:
                return factor, tau
            tau = max(2 * tau, beta)

    def step(self, ctx: StepContext) -> Tensor:
        params = ctx.parameters()
        if self.curvature_due(ctx.step):
            loss = ctx.forward_backward(create_graph=True)
            hessian = ctx.hessian([p.grad for p in params], params).detach()
            self.factor, self.tau = self.factorize(hessian)
            for p in params:
                p.grad = p.grad.detach()
        else:
            loss = ctx.forward_backward()
        gradient = torch.cat([p.grad.reshape(-1) for p in params])
        ctx.step_along(torch.cholesky_solve(gradient.unsqueeze(1), self.factor).squeeze(1))
        return loss

    def state_dict(self) -> dict[str, Any]:
        return {"factor": self.factor, "tau": self.tau}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.factor, self.tau = state.get("factor"), state.get("tau", 0.0)
