"""Muon (Jordan et al. 2024): momentum orthogonalized by a quintic Newton-Schulz iteration.

Hidden matrices and conv kernels (viewed as out x in*kh*kw) get ``buf = m*buf + (1-m)*g``, the Nesterov
blend ``g + m*(buf - g)``, five steps of ``X <- a X + (b A + c A^2) X`` with ``A = X X^T`` and
(a, b, c) = (3.4445, -4.7750, 2.0315) from ``X = G / (|G|_F + 1e-7)``, decoupled weight decay, and a
learning rate scaled by ``sqrt(max(1, rows/cols))`` (the original Muon scaling). Embeddings, the input
layer, the output head and 1-D parameters get AdamW, with the reference's update and eps (1e-10). This is
the routing and the arithmetic of Keller Jordan's ``muon`` package (``SingleDeviceMuonWithAuxAdam``),
checked against it in ``tests/test_reference_parity.py``. One torch optimizer holds both partitions, so
each training step is one step.

``torch.optim.Muon`` always iterates in bfloat16; here ``ns_dtype`` chooses (bfloat16 on CUDA, the
parameters' own dtype elsewhere by default), which makes a float64 parity test possible.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from framework.errors import check_betas, check_count, check_nonnegative, check_positive, check_unit_interval, require
from framework.partitions import hidden_matrices
from framework.solver import Solver, evaluate_closure

COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def newton_schulz(g: Tensor, steps: int = 5, coefficients: tuple[float, float, float] = COEFFICIENTS,
                  eps: float = 1e-7, dtype: torch.dtype | None = None) -> Tensor:
    """The quintic Newton-Schulz approximation of the orthogonal factor ``U V^T`` of ``g``."""
    a, b, c = coefficients
    x = g.to(dtype or g.dtype)
    transposed = g.size(0) > g.size(1)
    if transposed:
        x = x.T
    x = x / (x.norm() + eps)
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return (x.T if transposed else x).to(g.dtype)


class MuonOptimizer(torch.optim.Optimizer):
    """Muon on the groups marked ``use_muon``, AdamW (with bias correction) on the others."""

    def __init__(self, groups: list[dict], momentum: float, nesterov: bool, ns_steps: int, ns_dtype: str) -> None:
        super().__init__(groups, {"momentum": momentum, "nesterov": nesterov, "ns_steps": ns_steps,
                                  "ns_dtype": ns_dtype})

    def _ns_dtype(self, p: Tensor, name: str) -> torch.dtype:
        if name == "auto":
            return torch.bfloat16 if p.is_cuda else p.dtype
        return getattr(torch, name)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = evaluate_closure(closure)
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            (self._muon if group["use_muon"] else self._adamw)(group, params)
        return loss

    def _muon(self, group: dict, params: list[Tensor]) -> None:
        lr, momentum = group["lr"], group["momentum"]
        for p in params:
            buf = self.state[p].setdefault("momentum_buffer", torch.zeros_like(p))
            buf.lerp_(p.grad, 1 - momentum)
            update = p.grad.lerp(buf, momentum) if group["nesterov"] else buf
            update = update.reshape(len(update), -1)  # a conv kernel as out x in*kh*kw
            scale = math.sqrt(max(1.0, update.size(0) / update.size(1)))
            update = newton_schulz(update, group["ns_steps"], dtype=self._ns_dtype(p, group["ns_dtype"]))
            p.mul_(1 - lr * group["weight_decay"])
            p.add_(update.view_as(p), alpha=-lr * scale)

    def _adamw(self, group: dict, params: list[Tensor]) -> None:
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        for p in params:
            state = self.state[p]
            if not state:
                state.update(step=0, exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
            state["step"] += 1
            state["exp_avg"].lerp_(p.grad, 1 - beta1)
            state["exp_avg_sq"].lerp_(p.grad.square(), 1 - beta2)
            first = state["exp_avg"] / (1 - beta1 ** state["step"])
            second = state["exp_avg_sq"] / (1 - beta2 ** state["step"])
            p.mul_(1 - lr * group["weight_decay"])
            p.add_(first / (second.sqrt() + eps), alpha=-lr)


class Muon(Solver):
    """Muon on hidden matrices plus AdamW on the rest, with separate learning rates and weight decays."""

    def __init__(
        self,
        *, lr: float,
        momentum: float,
        nesterov: bool,
        ns_steps: int,
        ns_dtype: str,
        weight_decay: float,
        adamw_lr: float,
        adamw_betas: tuple[float, float],
        adamw_eps: float,
        adamw_weight_decay: float,
    ) -> None:
        super().__init__(lr, weight_decay)
        self.momentum = check_unit_interval("optimizer.momentum", momentum)
        self.nesterov = bool(nesterov)
        self.ns_steps = check_count("optimizer.ns_steps", ns_steps)
        require(ns_dtype in ("auto", "bfloat16", "float32", "float64"), "optimizer.ns_dtype", ns_dtype,
                "must be auto, bfloat16, float32 or float64")
        self.ns_dtype = ns_dtype
        self.adamw_lr = check_nonnegative("optimizer.adamw_lr", adamw_lr)
        self.adamw_betas = check_betas("optimizer.adamw_betas", adamw_betas)
        self.adamw_eps = check_positive("optimizer.adamw_eps", adamw_eps)
        self.adamw_weight_decay = check_nonnegative("optimizer.adamw_weight_decay", adamw_weight_decay)

    def build(self, model: nn.Module) -> torch.optim.Optimizer:
        hidden, rest = hidden_matrices(model)
        groups = [
            {"params": hidden, "use_muon": True, "lr": self.lr, "weight_decay": self.weight_decay},
            {"params": rest, "use_muon": False, "lr": self.adamw_lr, "betas": self.adamw_betas,
             "eps": self.adamw_eps, "weight_decay": self.adamw_weight_decay},
        ]
        return MuonOptimizer([g for g in groups if g["params"]], momentum=self.momentum, nesterov=self.nesterov,
                             ns_steps=self.ns_steps, ns_dtype=self.ns_dtype)
