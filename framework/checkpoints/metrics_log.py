"""The per-step ``metrics.csv``, continued by a resumed run exactly where its checkpoint left it."""

from __future__ import annotations

import csv
from pathlib import Path

from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter

from framework.files import atomic_file


class _ContinuedWriter(ExperimentWriter):
    """Lightning's CSV writer that keeps an existing file (Lightning's deletes it) and counts its rows."""

    def __init__(self, log_dir: str, rows: int, header: list[str]) -> None:
        super().__init__(log_dir=log_dir)
        self.rows = rows
        self.metrics_keys = list(header)

    def _check_log_dir_exists(self) -> None:
        """The run directory is this run's own: nothing in it is deleted."""

    def save(self) -> None:
        count = len(self.metrics)
        super().save()
        self.rows += count


class RunCSVLogger(CSVLogger):
    """``<run dir>/metrics.csv``: one row per step and per validation; ``position()`` is where a checkpoint is.

    A resumed run passes the position stored in its checkpoint: the file is cut back to those rows (the
    killed run may have written more) and continues, so it ends byte for byte as an uninterrupted run's.
    A new run starts the file afresh.
    """

    def __init__(self, run_dir: Path, position: tuple[int, list[str]] | None = None) -> None:
        super().__init__(save_dir=str(run_dir), name="", version="")
        self._start = position or (0, [])
        # a new run starts a new file (a killed run's rows without a checkpoint are not a result)
        trim_metrics(Path(run_dir) / ExperimentWriter.NAME_METRICS_FILE, *self._start)

    @property
    def experiment(self) -> _ContinuedWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _ContinuedWriter(self.log_dir, *self._start)
        return self._experiment

    def position(self) -> tuple[int, list[str]]:
        """Write out what is buffered; return (rows in the file, its header)."""
        self.save()
        return self.experiment.rows, list(self.experiment.metrics_keys)


def trim_metrics(path: Path, rows: int, header: list[str]) -> None:
    """Rewrite ``path`` (atomically) with its first ``rows`` rows under ``header``; no rows: no file."""
    if rows == 0:
        path.unlink(missing_ok=True)
        return
    kept: list[dict[str, str]] = []
    if path.exists():
        with open(path, newline="") as file:
            reader = csv.DictReader(file)
            for row in reader:
                if len(kept) == rows:
                    break
                kept.append(row)
    if len(kept) < rows:
        raise ValueError(f"{path} has {len(kept)} rows, fewer than the {rows} its checkpoint recorded")
    with atomic_file(path, newline="") as file:
        writer = csv.DictWriter(file, fieldnames=header)
        writer.writeheader()
        writer.writerows(kept)
