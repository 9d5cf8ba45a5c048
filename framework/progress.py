"""A progress bar over optimizer steps, the unit in which optimizer runs are budgeted and compared."""

from __future__ import annotations

import time
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ProgressBar
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class StepProgressBar(ProgressBar):
    """One rich bar from step 0 to ``max_steps`` with the latest training loss and validation metric.

    Lightning's own bars count batches per epoch, which says little in a step-budgeted run. Training steps
    update it at most every ``refresh_seconds`` (rich redraws 10 times a second anyway), so that a step of a
    small problem does not pay for reading Lightning's progress-bar metrics.
    """

    refresh_seconds = 0.1

    def __init__(self, metric: str = "val/loss") -> None:
        super().__init__()
        self.metric = metric
        self._enabled = True
        self._progress: Progress | None = None
        self._task: Any = None
        self._next_refresh = 0.0

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._enabled:
            return
        self._progress = Progress(
            TextColumn("[bold]step"), BarColumn(bar_width=20), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[metrics]}"),
        )
        self._progress.start()
        self._task = self._progress.add_task("train", total=trainer.max_steps, completed=trainer.global_step,
                                             metrics="")

    def _refresh(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._progress is None:
            return
        metrics = self.get_metrics(trainer, pl_module)
        shown = {"loss": getattr(pl_module, "last_loss", None), self.metric: metrics.get(self.metric)}
        text = "  ".join(f"{k} {float(v):.4g}" for k, v in shown.items() if v is not None)
        self._progress.update(self._task, completed=trainer.global_step, metrics=text)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        now = time.monotonic()
        if now >= self._next_refresh:
            self._next_refresh = now + self.refresh_seconds
            self._refresh(trainer, pl_module)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._refresh(trainer, pl_module)

    def _stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._refresh(trainer, pl_module)
        self._stop()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._stop()
