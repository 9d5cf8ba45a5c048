"""Training-step time of each solver relative to AdamW, measured side by side in one process.

Usage: ``python benchmarks/step_time.py [model] [steps] [rounds] [solvers]`` (defaults: gpt2-nano 20 2
and the whole suite, ~8 min on 2 CPU cores); ``solvers`` is a comma-separated subset, which must
include adamw. On a GPU machine the ``auto`` backend trains on CUDA in bf16 with fused AdamW, so
``python benchmarks/step_time.py gpt2 20 2 adamw,sophia`` is the issue's Sophia-vs-fused-AdamW figure.
Each round runs every solver for ``steps`` steps through the real loop (Lightning, StepContext),
solvers interleaved so that machine noise falls on all of them alike; the table reports the median
milliseconds per step over rounds and its ratio to AdamW. The first, warm-up round is discarded.
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

SOLVERS = ["adamw", "adam", "sgd", "lion", "muon", "schedulefree", "shampoo", "soap", "sophia", "sophiah",
           "adahessian", "psgd", "lbfgs"]


def main() -> None:
    from conftest import train

    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    model = sys.argv[1] if len(sys.argv) > 1 else "gpt2-nano"
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    solvers = sys.argv[4].split(",") if len(sys.argv) > 4 else SOLVERS
    if "adamw" not in solvers:
        sys.exit("error: solvers must include adamw, the baseline of every ratio")
    times: dict[str, list[float]] = {s: [] for s in solvers}
    passes: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(rounds + 1):
            for solver in solvers:
                summary = train(Path(tmp) / f"{solver}{round_}", f"optimizer={solver}", f"model={model}",
                                f"trainer.max_steps={steps}", "+trainer.limit_val_batches=0")
                if round_:
                    times[solver].append(1000 * summary["wall_clock_s"]["train"] / summary["steps"])
                passes[solver] = summary["costs"]
    base = statistics.median(times["adamw"])
    import torch

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    print(f"model={model}, {steps} steps x {rounds} rounds, {device}")
    print(f"{'solver':12s} {'ms/step':>8s} {'vs adamw':>9s} {'fwd/step':>9s} {'hvp/step':>9s}")
    for solver in solvers:
        ms = statistics.median(times[solver])
        costs = passes[solver]
        print(f"{solver:12s} {ms:8.1f} {ms / base:8.2f}x {costs['forward'] / steps:9.2f} {costs['hvp'] / steps:9.2f}")


if __name__ == "__main__":
    main()
