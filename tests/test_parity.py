"""Each solver's update against the paper's formula written out per tensor, in float64."""

from __future__ import annotations

import torch

from plugins.solvers.lion import LionOptimizer
from plugins.solvers.sophiah import SophiaHOptimizer

SHAPES = [(4, 3), (3,), (2, 2, 3, 3)]


def _sequence(steps: int, seed: int) -> list[list[torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(s, dtype=torch.float64, generator=g) for s in SHAPES] for _ in range(steps)]


def _run(optimizer_cls, settings, grads_seq, after_step=None):
    params = [p.clone().requires_grad_() for p in _sequence(1, 99)[0]]
    opt = optimizer_cls(params, **settings)
    for t, grads in enumerate(grads_seq):
        for p, g in zip(params, grads):
            p.grad = g.clone()
        opt.step()
        if after_step:
            after_step(opt, params, t)
    return [p.detach() for p in params]


def _assert_close(got, want):
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-12)


def test_lion_matches_the_paper():
    """Chen et al. 2023, Program 1: update = sign(b1*m + (1-b1)*g); p -= lr*(update + wd*p); m = b2*m + (1-b2)*g."""
    lr, b1, b2, wd = 0.01, 0.9, 0.99, 0.5
    grads_seq = _sequence(6, 1)
    got = _run(LionOptimizer, dict(lr=lr, betas=(b1, b2), weight_decay=wd), grads_seq)
    params = _sequence(1, 99)[0]
    m = [torch.zeros_like(p) for p in params]
    for grads in grads_seq:
        for i, (p, g) in enumerate(zip(params, grads)):
            update = torch.sign(b1 * m[i] + (1 - b1) * g)
            params[i] = p - lr * (update + wd * p)
            m[i] = b2 * m[i] + (1 - b2) * g
    _assert_close(got, params)


def test_sophiah_matches_the_paper():
    """Liu et al. 2023, Algorithm 3 with the Hutchinson estimator: h EMA of z*Hz every k steps,
    p -= lr * clip(m / max(rho*h, eps), 1) after decoupled weight decay."""
    lr, b1, b2, rho, wd, eps, k = 0.05, 0.9, 0.95, 0.04, 0.1, 1e-12, 2
    grads_seq, estimates = _sequence(7, 2), _sequence(7, 3)  # estimates of both signs

    def fold(opt, params, t):
        if t % k == k - 1:
            opt.update_hessian_estimate(params, estimates[t])

    got = _run(SophiaHOptimizer, dict(lr=lr, betas=(b1, b2), rho=rho, weight_decay=wd, eps=eps), grads_seq, fold)
    params = _sequence(1, 99)[0]
    m = [torch.zeros_like(p) for p in params]
    h = [torch.zeros_like(p) for p in params]
    for t, grads in enumerate(grads_seq):
        for i, g in enumerate(grads):
            params[i] = params[i] * (1 - lr * wd)
            m[i] = b1 * m[i] + (1 - b1) * g
            params[i] = params[i] - lr * torch.clamp(m[i] / torch.clamp(rho * h[i], min=eps), -1, 1)
        if t % k == k - 1:
            h = [b2 * h[i] + (1 - b2) * estimates[t][i] for i in range(len(h))]
    _assert_close(got, params)
