"""``python run.py`` as a user runs it: results on disk, W&B offline, overrides, and bad input."""

from __future__ import annotations

import csv
import json

import torch

from conftest import ROOT, run_cli
from wandb_records import history_steps

QUICK = ["backend=cpu", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]


def test_run_writes_results_and_offline_wandb(tmp_path):
    out = tmp_path / "run"
    done = run_cli("run.py", *QUICK, "trainer.max_steps=40", "trainer.val_check_interval=20", "seed=3",
                   "optimizer.lr=0.003", f"hydra.run.dir={out}", env={"WANDB_MODE": "offline"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"results: {out / 'summary.json'}" in done.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["schema_version"] == 2 and summary["status"] == "completed"
    assert summary["names"] == {"optimizer": "adamw", "model": "mlp", "backend": "cpu", "schedule": "constant"}
    assert summary["steps"] == 40 and summary["seed"] == 3
    assert summary["config"]["optimizer"]["lr"] == 0.003
    assert [p["step"] for p in summary["metric"]["history"]] == [0, 20, 40]
    assert summary["metric"]["final"] < summary["metric"]["initial"]
    assert summary["costs"]["forward"] == 40 and summary["items"] == {"unit": "samples", "count": 40 * 64}
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert len([r for r in rows if r["train/loss"]]) == 40
    runs = list((out / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1 and runs[0].stat().st_size > 0
    # W&B gets every 10th step's training row (logger.every_n_steps) and each validation; the CSV every step's
    assert history_steps(runs[0], "train/loss") == [9, 19, 29, 39]
    assert history_steps(runs[0], "val/loss") == [0, 19, 39]


def test_bad_hyperparameter_is_one_line_and_leaves_no_run_directory(tmp_path):
    cases = {
        "optimizer.lr=-0.1": "error: optimizer.lr=-0.1: must be a number >= 0",
        "optimizer.betas=[0.9,1.0]": "error: optimizer.betas[1]=1.0: must be in [0, 1)",
        "optimizer=sophia optimizer.k=0": "error: optimizer.k=0: must be an integer >= 1",
        "optimizer=sophia model=rosenbrock": "error: optimizer='SophiaG': needs a predictive distribution "
                                             "(likelihood) for its curvature, which model=rosenbrock does not have",
        "model=logreg model.dataset=mnist": "error: model.dataset='mnist': must be one of "
                                            "['breast_cancer', 'digits', 'iris', 'wine', 'synthetic']",
        "grad_clip=-1": "error: grad_clip=-1: must be a number > 0",
        "optimizer.lr=inf": "error: optimizer.lr=inf: must be a finite number >= 0",
        "seed=abc": "error: seed='abc': must be an integer >= 0",
        "backend.precision=bogus": "error: backend.precision='bogus': must be one of 64-true, 32-true, 16-true, "
                                   "bf16-true, 16-mixed, bf16-mixed, transformer-engine, transformer-engine-float16",
        "trainer.val_check_interval=0": "error: trainer.val_check_interval=0: must be an integer >= 1",
        "checkpoint.every_n_steps=0": "error: checkpoint.every_n_steps=0: must be an integer >= 1",
        "logger.every_n_steps=0": "error: logger.every_n_steps=0: must be an integer >= 1",
        "fuse_steps=3": "error: fuse_steps=3: must divide trainer.val_check_interval (100), so that validation and "
                        "checkpoints fall between two groups of fused steps",
        "model=logreg model.batch_size=1000": "error: model.batch_size=1000: is larger than the training set "
                                              "(455 items): not one full batch",
        "optimizer=external optimizer._target_=torch.optim.Nope":
            "error: optimizer='torch.optim.Nope': ImportError: Error loading 'torch.optim.Nope': "
            "ModuleNotFoundError(\"No module named 'torch.optim.Nope'\") "
            "Are you sure that 'Nope' is importable from module 'torch.optim'?",
        "+optimizer.momentum=0.9": "error: optimizer='plugins.solvers.adamw.AdamW': TypeError: "
                                   "AdamW.__init__() got an unexpected keyword argument 'momentum'",
    }
    if not torch.cuda.is_available():
        cases["backend=cuda"] = "error: backend='cuda': no CUDA device is visible here; use backend=cpu or backend=auto"
    for i, (overrides, message) in enumerate(cases.items()):
        out = tmp_path / f"run{i}"
        done = run_cli("run.py", *QUICK, *overrides.split(), f"hydra.run.dir={out}")
        assert done.returncode == 2
        assert done.stderr.strip().splitlines() == [message]
        assert not out.exists()
    # with Hydra's default outputs/<date>/<time>_... directory, nothing is left behind either
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    done = run_cli(str(ROOT / "run.py"), "optimizer.lr=-1", cwd=cwd)
    assert done.returncode == 2 and list(cwd.iterdir()) == []


def test_missing_data_file_names_the_path(tmp_path):
    out = tmp_path / "run"
    missing = tmp_path / "nowhere" / "corpus.txt"
    done = run_cli("run.py", *QUICK, "model=gpt2-nano", f"model.files=[{missing}]", f"hydra.run.dir={out}")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == f"error: model.files='{missing}': no such file"
    assert not out.exists()


def test_unknown_option_lists_the_available_ones():
    done = run_cli("run.py", "optimizer=sophai")
    assert done.returncode == 1
    assert "Could not find 'optimizer/sophai'" in done.stderr
    assert "Available options in 'optimizer':" in done.stderr and "sophia" in done.stderr


def test_existing_result_is_never_overwritten(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "summary.json").write_text('{"status": "completed"}')
    (out / ".hydra").mkdir()
    (out / ".hydra" / "config.yaml").write_text("original: true\n")
    done = run_cli("run.py", *QUICK, f"hydra.run.dir={out}")
    assert done.returncode == 2 and "already holds a result" in done.stderr
    assert (out / "summary.json").read_text() == '{"status": "completed"}'
    assert (out / ".hydra" / "config.yaml").read_text() == "original: true\n"
