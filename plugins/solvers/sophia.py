"""SophiaG (Liu et al. 2023): clipped diagonal Gauss-Newton preconditioning.

Every step: ``m = b1*m + (1-b1)*g`` and ``p -= lr * sign(m) * min(|m| / (rho * bs * h + eps), 1)``
after decoupled weight decay. After every ``k``-th update the loop runs an extra forward-backward on
targets sampled from the model's own predictions and the Hessian EMA becomes
``h = b2*h + (1-b2)*g_hat*g_hat``. ``bs`` is the real number of samples or tokens behind that sampled
gradient on all ranks, taken from the batch, never a constant.

As the official training loop (``train_sophiag.py``) does, by default: the sampled pass runs on the next
step's batch (``hessian_batch: next``; ``same`` reuses the batch of the k-th step), and with ``grad_clip``
set the sampled gradient is clipped like the training gradient before it enters the estimate
(``clip_hessian_gradient: true``). Weight decay spares embeddings, biases and norms (nanoGPT's groups).
"""

from __future__ import annotations

from typing import Any, Iterable

import torch
from torch import Tensor, nn

from framework.errors import check_betas, check_count, check_positive, require
from framework.partitions import decay_groups
from framework.solver import Solver, StepContext, evaluate_closure


class SophiaGOptimizer(torch.optim.Optimizer):
    """The SophiaG update as a multi-tensor (``torch._foreach_*``) torch optimizer."""

    def __init__(self, params: Iterable[Any], lr: float, betas: tuple[float, float], rho: float,
                 weight_decay: float, eps: float) -> None:
        defaults = {"lr": lr, "betas": betas, "rho": rho, "weight_decay": weight_decay, "eps": eps,
                    "hessian_items": 0}
        super().__init__(params, defaults)

    def _state(self, p: Tensor) -> dict:
        state = self.state[p]
        if not state:
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["hessian"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state

    def _tensors(self, group: dict) -> tuple[list[Tensor], list[Tensor], list[Tensor], list[Tensor]]:
        params, grads, moments, hessians = [], [], [], []
        for p in group["params"]:
            if p.grad is None:
                continue
            state = self._state(p)
            params.append(p)
            grads.append(p.grad)
            moments.append(state["exp_avg"])
            hessians.append(state["hessian"])
        return params, grads, moments, hessians

    @torch.no_grad()
    def update_hessian(self, items: int) -> None:
        """Fold the squared gradient now in ``p.grad`` (a sampled-target gradient) into the EMA."""
        for group in self.param_groups:
            _, grads, _, hessians = self._tensors(group)
            group["hessian_items"] = int(items)
            if hessians:
                torch._foreach_mul_(hessians, group["betas"][1])
                torch._foreach_addcmul_(hessians, grads, grads, value=1 - group["betas"][1])

    def _denominators(self, hessians: list[Tensor], group: dict) -> list[Tensor]:
        """``rho * bs * h + eps``, as in the paper's reference code (h >= 0 here)."""
        denominators = torch._foreach_mul(hessians, group["rho"] * group["hessian_items"])
        torch._foreach_add_(denominators, group["eps"])
        return denominators

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = evaluate_closure(closure)
        for group in self.param_groups:
            params, grads, moments, hessians = self._tensors(group)
            if not params:
                continue
            lr, (beta1, _) = group["lr"], group["betas"]
            if group["weight_decay"]:
                torch._foreach_mul_(params, 1 - lr * group["weight_decay"])
            torch._foreach_mul_(moments, beta1)
            torch._foreach_add_(moments, grads, alpha=1 - beta1)
            ratios = torch._foreach_abs(moments)
            torch._foreach_div_(ratios, self._denominators(hessians, group))
            torch._foreach_clamp_max_(ratios, 1.0)
            torch._foreach_mul_(ratios, torch._foreach_sign(moments))
            torch._foreach_add_(params, ratios, alpha=-lr)
        return loss


class SophiaG(Solver):
    """SophiaG with the Gauss-Newton-Bartlett estimator every ``k`` steps (``k`` = the paper's k)."""

    runs_sharded = True
    needs_likelihood = True

    def __init__(
        self,
        *, lr: float,
        betas: tuple[float, float],
        rho: float,
        weight_decay: float,
        k: int,
        eps: float,
        hessian_batch: str,
        clip_hessian_gradient: bool,
    ) -> None:
        super().__init__(lr, weight_decay)
        self.betas = check_betas("optimizer.betas", betas)
        self.rho = check_positive("optimizer.rho", rho)
        self.k = check_count("optimizer.k", k)
        self.eps = check_positive("optimizer.eps", eps)
        require(hessian_batch in ("next", "same"), "optimizer.hessian_batch", hessian_batch,
                "must be next (the official loop: the batch of the step after the k-th) or same")
        require(isinstance(clip_hessian_gradient, bool), "optimizer.clip_hessian_gradient", clip_hessian_gradient,
                "must be true or false")
        self.hessian_batch = hessian_batch
        self.clip_hessian_gradient = clip_hessian_gradient

    def build(self, model: nn.Module) -> torch.optim.Optimizer:
        return SophiaGOptimizer(decay_groups(model, self.weight_decay), lr=self.lr, betas=self.betas,
                                rho=self.rho, weight_decay=self.weight_decay, eps=self.eps)

    def curvature_due(self, step: int) -> bool:
        return step % self.k == self.k - 1

    def step(self, ctx: StepContext) -> Tensor:
        if self.hessian_batch == "next" and ctx.step > 0 and self.curvature_due(ctx.step - 1):
            self.update_curvature(ctx)  # after the k-th update, on the batch this step trains on
        loss = super().step(ctx)
        if self.hessian_batch == "same" and self.curvature_due(ctx.step):
            self.update_curvature(ctx)
        return loss

    def update_curvature(self, ctx: StepContext) -> None:
        """The sampled-target pass on the step's batch, clipped as the training gradient, into the EMA."""
        items = ctx.sampled_forward_backward()
        if self.clip_hessian_gradient:
            ctx.clip_gradients(record=False)
        self.optimizer.update_hessian(items)
        ctx.zero_grad()
