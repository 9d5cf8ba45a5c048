"""The LightningModule that runs any solver on any problem, with manual optimization."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch

from framework.costs import Costs
from framework.problem import Problem
from framework.solver import Solver, StepContext


class TrainingTask(pl.LightningModule):
    """Runs ``solver`` on ``problem``: each training step is the solver's, each pass is counted.

    Logged per step: ``train/loss``, ``train/grad_norm`` (when clipping), cumulative cost counters
    under ``cost/`` and the solver's state bytes. Validation logs ``val/<metric>`` for every metric the
    problem reports.
    """

    def __init__(self, problem: Problem, solver: Solver, grad_clip: float | None = None) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.problem = problem
        self.model = problem.model
        self.solver = solver
        self.grad_clip = grad_clip
        self.flops_per_item = problem.flops_per_item()
        self.totals = Costs()
        self.last_val_step: int | None = None

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.solver.setup(self.model)

    def training_step(self, batch: Any, batch_idx: int) -> None:
        ctx = StepContext(self, batch, self.global_step)
        loss = self.solver.step(ctx)
        self.totals += ctx.costs
        metrics = {"train/loss": loss.float()}
        if ctx.grad_norm is not None:
            metrics["train/grad_norm"] = ctx.grad_norm.float()
        self.log_dict(metrics, on_step=True, on_epoch=False, prog_bar=True, batch_size=1)
        counters = {f"cost/{k}": float(v) for k, v in self.totals.as_dict().items()}
        counters["cost/state_bytes"] = float(self.solver.state_bytes())
        self.log_dict(counters, on_step=True, on_epoch=False, batch_size=1)

    def on_validation_start(self) -> None:
        self.solver.eval_mode()

    def on_validation_end(self) -> None:
        self.solver.train_mode()
        self.last_val_step = self.global_step

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        metrics = self.problem.validation_metrics(self.model, batch)
        self.log_dict({f"val/{k}": v.float() for k, v in metrics.items()}, on_epoch=True, prog_bar=True)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["solver"] = self.solver.state_dict()
        checkpoint["costs"] = self.totals.as_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.solver.load_state_dict(checkpoint.get("solver", {}))
        self.totals = Costs(**checkpoint.get("costs", {}))
