"""The LightningModule that runs any solver on any problem, with manual optimization."""

from __future__ import annotations

import inspect
import math
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.plugins.precision import Precision
from pytorch_lightning.strategies import SingleDeviceStrategy
from pytorch_lightning.utilities import rank_zero_warn
from pytorch_lightning.utilities.model_helpers import is_overridden

from framework.costs import Costs
from framework.distributed import DataParallel
from framework.errors import ConfigError
from framework.lifecycle.divergence import DeferredLossCheck
from framework.lifecycle.status import Diverged
from framework.problem import Problem
from framework.schedules import Schedule
from framework.solver import Solver, StepContext


class TrainingTask(pl.LightningModule):
    """Runs ``solver`` on ``problem``: each training step is the solver's, each pass is counted.

    With ``fused_steps`` k > 1 a Lightning training batch is a list of k batches, one step each
    (:mod:`framework.lifecycle.fusion`). Logged per step: ``train/loss``, ``train/lr`` (the first parameter
    group's, as the step used it), ``train/grad_norm`` (when clipping), cumulative cost counters under
    ``cost/`` and the solver's state bytes (to loggers other than the CSV every ``dashboard_every`` steps).
    Validation logs ``val/<metric>`` for every metric the problem reports. A non-finite training loss raises
    :class:`Diverged` in the step that produced it; on an accelerator, between logged steps, at the next
    logged step, checkpoint or the end of training, naming the step that produced it.
    Checkpoints hold the solver's own state, the cost counters, the number of batches trained on and k.
    """

    def __init__(self, problem: Problem, solver: Solver, grad_clip: float | None = None,
                 schedule: Schedule | None = None, parallel: DataParallel | None = None,
                 fused_steps: int = 1, dashboard_every: int = 1) -> None:
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
        self.last_loss: float | torch.Tensor | None = None
        #: whether the host reads a step's loss only on logged steps, the divergence check of the others
        #: deferred (:mod:`framework.lifecycle.divergence`); None: where the loss lives on an accelerator
        self.defer_loss_checks: bool | None = None
        self.loss_check = DeferredLossCheck()
        #: set when training starts (:meth:`on_train_start`)
        self.trainable: list[torch.Tensor] = []
        self.backward_directly = False
        #: training batches consumed so far: the data position a resumed run starts from
        self.batches_trained = 0
        #: optimizer steps per Lightning training batch (:mod:`framework.lifecycle.fusion`)
        self.fused_steps = fused_steps
        #: loggers other than the CSV (W&B) get the row of every n-th step and of the last one
        self.dashboard_every = dashboard_every

    def __setattr__(self, name: str, value: Any) -> None:
        """Plain values (strings, numbers, None, plain tensors) under names that are no parameter, buffer or
        submodule are stored as ``nn.Module.__setattr__`` would store them, without its checks: Lightning sets
        ``_current_fx_name`` around every hook call, about 35 times a step, at ~1 us each through torch's
        path (isinstance checks against the Parameter and Buffer metaclasses), a quarter of a small model's
        step (benchmarks/loop_overhead.py)."""
        fields = self.__dict__
        if (type(value) in _PLAIN_VALUES and "_buffers" in fields and name not in fields["_parameters"]
                and name not in fields["_modules"] and name not in fields["_buffers"]):
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

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

    def on_train_start(self) -> None:
        """Read once what stays fixed while training, after the strategy has set the model up: the trainable
        parameters and whether a backward can skip Lightning's wrappers (``backward_directly``)."""
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.backward_directly = _backward_needs_no_lightning(self.trainer)
        if self.fused_steps > 1:
            _warn_of_batch_callbacks(self.trainer, self.fused_steps)

    def training_step(self, batch: Any, batch_idx: int) -> None:
        """One step on ``batch``; with fused steps (``fused_steps`` > 1), one step on each batch of the list
        ``batch`` until ``trainer.max_steps`` (:mod:`framework.lifecycle.fusion`)."""
        if self.fused_steps == 1:
            self._step(batch)
            return
        done, last = 0, self.trainer.max_steps
        for item in batch:
            self._step(item)
            done += 1
            if self.global_step == last:
                break
        # Lightning counts the group as one batch; its logging step (validation rows) counts steps
        self.trainer.fit_loop.epoch_loop._batches_that_stepped += done - 1

    # Lightning reads training_step's signature on every step (is_param_in_hook_signature); inspect takes a
    # stored __signature__ as it is, a lookup instead of parsing the function each time
    training_step.__signature__ = inspect.signature(training_step)  # type: ignore[attr-defined]

    def _step(self, batch: Any) -> None:
        """One optimizer step of the solver on ``batch``: counted, checked for divergence, logged."""
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
        every = self.trainer.log_every_n_steps
        logged = bool(every) and ((step + 1) % every == 0 or self.trainer.should_stop)
        defer = loss.device.type != "cpu" if self.defer_loss_checks is None else self.defer_loss_checks
        if defer and not logged:  # no wait for the device: the check is read with the next logged loss
            self.loss_check.record(step, loss)
            self.last_loss = loss.detach()
            return
        self.loss_check.raise_if_any()
        value = loss.item()  # the step's one wait for the device: the divergence check needs the value
        if not math.isfinite(value):
            raise Diverged(step, "train/loss", value)
        self.last_loss = value
        if logged:
            self._log_step(step, value, lr, ctx.grad_norm)

    def _log_step(self, step: int, loss: float, lr: float, grad_norm: torch.Tensor | None) -> None:
        """The step's row in the loggers, written to them directly: Lightning's ``self.log`` collects and
        reduces each value through its result collection, a large part of a small model's step. The CSV
        reaches the disk every 100 rows, at each checkpoint (which records its position) and at the end;
        rows after the last checkpoint are cut on resume anyway. Other loggers (W&B: ~0.4 ms a row on
        two cores, more than a small problem's step) get every ``dashboard_every``-th row and the last."""
        if not self.loggers:
            return
        last = step + 1 == self.trainer.max_steps or self.trainer.should_stop
        dashboard = last or (step + 1) % self.dashboard_every == 0
        metrics = {"train/loss": loss, "train/lr": float(lr)}
        if grad_norm is not None:
            metrics["train/grad_norm"] = grad_norm.item()
        for name, total in self.totals.as_dict().items():
            metrics[f"cost/{name}"] = float(total)
        metrics["cost/state_bytes"] = float(self.solver.state_bytes())
        metrics["epoch"] = self.current_epoch
        for logger in self.loggers:
            if dashboard or isinstance(logger, CSVLogger):
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

    def on_train_end(self) -> None:
        self.loss_check.raise_if_any()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.loss_check.raise_if_any()  # a diverged state is never checkpointed
        checkpoint["solver"] = self.solver.state_dict()
        checkpoint["costs"] = self.totals.as_dict()
        checkpoint["batches"] = self.batches_trained
        checkpoint["fused_steps"] = self.fused_steps  # a resumed run keeps its groups (and validation steps)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.solver.load_state_dict(checkpoint.get("solver", {}))
        self.totals = Costs(**checkpoint.get("costs", {}))
        self.batches_trained = int(checkpoint.get("batches", 0))


def _backward_needs_no_lightning(trainer: pl.Trainer) -> bool:
    """Whether Lightning's ``manual_backward`` would do no more than ``loss.backward()``: one device, full
    precision (no loss scaling), and no callback or module hook around the backward. Its wrappers cost
    ~20 us a step, a fifth of a small problem's step (benchmarks/loop_overhead.py)."""
    hooks = ("on_before_backward", "on_after_backward")
    return (type(trainer.strategy) is SingleDeviceStrategy and type(trainer.precision_plugin) is Precision
            and not any(is_overridden(hook, callback, pl.Callback) for callback in trainer.callbacks for hook in hooks)
            and not any(is_overridden(hook, trainer.lightning_module, pl.LightningModule)
                        for hook in (*hooks, "backward")))


def _warn_of_batch_callbacks(trainer: pl.Trainer, fused: int) -> None:
    """One warning line for each callback from outside optbench and Lightning that observes training batches,
    which fused steps make groups of steps."""
    hooks = ("on_train_batch_start", "on_train_batch_end")
    for callback in trainer.callbacks:
        if (not type(callback).__module__.startswith(("framework.", "pytorch_lightning.", "lightning."))
                and any(is_overridden(hook, callback, pl.Callback) for hook in hooks)):
            rank_zero_warn(f"fuse_steps={fused}: the on_train_batch_start/end hooks of callback "
                           f"{type(callback).__qualname__} run once per group of {fused} steps; fuse_steps=1 runs "
                           f"them after every step")


#: the types :meth:`TrainingTask.__setattr__` stores directly (exact types: no Parameter, no Buffer)
_PLAIN_VALUES = frozenset({str, int, float, bool, type(None), torch.Tensor})


def _loggable(value: torch.Tensor) -> torch.Tensor:
    """A detached float32 scalar, or float64 where the run computes in float64 (all its digits logged)."""
    return value.detach() if value.dtype == torch.float64 else value.detach().float()
