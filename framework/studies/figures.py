"""What the report draws, as plain numbers (matplotlib and plotly draw the same data):

- curves: the validation metric of each solver against steps, items, FLOPs and seconds, the mean over
  seeds with the band from the lowest to the highest seed, each seed interpolated onto one grid of at most
  :data:`CURVE_POINTS` points (long runs are downsampled here; the table never is);
- performance profiles (Dolan and Moré 2002, as AlgoPerf scores): for each solver, the fraction of
  problems on which its time to target is within a factor tau of the fastest solver's;
- tuneability: the expected best metric after k trials drawn from a tuning study, k = 1..n.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from math import comb
from pathlib import Path
from typing import Any

import numpy as np

from framework.lifecycle.status import COMPLETED
from framework.studies.runs import Collection, RunResult, number

CURVE_POINTS = 200
AXES = {"step": "steps", "items": "items (samples or tokens)", "flops": "FLOPs", "seconds": "training seconds"}
PROFILE_UNITS = {"step": "steps", "flops": "FLOPs", "seconds": "seconds"}


@dataclass
class Curve:
    """One solver's metric on one problem against one x axis: mean and band over its seeds."""

    label: str
    x: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    seeds: int


@dataclass
class ProblemCurves:
    """Every solver's curves on one problem, per x axis, with the metric's name and target."""

    problem: str
    metric: str
    target: float | None
    by_axis: dict[str, list[Curve]] = field(default_factory=dict)


def _band(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and range (lowest to highest) over the rows of ``values``: with a few seeds the range shows the
    spread honestly, where a t-band would be wide and could cross zero on a log axis."""
    return values.mean(axis=0), values.min(axis=0), values.max(axis=0)


def _curve(label: str, runs: list[RunResult], axis: str) -> Curve | None:
    series = []
    for run in runs:
        points = [p for p in run.history() if p.get(axis) is not None and p.get("value") is not None
                  and math.isfinite(p["value"])]
        if len(points) >= 2:
            series.append((np.array([p[axis] for p in points]), np.array([p["value"] for p in points])))
    if not series:
        return None
    start, stop = max(x[0] for x, _ in series), min(x[-1] for x, _ in series)
    if stop <= start:  # runs that do not overlap on this axis: draw the first one alone
        series, (start, stop) = series[:1], (series[0][0][0], series[0][0][-1])
    grid = np.linspace(start, stop, min(CURVE_POINTS, max(len(x) for x, _ in series) if axis == "step" else CURVE_POINTS))
    values = np.stack([np.interp(grid, x, y) for x, y in series])
    mean, low, high = _band(values)
    return Curve(label, grid, mean, low, high, len(series))


def curves(runs: list[RunResult], label: Any) -> list[ProblemCurves]:
    """Per problem, per axis, one curve per group of runs (``label(run)`` names the group)."""
    problems: dict[str, dict[str, list[RunResult]]] = {}
    for run in runs:
        if run.status == COMPLETED:
            problems.setdefault(run.name("model"), {}).setdefault(label(run), []).append(run)
    out = []
    for problem, groups in sorted(problems.items()):
        first = next(iter(groups.values()))[0].metric
        figure = ProblemCurves(problem, str(first.get("name")), number(first.get("target")))
        for axis in AXES:
            drawn = [_curve(name, members, axis) for name, members in sorted(groups.items())]
            figure.by_axis[axis] = [c for c in drawn if c is not None]
        out.append(figure)
    return out


def profiles(runs: list[RunResult], label: Any) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Per unit (steps, FLOPs, seconds): each solver's (tau, fraction of problems solved within tau times
    the best solver's time to target). A solver's time on a problem is the median over its runs, a run
    that did not reach the target counting as never."""
    times: dict[str, dict[str, dict[str, float]]] = {unit: {} for unit in PROFILE_UNITS}
    groups: dict[tuple[str, str], list[RunResult]] = {}
    for run in runs:
        groups.setdefault((run.name("model"), label(run)), []).append(run)
    for (problem, solver), members in groups.items():
        for unit in PROFILE_UNITS:
            reached = [r.reached() if r.status == COMPLETED else None for r in members]
            value = float(np.median([p[unit] if p and p.get(unit) is not None else math.inf for p in reached]))
            times[unit].setdefault(problem, {})[solver] = value
    out = {}
    for unit, table in times.items():
        solvers = sorted({s for row in table.values() for s in row})
        ratios = {s: [] for s in solvers}
        for row in table.values():
            best = min(row.values())
            for solver in solvers:
                t = row.get(solver, math.inf)
                ratios[solver].append(t / best if math.isfinite(best) and best > 0 else math.inf)
        finite_ratios = [r for rs in ratios.values() for r in rs if math.isfinite(r)]
        top = max([2.0, *finite_ratios]) * 1.5
        taus = np.geomspace(1.0, top, 200)
        out[unit] = {s: (taus, np.array([np.mean([r <= tau for r in ratios[s]]) for tau in taus])) for s in solvers}
    return out


def expected_best(values: list[float], mode: str) -> np.ndarray:
    """E[best of k trials drawn without replacement from ``values``], k = 1..n (exact, from order
    statistics: the i-th best is the best of k with probability C(n-i, k-1) / C(n, k))."""
    ranked = sorted(values, reverse=(mode == "max"))
    n = len(ranked)
    return np.array([sum(comb(n - i, k - 1) / comb(n, k) * ranked[i - 1] for i in range(1, n - k + 2))
                     for k in range(1, n + 1)])


def _study_names(runs: dict[Path, RunResult], sweep_dir: Path, study: dict[str, Any]) -> tuple[str, str]:
    """(problem, solver) of a study, as its trials' summaries (already read) name them."""
    for trial in study["trials"]:
        run = runs.get((sweep_dir / str(trial.get("run_dir"))).resolve())
        if run is not None:
            return run.name("model"), run.name("optimizer")
    return "problem", study["name"]


def tuneability(collection: Collection) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Per problem, each tuned solver's expected best metric against the number of trials, from every
    tuning sweep in ``collection``. A diverged or failed trial counts as the study's worst completed one
    (it is a trial spent on nothing better)."""
    runs = {run.path.resolve(): run for run in collection.runs}
    out: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for sweep_dir, manifest in sorted(collection.manifests.items()):
        for study in manifest.get("studies", []):
            done = [number(t["value"]) for t in study["trials"] if t.get("status") == COMPLETED]
            done = [v for v in done if v is not None and math.isfinite(v)]
            if not done:
                continue
            mode = "max" if study.get("direction") == "maximize" else "min"
            worst = min(done) if mode == "max" else max(done)
            values = done + [worst] * (len(study["trials"]) - len(done))
            problem, solver = _study_names(runs, sweep_dir, study)
            out.setdefault(problem, {})[solver] = (np.arange(1, len(values) + 1), expected_best(values, mode))
    return out
