"""The training loop's cost per step against a bare PyTorch loop and a bare Lightning loop, same problem.

Usage: ``python benchmarks/loop_overhead.py [problems] [steps] [rounds] [overrides...]`` (defaults:
mlp,quadratic,gpt2-nano 1000 3). For each problem, each round times, interleaved:

- a bare loop: the problem's own model, loader stream and loss, and the torch optimizer that
  ``optimizer=adamw`` builds (its parameter groups and kernel), ``zero_grad``/``backward``/``step`` by hand;
- bare Lightning: the same pieces in a minimal LightningModule with manual optimization (``manual_backward``,
  ``optimizer.step()``), no logger, no callbacks: what Lightning's loop itself costs;
- optbench: a real run of ``optimizer=adamw`` through Hydra, Lightning, the StepContext, cost counting,
  logging, checkpointing and divergence checks, the progress bar, as ``run.py`` has them by default
  (but the CSV logger only: ``logger=wandb`` adds W&B), so with ``fuse_steps=auto``
  (:mod:`framework.lifecycle.fusion`);
- the same run with ``fuse_steps=1``: one Lightning batch per step.

All per step after warm-up: the bare loop times ``steps`` steps after 20 untimed ones; the two Lightning
loops are marginal, a run of 2 x steps minus a run of ``steps``, divided by ``steps``, so that start-up, the
first and the last validation and warm-up cancel. Reports medians over rounds and the ratios to the bare
loop. gpt2-nano takes ``steps // 20``.
"""

from __future__ import annotations

import logging
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


#: what the tests' quiet composition turns off, back to run.py's defaults: the progress bar, time-based checkpoints
RUN_DEFAULTS = ["trainer.enable_progress_bar=true", "checkpoint.every_n_minutes=10"]


def run_pieces(overrides: list[str], seed: int = 0, device: str = "cpu") -> tuple[Any, Any, Any, Any]:
    """What a run of the composed config trains with, built as the run builds it: the problem (its model on
    ``device``), the solver, the solver's torch optimizer for that model, and the run's stream of training
    batches."""
    import torch
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from conftest import compose
    from framework.checkpoints.stream import step_stream

    torch.manual_seed(seed)
    cfg = compose(*overrides)
    problem = instantiate(cfg.model)
    problem.model = problem.model.to(device)
    solver = instantiate(OmegaConf.masked_copy(cfg.optimizer, [k for k in cfg.optimizer if k != "search_space"]))
    return problem, solver, solver.build(problem.model), step_stream(problem.train_loader(seed), 0, seed)


def bare_seconds(overrides: list[str], steps: int, seed: int = 0, warmup: int = 20) -> float:
    """Seconds for ``steps`` steps of a bare loop on a freshly built problem (``model=...`` among the config
    ``overrides``), after ``warmup`` steps."""
    problem, _, optimizer, stream = run_pieces(["optimizer=adamw", *overrides], seed)
    batches = iter(stream)
    start = 0.0
    for step in range(warmup + steps):
        if step == warmup:
            start = time.perf_counter()
        loss = problem.forward(problem.model, next(batches)).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def lightning_seconds(overrides: list[str], steps: int, seed: int = 0) -> float:
    """Seconds of a whole ``Trainer.fit`` of ``steps`` steps of the same loop in a minimal LightningModule."""
    import pytorch_lightning as pl

    problem, _, optimizer, stream = run_pieces(["optimizer=adamw", *overrides], seed)

    class Bare(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.automatic_optimization = False
            self.model = problem.model

        def training_step(self, batch: Any, batch_idx: int) -> None:
            loss = problem.forward(self.model, batch).loss
            optimizer.zero_grad(set_to_none=True)
            self.manual_backward(loss)
            self.optimizers().step()

        def configure_optimizers(self) -> Any:
            return optimizer

    trainer = pl.Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
                         accelerator="cpu", devices=1)
    start = time.perf_counter()
    trainer.fit(Bare(), train_dataloaders=stream)
    return time.perf_counter() - start


def loop_seconds(tmp: Path, problem_name: str, steps: int, overrides: list[str]) -> float:
    """Seconds of a whole real run of ``steps`` steps (validation at the start and the end only)."""
    from conftest import train

    start = time.perf_counter()
    train(tmp / f"{problem_name}-{steps}-{time.perf_counter_ns()}", "optimizer=adamw", f"model={problem_name}",
          f"trainer.max_steps={steps}", f"trainer.val_check_interval={2 * steps}", *RUN_DEFAULTS, *overrides)
    return time.perf_counter() - start


def main() -> None:
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    args = sys.argv[1:]
    problems = args[0].split(",") if args else ["mlp", "quadratic", "gpt2-nano"]
    steps = int(args[1]) if len(args) > 1 else 1000
    rounds = int(args[2]) if len(args) > 2 else 3
    overrides = args[3:]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for problem in problems:
            n = max(2, steps // 20) if problem.startswith("gpt2") else steps
            model = [f"model={problem}"]
            times: list[list[float]] = [[], [], [], []]
            for round_ in range(rounds + 1):  # round 0 warms up (imports, caches) and is discarded
                tries = [bare_seconds(model, n) / n, (lightning_seconds(model, 2 * n) - lightning_seconds(model, n)) / n]
                for fuse in ([*overrides], ["fuse_steps=1", *overrides]):
                    tries.append((loop_seconds(Path(tmp), problem, 2 * n, fuse)
                                  - loop_seconds(Path(tmp), problem, n, fuse)) / n)
                if round_:
                    for kept, seconds in zip(times, tries):
                        kept.append(seconds)
            rows.append((problem, n, *(statistics.median(x) for x in times)))
    print(f"| problem | steps | bare loop, ms/step | bare Lightning, ms/step | ratio | optbench, ms/step | ratio "
          f"| optbench fuse_steps=1 | ratio |  (marginal, median of {rounds}; overrides: {' '.join(overrides) or 'none'})")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for problem, n, bare_s, *loops in rows:
        print(f"| {problem} | {n} | {1000 * bare_s:.3f} | "
              + " | ".join(f"{1000 * seconds:.3f} | {seconds / bare_s:.2f}x" for seconds in loops) + " |")


if __name__ == "__main__":
    main()
