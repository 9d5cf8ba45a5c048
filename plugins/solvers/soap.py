"""SOAP (Vyas et al. 2024, "SOAP: Improving and Stabilizing Shampoo using Adam"): Adam in Shampoo's eigenbasis.

For a weight ``G`` with one Shampoo factor per dimension, as the authors' code keeps them (a matrix:
``L = b*L + (1-b) G G^T`` and ``R = b*R + (1-b) G^T G``; a conv kernel: four factors, out, in, kh, kw,
each ``G`` unfolded along its dimension times its transpose) and their eigenvector matrices ``QL``, ``QR``
(rotating along each dimension; written below for a matrix):

* the first step only builds ``L``, ``R`` from its gradient and takes ``QL, QR`` from ``eigh``
  (eigenvalues descending); it does not move the parameters, so a gradient never rotates itself;
* every later step: ``m = b1*m + (1-b1) G`` (momentum kept in the original basis),
  ``v = b2*v + (1-b2) (QL^T G QR)^2`` (second moment kept in the rotated basis),
  ``p -= lr * sqrt(1-b2^t)/(1-b1^t) * QL [(QL^T m QR) / (sqrt(v) + eps)] QR^T``, then ``p -= lr*wd*p``;
* after the update the factors take this step's gradient, and every ``precondition_frequency`` steps
  each basis is refreshed by one power iteration and a QR decomposition: the columns of ``Q`` are
  reordered by the estimated eigenvalues ``diag(Q^T L Q)`` (descending), ``Q = qr(L Q)``, and ``v`` is
  permuted along that axis to follow its columns.

A dimension longer than ``max_dim`` keeps the identity basis; vectors (biases, norms) get plain Adam. The
factor EMA uses ``shampoo_beta``, which defaults to ``b2``. All of this follows the paper's Algorithm 3
and the authors' released defaults (``lr=3e-3``, ``betas=(0.95, 0.95)``, ``precondition_frequency=10``).
One deliberate difference: the authors' code runs ``eigh`` and the QR decomposition in float32 whatever
the parameters' dtype; here ``eigh`` runs in float64 and QR in the parameters' dtype (float32 at least,
which QR needs), so a float64 run is float64 throughout. That matters more than it seems: a factor of
low rank (a wide layer, a small batch) has a null space whose basis QR builds from rounding noise, and
Adam's per-coordinate normalization in that basis turns a rounding-level difference into an O(lr) one
(benchmarks/RESULTS.md: 5e-3 after 25 steps at lr 3e-3 against the reference as shipped).
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import torch
from torch import Tensor, nn

from framework.errors import check_betas, check_count, check_positive, check_unit_interval
from framework.partitions import decay_groups
from framework.problem import at_least_float32
from framework.solver import PerTensorOptimizer, Solver


def eigenbasis(factor: Tensor) -> Tensor:
    """Eigenvectors of a symmetric factor, ordered by descending eigenvalue (``eigh`` in float64). The
    authors' code adds ``1e-30 I`` first; so do we: it decides the basis of a factor's null space (a
    feature that is always zero), and with it where Adam's normalization sends later gradients."""
    eye = torch.eye(factor.shape[0], dtype=factor.dtype, device=factor.device)
    _, vectors = torch.linalg.eigh((factor + 1e-30 * eye).double())
    return vectors.flip(1).to(factor.dtype)


def rotate(x: Tensor, bases: list[Tensor | None], back: bool = False) -> Tensor:
    """``x`` turned along each dimension ``i`` by ``Q_i^T`` (by ``Q_i`` with ``back``): ``QL^T x QR`` for a
    matrix. A missing basis is the identity on its dimension. Each contraction takes the leading dimension
    and appends the result's last, so after all of them the dimensions are back in order."""
    for basis in bases:
        x = x.movedim(0, -1) if basis is None else torch.tensordot(x, basis, dims=([0], [1 if back else 0]))
    return x


def unfolded_outer(g: Tensor, axis: int) -> Tensor:
    """``G_(axis) G_(axis)^T``, with ``G_(axis)`` the gradient unfolded along ``axis`` (d x everything else)."""
    others = [d for d in range(g.ndim) if d != axis]
    return torch.tensordot(g, g, dims=(others, others))


class SOAPOptimizer(PerTensorOptimizer):
    """The SOAP update, one tensor at a time (the matrix products dominate its cost)."""

    def __init__(self, params: Iterable[Any], lr: float, betas: tuple[float, float], shampoo_beta: float,
                 eps: float, weight_decay: float, precondition_frequency: int, max_dim: int) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "shampoo_beta": shampoo_beta, "eps": eps,
                                  "weight_decay": weight_decay, "precondition_frequency": precondition_frequency,
                                  "max_dim": max_dim})

    def update(self, p: Tensor, group: dict) -> None:
        g = p.grad
        state = self.state[p]
        if not state:
            self._initialize(state, g, group)
            return
        state["step"] += 1
        t, (beta1, beta2) = state["step"], group["betas"]
        bases = state["bases"]
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m.lerp_(g, 1 - beta1)
        v.lerp_(rotate(g, bases).square(), 1 - beta2)
        direction = rotate(rotate(m, bases) / (v.sqrt() + group["eps"]), bases, back=True)
        step_size = group["lr"] * (math.sqrt(1 - beta2**t) / (1 - beta1**t))
        p.add_(direction, alpha=-step_size)
        if group["weight_decay"]:
            p.mul_(1 - group["lr"] * group["weight_decay"])
        self._accumulate(state, g, group)
        if t % group["precondition_frequency"] == 0:
            self._refresh_bases(state)

    def _initialize(self, state: dict, g: Tensor, group: dict) -> None:
        state["step"] = 0
        state["exp_avg"] = torch.zeros_like(g)
        state["exp_avg_sq"] = torch.zeros_like(g)
        sizes = g.shape if g.ndim >= 2 else [None]  # vectors: no factors, plain Adam
        state["factors"] = [g.new_zeros(n, n) if n is not None and n <= group["max_dim"] else None for n in sizes]
        self._accumulate(state, g, group)
        state["bases"] = [None if factor is None else eigenbasis(factor) for factor in state["factors"]]

    def _accumulate(self, state: dict, g: Tensor, group: dict) -> None:
        for axis, factor in enumerate(state["factors"]):
            if factor is not None:
                factor.lerp_(unfolded_outer(g, axis), 1 - group["shampoo_beta"])

    def _refresh_bases(self, state: dict) -> None:
        for axis, (factor, basis) in enumerate(zip(state["factors"], state["bases"])):
            if factor is None:
                continue
            power = factor @ basis
            order = torch.argsort((basis * power).sum(0), descending=True)
            state["bases"][axis] = torch.linalg.qr(at_least_float32(power[:, order])).Q.to(power.dtype)
            state["exp_avg_sq"] = state["exp_avg_sq"].index_select(axis, order)


class SOAP(Solver):
    """SOAP with decoupled weight decay on matrices; ``shampoo_beta: null`` uses ``betas[1]``."""

    def __init__(self, *, lr: float, betas: tuple[float, float], shampoo_beta: float | None,
                 eps: float, weight_decay: float, precondition_frequency: int,
                 max_dim: int) -> None:
        super().__init__(lr, weight_decay)
        self.betas = check_betas("optimizer.betas", betas)
        beta = self.betas[1] if shampoo_beta is None else shampoo_beta
        self.shampoo_beta = check_unit_interval("optimizer.shampoo_beta", beta)
        self.eps = check_positive("optimizer.eps", eps)
        self.precondition_frequency = check_count("optimizer.precondition_frequency", precondition_frequency)
        self.max_dim = check_count("optimizer.max_dim", max_dim)

    def build(self, model: nn.Module) -> torch.optim.Optimizer:
        return SOAPOptimizer(decay_groups(model, self.weight_decay), lr=self.lr, betas=self.betas,
                             shampoo_beta=self.shampoo_beta, eps=self.eps, weight_decay=self.weight_decay,
                             precondition_frequency=self.precondition_frequency, max_dim=self.max_dim)
