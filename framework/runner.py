"""Builds a run from a composed config and trains it under Lightning; writes the run's results."""

from __future__ import annotations

import platform
import time
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import CSVLogger, Logger, WandbLogger

import framework
from framework.backend import Backend
from framework.errors import ConfigError, check_count
from framework.estimate import warn_if_slow
from framework.problem import Problem
from framework.progress import StepProgressBar
from framework.results import MetricHistory, write_summary
from framework.solver import FactorySolver, Solver
from framework.task import TrainingTask

# Lightning's advice that does not apply to in-memory data and step-based runs
for _pattern in (".*does not have many workers.*", ".*is smaller than the logging interval.*",
                 ".*exists and is not empty.*", ".*LeafSpec.*is deprecated.*",
                 # AdaHessian breaks this cycle itself by detaching p.grad after the HVP
                 ".*backward\\(\\) with create_graph=True will create a reference cycle.*"):
    warnings.filterwarnings("ignore", message=_pattern)


def build(node: DictConfig, group: str, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` that lets a :class:`ConfigError` through unwrapped."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as error:
        cause = error.__cause__
        if isinstance(cause, ConfigError):
            raise cause from None
        raise ConfigError(group, OmegaConf.select(node, "_target_"), str(error).splitlines()[0]) from error


def _choices(cfg: DictConfig) -> dict[str, str]:
    names = OmegaConf.select(cfg, "names", default=None) or {}
    return {k: str(v) for k, v in names.items()}


def build_loggers(cfg: DictConfig, run_dir: Path) -> list[Logger]:
    """The per-step CSV in the run directory, plus the configured logger (W&B by default)."""
    loggers: list[Logger] = [CSVLogger(save_dir=str(run_dir), name="", version="")]
    if cfg.get("logger") and cfg.logger.get("_target_"):
        loggers.append(build(cfg.logger, "logger", save_dir=str(run_dir)))
    return loggers


@dataclass
class Run:
    """A run ready to train: everything built and checked, nothing written yet."""

    cfg: DictConfig
    run_dir: Path
    problem: Problem
    solver: Solver
    backend: Backend
    task: TrainingTask
    trainer: pl.Trainer
    history: MetricHistory
    loggers: list[Logger]


def prepare(cfg: DictConfig, run_dir: Path) -> Run:
    """Build solver, backend, problem, module and trainer from ``cfg``.

    Bad settings raise :class:`ConfigError` here, before the solver or the data is touched and before
    anything is written to ``run_dir``.
    """
    run_dir = Path(run_dir)
    check_count("trainer.max_steps", cfg.trainer.max_steps)
    solver = build(cfg.optimizer, "optimizer")
    if not isinstance(solver, Solver):
        solver = FactorySolver(solver)
    backend: Backend = build(cfg.backend, "backend").resolve()
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    problem: Problem = build(cfg.model, "model")
    problem.check_target()
    if solver.needs_likelihood and problem.likelihood == "none":
        raise ConfigError("optimizer", type(solver).__name__, f"needs a predictive distribution (likelihood) "
                          f"for its curvature, which model={_choices(cfg).get('model', type(problem).__name__)} does not have")
    problem.model = backend.prepare(problem.model)
    task = TrainingTask(problem, solver, grad_clip=cfg.get("grad_clip"))
    history = MetricHistory(problem.metric, problem.metric_mode, problem.target)
    loggers = build_loggers(cfg, run_dir)
    trainer_args = {
        "max_epochs": -1,
        "check_val_every_n_epoch": None,
        "num_sanity_val_steps": 0,
        "enable_checkpointing": False,
        "default_root_dir": str(run_dir),
        **backend.trainer_kwargs(),
        **OmegaConf.to_container(cfg.trainer, resolve=True),
    }
    callbacks: list[pl.Callback] = [history]
    if trainer_args.get("enable_progress_bar", True):
        callbacks.append(StepProgressBar(history.key))
    trainer = pl.Trainer(logger=loggers, callbacks=callbacks, **trainer_args)
    return Run(cfg, run_dir, problem, solver, backend, task, trainer, history, loggers)


def execute(r: Run) -> dict[str, Any]:
    """Validate, train, validate at the end; write ``summary.json`` whatever happens; return it."""
    resolved = OmegaConf.to_container(r.cfg, resolve=True)
    for logger in r.loggers:
        logger.log_hyperparams(resolved)
    warn_if_slow(r.problem, r.backend, r.cfg.trainer.max_steps, _choices(r.cfg).get("model", ""))
    started = datetime.now(timezone.utc)
    clock = time.perf_counter()
    status, error = "failed", None
    train_loader, val_loader = r.problem.train_loader(r.cfg.seed), r.problem.val_loader()
    try:
        r.trainer.validate(r.task, dataloaders=val_loader, verbose=False)
        r.trainer.fit(r.task, train_dataloaders=train_loader, val_dataloaders=val_loader)
        if r.task.last_val_step != r.trainer.global_step:
            r.trainer.validate(r.task, dataloaders=val_loader, verbose=False)
        status = "interrupted" if r.trainer.interrupted else "completed"
    except BaseException as exc:
        status = "interrupted" if isinstance(exc, (KeyboardInterrupt, SystemExit)) else "failed"
        error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        finish_loggers(r.loggers, status)
        summary = {
            "status": status,
            "error": error,
            "names": _choices(r.cfg),
            "metric": r.history.summary(),
            "steps": r.trainer.global_step,
            "items": {"unit": r.problem.item_unit, "count": r.task.totals.items},
            "costs": r.task.totals.as_dict(),
            "state_bytes": r.solver.state_bytes(),
            "parameters": r.problem.num_parameters(),
            "data": r.problem.data_info(),
            "validation": r.history.last_validation,
            "wall_clock_s": {"train": r.history.train_seconds, "total": time.perf_counter() - clock},
            "started_at": started.isoformat(),
            "backend": r.backend.describe(),
            "seed": r.cfg.seed,
            "versions": {
                "optbench": framework.__version__,
                "torch": torch.__version__,
                "pytorch_lightning": pl.__version__,
                "python": platform.python_version(),
            },
            "config": resolved,
        }
        write_summary(r.run_dir, summary)
    return summary


def finish_loggers(loggers: list[Logger], status: str) -> None:
    """Flush every logger; end the W&B run so that the next run in this process gets its own."""
    for logger in loggers:
        logger.finalize("success" if status == "completed" else status)
        if isinstance(logger, WandbLogger) and logger._experiment is not None:
            logger.experiment.finish(exit_code=0 if status == "completed" else 1)


def run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Prepare and execute a run; return its summary."""
    return execute(prepare(cfg, run_dir))
