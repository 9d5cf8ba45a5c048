"""Every solver of the core lowers the validation loss of logreg and mlp in a real Lightning run."""

from __future__ import annotations

import pytest

from conftest import train

# (solver, problem, extra overrides, validation-loss threshold); initial losses are 0.71 and 2.30
CASES = [
    ("sgd", "logreg", ["optimizer.lr=0.05"], 0.10),
    ("adamw", "logreg", ["optimizer.lr=0.01"], 0.10),
    ("lbfgs", "logreg", ["model.batch_size=null", "trainer.max_steps=10"], 0.07),
    ("sophia", "logreg", ["optimizer.lr=0.01"], 0.10),
    ("adahessian", "logreg", [], 0.10),
    ("sgd", "mlp", [], 0.15),
    ("adamw", "mlp", [], 0.15),
    ("lbfgs", "mlp", ["model.batch_size=null", "trainer.max_steps=10"], 0.35),
    ("sophia", "mlp", ["optimizer.lr=0.001"], 0.35),
    # the paper's lr 0.15 (and 0.1) stalls or blows up on this MLP for one seed in four; 0.05 holds for all four
    ("adahessian", "mlp", ["optimizer.lr=0.05"], 0.15),
    ("adam", "logreg", ["optimizer.lr=0.01"], 0.10),
    ("lion", "logreg", ["optimizer.lr=0.01"], 0.10),
    ("sophiah", "logreg", ["optimizer.lr=0.01"], 0.10),
    ("external", "logreg", ["optimizer._target_=torch.optim.Adagrad", "optimizer.lr=0.05"], 0.15),
    ("adam", "mlp", [], 0.15),
    ("lion", "mlp", ["optimizer.lr=0.001"], 0.45),
    ("sophiah", "mlp", ["optimizer.lr=0.001"], 0.30),
    ("external", "mlp", ["optimizer._target_=torch.optim.RMSprop", "optimizer.lr=0.001"], 0.30),
    ("muon", "logreg", ["optimizer.adamw_lr=0.01"], 0.10),  # logreg is all head: AdamW only
    ("muon", "mlp", ["optimizer.adamw_lr=0.003"], 0.15),  # AdamW trains the input layer and the head
    ("schedulefree", "logreg", ["optimizer.lr=0.05"], 0.10),
    ("schedulefree", "mlp", [], 0.15),
    ("shampoo", "logreg", ["optimizer.lr=1.0"], 0.10),
    ("shampoo", "mlp", [], 0.15),
    ("soap", "logreg", ["optimizer.lr=0.03"], 0.10),
    ("soap", "mlp", [], 0.15),
    ("psgd", "logreg", ["optimizer.lr=0.03"], 0.10),  # the reference's lr 0.01 gets to 0.103 in 150 steps
    ("psgd", "mlp", ["optimizer.lr=0.03"], 0.15),
    ("psgd-whiten", "logreg", ["optimizer.lr=0.01"], 0.10),
    ("psgd-whiten", "mlp", [], 0.15),
    # full batch and convex: the damping may go as low as 1e-3 (the floor of the Levenberg-Marquardt rule)
    ("gauss-newton", "logreg", ["model.batch_size=null", "optimizer.damping=0.001", "trainer.max_steps=10"], 0.07),
    ("gauss-newton", "mlp", ["trainer.max_steps=60"], 0.15),  # its defaults (adaptive damping from 1.0)
    ("newton", "logreg", ["model.batch_size=null", "trainer.max_steps=10"], 0.07),
    # a non-convex problem: the Hessian is made positive definite by added damping; 1,482 parameters
    ("newton", "mlp", ["model.width=16", "optimizer.damping=1.0", "optimizer.lr=0.3", "optimizer.reuse=5",
                       "trainer.max_steps=40"], 1.2),
]


@pytest.mark.parametrize("solver,problem,extra,threshold", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_solver_lowers_validation_loss(run_dir, solver, problem, extra, threshold):
    summary = train(run_dir, f"optimizer={solver}", f"model={problem}", "trainer.max_steps=150",
                    "trainer.val_check_interval=50", *extra)
    metric = summary["metric"]
    assert summary["status"] == "completed"
    assert metric["final"] < threshold < metric["initial"], metric["history"]
    assert (run_dir / "summary.json").exists() and (run_dir / "metrics.csv").exists()
