"""The LightningModule that runs any solver on any problem, with manual optimization."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch

from framework.costs import Costs
from framework.distributed import DataParallel
from framework.errors import ConfigError
from framework.lifecycle.status import Diverged
from framework.problem import Problem
from framework.schedules import Schedule
from framework.solver import Solver, StepContext


class TrainingTask(pl.LightningModule):
    """Runs ``solver`` on ``problem``: each training step is the solver's, each pass is counted.

    Logged per step: ``train/loss``, ``train/lr`` (the first parameter group's, as the step used it),
    ``train/grad_norm`` (when clipping), cumulative cost counters
    under ``cost/`` and the solver's state bytes. Validation logs ``val/<metric>`` for every metric the
    problem reports. A non-finite training loss raises :class:`Diverged` in the step that produced it.
    Checkpoints hold the solver's own state, the cost counters and the number of batches trained on.
    """

    def __init__(self, problem: Problem, solver: Solver, grad_clip: float | None = None,
                 schedule: Schedule | None = None, parallel: DataParallel | None = None) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.problem = problem
        self.model = problem.model
        self.solver = solver
        self.grad_clip = grad_clip
        self.schedule = schedule
        #: this process's part in a data-parallel run (None: the only process)
        self.parallel = parallel
        self.flops_per_item = problem.flops_per_item()
        self.totals = Costs()
        #: the last training loss (the progress bar shows it)
        self.last_loss: torch.Tensor | None = None
        #: training batches consumed so far: the data position a resumed run starts from
        self.batches_trained = 0

    def configure_optimizers(self) -> Any:
        optimizer = self.solver.setup(self.model)
        if self.schedule is None or self.schedule.constant:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": self.schedule.scheduler(optimizer),
                                                         "interval": "step"}}

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> int | None:
        """A stop asked for before this step (a signal, a reached target, a pruner) skips it: -1 ends the loop
        here (in every process of a data-parallel run alike: :class:`~framework.lifecycle.signals.StopSignals`)."""
        return -1 if self.trainer.should_stop else None

    def training_step(self, batch: Any, batch_idx: int) -> None:
        step = self.global_step
        ctx = StepContext(self, batch, step)
        lr = self.solver.optimizer.param_groups[0]["lr"] if self.solver.optimizer is not None else float("nan")
        with ctx.counting():
            loss = self.solver.step(ctx)
        if self.global_step == step:
            raise ConfigError("optimizer", type(self.solver).__name__, "its step did not step the optimizer through "
                              "the loop: call ctx.optimizer_step() or ctx.finish_step(), not self.optimizer.step()")
        scheduler = self.lr_schedulers()
        if scheduler is not None:
            scheduler.step()
        self.batches_trained += 1
        self.totals += ctx.costs
        if not torch.isfinite(loss):
            raise Diverged(step, "train/loss", float(loss))
        self.last_loss = loss.detach()
        every = self.trainer.log_every_n_steps
        if every and ((step + 1) % every == 0 or self.trainer.should_stop):
            self._log_step(step, loss, lr, ctx.grad_norm)

    def _log_step(self, step: int, loss: torch.Tensor, lr: float, grad_norm: torch.Tensor | None) -> None:
        """The step's row in the loggers, written to them directly: Lightning's ``self.log`` collects and
        reduces each value through its result collection, a large part of a small model's step. The CSV
        reaches the disk every 100 rows, at each checkpoint (which records its position) and at the end;
        rows after the last checkpoint are cut on resume anyway."""
        if not self.loggers:
            return
        metrics = {"train/loss": float(_loggable(loss)), "train/lr": float(lr)}
        if grad_norm is not None:
            metrics["train/grad_norm"] = float(_loggable(grad_norm))
        metrics.update({f"cost/{k}": float(v) for k, v in self.totals.as_dict().items()})
        metrics["cost/state_bytes"] = float(self.solver.state_bytes())
        metrics["epoch"] = self.current_epoch
        for logger in self.loggers:
            logger.log_metrics(metrics, step=step)

    def on_validation_start(self) -> None:
        self.solver.eval_mode()

    def on_validation_end(self) -> None:
        self.solver.train_mode()

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        metrics = self.problem.validation_metrics(self.model, batch)
        if self.problem.metric not in metrics:
            raise ConfigError("model", type(self.problem).__name__,
                              f"validation_metrics returns {sorted(metrics)}, without the problem's metric "
                              f"{self.problem.metric!r}")
        self.log_dict({f"val/{k}": _loggable(v) for k, v in metrics.items()}, on_epoch=True, prog_bar=True)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["solver"] = self.solver.state_dict()
        checkpoint["costs"] = self.totals.as_dict()
        checkpoint["batches"] = self.batches_trained

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.solver.load_state_dict(checkpoint.get("solver", {}))
        self.totals = Costs(**checkpoint.get("costs", {}))
        self.batches_trained = int(checkpoint.get("batches", 0))


def _loggable(value: torch.Tensor) -> torch.Tensor:
    """A detached float32 scalar, or float64 where the run computes in float64 (all its digits logged)."""
    return value.detach() if value.dtype == torch.float64 else value.detach().float()
