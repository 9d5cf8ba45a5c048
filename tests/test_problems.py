"""The problem suite: every problem learns under AdamW, data is deterministic, test functions are exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import compose, train
from framework.runner import build, execute, prepare

# (problem, overrides, steps): a few AdamW steps on the CPU must improve the validation metric
PROBLEMS = [
    ("mlp", [], 30),
    ("cnn", [], 30),
    ("logreg", ["optimizer.lr=0.01"], 30),
    ("logreg-synthetic", ["optimizer.lr=0.01"], 30),
    ("quadratic", ["optimizer.lr=0.05"], 30),
    ("rosenbrock", ["optimizer.lr=0.01"], 30),
    ("gpt2-nano", ["model.max_bytes=200000"], 10),
]


@pytest.mark.parametrize("problem,extra,steps", PROBLEMS, ids=[p[0] for p in PROBLEMS])
def test_adamw_improves_every_problem(run_dir, problem, extra, steps):
    summary = train(run_dir, "optimizer=adamw", f"model={problem}", f"trainer.max_steps={steps}",
                    f"trainer.val_check_interval={steps}", *extra)
    metric = summary["metric"]
    print(f"{problem}: {metric['initial']:.4g} -> {metric['final']:.4g}, "
          f"{summary['wall_clock_s']['train'] / steps * 1000:.1f} ms/step")
    assert metric["final"] < 0.97 * metric["initial"]


def _first_batches(problem, seed: int, count: int = 3) -> list[torch.Tensor]:
    batches = []
    for batch in problem.train_loader(seed):
        batches.append(torch.cat([t.reshape(len(t), -1).float() for t in batch], dim=1))
        if len(batches) == count:
            return batches
    return batches


@pytest.mark.parametrize("name", ["mlp", "cnn", "logreg-synthetic", "gpt2-nano"])
def test_same_seed_same_batches_and_a_new_order_each_epoch(name):
    cfg = compose(f"model={name}", "model.batch_size=8", *(["model.max_bytes=100000"] if "gpt2" in name else []))
    problem, again = build(cfg.model, "model"), build(cfg.model, "model")
    first = _first_batches(problem, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(first, _first_batches(again, seed=1)))
    assert not torch.equal(first[0], _first_batches(problem, seed=2)[0])
    loader = problem.train_loader(seed=1)
    epoch_one, epoch_two = next(iter(loader)), next(iter(loader))
    assert not torch.equal(epoch_one[0], epoch_two[0])  # reshuffled per epoch, still from the seed


def test_synthetic_logreg_has_the_chosen_condition_number():
    cfg = compose("model=logreg-synthetic", "model.condition_number=1000.0")
    problem = build(cfg.model, "model")
    x = torch.cat([problem.x_train, problem.x_val]).double().numpy()
    condition = np.linalg.cond(np.cov(x.T))
    assert 500 < condition < 2000, condition


def test_newton_reaches_the_rosenbrock_minimum(run_dir):
    """Damped Newton from (-1.2, 1) in float64: |x - x*| falls below 1e-10 within 10 steps."""
    r = prepare(compose("optimizer=newton", "model=rosenbrock", "backend=cpu", "backend.precision=64-true",
                        "trainer.max_steps=10", "trainer.val_check_interval=1"), run_dir)
    summary = execute(r)
    x = r.problem.model.x.detach()
    distance = (x - r.problem.optimum).norm().item()
    history = [h["value"] for h in summary["metric"]["history"]]
    print("Rosenbrock f - f* by step:", ", ".join(f"{v:.2e}" for v in history))
    assert distance < 1e-10
    assert summary["metric"]["reached_target"] is not None


def test_quadratic_has_the_chosen_spectrum_and_optimum():
    cfg = compose("model=quadratic", "model.dim=20", "model.condition_number=50.0")
    problem = build(cfg.model, "model")
    eigenvalues = torch.linalg.eigvalsh(problem.hessian)
    assert eigenvalues.max() / eigenvalues.min() == pytest.approx(50.0, rel=1e-9)
    assert problem.value(problem.optimum).item() == 0.0
    assert problem.value(torch.zeros(20, dtype=torch.float64)).item() > 0


def test_icl_linreg_learns_in_context_and_reports_the_least_squares_line(run_dir):
    """400 AdamW steps: the error falls, the per-position curve and the least-squares reference are in
    summary.json; least squares is exact from d=5 examples on (noise-free) and 1 with none."""
    summary = train(run_dir, "model=icl-linreg", "trainer.max_steps=400", "trainer.val_check_interval=400")
    metric, curve = summary["metric"], summary["validation"]
    model = [curve[f"val/mse_at{i:02d}"] for i in range(11)]
    reference = [curve[f"val/lsq_at{i:02d}"] for i in range(11)]
    print("icl-linreg error by examples in context:", [round(v, 3) for v in model])
    print("least squares:                          ", [round(v, 3) for v in reference])
    assert metric["final"] < 0.75 * metric["initial"]
    assert 0.8 < reference[0] < 1.2 and all(v < 1e-6 for v in reference[5:])
    assert sum(model[6:]) / 5 < 0.8 * model[0]  # more examples, smaller error: it reads the context
    assert curve["val/lsq"] == pytest.approx(sum(reference) / 11, rel=1e-5)
