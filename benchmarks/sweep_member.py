"""What one more member of a local sweep costs, against the same steps in a bare PyTorch loop.

Usage: ``python benchmarks/sweep_member.py [rounds] [--profile FILE] [overrides...]`` (defaults: 3 rounds,
``model=logreg trainer.max_steps=100``, W&B offline). Each round runs, interleaved, a sweep of 2 members and
one of 22 (``python run.py -m ... seed=range(0,N)`` in a fresh process, the basic launcher) and a bare loop of
the same steps (the problem's own model, loader stream and loss, ``torch.optim.AdamW``, after 20 untimed
steps). The marginal member is (t22 - t2) / 20, so that imports and start-up cancel. ``--profile FILE`` also
runs both sweeps once under cProfile and prints each function's cumulative time per extra member.
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
#: the larger sweep: its extra members over the 2-member sweep are what is measured
LARGE = 22
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
            small, large = sweep_seconds(2, overrides, Path(tmp)), sweep_seconds(LARGE, overrides, Path(tmp))
            b = bare_seconds(overrides)
            if round_:
                members.append((large - small) / (LARGE - 2))
                bare.append(b)
        if profile is not None:
            sweep_seconds(2, overrides, Path(tmp), profile.with_suffix(".2"))
            sweep_seconds(LARGE, overrides, Path(tmp), profile)
    member, steps = statistics.median(members), statistics.median(bare)
    print(f"| sweep member, s | bare loop, same steps, s | ratio |  ({' '.join(overrides)}; W&B offline; "
          f"median of {rounds}: {', '.join(f'{m:.3f}' for m in members)})")
    print("|---:|---:|---:|")
    print(f"| {member:.3f} | {steps:.4f} | {member / steps:.1f}x |")
    if profile is not None:
        print(f"\nA member's share of each function under cProfile (cumulative seconds, 22-member sweep minus "
              f"2-member sweep, / 20; profiling inflates Python-heavy code): {profile}")
        for seconds, where in marginal_profile(profile.with_suffix(".2"), profile, LARGE - 2)[:30]:
            print(f"  {seconds:.3f}  {where}")


def marginal_profile(small: Path, large: Path, extra: int) -> list[tuple[float, str]]:
    """Functions by their cumulative time per extra member: (large - small) / extra, largest first."""
    def cumulative(path: Path) -> dict[str, float]:
        stats = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
        return {f"{Path(file).parent.name}/{Path(file).name}:{line}({name})": cum
                for (file, line, name), (_, _, _, cum, _) in stats.items()}

    before, after = cumulative(small), cumulative(large)
    return sorted(((after[k] - before.get(k, 0.0)) / extra, k) for k in after)[::-1]

if __name__ == "__main__":
    main()
