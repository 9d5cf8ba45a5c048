"""What one more member of a local sweep costs, against the same steps in a bare PyTorch loop.

Usage: ``python benchmarks/sweep_member.py [rounds] [--profile FILE] [overrides...]`` (defaults: 3 rounds,
``model=logreg trainer.max_steps=100``, W&B offline). Each round runs, interleaved, a sweep of 2 members and
one of 12 (``python run.py -m ... seed=range(0,N)`` in a fresh process, the basic launcher) and a bare loop of
the same steps (the problem's own model, loader stream and loss, ``torch.optim.AdamW``, after 20 untimed
steps). The marginal member is (t12 - t2) / 10, so that imports and start-up cancel. ``--profile FILE`` also
runs the 12-member sweep once under cProfile and prints its top lines per member.
"""

from __future__ import annotations

import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
DEFAULTS = ["model=logreg", "trainer.max_steps=100"]


def sweep_seconds(members: int, overrides: list[str], out: Path, profile: Path | None = None) -> float:
    """Wall-clock of a whole ``run.py -m`` sweep of ``members`` seeds, in a fresh process."""
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    command = [sys.executable, *(["-m", "cProfile", "-o", str(profile)] if profile else []), str(ROOT / "run.py"),
               "-m", *overrides, f"seed=range(0,{members})", f"hydra.sweep.dir={out}/{members}-{time.perf_counter_ns()}"]
    start = time.perf_counter()
    subprocess.run(command, cwd=out, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def bare_seconds(overrides: list[str], warmup: int = 20) -> float:
    """The same steps in a bare AdamW loop on the same problem (built outside the timing)."""
    from loop_overhead import bare_seconds as bare

    from conftest import compose

    return bare(overrides, int(compose(*overrides).trainer.max_steps), warmup=warmup)


def main() -> None:
    args = sys.argv[1:]
    rounds = int(args.pop(0)) if args and args[0].isdigit() else 3
    profile = None
    if "--profile" in args:
        i = args.index("--profile")
        profile = Path(args[i + 1]).resolve()
        del args[i:i + 2]
    overrides = DEFAULTS + args
    members, bare = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(rounds + 1):  # round 0 warms the file caches and is discarded
            two, twelve = sweep_seconds(2, overrides, Path(tmp)), sweep_seconds(12, overrides, Path(tmp))
            b = bare_seconds(overrides)
            if round_:
                members.append((twelve - two) / 10)
                bare.append(b)
        if profile is not None:
            sweep_seconds(12, overrides, Path(tmp), profile)
    member, steps = statistics.median(members), statistics.median(bare)
    print(f"| sweep member, s | bare loop, same steps, s | ratio |  ({' '.join(overrides)}; W&B offline; "
          f"median of {rounds}: {', '.join(f'{m:.3f}' for m in members)})")
    print("|---:|---:|---:|")
    print(f"| {member:.3f} | {steps:.4f} | {member / steps:.1f}x |")
    if profile is not None:
        print("\nTop of the 12-member sweep's profile (cumulative seconds / 12):")
        stats = pstats.Stats(str(profile))
        stats.sort_stats("cumulative")
        rows = [(cum / 12, f"{Path(file).name}:{line}({name})")
                for (file, line, name), (_, calls, _, cum, _) in stats.stats.items()  # type: ignore[attr-defined]
                if calls in (12, 24) and ("framework" in file or "plugins" in file or "hydra" in file
                                           or "pytorch_lightning" in file or "wandb" in file)]
        for seconds, where in sorted(rows, reverse=True)[:25]:
            print(f"  {seconds:.3f}  {where}")


if __name__ == "__main__":
    main()
