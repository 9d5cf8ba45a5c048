"""PSGD with a Kronecker-product preconditioner (Li 2015, arXiv:1512.04202; Li 2018, arXiv:1809.10232),
as the author's ``Kron`` class in ``psgd-torch`` 0.6.1 computes it.

PSGD fits a preconditioner ``P = Q^T Q`` to pairs ``(v, h)`` of a random vector ``v ~ N(0, I)`` and the
Hessian-vector product ``h = H v``, by minimizing ``E[h^T P h + v^T P^-1 v]``, whose solution is
``P = |H|^-1``: with ``lr=1`` on a convex quadratic, PSGD becomes Newton's method. ``Q`` is a Kronecker
product with one factor per dimension of the parameter (a conv kernel has four), each an upper-triangular
matrix or, for a side of 1, one longer than ``max_size`` or one more than ``max_skew`` times the second
longest side, a diagonal.

The optimizer differentiates by itself: its closure returns the loss without a backward, and when a fit
is due it takes the gradient with ``create_graph=True`` and one HVP. With ``A = Q h`` and ``B = Q^-T v``
applied along every dimension, and ``A_i A_i^T``, ``B_i B_i^T`` contracting all dimensions but ``i``,
each factor moves on its Lie group::

    Q_i <- Q_i - lr_preconditioner / ||A_i A_i^T + B_i B_i^T|| * triu(A_i A_i^T - B_i B_i^T) Q_i

(elementwise for a diagonal factor, normalized by the largest entry: the reference's "2nd" step
normalizer). The norm is the reference's lower bound of the spectral norm: two multiplications of the
matrix starting from its longest column. A parameter's ``Q`` starts at ``init_scale^(1/d)``
times the identity for ``d`` dimensions, with ``init_scale: null`` meaning ``(v^T v / h^T h)^(1/4)`` of
that parameter's first pair (for the whitening type ``(numel / g^T g)^(1/4)``). With probability 0.01 per
fit, the factors of a tensor with several are rescaled to their geometric mean (the reference's balancing
of their dynamic range). Then momentum ``m = mu*m + (1-mu) g`` (a moving average), decoupled weight decay
(none in the reference, none by default), the step ``p -= lr * P m``, with the global norm of ``P m``
clipped at ``max_update_norm``. The loop's ``grad_clip`` does not apply, as with L-BFGS.

A fit is due on every ``update_every``-th step (this project's schedule, as Sophia's ``k``), there with
probability ``update_probability`` (the reference's schedule, drawn from torch's generator at every step
as the reference draws it); the first step always fits. With both at 1 and the same random stream, the
parameters match the reference's to rounding (tests/test_reference_parity.py). Those draws are float32
whatever the default dtype, as the reference's are in a float32 program (a float64 draw consumes the
generator differently).

``fit: gradient`` is PSGD's gradient-whitening type: the same fit on pairs ``(v, g)`` of a random
vector and the gradient, whose solution is ``P = E[g g^T]^-1/2`` (an Adam/Shampoo-like preconditioner);
it needs no second derivative (``optimizer=psgd-whiten``).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import Tensor, nn

from framework.errors import check_count, check_positive, check_unit_interval, is_number, require
from framework.partitions import decay_groups
from framework.solver import Solver, StepContext

#: the reference's chance, per fit, of rescaling a tensor's factors to their geometric mean
BALANCE_PROBABILITY = 0.01


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
    """A lower bound of ``||S||_2``: from the longest column ``c`` (or row), ``||S^T S c|| / ||S^T c||`` (or
    the same on ``S^T``), computed on ``S`` scaled to a largest entry of 1 against under- and overflow.
    This is the reference's bound, which Li measured within ``sqrt(2)`` of the norm on random matrices;
    the column/row choice is the reference's too, so that near-ties break the same way."""
    largest = s.abs().max()
    if largest == 0:
        return largest
    unit = s / largest
    squares = unit * unit
    column, i = squares.sum(0).max(0)
    row, j = squares.sum(1).max(0)
    if column > row:
        x = unit[:, i] @ unit
        return largest * torch.linalg.vector_norm((x / torch.linalg.vector_norm(x)) @ unit.T)
    x = unit @ unit[j]
    return largest * torch.linalg.vector_norm(unit.T @ (x / torch.linalg.vector_norm(x)))


def balance(factors: list[Tensor]) -> None:
    """Rescale the factors to the geometric mean of their largest entries, in place (``Q`` unchanged)."""
    largest = torch.stack([q.abs().max() for q in factors])
    mean = largest.prod() ** (1 / len(factors))
    for q, top in zip(factors, largest):
        q.mul_(mean / top)


def fit_factors(factors: list[Tensor], v: Tensor, h: Tensor, lr: float) -> None:
    """One step of every factor towards ``P = |H|^-1`` on the pair ``(v, h = H v)``, in place."""
    if len(factors) > 1 and torch.rand([], dtype=torch.float32) < BALANCE_PROBABILITY:
        balance(factors)
    a, b = multiply(h, factors), solve_transposed(v, factors)
    tiny = torch.finfo(v.dtype).tiny
    for axis, q in enumerate(factors):
        ya, yb = unfold(a, axis), unfold(b, axis)
        if q.ndim == 2:
            term1, term2 = ya @ ya.T, yb @ yb.T
            q.sub_(lr / (spectral_norm_lower_bound(term1 + term2) + tiny) * torch.triu(term1 - term2) @ q)
        else:
            term1, term2 = ya.square().sum(1), yb.square().sum(1)
            q.sub_(lr / ((term1 + term2).abs().max() + tiny) * (term1 - term2) * q)


def tensor_shape(p: Tensor) -> tuple[int, ...]:
    """The shape the factors follow: the parameter's own, a scalar as one entry."""
    return tuple(p.shape) if p.ndim else (1,)


def initial_factors(p: Tensor, scale: Tensor | float, max_size: float, max_skew: float) -> list[Tensor]:
    """``scale * I`` as one factor per dimension of ``p`` (a scalar has one of size 1): triangular, or
    diagonal for a side of 1, above ``max_size``, or above ``max_skew`` times the second longest side."""
    shape = tensor_shape(p)
    second = sorted(shape)[-2] if len(shape) > 1 else 1
    per_factor = scale ** (1 / len(shape))
    return [per_factor * (torch.ones(n, dtype=p.dtype, device=p.device)
                          if n == 1 or n > max_size or n > max_skew * second
                          else torch.eye(n, dtype=p.dtype, device=p.device)) for n in shape]


class KronPSGDOptimizer(torch.optim.Optimizer):
    """PSGD Kron (Newton type); ``step`` needs a closure that returns the loss and does not backward."""

    def __init__(self, params: Iterable[Any], lr: float, lr_preconditioner: float, momentum: float,
                 weight_decay: float, init_scale: float | None, max_size: float, max_skew: float,
                 update_every: int, update_probability: float, max_update_norm: float | None,
                 fit: str = "hessian") -> None:
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay})
        self.settings = {"lr_preconditioner": lr_preconditioner, "init_scale": init_scale, "max_size": max_size,
                         "max_skew": max_skew, "update_every": update_every,
                         "update_probability": update_probability, "max_update_norm": max_update_norm, "fit": fit}
        self._fit_now: bool | None = None  # this step's draw, made once

    def _params(self) -> list[Tensor]:
        return [p for group in self.param_groups for p in group["params"] if p.requires_grad]

    def _draw_fit(self) -> bool:
        """Whether this step fits the preconditioner: the reference's draw, made every step, on every
        ``update_every``-th step; always on the first."""
        if self._fit_now is None:
            state = self.state[self._params()[0]]
            drawn = bool(torch.rand([], dtype=torch.float32) < self.settings["update_probability"])
            self._fit_now = "factors" not in state or (
                drawn and state["step"] % self.settings["update_every"] == 0)
        return self._fit_now

    def differentiates_twice(self) -> bool:
        """Whether this step takes a Hessian-vector product (a due fit to the Hessian); call before the
        closure, as the reference draws the fit before evaluating it."""
        return self.settings["fit"] == "hessian" and self._draw_fit()

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor:
        if closure is None:
            raise ValueError("PSGD needs a closure that returns the loss (without calling backward)")
        params = self._params()
        hessian = self.differentiates_twice()
        with torch.enable_grad():
            loss = closure()
            grads = torch.autograd.grad(loss, params, create_graph=hessian)
            if hessian:
                vectors = [torch.randn_like(p) for p in params]
                products = torch.autograd.grad(grads, params, grad_outputs=vectors)
        grads = [g.detach() for g in grads]
        if hessian:
            self._fit(params, vectors, products)
        elif self.settings["fit"] == "gradient" and self._draw_fit():
            self._fit(params, None, grads)
        self._fit_now = None
        self._update(grads)
        return loss.detach()

    def _fit(self, params: list[Tensor], vectors: list[Tensor] | None, products: Sequence[Tensor]) -> None:
        """Fit each parameter's factors to its pair, creating them on the first fit; ``vectors`` None: the
        whitening type's, drawn here (creating factors draws nothing, so the random stream is the
        reference's, which creates all factors first)."""
        tiny = torch.finfo(products[0].dtype).tiny
        for i, (p, h) in enumerate(zip(params, products)):
            state = self.state[p]
            if "factors" not in state:
                scale = self.settings["init_scale"]
                if scale is None:
                    top = vectors[i].square().sum() if vectors is not None else h.numel()
                    scale = (top / h.square().sum().clamp_min(tiny)) ** 0.25
                state["factors"] = initial_factors(p, scale, self.settings["max_size"], self.settings["max_skew"])
            v = vectors[i] if vectors is not None else torch.randn_like(h)
            fit_factors(state["factors"], v.reshape(tensor_shape(p)), h.reshape(tensor_shape(p)),
                        self.settings["lr_preconditioner"])

    def _update(self, grads: list[Tensor]) -> None:
        trained = [(p, group) for group in self.param_groups for p in group["params"] if p.requires_grad]
        steps = []
        for (p, group), g in zip(trained, grads):
            state = self.state[p]
            state["step"] = state.get("step", 0) + 1
            if group["momentum"]:
                g = state.setdefault("momentum", torch.zeros_like(g)).lerp_(g, 1 - group["momentum"])
            steps.append(precondition(g.reshape(tensor_shape(p)), state["factors"]).view_as(p))
        limit = self.settings["max_update_norm"]
        if limit is not None:
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(s) for s in steps]))
            torch._foreach_mul_(steps, (limit / norm).clamp(max=1.0))
        for (p, group), step in zip(trained, steps):
            if group["weight_decay"]:
                p.mul_(1 - group["lr"] * group["weight_decay"])
            p.add_(step, alpha=-group["lr"])


class PSGD(Solver):
    """PSGD Kron. ``fit: hessian`` (Newton type) takes the gradient with ``create_graph`` and one HVP when a
    fit is due; ``fit: gradient`` (gradient whitening) fits to the gradient, with no HVP."""

    def __init__(self, *, lr: float, lr_preconditioner: float, momentum: float,
                 weight_decay: float, init_scale: float | None, max_size: int | None,
                 max_skew: float, update_every: int, update_probability: float,
                 max_update_norm: float | None, fit: str) -> None:
        super().__init__(lr, weight_decay)
        require(fit in ("hessian", "gradient"), "optimizer.fit", fit, "must be 'hessian' or 'gradient'")
        self.fit = fit
        require(isinstance(lr_preconditioner, (int, float)) and 0 < lr_preconditioner < 1,
                "optimizer.lr_preconditioner", lr_preconditioner, "must be in (0, 1)")
        self.lr_preconditioner = float(lr_preconditioner)
        self.momentum = check_unit_interval("optimizer.momentum", momentum)
        self.init_scale = None if init_scale is None else check_positive("optimizer.init_scale", init_scale)
        self.max_size = math.inf if max_size is None else check_count("optimizer.max_size", max_size)
        self.max_skew = check_positive("optimizer.max_skew", max_skew)
        self.update_every = check_count("optimizer.update_every", update_every)
        require(is_number(update_probability) and 0 < update_probability <= 1, "optimizer.update_probability",
                update_probability, "must be in (0, 1]")
        self.update_probability = float(update_probability)
        self.max_update_norm = None if max_update_norm is None else check_positive(
            "optimizer.max_update_norm", max_update_norm)

    def build(self, model: nn.Module) -> torch.optim.Optimizer:
        return KronPSGDOptimizer(decay_groups(model, self.weight_decay), lr=self.lr,
                                 lr_preconditioner=self.lr_preconditioner, momentum=self.momentum,
                                 weight_decay=self.weight_decay, init_scale=self.init_scale, max_size=self.max_size,
                                 max_skew=self.max_skew, update_every=self.update_every,
                                 update_probability=self.update_probability, max_update_norm=self.max_update_norm,
                                 fit=self.fit)

    def step(self, ctx: StepContext) -> Tensor:
        return ctx.optimizer_step(ctx.loss_closure(differentiable_twice=self.optimizer.differentiates_twice()))
