"""Learning-rate schedules: the factors as defined, the lr each step used in metrics.csv, the ratio of
several parameter groups kept, exact continuation after a resume mid-schedule, schedule-free refused."""

from __future__ import annotations

import csv
import math

import pytest

from conftest import compose, run_cli
from framework.errors import ConfigError
from framework.runner import execute, prepare
from framework.schedules import InverseSqrt, Schedule, WarmupCosine, WarmupLinear, WarmupStableDecay
from test_resume import assert_same_run, stopped_and_resumed


def test_schedule_factors():
    cosine = WarmupCosine(total_steps=1000, warmup_steps=100, min_ratio=0.025)
    assert [cosine.factor(t) for t in (0, 49, 99)] == pytest.approx([0.01, 0.5, 1.0])
    assert cosine.factor(100) == 1.0 and cosine.factor(999) == pytest.approx(0.025)
    assert cosine.factor(100 + 899 // 2) == pytest.approx(0.025 + 0.975 * 0.5 * (1 + math.cos(math.pi * 449 / 899)))
    linear = WarmupLinear(total_steps=101, warmup_steps=0, min_ratio=0.0)
    assert [linear.factor(t) for t in (0, 50, 100)] == pytest.approx([1.0, 0.5, 0.0])
    wsd = WarmupStableDecay(total_steps=100, warmup_steps=10, min_ratio=0.1, decay_fraction=0.2)
    assert wsd.factor(9) == 1.0 and wsd.factor(79) == 1.0 and wsd.factor(80) < 1.0
    assert wsd.factor(99) == pytest.approx(0.1)
    assert InverseSqrt(total_steps=1000, warmup_steps=100).factor(399) == pytest.approx(0.5)
    assert Schedule(total_steps=10).factor(7) == 1.0
    with pytest.raises(ConfigError, match="schedule.warmup_steps=100: must be below trainer.max_steps"):
        WarmupCosine(total_steps=100, warmup_steps=100)
    with pytest.raises(ConfigError, match=r"schedule.min_ratio=2: must be a number in \[0, 1\]"):
        WarmupCosine(total_steps=100, min_ratio=2)


def _lrs(run_dir) -> list[float]:
    with open(run_dir / "metrics.csv") as f:
        return [float(row["train/lr"]) for row in csv.DictReader(f) if row["train/lr"]]


def test_every_step_uses_its_scheduled_lr_and_resume_continues_the_schedule(tmp_path):
    overrides = ["optimizer=sophia", "model=mlp", "model.width=8", "trainer.max_steps=30",
                 "trainer.val_check_interval=10", "schedule=warmup-cosine", "schedule.warmup_steps=8",
                 "schedule.min_ratio=0.2", "checkpoint.every_n_minutes=null", "fuse_steps=1"]  # stops inside groups
    whole = tmp_path / "whole"
    uninterrupted = prepare(compose(*overrides), whole)
    summary = execute(uninterrupted)
    schedule = WarmupCosine(total_steps=30, warmup_steps=8, min_ratio=0.2)
    assert _lrs(whole) == pytest.approx([6e-4 * schedule.factor(t) for t in range(30)], rel=1e-12)
    assert summary["names"]["schedule"] == "warmup-cosine"
    # stopped at 5 (in the warmup) and 17 (in the decay), resumed: the same run, lr for lr
    resumed = tmp_path / "resumed"
    run = stopped_and_resumed(resumed, overrides, [5, 17])
    assert_same_run(whole, uninterrupted, resumed, run)


def test_the_schedule_scales_every_parameter_group_alike(tmp_path):
    run = prepare(compose("optimizer=muon", "model=mlp", "trainer.max_steps=20", "schedule=warmup-linear",
                          "schedule.warmup_steps=5", "schedule.min_ratio=0.5"), tmp_path)
    execute(run)
    groups = run.solver.optimizer.param_groups
    base = [g["initial_lr"] for g in groups]
    assert len(set(base)) > 1  # Muon's own lr and its AdamW part's
    factor = WarmupLinear(total_steps=20, warmup_steps=5, min_ratio=0.5).factor(20)
    assert factor == 0.5
    assert [g["lr"] for g in groups] == pytest.approx([b * factor for b in base])


def test_schedule_free_refuses_a_schedule(tmp_path):
    done = run_cli("run.py", "optimizer=schedulefree", "schedule=wsd", "backend=cpu", f"hydra.run.dir={tmp_path / 'x'}")
    assert done.returncode == 2
    assert done.stderr.strip() == ("error: schedule='wsd': optimizer=schedulefree sets its own learning rate over "
                                   "time and takes schedule=constant only (its warmup is optimizer.warmup_steps)")
    assert not (tmp_path / "x").exists()
