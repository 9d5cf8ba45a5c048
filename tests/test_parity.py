"""Each solver's update against the paper's formula written out per tensor, in float64."""

from __future__ import annotations

import numpy as np
import pytest
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


def _newton_schulz_reference(g, steps=5):
    """Jordan et al. 2024: X = G/|G|_F (wide orientation), X <- aX + (bA + cA^2)X, A = XX^T."""
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g / g.norm()
    tall = x.shape[0] > x.shape[1]
    x = x.T if tall else x
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if tall else x


def test_muon_matches_the_reference_in_float64():
    from plugins.solvers.muon import MuonOptimizer

    lr, mu, wd, alr, (b1, b2), eps = 0.02, 0.95, 0.1, 0.003, (0.9, 0.95), 1e-8
    g = torch.Generator().manual_seed(5)
    start = [torch.randn(6, 4, dtype=torch.float64, generator=g), torch.randn(4, dtype=torch.float64, generator=g)]
    grads_seq = [[torch.randn_like(p) for p in start] for _ in range(4)]
    params = [p.clone().requires_grad_() for p in start]
    opt = MuonOptimizer([{"params": [params[0]], "use_muon": True, "lr": lr, "weight_decay": wd},
                         {"params": [params[1]], "use_muon": False, "lr": alr, "betas": (b1, b2), "eps": eps,
                          "weight_decay": 0.0}], momentum=mu, nesterov=True, ns_steps=5, ns_dtype="float64")
    for grads in grads_seq:
        for p, grad in zip(params, grads):
            p.grad = grad.clone()
        opt.step()
    w, v = start[0].clone(), start[1].clone()
    buf, m, s = torch.zeros_like(w), torch.zeros_like(v), torch.zeros_like(v)
    for t, (gw, gv) in enumerate(grads_seq, start=1):
        buf = mu * buf + (1 - mu) * gw
        update = _newton_schulz_reference((1 - mu) * gw + mu * buf)  # Nesterov
        w = w * (1 - lr * wd) - lr * max(1.0, 6 / 4) ** 0.5 * update
        m, s = b1 * m + (1 - b1) * gv, b2 * s + (1 - b2) * gv * gv
        v = v - alr * (m / (1 - b1**t)) / ((s / (1 - b2**t)).sqrt() + eps)
    _assert_close([p.detach() for p in params], [w, v])


def test_newton_schulz_orthogonalizes():
    from plugins.solvers.muon import newton_schulz

    x = newton_schulz(torch.randn(32, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))
    singular_values = torch.linalg.svdvals(x)
    # the quintic iteration trades exactness for speed: singular values land in about [0.7, 1.2]
    assert singular_values.min() > 0.6 and singular_values.max() < 1.25


def test_shampoo_matches_the_paper_in_float64():
    """Gupta et al. 2018, Algorithm 1: L += GG^T, R += G^TG from eps*I; W -= lr L^-1/4 G R^-1/4;
    a vector: L += gg^T, w -= lr L^-1/2 g. Roots by scipy's fractional_matrix_power, not eigh."""
    from scipy.linalg import fractional_matrix_power as power

    from plugins.solvers.shampoo import ShampooOptimizer

    lr, eps = 0.1, 1e-3
    grads_seq = _sequence(5, 4)
    got = _run(ShampooOptimizer, dict(lr=lr, eps=eps, root_every=1, max_dim=1000), grads_seq)
    params = [p.numpy().copy() for p in _sequence(1, 99)[0]]
    factors = {}
    for grads in grads_seq:
        for i, g in enumerate(grads):
            if g.ndim == 1:
                left = factors.setdefault((i, "L"), eps * np.eye(len(g)))
                left += np.outer(g, g)
                params[i] = params[i] - lr * power(left, -0.5) @ g.numpy()
                continue
            m = g.reshape(g.shape[0], -1).numpy()
            left = factors.setdefault((i, "L"), eps * np.eye(m.shape[0]))
            right = factors.setdefault((i, "R"), eps * np.eye(m.shape[1]))
            left += m @ m.T
            right += m.T @ m
            update = power(left, -0.25) @ m @ power(right, -0.25)
            params[i] = params[i] - lr * update.real.reshape(g.shape)
    _assert_close(got, [torch.from_numpy(np.asarray(p)) for p in params])


def test_adahessian_matches_the_paper_in_float64():
    """Yao et al. 2021, Algorithm 1 with decoupled weight decay: m EMA of g, v EMA of D*D,
    p -= lr * (m_hat / (sqrt(v_hat)^k + eps) + wd * p), bias corrections over steps and Hessian updates."""
    from plugins.solvers.adahessian import AdaHessianOptimizer

    lr, b1, b2, eps, wd, power, every = 0.1, 0.9, 0.99, 1e-4, 0.01, 0.5, 2
    grads_seq, diagonals = _sequence(6, 6), [[d.abs() for d in ds] for ds in _sequence(6, 7)]

    # the solver folds a new estimate before the step that uses it
    params = [p.clone().requires_grad_() for p in _sequence(1, 99)[0]]
    opt = AdaHessianOptimizer(params, lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd, hessian_power=power)
    for t, grads in enumerate(grads_seq):
        if t % every == 0:
            opt.update_hessian(params, diagonals[t])
        for p, g in zip(params, grads):
            p.grad = g.clone()
        opt.step()
    want = _sequence(1, 99)[0]
    m = [torch.zeros_like(p) for p in want]
    v = [torch.zeros_like(p) for p in want]
    hessian_updates = 0
    for t, grads in enumerate(grads_seq, start=1):
        if (t - 1) % every == 0:
            hessian_updates += 1
            v = [b2 * v[i] + (1 - b2) * diagonals[t - 1][i] ** 2 for i in range(len(v))]
        for i, g in enumerate(grads):
            m[i] = b1 * m[i] + (1 - b1) * g
            m_hat, v_hat = m[i] / (1 - b1**t), v[i] / (1 - b2**hessian_updates)
            want[i] = want[i] - lr * (m_hat / (v_hat.sqrt() ** power + eps) + wd * want[i])
    _assert_close([p.detach() for p in params], want)


def _explicit_ggn(model, x, likelihood):
    """J^T H_L J built from the full Jacobian and the loss Hessian in the outputs, in float64."""
    from torch.func import functional_call

    names = [n for n, _ in model.named_parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    sizes = [p.numel() for p in model.parameters()]
    shapes = [p.shape for p in model.parameters()]

    def outputs_of(theta):
        pieces = {n: t.view(s) for n, t, s in zip(names, theta.split(sizes), shapes)}
        return functional_call(model, pieces, (x,)).reshape(-1)

    z = outputs_of(flat)
    jacobian = torch.autograd.functional.jacobian(outputs_of, flat)
    if likelihood == "categorical":
        p = torch.softmax(z.view(len(x), -1), dim=-1)
        blocks = [torch.diag(row) - torch.outer(row, row) for row in p]
        loss_hessian = torch.block_diag(*blocks) / len(x)
    else:
        p = torch.sigmoid(z)
        loss_hessian = torch.diag(p * (1 - p)) / len(z)
    return jacobian.T @ loss_hessian @ jacobian


def test_ggn_vector_product_matches_the_explicit_matrix():
    from plugins.solvers.gauss_newton import ggn_vector_product

    torch.manual_seed(0)
    for likelihood, outputs in (("categorical", 3), ("bernoulli", 1)):
        model = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, outputs)).double()
        x = torch.randn(7, 4, dtype=torch.float64)
        z = model(x).squeeze(-1) if likelihood == "bernoulli" else model(x)
        product = ggn_vector_product(z, list(model.parameters()), likelihood)
        ggn = _explicit_ggn(model, x, likelihood)
        for _ in range(3):
            v = torch.randn(len(ggn), dtype=torch.float64)
            torch.testing.assert_close(product(v), ggn @ v, rtol=1e-6, atol=1e-12)


def test_conjugate_gradient_solves_in_n_steps():
    from plugins.solvers.gauss_newton import conjugate_gradient

    a = torch.randn(6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    spd = a @ a.T + 0.1 * torch.eye(6, dtype=torch.float64)
    b = torch.randn(6, dtype=torch.float64)
    torch.testing.assert_close(conjugate_gradient(lambda v: spd @ v, b, iters=6, tol=0.0),
                               torch.linalg.solve(spd, b), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("max_dim", [4, 3])
def test_soap_matches_the_paper_in_float64(max_dim):
    """Vyas et al. 2024, Algorithm 3 with numpy's eigh and QR, written with explicit Kronecker products: the
    first step only builds the bases; then Adam on the rotated gradient ``(Q_1 x ... x Q_N)^T vec(G)`` with
    momentum in the original basis, the factors updated after the step, and every f steps one power
    iteration + QR with columns sorted by diag(Q^T F Q) and v permuted alike. One factor per dimension, as
    the authors' code: the (2, 2, 3, 3) kernel has four; with ``max_dim=3`` the matrix's 4-long side keeps
    the identity."""
    from plugins.solvers.soap import SOAPOptimizer

    lr, b1, b2, beta, eps, wd, every = 0.01, 0.9, 0.95, 0.8, 1e-8, 0.1, 2
    grads_seq = _sequence(7, 8)
    got = _run(SOAPOptimizer, dict(lr=lr, betas=(b1, b2), shampoo_beta=beta, eps=eps, weight_decay=wd,
                                   precondition_frequency=every, max_dim=max_dim), grads_seq)
    params = [p.numpy().copy() for p in _sequence(1, 99)[0]]
    state: dict[int, dict] = {}

    def turn(q: list, x: np.ndarray, back: bool = False) -> np.ndarray:
        full = q[0]
        for factor in q[1:]:
            full = np.kron(full, factor)
        return ((full if back else full.T) @ x.reshape(-1)).reshape(x.shape)

    for grads in grads_seq:
        for i, grad in enumerate(grads):
            g = grad.numpy()
            unfold = [np.moveaxis(g, axis, 0).reshape(n, -1) for axis, n in enumerate(g.shape)] if g.ndim > 1 else []
            s = state.setdefault(i, {"t": 0, "m": np.zeros_like(g), "v": np.zeros_like(g),
                                     "F": [np.zeros((u.shape[0],) * 2) if u.shape[0] <= max_dim else None
                                           for u in unfold], "Q": None})
            if s["Q"] is not None:
                s["t"] += 1
                q = s["Q"] or [np.eye(g.size)]
                s["m"] = b1 * s["m"] + (1 - b1) * g
                s["v"] = b2 * s["v"] + (1 - b2) * turn(q, g) ** 2
                direction = turn(q, turn(q, s["m"]) / (np.sqrt(s["v"]) + eps), back=True)
                size = lr * np.sqrt(1 - b2 ** s["t"]) / (1 - b1 ** s["t"])
                params[i] = params[i] - size * direction
                params[i] = params[i] * (1 - lr * wd)  # one group here: every tensor decays
            s["F"] = [None if f is None else beta * f + (1 - beta) * u @ u.T for f, u in zip(s["F"], unfold)]
            if s["Q"] is None:
                s["Q"] = [np.eye(u.shape[0]) if f is None else np.linalg.eigh(f)[1][:, ::-1]
                          for f, u in zip(s["F"], unfold)]
            elif s["t"] % every == 0:
                for axis, (f, q) in enumerate(zip(s["F"], s["Q"])):
                    if f is None:
                        continue
                    order = np.argsort(-np.diag(q.T @ f @ q), kind="stable")
                    s["Q"][axis] = np.linalg.qr((f @ q)[:, order])[0]
                    s["v"] = np.take(s["v"], order, axis=axis)
    _assert_close(got, [torch.from_numpy(np.ascontiguousarray(p)) for p in params])


def test_schedulefree_adamw_matches_the_paper_in_float64():
    """Defazio et al. 2024, Algorithm 1 in its x/z form: y = (1-b1) z + b1 x is where gradients are taken,
    z -= lr_t (g / (sqrt(v_hat) + eps) + wd*y), x = (1-c) x + c z. Two documented choices of the authors'
    package differ from the paper's listing and are written here as the package makes them: Adam's bias
    correction sits in the denominator (the paper scales lr_t by sqrt(1 - b2^t)), and the averaging
    weights are c = w_t / sum(w) with w_t = max(lr_0..lr_t)^2 (the paper uses lr_t^2, which folds the bias
    correction in). In train mode the parameters hold y; after ``eval()`` they hold x."""
    import schedulefree

    lr, b1, b2, eps, wd, warmup = 0.05, 0.9, 0.99, 1e-8, 0.1, 3
    grads_seq = _sequence(6, 9)
    params = [p.clone().requires_grad_() for p in _sequence(1, 99)[0]]
    opt = schedulefree.AdamWScheduleFree(params, lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd,
                                         warmup_steps=warmup, foreach=False)
    opt.train()
    for grads in grads_seq:
        for p, g in zip(params, grads):
            p.grad = g.clone()
        opt.step()
    in_train_mode = [p.detach().clone() for p in params]
    opt.eval()

    x = _sequence(1, 99)[0]
    z = [p.clone() for p in x]
    v = [torch.zeros_like(p) for p in x]
    weight_sum, lr_max = 0.0, 0.0
    for t, grads in enumerate(grads_seq):
        lr_t = lr * min(1.0, (t + 1) / warmup)
        lr_max = max(lr_max, lr_t)
        weight_sum += lr_max**2
        c = lr_max**2 / weight_sum
        for i, g in enumerate(grads):
            y = (1 - b1) * z[i] + b1 * x[i]
            v[i] = b2 * v[i] + (1 - b2) * g * g
            z[i] = z[i] - lr_t * (g / ((v[i] / (1 - b2 ** (t + 1))).sqrt() + eps) + wd * y)
            x[i] = (1 - c) * x[i] + c * z[i]
    _assert_close(in_train_mode, [(1 - b1) * zi + b1 * xi for zi, xi in zip(z, x)])
    _assert_close([p.detach() for p in params], x)
