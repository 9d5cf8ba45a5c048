"""Pruning a tuning trial from its validation history (``hydra.sweeper.pruner``).

A trial launched by the tuner with a pruner carries ``tuning.{journal, study, trial_id, pruner}`` in its
config.
After each validation during training it reports the metric to its trial in the study's journal (a file
the sweep's jobs share, on one machine or across a cluster) and asks the pruner whether to go on; if not,
the run ends at that step with status ``pruned``, and the tuner counts the trial as pruned.
"""

from __future__ import annotations

import math
from typing import Any

import pytorch_lightning as pl

from framework.errors import require
from framework.results import MetricHistory

PRUNERS = ("median", "asha")


def make_pruner(name: str) -> Any:
    """``median``: stop a trial whose value is worse than the median of earlier trials at the same step
    (after 5 trials); ``asha``: successive halving, asynchronous (Li et al. 2020), fit for parallel trials."""
    import optuna

    require(name in PRUNERS, "hydra.sweeper.pruner", name, f"must be null or one of {list(PRUNERS)}")
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5)
    return optuna.pruners.SuccessiveHalvingPruner()


class TrialPruning(pl.Callback):
    """Reports each training-time validation to the run's Optuna trial; stops training when it is pruned."""

    def __init__(self, journal: str, study: str, trial_id: int, pruner: str, history: MetricHistory) -> None:
        import optuna

        self.storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
        self.trial_id = int(trial_id)
        self.pruner = make_pruner(pruner)
        self.history = history
        self.study = optuna.load_study(study_name=str(study), storage=self.storage)
        self.pruned_at: int | None = None

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit" or not self.history.points:
            return
        point = self.history.points[-1]
        if point["step"] == 0 or not math.isfinite(point["value"]):
            return
        self.storage.set_trial_intermediate_value(self.trial_id, int(point["step"]), float(point["value"]))
        if self.pruner.prune(self.study, self.storage.get_trial(self.trial_id)):
            self.pruned_at = int(point["step"])
            trainer.should_stop = True
