"""How runs end and where they write: divergence, stop at target, strict JSON, sweeps that go on past a
bad member, run directories that never collide or get overwritten, atomic checkpoints."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import ROOT, run_cli, train
from framework.checkpoints import AtomicCheckpointIO

QUICK = ["backend=cpu", "logger=local", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]


def strict_load(path: Path) -> dict:
    """JSON as a strict parser reads it: bare NaN or Infinity is an error."""
    def refuse(name: str) -> None:
        raise ValueError(f"non-standard JSON constant {name}")
    return json.loads(path.read_text(), parse_constant=refuse)


def test_divergence_stops_the_run_within_a_step(tmp_path):
    out = tmp_path / "run"
    done = run_cli("run.py", *QUICK, "optimizer=sgd", "optimizer.lr=1e6", f"hydra.run.dir={out}")
    assert done.returncode == 3, done.stderr[-2000:]
    summary = strict_load(out / "summary.json")
    assert summary["status"] == "diverged"
    step = summary["divergence"]["step"]
    assert summary["divergence"]["quantity"] == "train/loss" and summary["divergence"]["value"] in ("NaN", "Infinity")
    assert summary["steps"] == step + 1 < 20  # stopped in the step whose loss was not finite
    assert math.isfinite(summary["metric"]["final"]) and summary["metric"]["final_step"] == 0  # the last finite metric
    rows = (out / "metrics.csv").read_text().splitlines()
    assert int(rows[-1].split(",")[rows[0].split(",").index("step")]) == step - 1  # nothing logged after it
    assert "diverged: val/loss" in done.stdout and f"at step {step}" in done.stdout


def test_a_deferred_loss_check_names_the_step_that_diverged(tmp_path):
    """Where losses stay on an accelerator the host reads them on logged steps only (forced here on the CPU):
    the run still ends diverged at the step whose loss was not finite, with no row or checkpoint after it."""
    from conftest import compose
    from framework.runner import execute, prepare

    settings = ["optimizer=sgd", "optimizer.lr=1e6", "trainer.max_steps=40", "trainer.log_every_n_steps=10",
                "checkpoint.every_n_steps=5"]
    immediate = train(tmp_path / "now", *settings)
    deferred_run = prepare(compose(*settings), tmp_path / "deferred")
    deferred_run.task.defer_loss_checks = True
    deferred = execute(deferred_run)
    step = immediate["divergence"]["step"]
    assert immediate["status"] == deferred["status"] == "diverged" and 0 < step < 9
    assert strict_load(tmp_path / "deferred" / "summary.json")["divergence"] == strict_load(
        tmp_path / "now" / "summary.json")["divergence"]  # the same step, the same non-finite value
    # found before the checkpoint due after step 4 (none is written) or at the first logged step, step 9
    assert deferred["steps"] == (5 if step <= 4 else 10)
    rows = (tmp_path / "deferred" / "metrics.csv").read_text().splitlines()
    logged = [int(r.split(",")[rows[0].split(",").index("step")]) for r in rows[1:]]
    assert max(logged) < step  # the validation at step 0 only: no training row reached the file
    assert (tmp_path / "deferred" / "checkpoints" / "last.ckpt").exists() == (step > 4)


def test_non_finite_numbers_are_strict_json_strings(tmp_path):
    summary = train(tmp_path / "run", "optimizer=adamw", "optimizer.lr=1e3", "model=logreg", "trainer.max_steps=200",
                    "trainer.val_check_interval=1")
    assert summary["status"] == "diverged"
    written = strict_load(tmp_path / "run" / "summary.json")
    assert written["divergence"]["value"] in ("NaN", "Infinity", "-Infinity")
    assert float(written["divergence"]["value"]) != 0  # the strings read back as floats


def test_stop_at_target_ends_the_run_at_the_first_validation_that_reaches_it(tmp_path):
    summary = train(tmp_path / "run", "optimizer=adamw", "optimizer.lr=0.01", "model=logreg", "trainer.max_steps=2000",
                    "trainer.val_check_interval=25", "stop_at_target=true")
    reached = summary["metric"]["reached_target"]
    assert summary["status"] == "completed" and reached is not None
    assert summary["steps"] == reached["step"] < 2000 and summary["stopped"] == {"by": "target", "step": reached["step"]}
    assert reached["value"] <= summary["metric"]["target"]


def test_sweep_goes_on_past_a_bad_member_and_exits_with_the_count(tmp_path):
    done = run_cli("run.py", "-m", *QUICK, "model=logreg", "trainer.max_steps=20", "optimizer.lr=0.01,-1,0.02",
                   f"hydra.sweep.dir={tmp_path}")
    assert done.returncode == 1, done.stderr[-3000:]
    members = sorted(p for p in tmp_path.iterdir() if p.is_dir())
    assert [m.name for m in members] == ["0_adamw_logreg", "1_adamw_logreg", "2_adamw_logreg"]
    statuses = [strict_load(m / "summary.json")["status"] for m in members]
    assert statuses == ["completed", "failed", "completed"]
    bad = strict_load(members[1] / "summary.json")
    assert bad["error"] == "optimizer.lr=-1: must be a number >= 0"
    assert (members[1] / ".hydra" / "overrides.yaml").exists()  # recorded in its own directory
    assert f"sweep {tmp_path}: 2 of 3 members completed" in done.stdout
    assert "1_adamw_logreg: failed: optimizer.lr=-1: must be a number >= 0" in done.stdout
    # run again into the same directory: members with a result are left alone; nothing runs again
    before = {m.name: (m / "summary.json").read_bytes() for m in members}
    again = run_cli("run.py", "-m", *QUICK, "model=logreg", "trainer.max_steps=20", "optimizer.lr=0.01,-1,0.02",
                    f"hydra.sweep.dir={tmp_path}")
    assert again.returncode == 1
    assert {m.name: (m / "summary.json").read_bytes() for m in members} == before
    assert again.stderr.count("already holds a result") == 3


def test_a_stopped_sweep_continues_where_it_stopped(tmp_path):
    import signal
    import time

    args = [sys.executable, "run.py", "-m", *QUICK, "model=logreg", "trainer.max_steps=400",
            "trainer.val_check_interval=100", "seed=0,1", f"hydra.sweep.dir={tmp_path}"]
    child = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "0_adamw_logreg" / "metrics.csv"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not (metrics.exists() and len(metrics.read_text().splitlines()) > 60):
        time.sleep(0.05)
    child.send_signal(signal.SIGUSR1)
    _, err = child.communicate(timeout=300)
    assert child.returncode == 75, err[-2000:]
    assert strict_load(tmp_path / "0_adamw_logreg" / "summary.json")["status"] == "interrupted"
    assert not (tmp_path / "1_adamw_logreg").exists()  # the signal stopped the sweep, not only its member
    done = run_cli(*args[1:])
    assert done.returncode == 0, done.stderr[-2000:]
    first, second = (strict_load(tmp_path / f"{i}_adamw_logreg" / "summary.json") for i in (0, 1))
    assert first["status"] == second["status"] == "completed" and first["steps"] == 400
    assert len(first["resumes"]) == 1 and not second["resumes"]
    assert "0_adamw_logreg: continuing from its checkpoint" in done.stderr


def test_a_diverging_member_does_not_stop_the_sweep(tmp_path):
    done = run_cli("run.py", "-m", *QUICK, "optimizer=sgd", "model=logreg", "trainer.max_steps=30",
                   "optimizer.lr=1e6,0.05", f"hydra.sweep.dir={tmp_path}")
    assert done.returncode == 1, done.stderr[-3000:]
    statuses = [strict_load(p)["status"] for p in sorted(tmp_path.glob("*/summary.json"))]
    assert statuses == ["diverged", "completed"]


def test_runs_started_in_the_same_second_keep_their_own_directories(tmp_path):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    args = [sys.executable, str(ROOT / "run.py"), *QUICK, "model=logreg", "trainer.max_steps=30"]
    children = [subprocess.Popen(args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for _ in range(2)]
    for child in children:
        _, err = child.communicate(timeout=300)
        assert child.returncode == 0, err[-2000:]
    summaries = sorted((cwd / "outputs").glob("*/*/summary.json"))
    assert len(summaries) == 2 and summaries[0].parent != summaries[1].parent
    for path in summaries:
        rows = (path.parent / "metrics.csv").read_text().splitlines()
        assert len([r for r in rows[1:] if r.split(",")[-3]]) == 30  # one run's 30 training rows, not both


def test_the_guard_reads_the_resolved_directory_not_the_command_line(tmp_path):
    out = tmp_path / "done"
    out.mkdir()
    (out / "summary.json").write_text('{"status": "completed"}')
    for spelling in (f"hydra.run.dir='{out}'", f"hydra.run.dir=\"{out}\"", f"hydra.run.dir={out}/."):
        done = run_cli("run.py", *QUICK, spelling)
        assert done.returncode == 2 and "already holds a result" in done.stderr
        assert (out / "summary.json").read_text() == '{"status": "completed"}' and not (out / ".hydra").exists()
    # a sweep writing into a member directory that holds a result skips it
    member = tmp_path / "sweep" / "0_adamw_mlp"
    member.mkdir(parents=True)
    (member / "summary.json").write_text('{"status": "completed"}')
    done = run_cli("run.py", "-m", *QUICK, "trainer.max_steps=5", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert done.returncode == 0 and "already holds a result" in done.stderr
    assert (member / "summary.json").read_text() == '{"status": "completed"}' and not (member / ".hydra").exists()


def test_checkpoint_write_that_fails_leaves_the_last_good_one(tmp_path):
    path = tmp_path / "checkpoints" / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"step": 1, "weights": torch.ones(3)}, path)
    with pytest.raises(Exception):
        io.save_checkpoint({"step": 2, "unpicklable": lambda: None}, path)
    assert io.load_checkpoint(path)["step"] == 1
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]


def test_resume_of_a_directory_without_checkpoint_is_refused_and_creates_nothing(tmp_path):
    missing = tmp_path / "nothing-here"
    done = run_cli("run.py", f"resume={missing}")
    assert done.returncode == 2 and done.stderr.strip() == f"error: resume={missing}: no such run directory"
    assert not missing.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    done = run_cli("run.py", f"resume={empty}", "trainer.max_steps=5")
    assert done.returncode == 2 and "takes no other arguments" in done.stderr
    done = run_cli("run.py", f"resume={empty}")
    assert done.returncode == 2 and "has no checkpoint" in done.stderr and list(empty.iterdir()) == []


def test_best_checkpoint_holds_the_best_validation(tmp_path):
    summary = train(tmp_path / "run", "optimizer=sgd", "optimizer.lr=0.5", "model=logreg", "trainer.max_steps=60",
                    "trainer.val_check_interval=5", "checkpoint.save_best=true")
    best = torch.load(tmp_path / "run" / "checkpoints" / "best.ckpt", weights_only=False)
    points = [p for c in best["callbacks"].values() if "points" in c for p in c["points"]]
    assert points[-1]["value"] == summary["metric"]["best"] and best["global_step"] == points[-1]["step"]
    assert best["global_step"] < summary["steps"]  # the metric got worse later: best.ckpt stayed where it was best


def test_joblib_launcher_runs_members_in_parallel_processes_with_the_cores_shared_out(tmp_path):
    import os

    done = run_cli("run.py", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "seed=0,1,2,3",
                   "model=logreg", "trainer.max_steps=30", "logger=local", "trainer.enable_progress_bar=false",
                   f"hydra.sweep.dir={tmp_path}")
    assert done.returncode == 0, done.stderr[-3000:]
    summaries = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("*/summary.json"))]
    assert [s["seed"] for s in summaries] == [0, 1, 2, 3]
    assert all(s["status"] == "completed" and s["steps"] == 30 for s in summaries)
    cores = len(os.sched_getaffinity(0))
    assert {s["threads"] for s in summaries} == {max(1, cores // 2)}
    # the same seed gives the same result in a worker process as in this one
    alone = train(tmp_path / "alone", "seed=2", "model=logreg", "trainer.max_steps=30")
    assert alone["metric"]["final"] == pytest.approx(summaries[2]["metric"]["final"], rel=1e-5)
    assert "4 of 4 members completed" in done.stdout + done.stderr
