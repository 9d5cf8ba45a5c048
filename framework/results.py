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

SCHEMA_VERSION = 2
SUMMARY = "summary.json"
METRICS = "metrics.csv"


class MetricHistory(pl.Callback):
    """Records the validation metric after every validation, and the training wall-clock.

    Its state (the history and the training time so far) travels in checkpoints, so a resumed run reports
    the whole run. With ``stop_at_target`` the first validation that reaches the target stops training.
    """

    def __init__(self, metric: str, mode: str, target: float | None, stop_at_target: bool = False) -> None:
        self.key = f"val/{metric}"
        self.mode = mode
        self.target = target
        self.stop_at_target = stop_at_target
        self.stopped_at_target = False
        self.points: list[dict[str, float]] = []
        #: every ``val/*`` metric of the latest validation (curves such as icl-linreg's per-position error)
        self.last_validation: dict[str, float] = {}
        self.train_seconds = 0.0
        self._started: float | None = None

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._started = time.perf_counter()

    def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.train_seconds = self.seconds()
        self._started = None

    def on_exception(self, trainer: pl.Trainer, module: pl.LightningModule, exception: BaseException) -> None:
        self.on_train_end(trainer, module)

    def seconds(self) -> float:
        """Training time so far: earlier sessions of a resumed run plus the one under way."""
        return self.train_seconds + (time.perf_counter() - self._started if self._started is not None else 0.0)

    @property
    def last_step(self) -> int | None:
        return self.points[-1]["step"] if self.points else None

    def state_dict(self) -> dict[str, Any]:
        return {"points": self.points, "last_validation": self.last_validation, "train_seconds": self.seconds()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.points = list(state["points"])
        self.last_validation = dict(state["last_validation"])
        self.train_seconds = float(state["train_seconds"])

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self.key not in trainer.callback_metrics:
            return
        self.last_validation = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        point = {
            "step": trainer.global_step,
            "items": module.totals.items,
            "flops": module.totals.flops,
            "seconds": self.seconds(),
            "value": float(trainer.callback_metrics[self.key]),
        }
        if self.points and self.points[-1]["step"] == point["step"]:
            self.points[-1] = point
        else:
            self.points.append(point)
        if self.stop_at_target and trainer.state.fn == "fit" and self._reached(point["value"]):
            self.stopped_at_target = True
            trainer.should_stop = True

    def _reached(self, value: float) -> bool:
        return self.target is not None and (value == self.target or self._better(value, self.target))

    def improved(self) -> bool:
        """Whether the latest validation is the best so far (ties count as no improvement)."""
        values = [p["value"] for p in self.points if math.isfinite(p["value"])]
        return bool(values) and math.isfinite(self.points[-1]["value"]) and all(
            self._better(self.points[-1]["value"], v) for v in values[:-1])

    def _better(self, a: float, b: float) -> bool:
        return a < b if self.mode == "min" else a > b

    def summary(self) -> dict[str, Any]:
        values = [p["value"] for p in self.points if math.isfinite(p["value"])]
        best = None
        for value in values:
            best = value if best is None or self._better(value, best) else best
        reached = next((p for p in self.points if self._reached(p["value"])), None)
        return {
            "name": self.key,
            "mode": self.mode,
            "initial": self.points[0]["value"] if self.points else None,
            "final": self.points[-1]["value"] if self.points else None,
            "final_step": self.last_step,
            "best": best,
            "target": self.target,
            "reached_target": reached,
            "history": self.points,
        }


def strict_json(value: Any) -> Any:
    """``value`` with every non-finite float as a string: ``"NaN"``, ``"Infinity"`` or ``"-Infinity"``.

    JSON has no such numbers (Python writes bare ``NaN``, which strict parsers reject); a string keeps
    which one it was. ``float(s)`` reads each back.
    """
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def write_summary(run_dir: Path, summary: dict[str, Any]) -> Path:
    """Write ``summary.json`` atomically (the old file or the whole new one, never half), as strict JSON."""
    path = Path(run_dir) / SUMMARY
    text = json.dumps(strict_json({"schema_version": SCHEMA_VERSION, **summary}), indent=2, default=str,
                      allow_nan=False)
    with atomic_file(path) as out:
        out.write(text)
    return path


def read_summary(run_dir: Path) -> dict[str, Any]:
    return json.loads((Path(run_dir) / SUMMARY).read_text())
