"""A run stopped with Ctrl-C finishes its step, checkpoints, and leaves a summary that says so (exit 75),
never one that passes for a result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from conftest import ROOT


def test_ctrl_c_marks_the_run_interrupted(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "WANDB_MODE": "offline"}
    child = subprocess.Popen(
        [sys.executable, "run.py", "model=gpt2-nano", "model.max_bytes=300000", "backend=cpu", "logger=local",
         "trainer.max_steps=100000", "trainer.enable_progress_bar=false", f"hydra.run.dir={out}"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (out / "metrics.csv").exists():
            time.sleep(0.5)
        time.sleep(2)  # a few training steps
        child.send_signal(signal.SIGINT)
        child.wait(timeout=120)
    finally:
        child.kill()
    summary = json.loads((out / "summary.json").read_text())
    assert child.returncode == 75
    assert summary["status"] == "interrupted" and summary["stopped"]["by"] == "SIGINT"
    assert 0 < summary["steps"] < 100000
    assert summary["wall_clock_s"]["train"] > 1  # the time actually trained, not 0
    assert summary["checkpoint"] == "checkpoints/last.ckpt" and (out / summary["checkpoint"]).exists()
