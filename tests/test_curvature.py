"""Second-order plumbing: curvature passes when due and only then, counted, with the right math."""

from __future__ import annotations

import pytest
import torch

from conftest import compose
from framework.problem import sampled_loss
from framework.runner import execute, prepare
from framework.solver import rademacher_like
from plugins.solvers.adahessian import hutchinson_diagonal
from plugins.solvers.sophia import SophiaGOptimizer


def _run(run_dir, *overrides):
    r = prepare(compose(*overrides), run_dir)
    return r, execute(r)


def test_sophia_curvature_pass_every_k_steps(run_dir):
    r, summary = _run(run_dir, "optimizer=sophia", "optimizer.k=10", "model=logreg", "trainer.max_steps=25")
    costs = summary["costs"]
    # passes after steps 9 and 19 (0-based), as in the paper's loop; none after step 24
    assert costs["curvature"] == 2
    assert costs["forward"] == costs["backward"] == 25 + 2
    assert costs["hvp"] == costs["graph_backward"] == 0
    # FLOPs: 6N per sample for every forward+backward, the curvature passes' samples included
    assert costs["flops"] == pytest.approx(6 * r.problem.num_parameters() * (25 + 2) * 64)
    # the batch-size scale is the real number of samples behind the sampled gradient (batch_size 64)
    assert all(group["hessian_items"] == 64 for group in r.solver.optimizer.param_groups)


def test_sophia_batch_scale_follows_batch_size(run_dir):
    r, _ = _run(run_dir, "optimizer=sophia", "optimizer.k=2", "model=logreg", "model.batch_size=32",
                "trainer.max_steps=4")
    assert {group["hessian_items"] for group in r.solver.optimizer.param_groups} == {32}


def test_adahessian_builds_graph_only_on_curvature_steps(run_dir):
    _, summary = _run(run_dir, "optimizer=adahessian", "optimizer.k=3", "model=mlp", "trainer.max_steps=10")
    costs = summary["costs"]
    assert costs["hvp"] == costs["graph_backward"] == 4  # steps 0, 3, 6, 9
    assert costs["backward"] == costs["forward"] == 10


def test_lbfgs_closure_evaluations_are_counted(run_dir):
    r, summary = _run(run_dir, "optimizer=lbfgs", "model=logreg", "model.batch_size=null", "trainer.max_steps=5")
    state = r.solver.optimizer.state[r.solver.optimizer.param_groups[0]["params"][0]]
    assert summary["costs"]["forward"] == summary["costs"]["backward"] == state["func_evals"] > 5
    assert summary["costs"]["items"] == 5 * len(r.problem.x_train)  # the batch counts once per step


def test_sampled_targets_give_the_gauss_newton_diagonal():
    """Bernoulli GNB: N * E_y[g*g] over targets sampled from the model equals diag of the GGN."""
    torch.manual_seed(0)
    x = torch.randn(16, 3, dtype=torch.float64)
    w = torch.randn(3, dtype=torch.float64, requires_grad=True)
    samples = []
    for _ in range(20000):
        (g,) = torch.autograd.grad(sampled_loss(x @ w, "bernoulli"), w)
        samples.append(g * g)
    estimate = len(x) * torch.stack(samples).mean(0)
    p = torch.sigmoid(x @ w).detach()
    ggn_diagonal = ((p * (1 - p))[:, None] * x * x).mean(0)
    torch.testing.assert_close(estimate, ggn_diagonal, rtol=0.05, atol=0)


def test_categorical_sampling_follows_the_model_not_the_labels():
    logits = torch.log(torch.tensor([[0.7, 0.2, 0.1]])).repeat(30000, 1).requires_grad_()
    (grad,) = torch.autograd.grad(sampled_loss(logits, "categorical"), logits)
    # gradient of CE is softmax - onehot(y); its mean vanishes when y ~ softmax
    assert grad.sum(0).abs().max() < 0.02


def _sophia_reference(params, grads_seq, hess_grads, lr, b1, b2, rho, wd, eps, k, items):
    """SophiaG written out per tensor from the paper (Liu et al. 2023, Algorithm 3)."""
    m = [torch.zeros_like(p) for p in params]
    h = [torch.zeros_like(p) for p in params]
    bs = 0
    for t, grads in enumerate(grads_seq):
        for i, p in enumerate(params):
            p.mul_(1 - lr * wd)
            m[i] = b1 * m[i] + (1 - b1) * grads[i]
            ratio = (m[i].abs() / (rho * bs * h[i] + eps)).clamp(max=1)
            p.sub_(lr * m[i].sign() * ratio)
        if t % k == k - 1:
            bs = items
            for i in range(len(params)):
                h[i] = b2 * h[i] + (1 - b2) * hess_grads[t][i] ** 2
    return params


def test_sophia_update_matches_the_paper_in_float64():
    torch.manual_seed(1)
    shapes = [(4, 3), (3,)]
    steps, k, items = 7, 3, 48
    grads_seq = [[torch.randn(s, dtype=torch.float64) for s in shapes] for _ in range(steps)]
    hess_grads = [[torch.randn(s, dtype=torch.float64) for s in shapes] for _ in range(steps)]
    start = [torch.randn(s, dtype=torch.float64) for s in shapes]
    settings = dict(lr=0.1, betas=(0.9, 0.95), rho=0.03, weight_decay=0.1, eps=1e-12)
    params = [p.clone().requires_grad_() for p in start]
    opt = SophiaGOptimizer(params, **settings)
    for t in range(steps):
        for p, g in zip(params, grads_seq[t]):
            p.grad = g.clone()
        opt.step()
        if t % k == k - 1:
            for p, g in zip(params, hess_grads[t]):
                p.grad = g.clone()
            opt.update_hessian(items)
    expected = _sophia_reference([p.clone() for p in start], grads_seq, hess_grads, 0.1, 0.9, 0.95, 0.03, 0.1,
                                 1e-12, k, items)
    for got, want in zip(params, expected):
        torch.testing.assert_close(got.detach(), want, rtol=1e-6, atol=1e-12)


def test_rademacher_draws_both_signs():
    z = rademacher_like(torch.empty(100000))
    assert set(z.unique().tolist()) == {-1.0, 1.0}
    assert abs(z.mean().item()) < 0.02


def test_hutchinson_estimates_the_hessian_diagonal():
    torch.manual_seed(0)
    a = torch.randn(6, 6, dtype=torch.float64)
    hessian = a @ a.T
    x = torch.randn(6, dtype=torch.float64, requires_grad=True)
    estimates = []
    for _ in range(4000):
        (g,) = torch.autograd.grad(0.5 * x @ hessian @ x, x, create_graph=True)
        z = rademacher_like(x)
        (hz,) = torch.autograd.grad(g, x, grad_outputs=z)
        estimates.append(z * hz)  # signed estimate: unbiased for the diagonal
    torch.testing.assert_close(torch.stack(estimates).mean(0), hessian.diagonal(), rtol=0.1, atol=0.2)
    # the estimate used by AdaHessian is its absolute value, averaged over 4-D kernels' spatial dims
    kernel = hutchinson_diagonal(torch.ones(2, 2, 3, 3), torch.arange(36.0).view(2, 2, 3, 3))
    assert torch.equal(kernel[0, 0], torch.full((3, 3), 4.0))


def test_psgd_differentiates_its_own_closure_and_is_counted(run_dir):
    """PSGD's closure only runs the forward; the optimizer's own gradient and HVP are still counted,
    and its state (momentum plus Kronecker factors, kept in lists) is in the memory figure."""
    r, summary = _run(run_dir, "optimizer=psgd", "optimizer.update_every=3", "optimizer.momentum=0.9", "model=mlp",
                      "trainer.max_steps=10")
    costs = summary["costs"]
    assert costs["forward"] == costs["backward"] == 10
    assert costs["hvp"] == costs["graph_backward"] == 4  # preconditioner fits at steps 0, 3, 6, 9
    # one factor per dimension: triangular, or diagonal for a side of 1 or longer than max_skew (10) times
    # the second longest side (1 for a vector)
    expected = 0
    for p in r.problem.model.parameters():
        second = sorted(p.shape)[-2] if p.ndim > 1 else 1
        expected += p.numel() + sum(n * n if 1 < n <= 10 * second else n for n in p.shape)
    assert summary["state_bytes"] == 4 * expected
    # the gradient-whitening type fits to the gradient: no second derivative at all
    _, summary = _run(run_dir / "whiten", "optimizer=psgd-whiten", "model=mlp", "trainer.max_steps=10")
    assert summary["costs"]["backward"] == 10 and summary["costs"]["hvp"] == summary["costs"]["graph_backward"] == 0


def test_gauss_newton_defaults_train_an_mlp_with_adaptive_damping_and_count_every_product(run_dir):
    r, summary = _run(run_dir, "optimizer=gauss-newton", "model=mlp", "trainer.max_steps=60",
                      "trainer.val_check_interval=60")
    assert summary["status"] == "completed"
    assert summary["metric"]["final"] < 0.5 * summary["metric"]["initial"]
    assert r.solver.damping >= 1.0  # the Levenberg-Marquardt rule, never below the configured damping
    costs, per_item = summary["costs"], r.problem.flops_per_item()
    # one extra forward per step (the loss after the step) and one extra GGN product (the model's prediction);
    # a second, graph-keeping backward builds J^T u for the products; each product differentiates J^T u once
    # (J v: a curvature product) and backpropagates H_L J v once (a backward)
    assert costs["forward"] == 2 * 60 and costs["graph_backward"] == 60
    assert costs["hvp"] >= 2 * 60 and costs["backward"] == 2 * 60 + costs["hvp"]
    # every pass is counted with its FLOPs
    items = 64
    expected = per_item * items * (costs["forward"] / 3 + 2 * costs["backward"] / 3 + costs["hvp"])
    assert costs["flops"] == pytest.approx(expected)


def test_gauss_newton_adaptive_damping_survives_a_damping_that_diverges_fixed(tmp_path):
    small = ["optimizer=gauss-newton", "model=mlp", "optimizer.damping=0.001", "trainer.max_steps=40",
             "trainer.val_check_interval=40"]
    _, fixed = _run(tmp_path / "fixed", *small, "optimizer.adapt_damping=false")
    r, adaptive = _run(tmp_path / "adaptive", *small)
    assert fixed["status"] == "diverged"
    assert adaptive["status"] == "completed" and adaptive["metric"]["final"] < adaptive["metric"]["initial"]
    assert r.solver.damping > 0.001  # raised where steps failed their prediction
