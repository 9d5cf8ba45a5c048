"""Run-level behaviour: seeds are reproducible, Hydra multirun gives one result per job."""

from __future__ import annotations

import json

from conftest import run_cli, train


def test_same_seed_same_run_other_seed_other_run(tmp_path):
    args = ["optimizer=sgd", "model=mlp", "trainer.max_steps=30", "trainer.val_check_interval=30"]
    first = train(tmp_path / "a", *args, "seed=7")
    again = train(tmp_path / "b", *args, "seed=7")
    other = train(tmp_path / "c", *args, "seed=8")
    assert first["metric"]["history"][-1]["value"] == again["metric"]["history"][-1]["value"]
    assert first["metric"]["history"][-1]["value"] != other["metric"]["history"][-1]["value"]


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
