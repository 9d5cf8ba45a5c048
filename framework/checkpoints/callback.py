"""When checkpoints are written, and what a run adds to Lightning's checkpoint so that a resume is exact."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.loggers import WandbLogger

from framework.checkpoints.metrics_log import RunCSVLogger
from framework.checkpoints.resume import BEST, FORMAT, LAST, RUN_STATE, ResumePoint, checkpoint_dir
from framework.checkpoints.rng import capture_rng, restore_rng
from framework.lifecycle.signals import StopSignals
from framework.results import MetricHistory


class Checkpointing(pl.Callback):
    """Writes ``<run dir>/checkpoints/last.ckpt`` between two training steps.

    A checkpoint is due every ``every_n_steps`` steps, every ``every_n_minutes`` minutes of training, and
    when a stop signal has arrived (the run then stops without taking the next step). It is taken before
    a step begins, after the previous step's validation, so the resumed run neither repeats nor skips one.
    ``save_best`` also keeps ``best.ckpt``, written after each validation that improves the metric.

    Beside Lightning's contents (weights, optimizer state, loop counters, callback states, the task's
    solver state and cost counters) it stores, under ``"optbench"``: the global random-number states, the
    metrics-file position, the W&B run id, the resolved config and the list of earlier resumes. A resumed
    run (``resume``) gets its random states back as its first step begins.

    Lightning restores its loops from the counters it finds; it knows checkpoints taken at the end of a
    training batch (before that batch's validation), not between two steps. The saved counters are
    therefore written as Lightning's end-of-batch checkpoint of the previous step would have them; on
    restore, Lightning counts that step's validation as done, which it is.
    """

    def __init__(self, run_dir: Path, config: dict[str, Any], stop: StopSignals, metrics_log: RunCSVLogger | None,
                 history: MetricHistory, every_n_steps: int | None = None, every_n_minutes: float | None = None,
                 save_best: bool = False, resume: ResumePoint | None = None) -> None:
        self.directory = checkpoint_dir(run_dir)
        self.config, self.stop, self.metrics_log, self.history = config, stop, metrics_log, history
        self.every_n_steps, self.every_n_minutes, self.save_best = every_n_steps, every_n_minutes, save_best
        self.resumes = [*resume.resumes, {"from_step": resume.step, "at": _now()}] if resume else []
        self._saved_step = resume.step if resume else None
        self._clock = time.monotonic()
        self._pending = resume  # its random states, restored as the first step begins
        self._between_steps = False

    @property
    def last(self) -> Path:
        return self.directory / LAST

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._clock = time.monotonic()

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if self._pending is not None:
            restore_rng(self._pending.rng)  # after Lightning's restart bookkeeping, which may draw
            self._pending = None
        step = trainer.global_step
        due = step not in (0, self._saved_step) and self._due(step)
        parallel = getattr(pl_module, "parallel", None)
        if parallel is not None and self.every_n_minutes:  # clocks differ: every process saves (a collective)
            (due,) = parallel.any(due)
        if self.stop.stopping:  # as every process agreed (StopSignals, the callback before this one)
            if step > 0:
                self._save_between_steps(trainer)
            trainer.should_stop = True  # the task skips the step
        elif due:
            self._save_between_steps(trainer)

    def _due(self, step: int) -> bool:
        if self.every_n_steps and step % self.every_n_steps == 0:
            return True
        return bool(self.every_n_minutes) and time.monotonic() - self._clock >= 60 * self.every_n_minutes

    def _save_between_steps(self, trainer: pl.Trainer) -> None:
        self._between_steps = True
        try:
            self.save(trainer)
        finally:
            self._between_steps = False

    def save(self, trainer: pl.Trainer, path: Path | None = None) -> Path:
        """Write a checkpoint of the run as it is now (``last.ckpt`` unless told otherwise)."""
        path = path or self.last
        trainer.save_checkpoint(path, weights_only=False)
        if path == self.last:
            self._saved_step, self._clock = trainer.global_step, time.monotonic()
        return path

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not (self.save_best and trainer.state.fn == "fit" and not trainer.sanity_checking):
            return
        if self.history.improved():
            self.save(trainer, self.directory / BEST)

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        wandb = next((lg for lg in trainer.loggers if isinstance(lg, WandbLogger)), None)
        checkpoint[RUN_STATE] = {
            "format": FORMAT,
            "config": self.config,
            "rng": capture_rng(),
            "metrics": self.metrics_log.position() if self.metrics_log is not None else None,
            "wandb_id": wandb.version if wandb is not None else None,
            "resumes": self.resumes,
        }
        if self._between_steps:
            _as_saved_after_previous_step(checkpoint["loops"]["fit_loop"])


def _as_saved_after_previous_step(fit_loop: dict[str, Any]) -> None:
    """Loop counters taken before a step, rewritten as at the end of the previous training batch.

    Before step ``s`` Lightning's batch counters read ``ready = s + 1`` (the batch in hand), ``started =
    processed = completed = s``, and its logging step is ``s``. At the end of batch ``s - 1`` they read
    ``ready = started = processed = s``, ``completed = s - 1``, logging step ``s - 1``; from that shape
    Lightning resumes with exactly the counters of the uninterrupted run.
    """
    progress = fit_loop["epoch_loop.batch_progress"]
    for part in ("total", "current"):
        done = progress[part]["completed"]
        progress[part].update(ready=done, started=done, processed=done, completed=done - 1)
    fit_loop["epoch_loop.state_dict"]["_batches_that_stepped"] -= 1


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
