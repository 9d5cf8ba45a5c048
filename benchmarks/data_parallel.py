"""Data-parallel training side by side with one process: per-step time on CPUs, tokens/s and MFU on GPUs.

CPU (default): ``python benchmarks/data_parallel.py [model] [steps] [rounds] [solvers]`` (defaults: mlp 200 3
adamw,sophia,adahessian,psgd,shampoo). Each round trains every solver once on one process (``backend=cpu``,
torch's threads over all cores) and once on two (``backend=ddp``, gloo, the cores shared out), on the same
global batch, interleaved so that machine noise falls on both alike; the table gives the median milliseconds
per step and the ratio of the two, which is what the framework's reductions (loss, gradients, curvature
products, stop decisions) and the process split cost where compute does not scale.

GPU: ``python benchmarks/data_parallel.py --gpu N [steps]`` (default 50): GPT-2 124M (``model=gpt2``,
bf16-mixed, fused AdamW and SophiaG) on one GPU (``backend=cuda``) and on N (``backend=ddp
backend.accelerator=gpu backend.devices=N``, nccl). The step time is marginal (a run of 2 x steps minus one of
``steps``, so start-up, compilation and warm-up cancel); tokens/s counts the global batch; MFU is the
counted FLOPs per second over N x the peak (``--peak-tflops``, default 989: an H100 SXM's dense bf16).
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

SOLVERS = ["adamw", "sophia", "adahessian", "psgd", "shampoo"]
QUIET = ["+trainer.limit_val_batches=0", "checkpoint.enabled=false"]


def _ms_per_step(summary: dict) -> float:
    return 1000 * summary["wall_clock_s"]["train"] / summary["steps"]


def cpu(model: str, steps: int, rounds: int, solvers: list[str]) -> None:
    from conftest import train

    times: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(rounds + 1):  # round 0 warms up and is discarded
            for solver in solvers:
                for backend in ("cpu", "ddp"):
                    summary = train(Path(tmp) / f"{solver}-{backend}-{round_}", f"optimizer={solver}",
                                    f"model={model}", f"trainer.max_steps={steps}", f"backend={backend}", *QUIET)
                    if round_:
                        times.setdefault((solver, backend), []).append(_ms_per_step(summary))
    print(f"| solver | 1 process, ms/step | 2 processes (DDP), ms/step | ratio |  ({model}, {steps} steps, "
          f"median of {rounds})")
    print("|---|---|---|---|")
    for solver in solvers:
        one, two = (statistics.median(times[(solver, b)]) for b in ("cpu", "ddp"))
        print(f"| {solver} | {one:.2f} | {two:.2f} | {two / one:.2f}x |")


def gpu(devices: int, steps: int, peak_tflops: float) -> None:
    from conftest import train

    setups = {"1 GPU": ["backend=cuda"],
              f"{devices} GPUs": ["backend=ddp", "backend.accelerator=gpu", f"backend.devices={devices}",
                                  "backend.precision=bf16-mixed"]}
    print(f"| solver | GPUs | ms/step | tokens/s | MFU |  (gpt2 124M, bf16-mixed, marginal over {steps} steps)")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for solver in ("adamw", "sophia"):
            for label, backend in setups.items():
                runs = [train(Path(tmp) / f"{solver}-{label}-{n}", f"optimizer={solver}", "model=gpt2",
                              f"trainer.max_steps={n}", *backend, *QUIET) for n in (steps, 2 * steps)]
                seconds = runs[1]["wall_clock_s"]["train"] - runs[0]["wall_clock_s"]["train"]
                tokens = runs[1]["items"]["count"] - runs[0]["items"]["count"]
                flops = runs[1]["costs"]["flops"] - runs[0]["costs"]["flops"]
                gpus = runs[1]["world_size"]
                mfu = flops / seconds / (gpus * peak_tflops * 1e12)
                print(f"| {solver} | {gpus} | {1000 * seconds / steps:.1f} | {tokens / seconds:,.0f} | {mfu:.1%} |")


def main() -> None:
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    args = sys.argv[1:]
    if args[:1] == ["--gpu"]:
        peak = 989.0
        if "--peak-tflops" in args:
            at = args.index("--peak-tflops")
            peak = float(args[at + 1])
            del args[at:at + 2]
        gpu(int(args[1]), int(args[2]) if len(args) > 2 else 50, peak)
        return
    cpu(args[0] if args else "mlp", int(args[1]) if len(args) > 1 else 200, int(args[2]) if len(args) > 2 else 3,
        args[3].split(",") if len(args) > 3 else SOLVERS)


if __name__ == "__main__":
    main()
