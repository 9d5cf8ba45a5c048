"""Shampoo (Gupta et al. 2018): Kronecker-factored full-matrix preconditioning.

For a weight ``G`` viewed as a matrix (m x n; 4-D kernels as out x in*kh*kw):
``L += G G^T``, ``R += G^T G`` (both starting at ``eps * I``), and ``p -= lr * L^(-1/4) G R^(-1/4)``
(the paper's Algorithm 1). A vector gets ``L += g g^T`` and ``p -= lr * L^(-1/2) g``. The inverse roots
come from ``eigh`` in float64 and are recomputed every ``root_every`` steps (the factors still
accumulate every step). A side longer than ``max_dim`` keeps the identity instead (an embedding's
vocabulary side, say), so memory stays bounded.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch
from torch import Tensor, nn

from framework.errors import check_count, check_positive
from framework.partitions import trainable
from framework.solver import PerTensorOptimizer, Solver


def inverse_root(matrix: Tensor, root: int) -> Tensor:
    """``matrix^(-1/root)`` of a symmetric positive-definite matrix, through ``eigh`` in float64."""
    values, vectors = torch.linalg.eigh(matrix.double())
    return ((vectors * values.clamp_min(1e-30).pow(-1.0 / root)) @ vectors.T).to(matrix.dtype)


class ShampooOptimizer(PerTensorOptimizer):
    """The Shampoo update; one left and one right factor per parameter (the left only for vectors)."""

    def __init__(self, params: Iterable[Any], lr: float, eps: float, root_every: int, max_dim: int) -> None:
        super().__init__(params, {"lr": lr, "eps": eps, "root_every": root_every, "max_dim": max_dim})

    def _factor(self, size: int, group: dict, like: Tensor) -> Tensor | None:
        if size > group["max_dim"]:
            return None
        return group["eps"] * torch.eye(size, dtype=like.dtype, device=like.device)

    def update(self, p: Tensor, group: dict) -> None:
        g = p.grad.reshape(p.shape[0], -1) if p.ndim > 1 else p.grad.reshape(-1, 1)
        state = self.state[p]
        if not state:
            state["step"] = 0
            state["left"] = self._factor(g.shape[0], group, g)
            state["right"] = self._factor(g.shape[1], group, g) if p.ndim > 1 else None
        state["step"] += 1
        refresh = (state["step"] - 1) % group["root_every"] == 0
        # a vector has one factor and takes its inverse square root; a matrix takes fourth roots
        root = 4 if p.ndim > 1 else 2
        for side, product in (("left", lambda: g @ g.T), ("right", lambda: g.T @ g)):
            if state[side] is not None:
                state[side].add_(product())
                if refresh:
                    state[f"{side}_root"] = inverse_root(state[side], root)
        update = g
        if state["left"] is not None:
            update = state["left_root"] @ update
        if state["right"] is not None:
            update = update @ state["right_root"]
        p.add_(update.view_as(p), alpha=-group["lr"])


class Shampoo(Solver):
    """Shampoo as in the paper (no momentum, no grafting); ``root_every`` amortizes the ``eigh``."""

    def __init__(self, *, lr: float, eps: float, root_every: int, max_dim: int) -> None:
        super().__init__(lr)
        self.eps = check_positive("optimizer.eps", eps)
        self.root_every = check_count("optimizer.root_every", root_every)
        self.max_dim = check_count("optimizer.max_dim", max_dim)

    def build(self, model: nn.Module) -> torch.optim.Optimizer:
        return ShampooOptimizer([p for _, p in trainable(model)], lr=self.lr, eps=self.eps,
                                root_every=self.root_every, max_dim=self.max_dim)
