"""Run-level behaviour: seeds are reproducible, Hydra multirun gives one result per job."""

from __future__ import annotations

import json

from conftest import run_cli, train


def test_same_seed_same_run_other_seed_other_run(tmp_path):
    """Equal seeds give equal runs, in a fresh process or after other runs in this one."""
    args = ["optimizer=sophia", "optimizer.k=2", "model=mlp", "trainer.max_steps=30",
            "trainer.val_check_interval=30", "backend=cpu", "logger=local"]
    done = run_cli("run.py", *args, "seed=7", "trainer.enable_progress_bar=false", f"hydra.run.dir={tmp_path / 'cli'}")
    assert done.returncode == 0, done.stderr[-2000:]
    fresh = json.loads((tmp_path / "cli" / "summary.json").read_text())
    train(tmp_path / "other", "optimizer=adahessian", "model=logreg", "trainer.max_steps=5")
    again = train(tmp_path / "again", *args, "seed=7")
    other = train(tmp_path / "seed8", *args, "seed=8")
    final = [s["metric"]["final"] for s in (fresh, again, other)]
    assert final[0] == final[1] != final[2]


def test_multirun_sweeps_solvers_into_separate_results(tmp_path):
    done = run_cli("run.py", "-m", "optimizer=sgd,adamw", "model=logreg", "logger=wandb", "backend=cpu",
                   "trainer.max_steps=20", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false",
                   f"hydra.sweep.dir={tmp_path}")
    assert done.returncode == 0, done.stderr[-3000:]
    summaries = sorted(tmp_path.glob("*/summary.json"))
    names = [json.loads(p.read_text())["names"]["optimizer"] for p in summaries]
    assert names == ["sgd", "adamw"]  # job 0, job 1
    # each job has its own W&B run (the first is finished before the second starts)
    assert all(len(list(p.parent.glob("wandb/offline-run-*"))) == 1 for p in summaries)


def test_experiment_file_defines_a_sweep(tmp_path):
    done = run_cli("run.py", "-m", "+experiment=convex-logreg", "logger=local", "backend=cpu", "trainer.max_steps=3",
                   "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false",
                   f"hydra.sweep.dir={tmp_path}")
    assert done.returncode == 0, done.stderr[-3000:]
    summaries = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("*/summary.json"))]
    assert [s["names"]["optimizer"] for s in summaries] == ["sgd", "adamw", "lbfgs", "sophia", "adahessian"]
    assert all(s["names"]["model"] == "logreg" and s["config"]["model"]["batch_size"] is None for s in summaries)
