"""Checkpoints and resume: a run stopped and resumed ends bit for bit as an uninterrupted one, for every
registered solver, in float64 and float32; a SIGKILLed process resumes to the same result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from conftest import ROOT, compose, run_cli
from framework.registry import Registry
from framework.runner import execute, prepare, prepare_resume

SOLVERS = [entry.name for entry in Registry().entries("optimizer")]
# settings that keep a solver stable on this problem, or that give it state to lose (lazy Newton reuses
# its Hessian for 5 steps, AdaHessian refreshes its curvature every 4)
SETTINGS = {"newton": ["optimizer.reuse=5"], "adahessian": ["optimizer.k=4"]}
# 11 batches an epoch, 25 steps: the stops at 7 and 13 fall inside the first and the second epoch, off every
# refresh period (Sophia's k=10, SOAP's 10, Newton's 5, AdaHessian's 4) and off the validations (every 5)
# One Lightning batch per step (fuse_steps=1), so that a stop signal is answered after any step (test_fusion.py
# stops and resumes fused runs).
PROBLEM = ["model=mlp", "model.width=8", "model.batch_size=128", "trainer.max_steps=25",
           "trainer.val_check_interval=5", "checkpoint.every_n_minutes=null", "fuse_steps=1"]
TIMINGS = ("wall_clock_s", "started_at", "resumes")


class StopAt(pl.Callback):
    """Sends this process SIGUSR1 (SLURM's warning signal) during the step that makes ``step`` steps."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: pl.Trainer, *args) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGUSR1)


def without_timings(summary: dict) -> dict:
    summary = json.loads(json.dumps(summary))
    for key in TIMINGS:
        summary.pop(key)
    for point in [*summary["metric"]["history"], summary["metric"]["reached_target"] or {}]:
        point.pop("seconds", None)
    return summary


def _execute(run, stop_at: int | None = None) -> dict:
    if stop_at is not None:
        run.trainer.callbacks.append(StopAt(stop_at))
    return execute(run)


def assert_same_run(a_dir: Path, a_run, b_dir: Path, b_run) -> None:
    for (name, x), y in zip(a_run.problem.model.state_dict().items(), b_run.problem.model.state_dict().values()):
        assert x.dtype == y.dtype and torch.equal(x, y), f"parameter {name} differs"
    assert (a_dir / "metrics.csv").read_bytes() == (b_dir / "metrics.csv").read_bytes()
    a, b = (json.loads((d / "summary.json").read_text()) for d in (a_dir, b_dir))
    assert without_timings(a) == without_timings(b)


def stopped_and_resumed(run_dir: Path, overrides: list[str], stops: list[int]):
    """Run, stopping at each of ``stops`` and resuming from the checkpoint; return the last run."""
    run = prepare(compose(*overrides), run_dir)
    summary = _execute(run, stops[0])
    for i, step in enumerate(stops):
        assert summary["status"] == "interrupted" and summary["steps"] == step
        assert summary["stopped"] == {"by": "SIGUSR1", "step": step}
        run = prepare_resume(run_dir)
        summary = _execute(run, stops[i + 1] if i + 1 < len(stops) else None)
    assert summary["status"] == "completed"
    assert [r["from_step"] for r in summary["resumes"]] == stops
    return run


@pytest.mark.parametrize("precision", ["64-true", "32-true"])
@pytest.mark.parametrize("solver", SOLVERS)
def test_stopped_and_resumed_run_is_bitwise_the_uninterrupted_one(tmp_path, solver, precision):
    overrides = [f"optimizer={solver}", *PROBLEM, f"backend.precision={precision}", *SETTINGS.get(solver, [])]
    whole = prepare(compose(*overrides), tmp_path / "whole")
    assert execute(whole)["status"] == "completed"
    resumed = stopped_and_resumed(tmp_path / "resumed", overrides, [7, 13])
    assert_same_run(tmp_path / "whole", whole, tmp_path / "resumed", resumed)


def test_resume_right_after_a_validation_neither_repeats_nor_skips_it(tmp_path):
    overrides = ["optimizer=sophia", "optimizer.k=3", *PROBLEM]
    whole = prepare(compose(*overrides), tmp_path / "whole")
    execute(whole)
    resumed = stopped_and_resumed(tmp_path / "resumed", overrides, [5, 10, 11])
    assert [p["step"] for p in json.loads((tmp_path / "resumed" / "summary.json").read_text())["metric"]["history"]] \
        == [0, 5, 10, 15, 20, 25]
    assert_same_run(tmp_path / "whole", whole, tmp_path / "resumed", resumed)


def _run_args(out: Path, *extra: str) -> list[str]:
    return ["run.py", "model=mlp", "backend=cpu", "logger=local", "trainer.max_steps=1500",
            "trainer.val_check_interval=250", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false",
            "checkpoint.every_n_steps=50", f"hydra.run.dir={out}", *extra]


def _final_weights(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]


def _summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def _rows(path: Path) -> int:
    return max(0, len(path.read_text().splitlines()) - 1) if path.exists() else 0


def test_sigkilled_process_resumes_to_the_uninterrupted_result(tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    done = run_cli(*_run_args(whole))
    assert done.returncode == 0, done.stderr[-3000:]
    child = subprocess.Popen([sys.executable, *_run_args(killed)], cwd=ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, env={**os.environ, "WANDB_MODE": "offline"})
    try:
        deadline = time.monotonic() + 300
        # kill once a checkpoint exists and the run has gone on past it (rows the resume must drop)
        while time.monotonic() < deadline and not ((killed / "checkpoints" / "last.ckpt").exists()
                                                   and _rows(killed / "metrics.csv") > 170):
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=60)
    finally:
        child.kill()
    assert child.returncode == -signal.SIGKILL
    assert not (killed / "summary.json").exists()
    checkpoint_step = torch.load(killed / "checkpoints" / "last.ckpt", weights_only=False)["global_step"]
    assert 0 < checkpoint_step < 1500
    # a new run may not take the killed run's directory
    refused = run_cli(*_run_args(killed))
    assert refused.returncode == 2 and f"resume={killed}" in refused.stderr
    done = run_cli("run.py", f"resume={killed}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert _summary(killed)["resumes"][0]["from_step"] == checkpoint_step
    assert without_timings(_summary(whole)) == without_timings(_summary(killed))
    assert (whole / "metrics.csv").read_bytes() == (killed / "metrics.csv").read_bytes()
    a, b = _final_weights(whole), _final_weights(killed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    # a completed run is not resumed
    again = run_cli("run.py", f"resume={killed}")
    assert again.returncode == 2
    assert again.stderr.strip().splitlines() == [
        f"error: resume={killed}: the run already completed; there is nothing to resume"]


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGUSR1], ids=lambda s: s.name)
def test_stop_signal_checkpoints_and_exits_for_requeue(tmp_path, stop_signal):
    out = tmp_path / "run"
    child = subprocess.Popen([sys.executable, *_run_args(out, "trainer.max_steps=100000", "logger=wandb")], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env={**os.environ, "WANDB_MODE": "offline"})
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and _rows(out / "metrics.csv") < 120:
            time.sleep(0.05)
        child.send_signal(stop_signal)
        output, _ = child.communicate(timeout=120)
    finally:
        child.kill()
    assert child.returncode == 75, output[-3000:]
    summary = _summary(out)
    assert summary["status"] == "interrupted" and summary["stopped"]["by"] == stop_signal.name
    steps = summary["steps"]
    assert 0 < steps < 100000 and summary["wall_clock_s"]["train"] > 0
    assert summary["metric"]["history"][-1]["step"] <= steps
    checkpoint = torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["global_step"] == steps and checkpoint["batches"] == steps
    assert f"python run.py resume={out}" in output
    # the resumed run (stopped again with the same signal) continues the same W&B run
    child = subprocess.Popen([sys.executable, "run.py", f"resume={out}"], cwd=ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, env={**os.environ, "WANDB_MODE": "offline"})
    try:
        deadline = time.monotonic() + 300
        rows = _rows(out / "metrics.csv")
        while time.monotonic() < deadline and _rows(out / "metrics.csv") < rows + 60:
            time.sleep(0.05)
        child.send_signal(stop_signal)
        child.wait(timeout=120)
    finally:
        child.kill()
    assert child.returncode == 75
    again = _summary(out)
    assert again["steps"] > steps and again["resumes"][0]["from_step"] == steps
    runs = sorted((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and len({r.name.rsplit("-", 1)[1] for r in runs}) == 1
