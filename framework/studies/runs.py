"""Reading results back: every run under some directories, from its ``summary.json``.

Directories that look like runs (Hydra's ``.hydra/``, a ``metrics.csv`` or ``checkpoints/``) but hold no
summary are listed as missing (a killed run, or one still under way), never an error. A summary of a schema
this version does not know is one clear error.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from framework.errors import ConfigError
from framework.results import METRICS, SCHEMA_VERSION, SUMMARY
from framework.studies.sweeps import MANIFEST as TUNING_MANIFEST

#: the summary schemas this version reads (1: before checkpoints; 2: resumes, stops, divergence)
READABLE_SCHEMAS = (1, SCHEMA_VERSION)
_RUN_MARKERS = (".hydra", METRICS, "checkpoints")


def number(value: Any) -> float | None:
    """A summary's number: ints and floats as they are, the strings "NaN" and "Infinity" back to floats,
    anything else None."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """``{"optimizer": {"lr": 0.1}}`` as ``{"optimizer.lr": 0.1}``; lists stay values."""
    if not isinstance(node, dict):
        return {prefix: node} if prefix else {}
    flat: dict[str, Any] = {}
    for key, value in node.items():
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


@dataclass
class RunResult:
    """One run's summary, with the names and numbers comparisons group and aggregate by."""

    path: Path
    summary: dict[str, Any]
    #: in a tuning sweep: "trial", "best trial" or "re-run" (of the best trial, on a fresh seed); else None
    role: str | None = None
    _config: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def status(self) -> str:
        return str(self.summary.get("status", "unknown"))

    def name(self, kind: str) -> str:
        """The selected option of ``optimizer``, ``model`` or ``backend`` (as in ``names``)."""
        return str((self.summary.get("names") or {}).get(kind) or "?")

    @property
    def solver(self) -> str:
        """The solver's name, with its learning-rate schedule where that is not constant."""
        schedule = (self.summary.get("names") or {}).get("schedule")
        return self.name("optimizer") + (f" ({schedule})" if schedule and schedule != "constant" else "")

    @property
    def seed(self) -> int | None:
        return self.summary.get("seed")

    @property
    def metric(self) -> dict[str, Any]:
        return self.summary.get("metric") or {}

    @property
    def config(self) -> dict[str, Any]:
        """The run's config, flattened to dotted keys."""
        if self._config is None:
            self._config = flatten(self.summary.get("config") or {})
        return self._config

    def setting(self, key: str) -> Any:
        value = self.config.get(key)
        return json.dumps(value) if isinstance(value, (list, dict)) else value

    def history(self) -> list[dict[str, float]]:
        """Validation points: step, items, flops, seconds, value (non-finite values as floats)."""
        return [{k: number(v) for k, v in point.items()} for point in self.metric.get("history") or []]

    def reached(self) -> dict[str, float] | None:
        point = self.metric.get("reached_target")
        return {k: number(v) for k, v in point.items()} if point else None


@dataclass
class Collection:
    """Every run found, the run directories that hold no result, and each tuning sweep's ``tuning.json``
    (by sweep directory)."""

    runs: list[RunResult]
    missing: list[Path]
    manifests: dict[Path, dict[str, Any]] = field(default_factory=dict)

    def results(self, all_trials: bool = False) -> list[RunResult]:
        """The runs to compare: of a tuning sweep, each study's re-runs of its best configuration (its best
        trial where it has none), since its other trials are a search, not a result; all with
        ``all_trials``."""
        if all_trials:
            return self.runs
        return [r for r in self.runs if r.role in (None, "re-run", "best trial")]


def _roles(sweep_dir: Path, manifest: dict[str, Any]) -> dict[Path, str]:
    """What each run of a tuning sweep is, from its ``tuning.json``."""
    roles = {}
    for study in manifest.get("studies", []):
        for trial in study.get("trials", []):
            if trial.get("run_dir"):
                roles[(sweep_dir / trial["run_dir"]).resolve()] = "trial"
        reruns = study.get("reruns") or []
        for rerun in reruns:
            roles[(sweep_dir / rerun["run_dir"]).resolve()] = "re-run"
        if study.get("best") and not reruns:
            roles[(sweep_dir / study["best"]["run_dir"]).resolve()] = "best trial"
    return roles


def _walk(top: Path) -> Iterable[tuple[Path, list[str], list[str]]]:
    for folder, dirs, files in os.walk(top):
        dirs[:] = sorted(d for d in dirs if d not in ("wandb", "checkpoints", ".submitit", ".hydra"))
        yield Path(folder), dirs, files


def collect(directories: Iterable[Path]) -> Collection:
    """Every run under ``directories`` (run, sweep or study directories, searched recursively)."""
    runs, missing, seen = [], [], set()
    roles: dict[Path, str] = {}
    manifests: dict[Path, dict[str, Any]] = {}
    for top in directories:
        top = Path(top)
        if not top.is_dir():
            raise ConfigError("directory", str(top), "no such directory")
        for folder, _, files in _walk(top):
            if folder.resolve() in seen:
                continue
            seen.add(folder.resolve())
            if TUNING_MANIFEST in files:
                try:
                    manifests[folder] = json.loads((folder / TUNING_MANIFEST).read_text())
                    roles.update(_roles(folder, manifests[folder]))
                except (OSError, ValueError):
                    pass  # a tuning record being written: its runs count as plain runs
            if SUMMARY in files:
                runs.append(RunResult(folder, read(folder / SUMMARY), roles.get(folder.resolve())))
            elif any((folder / marker).exists() for marker in _RUN_MARKERS):
                missing.append(folder)
    return Collection(runs, missing, manifests)


def read(path: Path) -> dict[str, Any]:
    """A summary, checked: readable JSON of a schema this version knows."""
    try:
        summary = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise ConfigError("summary", str(path), f"cannot be read: {error}") from None
    version = summary.get("schema_version") if isinstance(summary, dict) else None
    if version not in READABLE_SCHEMAS:
        raise ConfigError(f"{path}: schema_version", version,
                          f"this optbench reads schema {', '.join(map(str, READABLE_SCHEMAS))}; "
                          f"a newer optbench wrote it")
    return summary


def finite(values: Iterable[float | None]) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v)]
