"""The training loop's cost per step against a bare PyTorch loop on the same problem object.

Usage: ``python benchmarks/loop_overhead.py [problems] [steps] [rounds] [overrides...]`` (defaults:
mlp,quadratic,gpt2-nano 200 3). For each problem, each round times, interleaved: a bare loop (the
problem's own model, loader stream and loss, ``torch.optim.AdamW``, ``zero_grad``/``backward``/``step``) and
a real run (``optimizer=adamw`` through Hydra, Lightning, the StepContext, cost counting, logging,
checkpointing and divergence checks as configured; CSV logger, no progress bar unless overridden). Both
are per step after warm-up: the bare loop times ``steps`` steps after 20 untimed ones; the real run is
marginal, a run of 2 x steps minus a run of ``steps``, divided by ``steps``, so that start-up, the first and
the last validation and warm-up cancel. Reports medians over rounds and the ratio. gpt2-nano takes
``steps // 10``.
"""

from __future__ import annotations

import logging
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def bare_seconds(problem_name: str, steps: int, seed: int = 0, warmup: int = 20) -> float:
    """Seconds for ``steps`` steps of a bare AdamW loop on a freshly built problem, after ``warmup`` steps."""
    import torch
    from hydra.utils import instantiate

    from conftest import compose
    from framework.checkpoints.stream import step_stream

    torch.manual_seed(seed)
    problem = instantiate(compose(f"model={problem_name}").model)
    model = problem.model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batches = iter(step_stream(problem.train_loader(seed), 0, seed))
    start = 0.0
    for step in range(warmup + steps):
        if step == warmup:
            start = time.perf_counter()
        loss = problem.forward(model, next(batches)).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def loop_seconds(tmp: Path, problem_name: str, steps: int, overrides: list[str]) -> float:
    """Seconds of a whole real run of ``steps`` steps (validation at the start and the end only)."""
    from conftest import train

    start = time.perf_counter()
    train(tmp / f"{problem_name}-{steps}-{time.perf_counter_ns()}", "optimizer=adamw", f"model={problem_name}",
          f"trainer.max_steps={steps}", f"trainer.val_check_interval={2 * steps}", *overrides)
    return time.perf_counter() - start


def main() -> None:
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    args = sys.argv[1:]
    problems = args[0].split(",") if args else ["mlp", "quadratic", "gpt2-nano"]
    steps = int(args[1]) if len(args) > 1 else 200
    rounds = int(args[2]) if len(args) > 2 else 3
    overrides = args[3:]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for problem in problems:
            n = max(2, steps // 10) if problem.startswith("gpt2") else steps
            bare, loop = [], []
            for round_ in range(rounds + 1):  # round 0 warms up (imports, caches) and is discarded
                b = bare_seconds(problem, n) / n
                f = (loop_seconds(Path(tmp), problem, 2 * n, overrides) - loop_seconds(Path(tmp), problem, n, overrides)) / n
                if round_:
                    bare.append(b)
                    loop.append(f)
            rows.append((problem, n, statistics.median(bare), statistics.median(loop)))
    print(f"| problem | steps | bare loop, ms/step | optbench, ms/step | ratio |  (marginal, median of {rounds}; "
          f"overrides: {' '.join(overrides) or 'none'})")
    print("|---|---:|---:|---:|---:|")
    for problem, n, bare_s, loop_s in rows:
        print(f"| {problem} | {n} | {1000 * bare_s:.3f} | {1000 * loop_s:.3f} | {loop_s / bare_s:.2f}x |")


if __name__ == "__main__":
    main()
