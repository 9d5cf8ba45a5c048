"""Up-front estimate of a run's duration, so a CPU user learns at once that a model is too big."""

from __future__ import annotations

import functools
import time

import torch

from framework.backend import Backend
from framework.problem import Problem

#: forward+backward of a GPT reaches about this fraction of a plain 512x512 matmul's FLOP rate on the
#: CPU (0.70 for gpt2-nano, 0.88 for the 124M shape; benchmarks/RESULTS.md); a factor of ~2 is enough
CPU_EFFICIENCY = 0.7
WARN_AFTER_SECONDS = 600.0


@functools.lru_cache(maxsize=1)
def cpu_flop_rate(size: int = 512, repeats: int = 4) -> float:
    """FLOP/s of a float32 matmul on this CPU, measured in about a tenth of a second.

    Uses its own generator: drawing from the global one would change the run that follows.
    """
    a = torch.randn(size, size, generator=torch.Generator().manual_seed(0))
    a @ a
    start = time.perf_counter()
    for _ in range(repeats):
        a @ a
    return 2 * size**3 * repeats / (time.perf_counter() - start)


def _duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def warn_if_slow(problem: Problem, backend: Backend, max_steps: int, name: str = "") -> str | None:
    """Print one note when a CPU run is projected to take longer than ten minutes; return it."""
    if backend.accelerator != "cpu":
        return None
    step_flops = problem.flops_per_item() * problem.items_per_batch()
    step_seconds = step_flops / (cpu_flop_rate() * CPU_EFFICIENCY)
    total = step_seconds * max_steps
    if total < WARN_AFTER_SECONDS:
        return None
    smaller = getattr(problem, "smaller_option", None)
    hint = f"; for a CPU-sized run use model={smaller}" if smaller and smaller != name else ""
    note = (
        f"note: this model has {problem.num_parameters() / 1e6:.1f}M parameters and runs on the CPU: "
        f"about {_duration(step_seconds)} per step, {_duration(total)} for {max_steps} steps (estimated){hint}."
    )
    print(note, flush=True)
    return note

