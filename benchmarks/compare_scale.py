"""How long ``optbench compare`` takes over many runs: 5,000 synthetic summaries by default.

Usage: ``python benchmarks/compare_scale.py [runs] [rounds]`` (defaults 5000 and 3). It writes ``runs``
summary.json files shaped as real ones (schema 2, a 21-point validation history, the full config of a real
logreg run) for 10 solvers x 10 problems x 50 seeds into a temporary sweep directory, then times, in the
same process, finding and reading them (``collect``), grouping and aggregating them (``aggregate``), the
rendered table, and the long-table export to CSV and Parquet; the median of ``rounds`` rounds each.
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from framework.studies.compare import aggregate, render  # noqa: E402
from framework.studies.export import export  # noqa: E402
from framework.studies.runs import collect  # noqa: E402


def synthetic(index: int, rng: random.Random) -> dict:
    solver, problem, seed = f"solver{index % 10}", f"problem{index // 10 % 10}", index // 100
    values = [2.0 * (0.9 ** i) * (1 + 0.05 * rng.random()) for i in range(21)]
    history = [{"step": 25 * i, "items": 1600 * i, "flops": 1.2e7 * i, "seconds": 0.05 * i, "value": v}
               for i, v in enumerate(values)]
    reached = next((p for p in history if p["value"] <= 0.5), None)
    return {
        "schema_version": 2, "status": "completed" if rng.random() > 0.05 else "diverged", "error": None,
        "names": {"optimizer": solver, "model": problem, "backend": "cpu"},
        "metric": {"name": "val/loss", "mode": "min", "initial": values[0], "final": values[-1],
                   "final_step": 500, "best": min(values), "target": 0.5, "reached_target": reached,
                   "history": history},
        "steps": 500, "items": {"unit": "samples", "count": 32000},
        "costs": {"forward": 500, "backward": 500, "hvp": 0, "curvature": 50, "flops": 2.4e8},
        "state_bytes": 4096, "wall_clock_s": {"train": 1.0, "total": 1.5}, "seed": seed,
        "config": {"optimizer": {"_target_": f"plugins.solvers.{solver}", "lr": 10 ** rng.uniform(-4, -1),
                                 "betas": [0.9, 0.999], "weight_decay": 0.01},
                   "model": {"_target_": f"plugins.problems.{problem}", "batch_size": 64, "l2": 0.001},
                   "trainer": {"max_steps": 500, "val_check_interval": 25}, "seed": seed},
    }


def timed(function, rounds: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(rounds):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main(runs: int = 5000, rounds: int = 3) -> None:
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        sweep = Path(tmp) / "sweep"
        for index in range(runs):
            folder = sweep / f"{index}_run"
            folder.mkdir(parents=True)
            (folder / "summary.json").write_text(json.dumps(synthetic(index, rng), indent=2))
        read_s, collection = timed(lambda: collect([sweep]), rounds)
        group_s, rows = timed(lambda: aggregate(collection.runs, []), rounds)
        table_s, _ = timed(lambda: render(rows, [], "table", []), rounds)
        export_s, _ = timed(lambda: export(collection.runs, Path(tmp) / "export", sweep), rounds)
    print(f"{runs} summaries, {len(rows)} groups, median of {rounds}")
    for name, seconds in (("collect (find + read + check)", read_s), ("aggregate", group_s),
                          ("render table", table_s), ("export CSV + Parquet", export_s)):
        print(f"| {name} | {seconds:.2f} s |")
    print(f"| compare in all (collect + aggregate + table) | {read_s + group_s + table_s:.2f} s |")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
