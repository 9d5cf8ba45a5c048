"""Sweeps as SLURM jobs through Hydra's submitit launcher, on the single-node cluster that
``scripts/slurm-local.sh up`` starts (skipped, with the reason, where there is none)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, run_cli
from test_resume import without_timings


def _cluster_down_reason() -> str | None:
    if shutil.which("sbatch") is None:
        return "no SLURM here (sbatch not found): scripts/slurm-local.sh up starts a local cluster"
    done = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    if done.returncode != 0 or not any(s in done.stdout for s in ("idle", "mixed", "allocated")):
        return "the SLURM cluster is not up: scripts/slurm-local.sh up"
    return None


pytestmark = pytest.mark.skipif(_cluster_down_reason() is not None, reason=str(_cluster_down_reason()))
QUICK = ["backend=cpu", "logger=local", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false",
         "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=2"]


def _summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def test_sweep_members_run_as_slurm_jobs(tmp_path):
    done = run_cli("run.py", "-m", "hydra/launcher=slurm", "optimizer=adamw,sophia", "seed=0,1", "model=logreg",
                   "trainer.max_steps=50", *QUICK, f"hydra.sweep.dir={tmp_path}")
    assert done.returncode == 0, done.stderr[-3000:]
    members = sorted(p for p in tmp_path.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert [m.name for m in members] == ["0_adamw_logreg", "1_adamw_logreg", "2_sophia_logreg", "3_sophia_logreg"]
    assert all(_summary(m)["status"] == "completed" and _summary(m)["steps"] == 50 for m in members)
    assert [_summary(m)["seed"] for m in members] == [0, 1, 0, 1]
    jobs = tmp_path / ".submitit"
    assert len(list(jobs.glob("*/*_submission.sh"))) >= 1  # the sbatch script
    logs = sorted(jobs.glob("*_*/*_log.out"))
    assert len(logs) == 4 and all("completed: val/loss" in log.read_text() for log in logs)
    for member in members:  # each member's own job log, linked beside its results
        assert f"results: {member / 'summary.json'}" in (member / "job.out").read_text()
        assert (member / "job.err").resolve().parent == (member / "job.out").resolve().parent


def test_usr1_requeues_the_member_which_resumes_to_the_uninterrupted_result(tmp_path):
    run = ["model=mlp", "trainer.max_steps=1500", "trainer.val_check_interval=250", "checkpoint.every_n_steps=50"]
    whole = tmp_path / "whole"
    done = run_cli("run.py", *run, *QUICK[:4], f"hydra.run.dir={whole}")
    assert done.returncode == 0, done.stderr[-3000:]
    sweep = tmp_path / "sweep"
    launcher = subprocess.Popen(
        [sys.executable, "run.py", "-m", "hydra/launcher=slurm", *run, *QUICK, f"hydra.sweep.dir={sweep}"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    member = sweep / "0_adamw_mlp"
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not (member / "checkpoints" / "last.ckpt").exists():
            time.sleep(0.1)
        folders = sorted(p.name for p in (sweep / ".submitit").iterdir() if p.is_dir())
        job = next((f for f in folders if "_" in f), folders[0])  # an array task (A_0), or a single job
        signalled = subprocess.run(["scancel", "--signal=USR1", job], capture_output=True, text=True)
        assert signalled.returncode == 0, signalled.stderr
        output, _ = launcher.communicate(timeout=600)
    finally:
        launcher.kill()
    assert launcher.returncode == 0, output[-3000:]
    summary = _summary(member)
    assert summary["status"] == "completed" and len(summary["resumes"]) == 1
    assert 0 < summary["resumes"][0]["from_step"] < 1500
    assert without_timings(_summary(whole)) == without_timings(summary)
    assert (whole / "metrics.csv").read_bytes() == (member / "metrics.csv").read_bytes()


def test_tuning_trials_run_as_slurm_jobs_sharing_one_journal(tmp_path):
    done = run_cli("run.py", "-m", "hydra/launcher=slurm", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=4",
                   "hydra.sweeper.n_jobs=2", "hydra.sweeper.rerun_seeds=[1]", "model=logreg", "optimizer=adamw",
                   "trainer.max_steps=50", *QUICK, f"hydra.sweep.dir={tmp_path}")
    assert done.returncode == 0, done.stderr[-3000:]
    (study,) = json.loads((tmp_path / "tuning.json").read_text())["studies"]
    assert [t["status"] for t in study["trials"]] == ["completed"] * 4
    assert study["reruns"][0]["status"] == "completed"
    runs = [tmp_path / t["run_dir"] for t in study["trials"]] + [tmp_path / study["reruns"][0]["run_dir"]]
    # two trials per batch, each batch one job array: 2 + 2 + the re-run, five SLURM jobs in all
    job_logs = {(run / "job.out").resolve() for run in runs}
    assert len(job_logs) == 5 and all(log.is_file() and log.is_relative_to(tmp_path / ".submitit") for log in job_logs)
    assert len({log.parent.name.split("_")[0] for log in job_logs}) == 3
    for trial in study["trials"]:
        assert _summary(tmp_path / trial["run_dir"])["metric"]["final"] == trial["value"]


def test_two_task_ddp_member_writes_one_summary_equal_to_the_single_process_run(tmp_path):
    run = ["optimizer=sophia", "optimizer.k=2", "model=logreg", "trainer.max_steps=30", "backend.precision=64-true"]
    # the launcher preset asks SLURM for one task per backend device
    done = run_cli("run.py", "-m", "hydra/launcher=slurm", *run, *QUICK, "backend=ddp", "backend.devices=2",
                   f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert done.returncode == 0, done.stderr[-3000:]
    single = run_cli("run.py", *run, *QUICK[:4], f"hydra.run.dir={tmp_path / 'single'}")
    assert single.returncode == 0, single.stderr[-3000:]
    member = tmp_path / "sweep" / "0_sophia_logreg"
    assert sorted((tmp_path / "sweep").rglob("summary.json")) == [member / "summary.json"]
    ddp, one = _summary(member), _summary(tmp_path / "single")
    assert ddp["status"] == "completed" and ddp["world_size"] == 2 and ddp["backend"].startswith("ddp (cpu x2")
    assert ddp["items"] == one["items"] and ddp["costs"] == one["costs"]
    assert abs(ddp["metric"]["final"] - one["metric"]["final"]) < 1e-10
    # both SLURM tasks ran the member: rank 0 wrote, rank 1 only trained
    logs = sorted((tmp_path / "sweep" / ".submitit").glob("*/*_log.out"))
    assert len(logs) == 2 and sum("completed: val/loss" in log.read_text() for log in logs) == 1


def test_srun_tasks_train_one_data_parallel_run(tmp_path):
    """Two tasks started by srun itself (no submitit): each finds its rank in SLURM's environment."""
    command = [sys.executable, "run.py", "backend=ddp", "model=logreg", "trainer.max_steps=10", *QUICK[1:4]]
    done = subprocess.run(["srun", "--nodes=1", "--ntasks-per-node=2", "--cpus-per-task=1", *command,
                           f"hydra.run.dir={tmp_path / 'run'}"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = _summary(tmp_path / "run")
    assert summary["status"] == "completed" and summary["world_size"] == 2 and summary["items"]["count"] == 640
    wrong = subprocess.run(["srun", "--ntasks=2", "--cpus-per-task=1", *command, f"hydra.run.dir={tmp_path / 'n'}"],
                           cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert wrong.returncode == 2
    assert "error: backend.devices=2: under srun needs --ntasks-per-node" in wrong.stderr
    assert not (tmp_path / "n" / "summary.json").exists()
