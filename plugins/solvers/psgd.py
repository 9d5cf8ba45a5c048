"""PSGD with a Kronecker-product preconditioner (Li 2015, arXiv:1512.04202; Li 2018, arXiv:1809.10232).

PSGD fits a preconditioner ``P = Q^T Q`` to pairs ``(v, h)`` of a random vector ``v ~ N(0, I)`` and the
Hessian-vector product ``h = H v``, by minimizing ``E[h^T P h + v^T P^-1 v]``, whose solution is
``P = |H|^-1``: with ``lr=1`` on a convex quadratic, PSGD becomes Newton's method. ``Q`` is a Kronecker
product with one factor per axis of the weight's matrix view (kernels as out x in*kh*kw), each factor
an upper-triangular matrix or, for a side longer than ``max_size`` or one that would be much larger
than the weight itself (``size^2 > max_skew * numel``), a diagonal. Vectors have a single factor.

The optimizer differentiates by itself: its closure returns the loss without a backward, and every
``update_every`` steps it takes the gradient with ``create_graph=True`` and one HVP. With ``A = Q h``
and ``B = Q^-T v`` applied along every axis, and ``A_i A_i^T``, ``B_i B_i^T`` contracting all axes but
``i``, each factor moves on its Lie group::

    Q_i <- Q_i - lr_preconditioner / ||A_i A_i^T + B_i B_i^T|| * triu(A_i A_i^T - B_i B_i^T) Q_i

(elementwise for a diagonal factor, normalized by the largest entry). The norm is the lower bound
``||S x||`` of the spectral norm with ``x`` the unit-length largest column of ``S`` (one power-iteration
step, as in the reference code); ``Q`` starts at ``init_scale^(1/k) * I`` for ``k`` factors, with
``init_scale: null`` meaning ``(mean v^2 / mean h^2)^(1/4)`` over the first pair, so that
``P_0 = sqrt(mean v^2 / mean h^2)``. Then momentum ``m = mu*m + (1-mu) g`` (a moving average, as in
the reference), decoupled weight decay, the preconditioned step ``p -= lr * P m``, its global norm
clipped at ``max_update_norm``. The loop's ``grad_clip`` does not apply, as with L-BFGS.

``fit: gradient`` is PSGD's gradient-whitening type: the same fit on pairs ``(v, g)`` of a random
vector and the gradient, whose solution is ``P = E[g g^T]^-1/2`` (an Adam/Shampoo-like preconditioner);
it needs no second derivative (``optimizer=psgd-whiten``).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import Tensor, nn

from framework.errors import check_count, check_positive, check_unit_interval, require
from framework.partitions import decay_groups, matrix_view
from framework.solver import Solver, StepContext


def along(x: Tensor, axis: int, fn: Callable[[Tensor], Tensor]) -> Tensor:
    """Apply ``fn`` to the (size x rest) unfolding of ``x`` along ``axis`` and fold the result back."""
    moved = x.movedim(axis, 0)
    return fn(moved.reshape(moved.shape[0], -1)).reshape(moved.shape).movedim(0, axis)


def unfold(x: Tensor, axis: int) -> Tensor:
    return x.movedim(axis, 0).reshape(x.shape[axis], -1)


def multiply(x: Tensor, factors: list[Tensor], transpose: bool = False) -> Tensor:
    """``Q x`` (or ``Q^T x``) for the Kronecker product ``Q`` of ``factors``, one per axis of ``x``."""
    for axis, q in enumerate(factors):
        matrix = q.T if transpose and q.ndim == 2 else q
        x = along(x, axis, lambda y: matrix @ y if q.ndim == 2 else q[:, None] * y)
    return x


def solve_transposed(x: Tensor, factors: list[Tensor]) -> Tensor:
    """``Q^-T x``: triangular solves, no inverse is ever formed."""
    for axis, q in enumerate(factors):
        x = along(x, axis, lambda y: torch.linalg.solve_triangular(q.T, y, upper=False) if q.ndim == 2
                  else y / q[:, None])
    return x


def precondition(g: Tensor, factors: list[Tensor]) -> Tensor:
    """``P g = Q^T Q g``."""
    return multiply(multiply(g, factors), factors, transpose=True)


def spectral_norm_lower_bound(s: Tensor) -> Tensor:
    """``||S x||`` for ``x`` the normalized column of ``S`` with the largest norm (never above ``||S||_2``)."""
    column = s[:, s.norm(dim=0).argmax()]
    return (s @ (column / column.norm())).norm()


def fit_factors(factors: list[Tensor], v: Tensor, h: Tensor, lr: float) -> None:
    """One step of every factor towards ``P = |H|^-1`` on the pair ``(v, h = H v)``, in place."""
    a, b = multiply(h, factors), solve_transposed(v, factors)
    tiny = torch.finfo(v.dtype).tiny
    for axis, q in enumerate(factors):
        ya, yb = unfold(a, axis), unfold(b, axis)
        if q.ndim == 2:
            term1, term2 = ya @ ya.T, yb @ yb.T
            scale = lr / spectral_norm_lower_bound(term1 + term2).clamp_min(tiny)
            q.sub_(scale * torch.triu(term1 - term2) @ q)
        else:
            term1, term2 = ya.square().sum(1), yb.square().sum(1)
            scale = lr / (term1 + term2).abs().max().clamp_min(tiny)
            q.sub_(scale * (term1 - term2) * q)


class KronPSGDOptimizer(torch.optim.Optimizer):
    """PSGD Kron (Newton type); ``step`` needs a closure that returns the loss and does not backward."""

    def __init__(self, params: Iterable[Any], lr: float, lr_preconditioner: float, momentum: float,
                 weight_decay: float, init_scale: float | None, max_size: int, max_skew: float,
                 update_every: int, max_update_norm: float | None, fit: str = "hessian") -> None:
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay})
        self.settings = {"lr_preconditioner": lr_preconditioner, "init_scale": init_scale, "max_size": max_size,
                         "max_skew": max_skew, "update_every": update_every, "max_update_norm": max_update_norm,
                         "fit": fit}

    def _params(self) -> list[Tensor]:
        return [p for group in self.param_groups for p in group["params"] if p.requires_grad]

    def fit_due(self) -> bool:
        """Whether the next step fits the preconditioner."""
        return self.state[self._params()[0]].get("step", 0) % self.settings["update_every"] == 0

    def differentiates_twice(self) -> bool:
        """Whether the next step takes a Hessian-vector product (a due fit to the Hessian)."""
        return self.settings["fit"] == "hessian" and self.fit_due()

    def _factors(self, p: Tensor, scale: float) -> list[Tensor]:
        shape = matrix_view(p).shape
        numel = math.prod(shape)
        per_factor = scale ** (1 / len(shape))
        factors = []
        for size in shape:
            dense = 1 < size <= self.settings["max_size"] and size * size <= self.settings["max_skew"] * numel
            factors.append(per_factor * (torch.eye(size, dtype=p.dtype, device=p.device) if dense
                                         else torch.ones(size, dtype=p.dtype, device=p.device)))
        return factors

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor:
        if closure is None:
            raise ValueError("PSGD needs a closure that returns the loss (without calling backward)")
        params = self._params()
        fit, hessian = self.fit_due(), self.differentiates_twice()
        with torch.enable_grad():
            loss = closure()
            grads = torch.autograd.grad(loss, params, create_graph=hessian)
            vectors = [torch.randn_like(p) for p in params] if fit else []
            if hessian:
                products = torch.autograd.grad(grads, params, grad_outputs=vectors)
        grads = [g.detach() for g in grads]
        if fit:
            self._fit(params, vectors, products if hessian else grads)
        self._update(grads)
        return loss.detach()

    def _fit(self, params: list[Tensor], vectors: list[Tensor], products: Sequence[Tensor]) -> None:
        scale = self.settings["init_scale"]
        if scale is None:
            v2 = sum(v.square().sum() for v in vectors) / sum(v.numel() for v in vectors)
            h2 = sum(h.square().sum() for h in products) / sum(h.numel() for h in products)
            scale = float((v2 / h2.clamp_min(torch.finfo(h2.dtype).tiny)) ** 0.25)
        for p, v, h in zip(params, vectors, products):
            state = self.state[p]
            if "factors" not in state:
                state["factors"] = self._factors(p, scale)
            fit_factors(state["factors"], matrix_view(v), matrix_view(h), self.settings["lr_preconditioner"])

    def _update(self, grads: list[Tensor]) -> None:
        trained = [(p, group) for group in self.param_groups for p in group["params"] if p.requires_grad]
        steps = []
        for (p, group), g in zip(trained, grads):
            state = self.state[p]
            state["step"] = state.get("step", 0) + 1
            if group["momentum"]:
                g = state.setdefault("momentum", torch.zeros_like(g)).lerp_(g, 1 - group["momentum"])
            steps.append(precondition(matrix_view(g), state["factors"]).view_as(p))
        limit = self.settings["max_update_norm"]
        if limit is not None:
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(s) for s in steps]))
            torch._foreach_mul_(steps, (limit / norm).clamp(max=1.0))
        for (p, group), step in zip(trained, steps):
            if group["weight_decay"]:
                p.mul_(1 - group["lr"] * group["weight_decay"])
            p.add_(step, alpha=-group["lr"])


class PSGD(Solver):
    """PSGD Kron. ``fit: hessian`` (Newton type) takes the gradient with ``create_graph`` and one HVP every
    ``update_every`` steps; ``fit: gradient`` (gradient whitening) fits to the gradient, with no HVP."""

    def __init__(self, *, lr: float, lr_preconditioner: float, momentum: float,
                 weight_decay: float, init_scale: float | None, max_size: int,
                 max_skew: float, update_every: int, max_update_norm: float | None,
                 fit: str) -> None:
        super().__init__(lr, weight_decay)
        require(fit in ("hessian", "gradient"), "optimizer.fit", fit, "must be 'hessian' or 'gradient'")
        self.fit = fit
        require(isinstance(lr_preconditioner, (int, float)) and 0 < lr_preconditioner < 1,
                "optimizer.lr_preconditioner", lr_preconditioner, "must be in (0, 1)")
        self.lr_preconditioner = float(lr_preconditioner)
        self.momentum = check_unit_interval("optimizer.momentum", momentum)
        self.init_scale = None if init_scale is None else check_positive("optimizer.init_scale", init_scale)
        self.max_size = check_count("optimizer.max_size", max_size)
        self.max_skew = check_positive("optimizer.max_skew", max_skew)
        self.update_every = check_count("optimizer.update_every", update_every)
        self.max_update_norm = None if max_update_norm is None else check_positive(
            "optimizer.max_update_norm", max_update_norm)

    def build(self, model: nn.Module) -> torch.optim.Optimizer:
        return KronPSGDOptimizer(decay_groups(model, self.weight_decay), lr=self.lr,
                                 lr_preconditioner=self.lr_preconditioner, momentum=self.momentum,
                                 weight_decay=self.weight_decay, init_scale=self.init_scale, max_size=self.max_size,
                                 max_skew=self.max_skew, update_every=self.update_every,
                                 max_update_norm=self.max_update_norm, fit=self.fit)

    def step(self, ctx: StepContext) -> Tensor:
        with ctx.loss_closure(differentiable_twice=self.optimizer.differentiates_twice()) as closure:
            return ctx.optimizer_step(closure)
