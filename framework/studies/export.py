"""``optbench compare --export DIR``: every validation point of every run as one tidy long table.

One row per run and validation point, every run found (of a tuning sweep its trials too, with their ``role``;
a run without any, such as one refused at start, gets one row with
empty point columns, so that its status is there), every config key flattened to a ``config.*`` column.
Written as ``points.csv`` and, with pyarrow installed (``optbench[report]``), ``points.parquet``, for
pandas, polars or duckdb to take from there.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from framework.studies.runs import RunResult

POINT = ("step", "items", "flops", "seconds", "value")


def points(runs: list[RunResult], root: Path | None = None) -> list[dict[str, Any]]:
    rows = []
    for run in runs:
        where = str(run.path.relative_to(root)) if root and run.path.is_relative_to(root) else str(run.path)
        base = {"run": where, "status": run.status, "role": run.role, "solver": run.name("optimizer"),
                "schedule": (run.summary.get("names") or {}).get("schedule"), "problem": run.name("model"),
                "backend": run.name("backend"), "seed": run.seed, "metric": run.metric.get("name")}
        config = {f"config.{key}": run.setting(key) for key in run.config}
        for point in run.history() or [dict.fromkeys(POINT)]:
            rows.append({**base, **{key: point.get(key) for key in POINT}, **config})
    return rows


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    return list(columns)


def write_csv(rows: list[dict[str, Any]], path: Path) -> Path:
    with open(path, "w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=_columns(rows))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _column_type(values: list[Any]) -> type:
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return bool
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return float if any(isinstance(v, float) for v in present) else int
    return str


def write_parquet(rows: list[dict[str, Any]], path: Path) -> Path:
    """Parquet with one type per column: numbers, booleans, or text (a key that is a number in one run and
    text in another is text)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = _columns(rows)
    data = {}
    for name in columns:
        values = [row.get(name) for row in rows]
        kind = _column_type(values)
        data[name] = [None if v is None else kind(v) if kind is not str else str(v) for v in values]
    pq.write_table(pa.table(data), path)
    return path


def export(runs: list[RunResult], folder: Path, root: Path | None = None) -> list[Path]:
    """Write ``points.csv`` (and ``points.parquet`` where pyarrow is installed) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = points(runs, root)
    written = [write_csv(rows, folder / "points.csv")]
    try:
        written.append(write_parquet(rows, folder / "points.parquet"))
    except ImportError:
        pass
    return written
