"""Behaviour on convex problems: Newton converges quadratically, Newton and L-BFGS reach the optimum,
PSGD recovers Newton's preconditioner."""

from __future__ import annotations

import math

import pytorch_lightning as pl
import torch

from conftest import compose
from framework.runner import execute, prepare

# one Lightning batch per step (fuse_steps=1): GradientNorms reads the gradient after every step
FULL_BATCH_F64 = ["model=logreg", "model.batch_size=null", "backend=cpu", "backend.precision=64-true", "fuse_steps=1"]


class GradientNorms(pl.Callback):
    """The full-batch gradient norm of the training loss after every step (and before the first)."""

    def __init__(self) -> None:
        self.norms: list[float] = []

    def _record(self, module: pl.LightningModule) -> None:
        problem = module.problem
        with torch.enable_grad():
            x, y = problem.x_train.to(torch.float64), problem.y_train
            loss = problem.forward(module.model, (x, y)).loss
            grads = torch.autograd.grad(loss, list(module.model.parameters()))
        self.norms.append(torch.cat([g.reshape(-1) for g in grads]).norm().item())

    def on_train_start(self, trainer, module):
        self._record(module)

    def on_train_batch_end(self, trainer, module, *args):
        self._record(module)


def _norms(run_dir, *overrides) -> list[float]:
    r = prepare(compose(*FULL_BATCH_F64, *overrides), run_dir)
    recorder = GradientNorms()
    r.trainer.callbacks.append(recorder)
    execute(r)
    assert next(r.problem.model.parameters()).dtype == torch.float64
    return recorder.norms


def test_newton_converges_quadratically_to_the_optimum(run_dir):
    norms = _norms(run_dir, "optimizer=newton", "trainer.max_steps=10")
    print("Newton gradient norms:", " ".join(f"{n:.2e}" for n in norms))
    assert norms[-1] < 1e-8
    # quadratic phase: e_{k+1} = C e_k^2 with a steady C (linear convergence would make C blow up)
    constants = [b / a**2 for a, b in zip(norms, norms[1:]) if a < 1e-2 and b > 1e-15]
    print("e_{k+1} / e_k^2:", " ".join(f"{c:.1f}" for c in constants))
    assert len(constants) >= 3 and max(constants) < 3 * min(constants), constants


def test_lbfgs_reaches_the_optimum(run_dir):
    # torch's stopping rule on the change of the loss would stop it near 1e-7 in float64: switched off
    norms = _norms(run_dir, "optimizer=lbfgs", "optimizer.tolerance_change=1e-30", "trainer.max_steps=15")
    assert norms[-1] < 1e-8, norms


def test_newton_with_lazy_hessian_counts_its_hvps(run_dir):
    r = prepare(compose(*FULL_BATCH_F64, "optimizer=newton", "optimizer.reuse=3", "trainer.max_steps=7"), run_dir)
    summary = execute(r)
    n = r.problem.num_parameters()
    assert summary["costs"]["hvp"] == 3 * n  # Hessians at steps 0, 3, 6
    assert summary["costs"]["graph_backward"] == 3


def test_newton_refuses_a_hessian_that_does_not_fit(run_dir):
    from framework.errors import ConfigError

    r = prepare(compose("optimizer=newton", "model=mlp", "optimizer.max_hessian_mb=100"), run_dir)
    try:
        r.solver.build(r.problem.model)
    except ConfigError as error:
        assert "26,122 parameters needs 2,603 MB" in str(error)
    else:
        raise AssertionError("a 2.6 GB Hessian was accepted under a 100 MB limit")


def test_psgd_learns_the_inverse_hessian_and_beats_gradient_descent():
    """On 1/2 w^T H w + b^T w with a Kronecker-structured H = A (x) B of condition number 900, PSGD
    (lr=1, no momentum) fits P towards H^-1 from HVPs alone and reaches the minimum to 1e-10 in 200
    steps; gradient descent with its best fixed step contracts the error by (k-1)/(k+1) = 0.998 per
    step, which would leave 64% of it."""
    from plugins.solvers.psgd import KronPSGDOptimizer, precondition

    torch.manual_seed(0)

    def spd(n: int, cond: float) -> torch.Tensor:
        q, _ = torch.linalg.qr(torch.randn(n, n, dtype=torch.float64))
        return q @ torch.diag(torch.logspace(0, math.log10(cond), n, dtype=torch.float64)) @ q.T

    hessian = torch.kron(spd(3, 30), spd(4, 30))
    b = torch.randn(12, dtype=torch.float64)
    optimum = -torch.linalg.solve(hessian, b)
    w = torch.zeros(3, 4, dtype=torch.float64, requires_grad=True)
    opt = KronPSGDOptimizer([w], lr=1.0, lr_preconditioner=0.1, momentum=0.0, weight_decay=0.0, init_scale=None,
                            max_size=100, max_skew=float("inf"), update_every=1, update_probability=1.0,
                            max_update_norm=None)

    def fit_error() -> float:
        basis = torch.eye(12, dtype=torch.float64)
        p = torch.stack([precondition(e.view(3, 4), opt.state[w]["factors"]).reshape(-1) for e in basis], 1)
        return ((p @ hessian - basis).norm() / 12**0.5).item()

    start = optimum.norm().item()
    opt.step(lambda: 0.5 * w.reshape(-1) @ hessian @ w.reshape(-1) + b @ w.reshape(-1))
    first_fit = fit_error()
    for _ in range(199):
        opt.step(lambda: 0.5 * w.reshape(-1) @ hessian @ w.reshape(-1) + b @ w.reshape(-1))
    error = (w.detach().reshape(-1) - optimum).norm().item()
    print(f"PSGD: |w - w*| from {start:.3g} to {error:.3g}; |PH - I| from {first_fit:.3g} to {fit_error():.3g}")
    assert error < 1e-10 * start
    assert ((900 - 1) / (900 + 1)) ** 200 > 0.6
    assert fit_error() < 0.2 * first_fit
