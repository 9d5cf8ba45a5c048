"""Glue between ``run.py`` and the runner: plugin configs, run-directory guard, one-line errors."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from omegaconf import DictConfig

from framework.configs import register_configs
from framework.errors import ConfigError
from framework.results import SUMMARY

#: what Hydra itself writes into a run directory before the task starts
_HYDRA_FILES = (".hydra", "run.log")


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def guard_run_dir(argv: list[str]) -> None:
    """Refuse an explicit ``hydra.run.dir`` that already holds a result, before Hydra writes into it."""
    for arg in argv:
        key, _, value = arg.partition("=")
        if key.lstrip("+") == "hydra.run.dir" and (Path(value) / SUMMARY).exists():
            fail(f"hydra.run.dir={value}: already holds a result ({SUMMARY}); choose a new directory")


def prepare(argv: list[str], root: Path) -> None:
    """Run before ``hydra.main``: make plugins and ``root/experiments`` selectable; check the run dir."""
    guard_run_dir(argv)
    register_configs(experiments=root / "experiments")


def _discard_fresh_run_dir(run_dir: Path, top: Path) -> None:
    """Remove what Hydra wrote for a run that never started, and the folders left empty by that,
    up to ``top``; leave anything else untouched."""
    for name in _HYDRA_FILES:
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    folder, top = run_dir.resolve(), top.resolve()
    while True:
        try:
            folder.rmdir()
        except OSError:
            return  # not empty: it holds files that are not ours
        folder = folder.parent
        if folder == top or top not in folder.parents:
            return


def train(cfg: DictConfig) -> float | None:
    """The Hydra task: train, report where the results are, return the final metric (for sweepers)."""
    from hydra.core.hydra_config import HydraConfig

    from framework.runner import run

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        summary = run(cfg, run_dir)
    except ConfigError as error:
        _discard_fresh_run_dir(run_dir, Path(HydraConfig.get().runtime.cwd))
        fail(str(error))
    metric = summary["metric"]
    print(
        f"\n{summary['status']}: {metric['name']} {metric['initial']:.4g} -> {metric['final']:.4g} "
        f"in {summary['steps']} steps, {summary['wall_clock_s']['train']:.1f} s of training"
    )
    print(f"results: {run_dir / SUMMARY}")
    print(f"per-step metrics: {run_dir / 'metrics.csv'}")
    wandb_dir = run_dir / "wandb"
    if wandb_dir.exists():
        print(f"W&B run: {wandb_dir} (offline runs upload with `wandb sync {wandb_dir}/offline-run-*`)")
    return metric["final"]
