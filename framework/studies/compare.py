"""``optbench compare``: runs grouped by solver and problem (and any config keys), aggregated over seeds.

Each group's final and best metric are given as a mean with a 95% Student-t interval over its completed
runs (mean +- t(0.975, n-1) s / sqrt(n)); with one run there is no interval and the table says n=1. Time to
target (steps, items, FLOPs, seconds) is the mean over the runs that reached it, with how many did.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from statistics import mean, stdev
from typing import Any, Iterable

from framework.lifecycle.status import COMPLETED, DIVERGED, FAILED
from framework.studies.runs import RunResult, finite, number

INTERVAL = "95% t-interval over seeds"
FORMATS = ("table", "markdown", "csv", "json")
TO_TARGET = ("step", "items", "flops", "seconds")
COSTS = ("forward", "backward", "hvp", "curvature")


@dataclass
class Estimate:
    """A mean over runs with its 95% t-interval (None with fewer than two values)."""

    n: int
    mean: float | None
    low: float | None = None
    high: float | None = None

    @classmethod
    def of(cls, values: Iterable[float | None]) -> Estimate:
        values = finite(values)
        if not values:
            return cls(0, None)
        if len(values) == 1:
            return cls(1, values[0])
        from scipy.stats import t

        half = t.ppf(0.975, len(values) - 1) * stdev(values) / math.sqrt(len(values))
        center = mean(values)
        return cls(len(values), center, center - half, center + half)

    def text(self) -> str:
        if self.mean is None:
            return "-"
        if self.low is None:
            return f"{self.mean:.4g} (n=1)"
        return f"{self.mean:.4g} [{self.low:.4g}, {self.high:.4g}]"


def group_key(run: RunResult, by: list[str]) -> tuple[Any, ...]:
    return (run.solver, run.name("model"), *(run.setting(key) for key in by))


def _per_step(run: RunResult, cost: str) -> float | None:
    steps = run.summary.get("steps") or 0
    value = number((run.summary.get("costs") or {}).get(cost))
    return value / steps if steps and value is not None else None


#: config keys that may differ between the seeds of one group without making it a mix of settings
_BOOKKEEPING = ("seed", "resume", "logger.", "names.", "tuning.", "checkpoint.", "trainer.enable_")


def varying_keys(members: list[RunResult], by: list[str]) -> list[str]:
    """Config keys whose values differ among a group's runs (seeds and bookkeeping aside): a group that
    mixes settings, to be split with ``--by``."""
    keys = set().union(*(r.config for r in members))
    return sorted(k for k in keys if k not in by and not k.startswith(_BOOKKEEPING)
                  and len({json.dumps(r.config.get(k), sort_keys=True, default=str) for r in members}) > 1)


def aggregate(runs: list[RunResult], by: list[str]) -> list[dict[str, Any]]:
    """One row per group, sorted by problem, then by the final metric (best first); ``best`` marks the
    best group of each problem."""
    groups: dict[tuple[Any, ...], list[RunResult]] = {}
    for run in runs:
        groups.setdefault(group_key(run, by), []).append(run)
    rows = []
    for key, members in groups.items():
        done = [r for r in members if r.status == COMPLETED]
        metric = next((r.metric for r in members if r.metric.get("name")), {})
        reached = [r.reached() for r in done]
        row: dict[str, Any] = {"solver": key[0], "problem": key[1], **dict(zip(by, key[2:]))}
        row.update({
            "runs": len(members), "seeds": len({r.seed for r in members}),
            "completed": len(done), "diverged": sum(r.status == DIVERGED for r in members),
            "failed": sum(r.status == FAILED for r in members),
            "other": sum(r.status not in (COMPLETED, DIVERGED, FAILED) for r in members),
            "metric": metric.get("name"), "mode": metric.get("mode", "min"), "target": number(metric.get("target")),
            "final": Estimate.of(number(r.metric.get("final")) for r in done),
            "best_value": Estimate.of(number(r.metric.get("best")) for r in done),
            "reached": sum(p is not None for p in reached),
            **{f"{unit}_to_target": Estimate.of(p[unit] for p in reached if p) for unit in TO_TARGET},
            **{f"{cost}_per_step": Estimate.of(_per_step(r, cost) for r in done) for cost in COSTS},
            "state_bytes": Estimate.of(number(r.summary.get("state_bytes")) for r in done),
            "wall_clock_s": Estimate.of(number((r.summary.get("wall_clock_s") or {}).get("train")) for r in done),
            "varies": varying_keys(members, by),
        })
        rows.append(row)

    def order(row: dict[str, Any]) -> tuple[Any, ...]:
        value = row["final"].mean
        sign = -1 if row["mode"] == "max" else 1
        return (str(row["problem"]), value is None, sign * value if value is not None else 0.0, str(row["solver"]))

    rows.sort(key=order)
    problems: set[Any] = set()
    for row in rows:  # sorted: the first row of each problem is its best
        row["best"] = row["final"].mean is not None and row["problem"] not in problems
        problems.add(row["problem"])
    return rows


# -- output ---------------------------------------------------------------------------------------------------

def flat(row: dict[str, Any]) -> dict[str, Any]:
    """A row with every estimate spread into ``<name>_mean``, ``_low``, ``_high``, ``_n`` (CSV and JSON)."""
    spread: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, Estimate):
            spread.update({f"{key}_mean": value.mean, f"{key}_low": value.low, f"{key}_high": value.high,
                         f"{key}_n": value.n})
        else:
            spread[key] = value
    return spread


def cells(row: dict[str, Any], by: list[str]) -> list[str]:
    reached = f"{row['reached']}/{row['completed']}"
    to_target = f"not reached (0/{row['completed']})" if not row["reached"] else (
        f"{row['step_to_target'].mean:.0f} steps, {row['flops_to_target'].mean:.3g} FLOPs, "
        f"{row['seconds_to_target'].mean:.3g} s ({reached})")
    passes = "/".join(f"{row[f'{c}_per_step'].mean:.2g}" if row[f"{c}_per_step"].mean is not None else "-"
                      for c in COSTS)
    state = row["state_bytes"].mean
    size = "-" if state is None else next(f"{state / 2**p:.3g} {u}" for p, u in ((30, "GiB"), (20, "MiB"), (10, "KiB"),
                                                                               (0, "B")) if state >= 2**p or p == 0)
    return [("* " if row["best"] else "") + str(row["solver"]), str(row["problem"]), *(str(row[k]) for k in by),
            f"{row['runs']} ({row['seeds']} seeds)",
            f"{row['completed']}/{row['diverged']}/{row['failed']}" + (f" +{row['other']}" if row["other"] else ""),
            row["final"].text(), row["best_value"].text(), to_target if row["target"] is not None else "no target",
            passes, size]


def headers(by: list[str], rows: list[dict[str, Any]]) -> list[str]:
    metric = next((r["metric"] for r in rows if r["metric"]), "metric")
    return ["solver", "problem", *by, "runs", "ok/div/fail", f"final {metric}", f"best {metric}",
            "to target (mean over runs that reached it)", "fwd/bwd/hvp/curv per step", "optimizer state"]


def notes(missing: list[Path], rows: list[dict[str, Any]] | None = None) -> list[str]:
    """The lines under the table: how to read it, what is missing, which groups mix settings."""
    lines = [f"final and best: mean [{INTERVAL}] of completed runs; * marks the best final metric per problem"]
    for row in rows or []:
        if row["varies"]:
            keys = row["varies"]
            lines.append(f"{row['solver']} on {row['problem']} mixes runs that differ in {', '.join(keys[:4])}"
                         + (" ..." if len(keys) > 4 else "") + f": split them with --by {keys[0]}")
    if missing:
        lines.append(f"{len(missing)} run directories hold no summary.json (killed or still running): "
                     + ", ".join(str(p) for p in missing[:5]) + (" ..." if len(missing) > 5 else ""))
    return lines


def rich_table(rows: list[dict[str, Any]], by: list[str]) -> Any:
    """The table for a terminal (rich), the best row of each problem in bold green."""
    from rich.table import Table

    table = Table(title="optbench compare")
    for name in headers(by, rows):
        table.add_column(name, overflow="fold")
    for row in rows:
        table.add_row(*cells(row, by), style="bold green" if row["best"] else None)
    return table


def render(rows: list[dict[str, Any]], by: list[str], fmt: str, missing: list[Path], width: int = 200) -> str:
    """The table in one of :data:`FORMATS`; CSV and JSON hold one row per group, every number separately."""
    if fmt == "json":
        return json.dumps({"interval": INTERVAL, "groups": [flat(r) for r in rows],
                           "missing": [str(p) for p in missing]}, indent=2, default=str)
    if fmt == "csv":
        spread = [flat(r) for r in rows]
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(spread[0]) if spread else ["solver"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(spread)
        return out.getvalue()
    if fmt == "markdown":
        head = headers(by, rows)
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in cells(r, by)) + " |" for r in rows]
        return "\n".join([*lines, "", *notes(missing, rows)]) + "\n"
    from rich.console import Console

    console = Console(file=io.StringIO(), width=width)
    console.print(rich_table(rows, by))
    for line in notes(missing, rows):
        console.print(line, style="dim", markup=False)
    return console.file.getvalue()


