"""What checkpoints cost: the time of each write against the training time around it, in the same run.

Usage: ``python benchmarks/checkpoint_overhead.py [steps] [rounds]`` (defaults 200 and 3). For ``mlp`` and
``gpt2-nano`` it trains AdamW with a checkpoint every 10 steps, times every write (the whole
``trainer.save_checkpoint``: gathering the state, the metrics flush, the atomic write with its fsync), and
reports the median write time, the checkpoint size, and the writes' share of the training time, both at
every 10 steps and at the default interval (``checkpoint.every_n_minutes`` in ``conf/config.yaml``).
Timing the writes inside the run they belong to keeps this machine's run-to-run noise (10% here) out of a
1% effect. It then writes one checkpoint of GPT-2 small (124M parameters with AdamW's state, what a long
run checkpoints) through the same atomic writer.
"""

from __future__ import annotations

import logging
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def gpt2_small_write(directory: Path) -> tuple[float, float]:
    """(gigabytes, seconds) of one GPT-2 small checkpoint with AdamW state, through AtomicCheckpointIO."""
    import torch

    from conftest import compose
    from framework.checkpoints import AtomicCheckpointIO
    from framework.runner import build

    model = build(compose("model=gpt2", "model.tokenizer=bytes", "model.max_bytes=200000").model, "model").model
    optimizer = torch.optim.AdamW(model.parameters())
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    path = directory / "gpt2.ckpt"
    started = time.perf_counter()
    AtomicCheckpointIO().save_checkpoint({"state_dict": model.state_dict(),
                                         "optimizer_states": [optimizer.state_dict()]}, path)
    return path.stat().st_size / 1e9, time.perf_counter() - started


def main() -> None:
    from conftest import train
    from framework.checkpoints import Checkpointing

    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    minutes = yaml.safe_load((ROOT / "conf" / "config.yaml").read_text())["checkpoint"]["every_n_minutes"]
    writes: list[float] = []
    save = Checkpointing.save

    def timed_save(self, trainer, path=None):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        result = save(self, trainer, path)
        if trainer.state.fn == "fit" and trainer.training:  # the writes between steps, not the final one
            writes.append(time.perf_counter() - started)
        return result

    Checkpointing.save = timed_save
    print(f"AdamW, {steps} steps, a checkpoint every 10 steps, {rounds} rounds, CPU")
    print(f"{'problem':10s} {'ms/step':>8s} {'ms/write':>9s} {'MB':>6s} {'every 10 steps':>15s} "
          f"{f'every {minutes} min':>13s}")
    with tempfile.TemporaryDirectory() as tmp:
        for problem in ("mlp", "gpt2-nano"):
            step_ms, write_ms, shares = [], [], []
            for round_ in range(rounds + 1):  # round 0 warms caches and is discarded
                writes.clear()
                run_dir = Path(tmp) / f"{problem}-{round_}"
                summary = train(run_dir, "optimizer=adamw", f"model={problem}", f"trainer.max_steps={steps}",
                                "+trainer.limit_val_batches=0", "checkpoint.every_n_steps=10")
                if round_:
                    train_s = summary["wall_clock_s"]["train"]
                    step_ms.append(1000 * (train_s - sum(writes)) / steps)
                    write_ms.append(1000 * statistics.median(writes))
                    shares.append(sum(writes) / (train_s - sum(writes)))
            size = (run_dir / "checkpoints" / "last.ckpt").stat().st_size / 1e6
            write = statistics.median(write_ms)
            print(f"{problem:10s} {statistics.median(step_ms):8.1f} {write:9.1f} {size:6.1f} "
                  f"{100 * statistics.median(shares):14.2f}% {100 * write / 1000 / (60 * minutes):12.4f}%")
        gigabytes, seconds = gpt2_small_write(Path(tmp))
    print(f"GPT-2 small + AdamW state: {gigabytes:.2f} GB written in {seconds:.2f} s = "
          f"{100 * seconds / (60 * minutes):.2f}% of the default {minutes}-minute interval")


if __name__ == "__main__":
    main()
