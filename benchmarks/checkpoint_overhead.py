"""What checkpoints cost: step time with and without them, side by side, and the time of one write.

Usage: ``python benchmarks/checkpoint_overhead.py [steps] [rounds]`` (defaults 200 and 3). For ``mlp`` and
``gpt2-nano`` it trains AdamW with checkpoints off, every 10 steps, and at the defaults (every 5 minutes,
plus the final one), interleaved over rounds, and reports the median ms per step of each against "off".
It then writes one checkpoint of GPT-2 small (124M parameters with AdamW's state, what a long run
checkpoints) through the same atomic writer and reports its size and time, and that time as a share of
the default 5-minute interval.
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

SETTINGS = {"off": ["checkpoint.enabled=false"], "every 10 steps": ["checkpoint.every_n_steps=10"],
            "default": []}


def gpt2_small_write(directory: Path) -> tuple[float, float]:
    """(gigabytes, seconds) of one GPT-2 small checkpoint with AdamW state, through AtomicCheckpointIO."""
    import torch

    from conftest import compose
    from framework.checkpoints import AtomicCheckpointIO
    from framework.runner import build

    problem = build(compose("model=gpt2", "model.tokenizer=bytes", "model.max_bytes=200000").model, "model")
    model = problem.model
    optimizer = torch.optim.AdamW(model.parameters())
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    checkpoint = {"state_dict": model.state_dict(), "optimizer_states": [optimizer.state_dict()]}
    path = directory / "gpt2.ckpt"
    started = time.perf_counter()
    AtomicCheckpointIO().save_checkpoint(checkpoint, path)
    seconds = time.perf_counter() - started
    return path.stat().st_size / 1e9, seconds


def main() -> None:
    from conftest import train

    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    problems = ["mlp", "gpt2-nano"]
    times = {(p, s): [] for p in problems for s in SETTINGS}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(rounds + 1):  # round 0 warms caches and is discarded
            for problem in problems:
                for name, extra in SETTINGS.items():
                    run_dir = Path(tmp) / f"{problem}-{name.replace(' ', '')}-{round_}"
                    summary = train(run_dir, "optimizer=adamw", f"model={problem}", f"trainer.max_steps={steps}",
                                    "+trainer.limit_val_batches=0", *extra)
                    if round_:
                        times[(problem, name)].append(1000 * summary["wall_clock_s"]["train"] / steps)
        size, seconds = gpt2_small_write(Path(tmp))
    print(f"AdamW, {steps} steps x {rounds} rounds, CPU: median ms/step")
    for problem in problems:
        base = statistics.median(times[(problem, "off")])
        for name in SETTINGS:
            value = statistics.median(times[(problem, name)])
            print(f"{problem:10s} {name:15s} {value:8.2f} ms  {value / base:5.3f}x")
    print(f"GPT-2 small + AdamW state: {size:.2f} GB written in {seconds:.2f} s = "
          f"{100 * seconds / 300:.2f}% of a 5-minute interval")


if __name__ == "__main__":
    main()
