"""Tuning with ``hydra/sweeper=optuna``: search spaces in Hydra's syntax, equal budgets per study, a killed
sweep continued to its budget, failed and diverged trials recorded, the tuned-comparison experiment."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from conftest import QUIET, ROOT, compose, run_cli
from framework.errors import ConfigError
from framework.studies.space import parse_space, solver_space
from wandb_records import read_run

TUNE = ["hydra/sweeper=optuna", *QUIET]


def _manifest(sweep_dir: Path) -> dict:
    return json.loads((sweep_dir / "tuning.json").read_text())


def _summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def test_hydra_sweep_syntax_becomes_optuna_distributions():
    space = parse_space(["optimizer=adamw,sophia", "optimizer.lr=tag(log, interval(1e-5, 1e-1))",
                         "optimizer.k=choice(1, 10)", "+optimizer.extra=range(2, 11, 4)",
                         "optimizer.rho=tag(int, interval(1, 5))", "trainer.max_steps=50", "seed=3"])
    assert space.searched == {
        "optimizer.lr": FloatDistribution(1e-5, 1e-1, log=True),
        "optimizer.k": CategoricalDistribution([1, 10]),
        "optimizer.extra": IntDistribution(2, 10, step=4),
        "optimizer.rho": IntDistribution(1, 5),
    }
    assert space.fixed == ["trainer.max_steps=50", "seed=3"]
    assert space.study_grid() == [["optimizer=adamw"], ["optimizer=sophia"]]
    assert space.overrides({"optimizer.lr": 0.001, "optimizer.k": 10, "optimizer.extra": 6, "optimizer.rho": 2}) == [
        "trainer.max_steps=50", "seed=3", "optimizer.lr=0.001", "optimizer.k=10", "+optimizer.extra=6",
        "optimizer.rho=2"]
    assert parse_space(["+optimizer.extra=range(2, 11, 4)", "optimizer.k=choice(1, 10)"]).grid() == {
        "optimizer.extra": [2, 6, 10], "optimizer.k": [1, 10]}
    with pytest.raises(ConfigError, match="grid.*optimizer.lr is continuous"):
        space.grid()
    # the command line wins over a solver's own space, key by key
    assert solver_space({"lr": "interval(0.1, 1)", "rho": "interval(0.01, 0.1)"}, space.keys()) == []
    assert solver_space({"lr": "interval(0.1, 1)", "eps": "interval(1e-9, 1e-6)"}, {"optimizer.lr"}) == [
        "optimizer.eps=interval(1e-9, 1e-6)"]
    # every sampled value goes back through Hydra's parser as itself
    odd = parse_space(["x=choice('a b', c, 1.5, 'y,z', 3)"])
    lines = [odd.overrides({"x": v})[0] for v in odd.searched["x"].choices]
    assert [o.value() for o in OverridesParser.create().parse_overrides(lines)] == ["a b", "c", 1.5, "y,z", 3]
    with pytest.raises(ConfigError, match="low < high"):
        parse_space(["optimizer.lr=tag(log, interval(0, 1))"])


def test_every_solver_ships_a_search_space_its_constructor_accepts():
    from framework.registry import Registry

    for entry in Registry().entries("optimizer"):
        spec = entry.config.get("search_space")
        assert spec, f"optimizer={entry.name} has no search_space"
        space = parse_space(solver_space(spec, set()))
        assert set(space.searched) == {f"optimizer.{key}" for key in spec}
        for key in spec:  # every searched key is a setting of the solver, so a trial can set it
            assert key in entry.config, f"optimizer={entry.name}: search_space.{key} is not one of its settings"
    assert "search_space" in compose("optimizer=sophia").optimizer


def test_failed_and_diverged_trials_are_recorded_and_the_study_goes_on(tmp_path):
    # a 2 x 2 grid: negative momentum is refused (failed), lr 100 blows up on the quadratic (diverged)
    done = run_cli("run.py", "-m", *TUNE, "hydra.sweeper.sampler=grid", "hydra.sweeper.n_trials=10", "model=quadratic",
                   "optimizer=sgd", "optimizer.lr=choice(0.01, 100.0)", "optimizer.momentum=choice(-0.5, 0.5)",
                   "trainer.max_steps=60", f"hydra.sweep.dir={tmp_path}")
    assert done.returncode == 0, done.stderr[-3000:]
    (study,) = _manifest(tmp_path)["studies"]
    outcomes = {(t["params"]["optimizer.lr"], t["params"]["optimizer.momentum"]): t for t in study["trials"]}
    assert len(study["trials"]) == 4 and set(outcomes) == {(0.01, -0.5), (0.01, 0.5), (100.0, -0.5), (100.0, 0.5)}
    assert outcomes[(0.01, -0.5)]["status"] == outcomes[(100.0, -0.5)]["status"] == "failed"
    assert "optimizer.momentum=-0.5: must be in [0, 1)" in outcomes[(0.01, -0.5)]["error"]
    assert outcomes[(100.0, 0.5)]["status"] == "diverged" and outcomes[(100.0, 0.5)]["value"] == "Infinity"
    assert _summary(tmp_path / outcomes[(100.0, 0.5)]["run_dir"])["status"] == "diverged"
    best = outcomes[(0.01, 0.5)]
    assert best["status"] == "completed" and study["best"]["number"] == best["number"]
    assert best["value"] == _summary(tmp_path / best["run_dir"])["metric"]["final"] < 50
    assert "1 completed, 1 diverged, 2 failed" in done.stdout


def test_median_pruner_stops_trials_worse_than_the_median_at_the_same_step(tmp_path):
    done = run_cli("run.py", "-m", *TUNE, "hydra.sweeper.pruner=median", "hydra.sweeper.n_trials=10",
                   "hydra.sweeper.sampler=random", "model=mlp", "optimizer=adamw",
                   "optimizer.lr=tag(log, interval(1e-5, 1e-1))", "trainer.max_steps=200",
                   "trainer.val_check_interval=50", f"hydra.sweep.dir={tmp_path}")
    assert done.returncode == 0, done.stderr[-3000:]
    (study,) = _manifest(tmp_path)["studies"]
    trials = study["trials"]
    pruned = [t for t in trials if t["status"] == "pruned"]
    assert pruned and all(t["state"] == "PRUNED" for t in pruned) and trials[0]["status"] == "completed"
    curves = {t["number"]: {p["step"]: p["value"] for p in _summary(tmp_path / t["run_dir"])["metric"]["history"]}
              for t in trials}
    for trial in pruned:
        summary = _summary(tmp_path / trial["run_dir"])
        step = summary["stopped"]["step"]
        assert summary["stopped"]["by"] == "pruner" and summary["steps"] == step < 200
        earlier = sorted(curves[t["number"]][step] for t in trials[: trial["number"]] if t["status"] == "completed")
        assert len(earlier) >= 5  # MedianPruner's start-up trials
        median = (earlier[(len(earlier) - 1) // 2] + earlier[len(earlier) // 2]) / 2
        assert min(v for s, v in curves[trial["number"]].items() if 0 < s <= step) > median
    assert study["best"]["number"] in [t["number"] for t in trials if t["status"] == "completed"]


def _wait_for(condition, child: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert child.poll() is None, child.stderr.read()[-3000:] if child.stderr else "the sweep ended early"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _completed(sweep_dir: Path) -> int:
    return len(list(sweep_dir.glob("*/summary.json")))


def test_killed_sweep_continues_to_its_budget(tmp_path):
    """Killed (SIGKILL) after 3 trials, stopped (SIGTERM) in its 6th, run again: one study of 8 trials."""
    sweep = tmp_path / "sweep"
    args = [sys.executable, "run.py", "-m", *TUNE, "hydra.sweeper.n_trials=8", "hydra.sweeper.sampler=random",
            "model=mlp", "optimizer=adamw", "trainer.max_steps=300", "trainer.val_check_interval=100",
            "checkpoint.every_n_steps=20", f"hydra.sweep.dir={sweep}"]
    env = {**os.environ, "WANDB_MODE": "offline"}

    child = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: _completed(sweep) >= 3, child)
        child.kill()
        child.wait(timeout=60)
    finally:
        child.kill()
    first = {p.parent.name: p.stat().st_mtime_ns for p in sweep.glob("*/summary.json")}
    assert len(first) == 3

    child = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: _completed(sweep) >= 5 and len(list(sweep.glob("*/checkpoints/last.ckpt"))) > 5, child)
        child.send_signal(signal.SIGTERM)
        _, stderr = child.communicate(timeout=120)
    finally:
        child.kill()
    assert child.returncode == 75, stderr[-3000:]
    assert f"hydra.sweep.dir={sweep}" in stderr
    (stopped,) = [p.parent for p in sweep.glob("*/summary.json") if _summary(p.parent)["status"] == "interrupted"]

    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(sweep / "optuna.journal")))
    (summary,) = optuna.get_all_study_summaries(storage)
    trials = optuna.load_study(study_name=summary.study_name, storage=storage).trials
    assert len(trials) == 8 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    members = sorted(sweep.glob("*/summary.json"))
    assert len(members) == 8 and len({t.params["optimizer.lr"] for t in trials}) == 8
    # finished members were not run again; the stopped one continued from its checkpoint, in its directory
    assert all(sweep.joinpath(name, "summary.json").stat().st_mtime_ns == ns for name, ns in first.items())
    assert _summary(stopped)["status"] == "completed" and _summary(stopped)["steps"] == 300
    assert _summary(stopped)["resumes"][0]["from_step"] > 0
    # the best trial: its config in best/, equal to what its run directory recorded
    best = min(trials, key=lambda t: t.value)
    record = yaml.safe_load((sweep / "best" / "study.yaml").read_text())
    assert record["trial"] == best.number and record["final"] == best.value
    assert record["config"] == _summary(sweep / best.user_attrs["run_dir"])["config"]
    assert record["config"]["optimizer"]["lr"] == best.params["optimizer.lr"]


def test_tuned_comparison_tunes_every_solver_on_an_equal_budget(tmp_path):
    done = run_cli("run.py", "-m", "+experiment=tuned-comparison", "backend=cpu", "logger=wandb",
                   "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false",
                   "hydra.sweeper.n_trials=3", "hydra.sweeper.rerun_seeds=[1,2]", "trainer.max_steps=100",
                   f"hydra.sweep.dir={tmp_path}")
    assert done.returncode == 0, done.stderr[-3000:]
    studies = {s["name"]: s for s in _manifest(tmp_path)["studies"]}
    assert set(studies) == {f"optimizer={o} model={m}" for o in ("sgd", "adamw", "sophia", "psgd")
                            for m in ("logreg", "mlp")}
    for name, study in studies.items():
        solver, problem = (part.split("=")[1] for part in name.split())
        assert len(study["trials"]) == 3 and all(t["state"] in ("COMPLETE", "FAIL") for t in study["trials"])
        assert set(study["space"]) == {f"optimizer.{k}" for k in compose(f"optimizer={solver}").optimizer.search_space}
        best = study["best"]
        assert best is not None and best["value"] == min(
            t["value"] for t in study["trials"] if t["status"] == "completed")
        assert [r["seed"] for r in study["reruns"]] == [1, 2]
        for rerun in study["reruns"]:
            summary = _summary(tmp_path / rerun["run_dir"])
            assert summary["status"] == "completed" and summary["seed"] == rerun["seed"]
            assert summary["names"] == {"optimizer": solver, "model": problem, "backend": "cpu", "schedule": "constant"}
            for key, value in best["params"].items():
                assert summary["config"]["optimizer"][key.split(".", 1)[1]] == value
            assert summary["metric"]["final"] < summary["metric"]["initial"]
            wandb = read_run(next((tmp_path / rerun["run_dir"] / "wandb").glob("offline-run-*/run-*.wandb")))
            assert wandb["group"] == "/".join(tmp_path.parts[-2:]) and wandb["job_type"] == solver
            assert wandb["tags"] == [problem, "cpu"]
            assert wandb["summary"]["val/loss/final"] == pytest.approx(summary["metric"]["final"])
            assert wandb["summary"]["status"] == "completed"
        assert (tmp_path / best["config"]).is_file()
    # compare takes each study's re-runs (or, asked, every trial); report adds the tuneability figure
    table = json.loads(run_cli("-m", "framework", "compare", str(tmp_path), "--format", "json").stdout)
    assert len(table["groups"]) == 8 and all(g["runs"] == g["seeds"] == 2 for g in table["groups"])
    every = json.loads(run_cli("-m", "framework", "compare", str(tmp_path), "--all-trials", "--format", "json").stdout)
    assert all(g["runs"] == 5 for g in every["groups"])
    done = run_cli("-m", "framework", "report", str(tmp_path), "--out", str(tmp_path / "report"))
    assert done.returncode == 0, done.stderr
    svg = (tmp_path / "report" / "tuneability.svg").read_text()
    assert all(f">{name}<" in svg for name in ("sgd", "adamw", "sophia", "psgd", "logreg", "mlp", "tuning trials"))


def test_gpt2_study_narrows_the_learning_rate_and_keeps_each_solvers_other_knobs():
    """The GPU experiment, composed as run.py would (it needs a GPU to run)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from framework.configs import register_configs

    register_configs(experiments=ROOT / "experiments")
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3", job_name="test"):
        cfg = hydra_compose("config", overrides=["+experiment=tuned-comparison-gpt2"], return_hydra_config=True)
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.n_trials == 12 and list(sweeper.rerun_seeds) == [1, 2]
    assert cfg.model.n_layer == 12 and cfg.model.block_size == 1024 and cfg.trainer.max_steps == 2000
    params = [f"{k}={v}" for k, v in sweeper.params.items()]
    top = parse_space(params)
    assert top.study_grid() == [["optimizer=adamw"], ["optimizer=sophia"]]
    for solver, knobs in (("adamw", {"weight_decay"}), ("sophia", {"rho", "k"})):
        own = compose(f"optimizer={solver}").optimizer.search_space
        space = parse_space([*solver_space(own, top.keys()), *params])
        assert space.searched["optimizer.lr"] == FloatDistribution(6e-5, 6e-3, log=True)
        assert set(space.searched) == {"optimizer.lr", *(f"optimizer.{k}" for k in knobs)}


def test_a_solvers_defaults_live_in_its_yaml_only():
    """Constructors take keyword-only settings without defaults; the YAML gives every one of them."""
    import inspect

    from hydra.utils import get_class

    from framework.registry import Registry
    from framework.solver import Solver

    for entry in Registry().entries("optimizer"):
        target = get_class(entry.target) if not entry.config.get("_partial_") else None
        if target is None or not issubclass(target, Solver):
            continue
        parameters = list(inspect.signature(target.__init__).parameters.values())[1:]
        assert all(p.kind is p.KEYWORD_ONLY and p.default is p.empty for p in parameters), entry.name
        assert {p.name for p in parameters} == set(entry.config) - {"_target_", "search_space"}, entry.name


def test_trial_killed_between_its_suggestions_gets_the_rest_when_the_sweep_runs_again(tmp_path):
    """A SIGKILL inside Optuna's ask leaves a trial with some of its parameters in the journal (and the journal's
    lock file): the next run suggests the rest and runs it, instead of failing on the missing one."""
    sweep = tmp_path / "sweep"
    args = ["run.py", "-m", *TUNE, "hydra.sweeper.sampler=random", "model=logreg", "optimizer=adamw",
            "trainer.max_steps=20", "trainer.val_check_interval=20", f"hydra.sweep.dir={sweep}"]
    done = run_cli(*args, "hydra.sweeper.n_trials=1")
    assert done.returncode == 0, done.stderr[-3000:]
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(sweep / "optuna.journal")))
    (summary,) = optuna.get_all_study_summaries(storage)
    study = optuna.load_study(study_name=summary.study_name, storage=storage)
    (first,) = study.trials
    name, distribution = next(iter(first.distributions.items()))
    assert len(first.distributions) == 2 and isinstance(distribution, FloatDistribution)
    half = study.ask()  # the journal as a kill between the first and the second suggestion leaves it
    half.suggest_float(name, distribution.low, distribution.high, log=distribution.log)

    done = run_cli(*args, "hydra.sweeper.n_trials=2")
    assert done.returncode == 0, done.stderr[-3000:]
    trials = optuna.load_study(study_name=summary.study_name, storage=storage).trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 2
    assert trials[1].params.keys() == first.params.keys() and trials[1].params[name] == half.params[name]
    assert len(list(sweep.glob("*/summary.json"))) == 2
