"""Training-step time of each problem under AdamW on this machine, problems interleaved over rounds.

Usage: ``python benchmarks/problem_step_time.py [steps] [rounds]`` (defaults 50 and 2, about 2 min on 2
CPU cores). Reports the median milliseconds per training step (Lightning loop included, validation
excluded) and what a step holds. ``gpt2`` and larger are left out: on a CPU one step takes minutes (the
slow-run note estimates it before a run starts).
"""

from __future__ import annotations

import logging
import statistics
import sys
import tempfile
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

PROBLEMS = ["mlp", "cnn", "logreg", "logreg-synthetic", "quadratic", "rosenbrock", "icl-linreg", "gpt2-nano"]


def main() -> None:
    from conftest import train

    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    times: dict[str, list[float]] = {p: [] for p in PROBLEMS}
    items: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(rounds + 1):  # round 0 warms caches (token cache, imports) and is discarded
            for problem in PROBLEMS:
                summary = train(Path(tmp) / f"{problem}{round_}", "optimizer=adamw", f"model={problem}",
                                f"trainer.max_steps={steps}", "+trainer.limit_val_batches=0")
                if round_:
                    times[problem].append(1000 * summary["wall_clock_s"]["train"] / summary["steps"])
                items[problem] = f"{summary['items']['count'] // steps} {summary['items']['unit']}"
    print(f"AdamW, {steps} steps x {rounds} rounds, CPU")
    print(f"{'problem':18s} {'ms/step':>8s}  batch")
    for problem in PROBLEMS:
        print(f"{problem:18s} {statistics.median(times[problem]):8.1f}  {items[problem]}")


if __name__ == "__main__":
    main()
