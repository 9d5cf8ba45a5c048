"""Builds a run from a composed config and trains it under Lightning; writes the run's results.

A run with ``resume`` set continues the run in that directory from its last checkpoint, with the config
stored there (see :mod:`framework.checkpoints`).
"""

from __future__ import annotations

import platform
import time
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import pytorch_lightning as pl
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import Logger, WandbLogger
from pytorch_lightning.plugins.environments import SLURMEnvironment
from pytorch_lightning.utilities.exceptions import SIGTERMException

import framework
from framework.backend import Backend
from framework.checkpoints import AtomicCheckpointIO, Checkpointing, ResumePoint, RunCSVLogger, step_stream
from framework.checkpoints.stream import batches_per_epoch, own_generators
from framework.configs import refuse_ambiguous
from framework.distributed import DataParallel, external_rank, local_processes
from framework.errors import ConfigError, check_count, check_positive, require
from framework.estimate import warn_if_slow
from framework.lifecycle.fusion import FusedBatches, check_fuse_steps, fused_steps
from framework.lifecycle.signals import StopSignals
from framework.lifecycle.status import COMPLETED, DIVERGED, FAILED, INTERRUPTED, PRUNED, Diverged
from framework.problem import Problem
from framework.progress import StepProgressBar
from framework.registry import provider
from framework.results import MetricHistory, write_summary
from framework.schedules import Schedule
from framework.solver import SEARCH_SPACE, FactorySolver, Solver
from framework.task import TrainingTask

if TYPE_CHECKING:
    from framework.studies.pruning import TrialPruning

# Lightning's advice that does not apply to in-memory data and step-based runs
for _pattern in (".*does not have many workers.*", ".*is smaller than the logging interval.*",
                 ".*exists and is not empty.*", ".*LeafSpec.*is deprecated.*",
                 ".*resuming from a checkpoint that ended before the epoch ended.*",
                 # on a machine with SLURM installed: a local run is meant to be local
                 ".*The `srun` command is available on your system but is not used.*",
                 # every process of a data-parallel run validates on the whole validation set
                 ".*when logging on epoch level in distributed setting.*",
                 # AdaHessian breaks this cycle itself by detaching p.grad after the HVP
                 ".*backward\\(\\) with create_graph=True will create a reference cycle.*"):
    warnings.filterwarnings("ignore", message=_pattern)


def error_cause(error: BaseException) -> str:
    """The innermost message of an instantiation error, on one line (Hydra's own is a generic first line)."""
    while isinstance(error, InstantiationException) and error.__cause__ is not None:
        error = error.__cause__
    if isinstance(error, InstantiationException):
        text = str(error)
    else:
        text = f"{type(error).__name__}: {error}"
    return " ".join(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("full_key:"))


def build(node: DictConfig, group: str, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` that lets a :class:`ConfigError` through and names the real cause otherwise."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as error:
        cause = error.__cause__
        if isinstance(cause, ConfigError):
            raise cause from None
        raise ConfigError(group, OmegaConf.select(node, "_target_"), error_cause(error)) from error


def _without(node: DictConfig, key: str) -> DictConfig:
    """``node`` less ``key`` (a solver's search space is for the tuner, not for its constructor)."""
    if key not in node:
        return node
    return OmegaConf.masked_copy(node, [k for k in node if k != key])


def _choices(cfg: DictConfig) -> dict[str, str]:
    names = OmegaConf.select(cfg, "names", default=None) or {}
    return {k: str(v) for k, v in names.items()}


def _flag(setting: str, value: Any) -> bool:
    require(isinstance(value, bool), setting, value, "must be true or false")
    return value


def check_run_settings(cfg: DictConfig) -> None:
    """The settings of the run itself (not of a plugin): one :class:`ConfigError` line for a bad value."""
    check_count("trainer.max_steps", cfg.trainer.max_steps)
    check_count("seed", cfg.seed, minimum=0)
    check_count("trainer.val_check_interval", cfg.trainer.get("val_check_interval"))
    if cfg.get("grad_clip") is not None:
        check_positive("grad_clip", cfg.grad_clip)
    _flag("stop_at_target", cfg.get("stop_at_target", False))
    checkpoint = cfg.checkpoint
    _flag("checkpoint.enabled", checkpoint.enabled)
    _flag("checkpoint.save_best", checkpoint.save_best)
    if checkpoint.every_n_steps is not None:
        check_count("checkpoint.every_n_steps", checkpoint.every_n_steps)
    if checkpoint.every_n_minutes is not None:
        check_positive("checkpoint.every_n_minutes", checkpoint.every_n_minutes)
    check_fuse_steps(cfg)
    _dashboard_every(cfg)


def build_loggers(cfg: DictConfig, run_dir: Path, resume: ResumePoint | None, rank: int = 0) -> list[Logger]:
    """The per-step CSV in the run directory, plus the configured logger (W&B by default); none in the
    other processes of a data-parallel run (rank 0 writes the run's files).

    A resumed run continues the CSV from its checkpoint's position and the same W&B run (offline too).
    """
    if rank:
        return []
    loggers: list[Logger] = [RunCSVLogger(run_dir, resume.metrics if resume else None)]
    if cfg.get("logger") and cfg.logger.get("_target_"):
        same_run = {"id": resume.wandb_id, "resume": "allow"} if resume and resume.wandb_id else {}
        settings = OmegaConf.to_container(cfg.logger, resolve=True)  # resolved here: ${names...} are the run's
        settings.pop(DASHBOARD_EVERY, None)  # type: ignore[union-attr]
        loggers.append(build(OmegaConf.create(settings), "logger", save_dir=str(run_dir), **same_run))
    return loggers


#: the key of the logger's config that is optbench's, not the logger's: its interval of training rows
DASHBOARD_EVERY = "every_n_steps"


def _dashboard_every(cfg: DictConfig) -> int:
    """Every how many steps the configured logger (W&B) gets a training row (metrics.csv gets every one)."""
    logger = cfg.get("logger") or {}
    return check_count(f"logger.{DASHBOARD_EVERY}", logger.get(DASHBOARD_EVERY, 1))


def _schedule(cfg: DictConfig, solver: Solver) -> Schedule:
    """The run's learning-rate schedule (constant where the config names none), checked against the solver."""
    schedule: Schedule = build(cfg.schedule, "schedule") if cfg.get("schedule") else Schedule(cfg.trainer.max_steps)
    if solver.schedules_itself and not schedule.constant:
        name = _choices(cfg).get("optimizer", type(solver).__name__)
        raise ConfigError("schedule", schedule.name, f"optimizer={name} sets its own learning rate over time and "
                          "takes schedule=constant only (its warmup is optimizer.warmup_steps)")
    return schedule


def _train_batches(problem: Problem, cfg: DictConfig, start: int, rank: int, world: int) -> Iterable[Any]:
    """The problem's training loader as an endless stream from batch ``start`` (this process's slice of
    each batch); refuses an empty epoch, and a batch with fewer items than processes."""
    loader = problem.train_loader(cfg.seed)
    if batches_per_epoch(loader) == 0:
        dataset = getattr(loader, "dataset", None)
        size = f" ({len(dataset)} items)" if hasattr(dataset, "__len__") else ""
        raise ConfigError("model.batch_size", problem.batch_size,
                          f"is larger than the training set{size}: not one full batch")
    if world > 1 and problem.items_per_batch() < world:
        raise ConfigError("model.batch_size", problem.batch_size, f"gives {problem.items_per_batch()} items per "
                          f"batch, fewer than the {world} processes of backend.devices x backend.num_nodes")
    return step_stream(loader, start, cfg.seed, rank, world)


@dataclass
class Run:
    """A run ready to train: everything built and checked, nothing written yet (but a resumed metrics file)."""

    cfg: DictConfig
    run_dir: Path
    problem: Problem
    solver: Solver
    backend: Backend
    task: TrainingTask
    trainer: pl.Trainer
    history: MetricHistory
    loggers: list[Logger]
    stop: StopSignals
    checkpointing: Checkpointing | None
    train_batches: Iterable[Any]
    val_loader: Iterable[Any]
    resume: ResumePoint | None = None
    pruning: TrialPruning | None = None


def prepare(cfg: DictConfig, run_dir: Path, resume: ResumePoint | None = None) -> Run:
    """Build solver, backend, problem, module and trainer from ``cfg``.

    Bad settings raise :class:`ConfigError` here, before the solver or the data is touched and before
    anything is written to ``run_dir``.
    """
    run_dir = Path(run_dir)
    refuse_ambiguous(cfg)
    check_run_settings(cfg)
    solver = build(_without(cfg.optimizer, SEARCH_SPACE), "optimizer")
    if not isinstance(solver, Solver):
        solver = FactorySolver(solver)
    backend: Backend = build(cfg.backend, "backend")
    if backend.shards_parameters and not solver.runs_sharded:
        raise ConfigError("optimizer", _choices(cfg).get("optimizer", type(solver).__name__),
                          f"needs whole parameters (or second derivatives) and cannot run on backend="
                          f"{_choices(cfg).get('backend', backend.name)}, which shards them: use backend=ddp")
    backend = backend.resolve()
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    problem: Problem = build(cfg.model, "model")
    problem.check_target()
    if solver.needs_likelihood and problem.likelihood == "none":
        raise ConfigError("optimizer", type(solver).__name__, f"needs a predictive distribution (likelihood) "
                          f"for its curvature, which model={_choices(cfg).get('model', type(problem).__name__)} does not have")
    schedule = _schedule(cfg, solver)
    world, rank = backend.world_size, external_rank() or 0
    train_batches = _train_batches(problem, cfg, resume.batches if resume else 0, rank, world)
    fused = resume.fused_steps if resume else fused_steps(cfg, problem)
    problem.model = backend.prepare(problem.model)
    parallel = DataParallel(world, reduce_gradients=not backend.shards_parameters) if world > 1 else None
    task = TrainingTask(problem, solver, grad_clip=cfg.get("grad_clip"), schedule=schedule, parallel=parallel,
                        fused_steps=fused, dashboard_every=_dashboard_every(cfg))
    history = MetricHistory(problem.metric, problem.metric_mode, problem.target, cfg.get("stop_at_target", False))
    loggers = build_loggers(cfg, run_dir, resume, rank)
    stop = StopSignals()
    callbacks: list[pl.Callback] = [history, stop]
    checkpointing = None
    if cfg.checkpoint.enabled:
        checkpointing = Checkpointing(run_dir, OmegaConf.to_container(cfg, resolve=True), stop,
                                      loggers[0] if loggers else None, history,
                                      every_n_steps=cfg.checkpoint.every_n_steps,
                                      every_n_minutes=cfg.checkpoint.every_n_minutes,
                                      save_best=cfg.checkpoint.save_best, resume=resume)
        callbacks.append(checkpointing)
    pruning = None
    # a tuning trial: report validations, maybe stop early (rank 0 decides; StopSignals tells the others)
    if cfg.get("tuning") and cfg.tuning.get("pruner") and rank == 0:
        from framework.studies.pruning import TrialPruning

        pruning = TrialPruning(cfg.tuning.journal, cfg.tuning.study, cfg.tuning.trial_id, cfg.tuning.pruner,
                               history)
        callbacks.append(pruning)
    trainer_args = {
        "max_epochs": -1,
        "check_val_every_n_epoch": None,
        "num_sanity_val_steps": 0,
        "enable_checkpointing": False,  # ours: framework.checkpoints
        "default_root_dir": str(run_dir),
        "use_distributed_sampler": False,  # ours: each process takes its slice of the global batch
        **backend.trainer_kwargs(),
        **OmegaConf.to_container(cfg.trainer, resolve=True),
    }
    if isinstance(trainer_args.get("val_check_interval"), int):  # Lightning counts batches: groups of steps
        trainer_args["val_check_interval"] //= fused
    if trainer_args.get("enable_progress_bar", True):
        callbacks.append(StepProgressBar(history.key))
    plugins: list[Any] = [AtomicCheckpointIO()]
    if SLURMEnvironment.detect():  # stop signals and requeues are ours (framework.lifecycle), not Lightning's
        plugins.append(SLURMEnvironment(auto_requeue=False))
    trainer = pl.Trainer(logger=loggers, callbacks=callbacks, plugins=plugins, **trainer_args)
    if world > 1:  # Lightning's SIGTERM handler broadcasts from rank 0 inside the handler, out of step with the
        # other processes' collectives; stop signals are ours alone (StopSignals agrees on them before each step)
        trainer._signal_connector.register_signal_handlers = lambda: None  # type: ignore[method-assign]
    return Run(cfg, run_dir, problem, solver, backend, task, trainer, history, loggers, stop, checkpointing,
               train_batches, own_generators(problem.val_loader()), resume, pruning)


def _check_parameters(r: Run) -> None:
    for name, p in r.problem.model.named_parameters():
        if not torch.isfinite(p).all():
            raise Diverged(r.trainer.global_step, f"parameter {name}", float("nan"))


def execute(r: Run) -> dict[str, Any]:
    """Validate, train, validate at the end; write ``summary.json`` whatever happens; return it.

    A stop signal ends training between two steps with a checkpoint (status ``interrupted``); a non-finite
    loss or parameter ends it at once (``diverged``); other errors are recorded (``failed``) and raised.
    """
    resolved = OmegaConf.to_container(r.cfg, resolve=True)
    writes = r.trainer.is_global_zero  # the one process of a data-parallel run that writes its files
    if r.resume is None:
        for logger in r.loggers:
            logger.log_hyperparams(resolved)
    if writes:
        warn_if_slow(r.problem, r.backend, r.cfg.trainer.max_steps, _choices(r.cfg).get("model", ""))
    started = datetime.now(timezone.utc)
    clock = time.perf_counter()
    status, error, divergence = FAILED, None, None
    r.stop.install()
    try:
        if r.resume is None:
            r.trainer.validate(r.task, dataloaders=r.val_loader, verbose=False)
        batches = r.train_batches if r.task.fused_steps == 1 else FusedBatches(r.train_batches, r.task.fused_steps)
        r.trainer.fit(r.task, train_dataloaders=batches, val_dataloaders=r.val_loader,
                      ckpt_path=str(r.resume.path) if r.resume else None)
        stopped = r.stop.requested
        if r.task.parallel is not None:  # a signal may reach one process after the last agreement
            (stopped,) = r.task.parallel.any(stopped)
        if stopped and r.trainer.global_step < r.cfg.trainer.max_steps:
            status = INTERRUPTED
        else:
            _check_parameters(r)
            if r.checkpointing is not None:
                r.checkpointing.save(r.trainer)
            if r.history.last_step != r.trainer.global_step:
                r.trainer.validate(r.task, dataloaders=r.val_loader, verbose=False)
            status = PRUNED if r.pruning is not None and r.pruning.pruned_at is not None else COMPLETED
    except (Diverged, FloatingPointError) as exc:
        status = DIVERGED
        divergence = exc.as_dict() if isinstance(exc, Diverged) else {
            "step": r.trainer.global_step, "quantity": "solver", "value": str(exc)}
    except SIGTERMException:  # SIGTERM outside the training loop (Lightning's handler, during validation)
        status = INTERRUPTED
    except BaseException as exc:
        status = INTERRUPTED if isinstance(exc, KeyboardInterrupt) else FAILED
        error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        r.stop.restore()
        summary = _summary(r, resolved, status, error, divergence, started, clock)
        finish_loggers(r.loggers, summary)
        if writes:
            write_summary(r.run_dir, summary)
    if status == INTERRUPTED:
        r.stop.hand_on()  # a job scheduler's own handler (submitit requeues the job from here)
    return summary


def _summary(r: Run, resolved: dict, status: str, error: str | None, divergence: dict | None,
             started: datetime, clock: float) -> dict[str, Any]:
    stopped = None
    if r.stop.requested and status == INTERRUPTED:
        stopped = {"by": r.stop.received, "step": r.trainer.global_step}
    elif r.history.stopped_at_target:
        stopped = {"by": "target", "step": r.trainer.global_step}
    elif status == PRUNED:
        stopped = {"by": "pruner", "step": r.trainer.global_step}
    last = r.checkpointing.last if r.checkpointing is not None else None
    return {
        "status": status,
        "error": error,
        "names": _choices(r.cfg),
        "metric": r.history.summary(),
        "steps": r.trainer.global_step,
        "stopped": stopped,
        "divergence": divergence,
        "resumes": r.checkpointing.resumes if r.checkpointing is not None else [],
        "checkpoint": str(last.relative_to(r.run_dir)) if last is not None and last.exists() else None,
        "items": {"unit": r.problem.item_unit, "count": r.task.totals.items},
        "costs": r.task.totals.as_dict(),
        "state_bytes": r.solver.state_bytes(),
        "parameters": r.problem.num_parameters(),
        "data": r.problem.data_info(),
        "validation": r.history.last_validation,
        "wall_clock_s": {"train": r.history.seconds(), "total": time.perf_counter() - clock},
        "started_at": started.isoformat(),
        "backend": r.backend.describe(),
        "world_size": r.trainer.world_size,
        "threads": torch.get_num_threads(),
        "seed": r.cfg.seed,
        "versions": {
            "optbench": framework.__version__,
            "torch": torch.__version__,
            "pytorch_lightning": pl.__version__,
            "python": platform.python_version(),
            "plugins": {"optimizer": provider(r.solver), "model": provider(r.problem),
                        "backend": provider(r.backend)},
        },
        "config": resolved,
    }


def headline(summary: dict[str, Any]) -> dict[str, Any]:
    """The numbers a run is compared by, flat, for a W&B run summary: status, initial / final / best metric,
    steps, items, FLOPs and seconds, and when (step, items, FLOPs, seconds) the target was first reached."""
    metric, reached = summary["metric"], summary["metric"]["reached_target"] or {}
    values = {"status": summary["status"], "steps": summary["steps"], "items": summary["items"]["count"],
              "flops": summary["costs"].get("flops"), "train_seconds": summary["wall_clock_s"]["train"],
              f"{metric['name']}/initial": metric["initial"], f"{metric['name']}/final": metric["final"],
              f"{metric['name']}/best": metric["best"], "target/value": metric["target"],
              "target/reached": bool(reached)}
    values.update({f"target/{key}": reached[key] for key in ("step", "items", "flops", "seconds") if key in reached})
    return {key: value for key, value in values.items() if value is not None}


def finish_loggers(loggers: list[Logger], summary: dict[str, Any]) -> None:
    """Flush every logger; give the W&B run the headline numbers and end it, so that the next run in this
    process gets its own."""
    status = summary["status"]
    for logger in loggers:
        logger.finalize("success" if status == COMPLETED else status)
        if isinstance(logger, WandbLogger) and logger._experiment is not None:
            logger.experiment.summary.update(headline(summary))
            logger.experiment.finish(exit_code=0 if status == COMPLETED else 1)


def prepare_resume(run_dir: Path) -> Run:
    """The run in ``run_dir``, ready to continue from its last checkpoint with the config stored there."""
    resume = ResumePoint.read(Path(run_dir))
    return prepare(OmegaConf.create(resume.config), resume.run_dir, resume)


def run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Prepare and execute a run; return its summary. With ``resume`` set, continue that run instead
    (in its own directory, with its stored config). A backend of several processes on this machine gets
    its other processes started here (:func:`~framework.distributed.local_processes`)."""
    resume = ResumePoint.read(Path(str(cfg.resume))) if cfg.get("resume") else None
    settings = OmegaConf.create(resume.config) if resume else cfg
    refuse_ambiguous(settings)
    backend: Backend = build(settings.backend, "backend")
    config = OmegaConf.to_container(cfg, resolve=True) if backend.world_size > 1 else {}
    with local_processes(backend.world_size, backend.num_nodes, config, resume.run_dir if resume else run_dir,
                         backend.threads):
        if resume:
            return execute(prepare(settings, resume.run_dir, resume))
        return execute(prepare(cfg, run_dir))
