"""Tokens/s and MFU of GPT-2 124M through the real loop against a bare PyTorch loop on the same model, on a GPU.

Usage: ``python benchmarks/gpu_throughput.py [steps] [--peak-tflops T] [--compile] [--log-every N] [--model M]
[--device D]`` (defaults: 50 steps, 989 TFLOP/s: an H100 SXM's dense bf16 peak, ``model=gpt2``, ``cuda``). For AdamW (the
fused kernel, as ``optimizer=adamw`` picks on a GPU) and SophiaG (its curvature pass every k steps), each is
timed two ways on the same model, data stream and torch optimizer:

- a bare loop: bf16 autocast forward, backward, the optimizer's step; for SophiaG, after every k-th step, the
  next batch's forward-backward on targets sampled from the model (``problem.sampled_loss``) into
  ``update_hessian``, as the authors' training loop does; ``torch.cuda.synchronize()`` around the timed steps,
  after 10 untimed ones (and compilation, with ``--compile``);
- the real loop: ``optimizer=<solver> model=gpt2 backend=cuda`` through Hydra and Lightning with its defaults
  (cost counting, logging every step, checkpoints, divergence checks; ``--log-every 10`` logs, and so reads
  the loss from the GPU, every 10th step only), marginal: a run of 2 x steps minus a
  run of ``steps``, so start-up, compilation and the validations cancel.

Tokens/s counts the batch's tokens (16 x 1024); MFU is the FLOPs the run counts (6N + attention per token for
a forward-backward, one more forward-backward per curvature pass) per second over the peak. ``--device cpu
--model gpt2-nano`` runs the same code on a CPU, to check the script where no GPU is lent (its MFU means
nothing).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

SOLVERS = ("adamw", "sophia")


def bare_seconds(solver_name: str, model_name: str, device: str, steps: int, compile_: bool,
                 warmup: int = 10) -> tuple[float, float]:
    """(seconds, FLOPs) of ``steps`` bare steps after ``warmup`` untimed ones."""
    import torch
    from loop_overhead import run_pieces

    problem, solver, optimizer, stream = run_pieces([f"optimizer={solver_name}", f"model={model_name}"],
                                                    device=device)
    network = torch.compile(problem.model) if compile_ else problem.model
    batches = iter(stream)
    autocast = (lambda: torch.autocast(device, dtype=torch.bfloat16)) if device == "cuda" else contextlib.nullcontext
    curvature_due = getattr(solver, "curvature_due", None)
    per_pass = problem.flops_per_item() * problem.items_per_batch()

    def step(index: int) -> int:
        """One training step; the forward-backward passes it made."""
        batch = [t.to(device, non_blocking=True) for t in next(batches)]
        passes = 1
        if curvature_due is not None and index > 0 and curvature_due(index - 1):  # SophiaG, hessian_batch: next
            with autocast():
                out = problem.forward(network, batch)
                sampled = problem.sampled_loss(out)
            sampled.backward()
            optimizer.update_hessian(out.items)
            optimizer.zero_grad(set_to_none=True)
            passes += 1
        with autocast():
            loss = problem.forward(network, batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return passes

    synchronize = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for index in range(warmup):
        step(index)
    synchronize()
    start, passes = time.perf_counter(), 0
    for index in range(warmup, warmup + steps):
        passes += step(index)
    synchronize()
    return time.perf_counter() - start, passes * per_pass


def loop_seconds(solver_name: str, model_name: str, device: str, steps: int, compile_: bool,
                 tmp: Path, log_every: int = 1) -> tuple[float, float, int]:
    """(seconds, FLOPs, tokens) of ``steps`` steps of the real loop: marginal over two whole runs."""
    from conftest import train

    backend = ["backend=cuda", f"backend.compile={str(compile_).lower()}"] if device == "cuda" else ["backend=cpu"]
    results = []
    for n in (steps, 2 * steps):
        start = time.perf_counter()
        summary = train(tmp / f"{solver_name}-{n}-{time.perf_counter_ns()}", f"optimizer={solver_name}",
                        f"model={model_name}", f"trainer.max_steps={n}", f"trainer.val_check_interval={2 * steps}",
                        f"trainer.log_every_n_steps={log_every}", *backend)
        results.append((time.perf_counter() - start, summary["costs"]["flops"], summary["items"]["count"]))
    (t1, f1, i1), (t2, f2, i2) = results
    return t2 - t1, f2 - f1, i2 - i1


def main() -> None:
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("steps", type=int, nargs="?", default=50)
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--log-every", type=int, default=1)
    parser.add_argument("--model", default="gpt2")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    args = parser.parse_args()
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_throughput: no CUDA device here (--device cpu --model gpt2-nano checks the script on a CPU)")
    peak = args.peak_tflops * 1e12
    rows: list[tuple[Any, ...]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for solver in SOLVERS:
            seconds, flops = bare_seconds(solver, args.model, args.device, args.steps, args.compile)
            loop_s, loop_flops, tokens = loop_seconds(solver, args.model, args.device, args.steps, args.compile,
                                                      Path(tmp), args.log_every)
            per_step = tokens / args.steps
            rows.append((solver, 1000 * seconds / args.steps, per_step * args.steps / seconds, flops / seconds / peak,
                         1000 * loop_s / args.steps, tokens / loop_s, loop_flops / loop_s / peak))
    device = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    print(f"| solver | bare, ms/step | bare, tokens/s | bare MFU | optbench, ms/step | optbench, tokens/s | "
          f"optbench MFU | optbench / bare, tokens/s |  (model={args.model}, {device}, {args.steps} steps, "
          f"peak {args.peak_tflops:g} TFLOP/s{', compiled' if args.compile else ''}, logging every "
          f"{args.log_every} steps)")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for solver, bare_ms, bare_tps, bare_mfu, loop_ms, loop_tps, loop_mfu in rows:
        print(f"| {solver} | {bare_ms:.1f} | {bare_tps:,.0f} | {bare_mfu:.1%} | {loop_ms:.1f} | {loop_tps:,.0f} | "
              f"{loop_mfu:.1%} | {loop_tps / bare_tps:.3f} |")


if __name__ == "__main__":
    main()
