"""How fast ``python -m framework list`` answers, beside a bare interpreter start, in one run.

Usage: ``python benchmarks/listing.py [repeats]``. Prints the median wall-clock of each command and
their ratio; the listing's budget is 1.5 s (it must not import torch or Lightning).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "python -m framework list": [sys.executable, "-m", "framework", "list"],
    "python -c 'import torch'": [sys.executable, "-c", "import torch"],
}


def run_once(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    samples: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(repeats):
        for name, command in COMMANDS.items():  # interleaved, so that machine noise hits all alike
            samples[name].append(run_once(command))
    results = {name: statistics.median(times) for name, times in samples.items()}
    base = results["python -c pass"]
    for name, seconds in results.items():
        print(f"{name:28s} {seconds * 1000:8.0f} ms  {seconds / base:5.1f}x interpreter start")
    listing = results["python -m framework list"]
    print(f"listing budget 1.5 s: {'ok' if listing < 1.5 else 'OVER'} ({listing:.2f} s)")


if __name__ == "__main__":
    main()
