"""The local results store: ``summary.json`` beside the per-step ``metrics.csv`` in each run directory.

``summary.json`` is written once, atomically, when the run ends (completed, failed or interrupted); a
directory without it is not a result. Its schema is versioned (:data:`SCHEMA_VERSION`).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from framework.files import atomic_file

SCHEMA_VERSION = 1
SUMMARY = "summary.json"
METRICS = "metrics.csv"


class MetricHistory(pl.Callback):
    """Records the validation metric after every validation, and the training wall-clock."""

    def __init__(self, metric: str, mode: str, target: float | None) -> None:
        self.key = f"val/{metric}"
        self.mode = mode
        self.target = target
        self.points: list[dict[str, float]] = []
        #: every ``val/*`` metric of the latest validation (curves such as icl-linreg's per-position error)
        self.last_validation: dict[str, float] = {}
        self.train_seconds = 0.0
        self._started: float | None = None

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._started = time.perf_counter()

    def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if self._started is not None:
            self.train_seconds += time.perf_counter() - self._started
            self._started = None

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self.key not in trainer.callback_metrics:
            return
        self.last_validation = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        elapsed = self.train_seconds + (time.perf_counter() - self._started if self._started else 0.0)
        point = {
            "step": trainer.global_step,
            "items": module.totals.items,
            "flops": module.totals.flops,
            "seconds": elapsed,
            "value": float(trainer.callback_metrics[self.key]),
        }
        if self.points and self.points[-1]["step"] == point["step"]:
            self.points[-1] = point
        else:
            self.points.append(point)

    def _better(self, a: float, b: float) -> bool:
        return a < b if self.mode == "min" else a > b

    def summary(self) -> dict[str, Any]:
        values = [p["value"] for p in self.points if math.isfinite(p["value"])]
        best = None
        for value in values:
            best = value if best is None or self._better(value, best) else best
        reached = None
        if self.target is not None:
            for p in self.points:
                if p["value"] == self.target or self._better(p["value"], self.target):
                    reached = p
                    break
        return {
            "name": self.key,
            "mode": self.mode,
            "initial": self.points[0]["value"] if self.points else None,
            "final": self.points[-1]["value"] if self.points else None,
            "best": best,
            "target": self.target,
            "reached_target": reached,
            "history": self.points,
        }


def write_summary(run_dir: Path, summary: dict[str, Any]) -> Path:
    """Write ``summary.json`` atomically: readers see the old file or the whole new one, never half."""
    path = Path(run_dir) / SUMMARY
    with atomic_file(path) as out:
        out.write(json.dumps({"schema_version": SCHEMA_VERSION, **summary}, indent=2, default=str))
    return path


def read_summary(run_dir: Path) -> dict[str, Any]:
    return json.loads((Path(run_dir) / SUMMARY).read_text())
