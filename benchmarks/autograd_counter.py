"""What counting every differentiation costs: a training step with and without ``AutogradCounter``.

Usage: ``python benchmarks/autograd_counter.py [steps] [rounds]`` (defaults 300 and 5). For each problem it
builds the problem once and runs a bare AdamW step (forward, backward, step) on one fixed batch, ``steps``
times with the loop's counting around each step (the autograd counter and a forward hook on the model, as
``StepContext.counting`` installs them), and ``steps`` times without,
the two interleaved over ``rounds`` rounds; it prints the median ms/step of each and their ratio. The same
loop with an HVP per step (AdaHessian-style) shows the graph walk that classifies a curvature product. A
third column times the alternative we did not take: a torch-function mode that sees the autograd calls
without wrapping anything, but runs Python for every tensor operation of the step.
"""

from __future__ import annotations

import contextlib
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def _step_function(problem_name: str, hvp: bool):
    import torch

    from conftest import compose
    from framework.runner import build

    problem = build(compose(f"model={problem_name}").model, "model")
    model, batch = problem.model, next(iter(problem.train_loader(0)))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)

    def step() -> None:
        loss = problem.forward(model, batch).loss
        if hvp:
            grads = torch.autograd.grad(loss, params, create_graph=True)
            probes = [torch.randint_like(p, 0, 2).mul_(2).sub_(1) for p in params]
            torch.autograd.grad(grads, params, grad_outputs=probes)
            for p, g in zip(params, grads):
                p.grad = g.detach()
        else:
            loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step, params, model


def _watching_mode():
    """A torch-function mode that only looks at each call's function: the least such a mode can cost."""
    import torch
    from torch.overrides import TorchFunctionMode

    watched = (torch.autograd.grad, torch.autograd.backward, torch.Tensor.backward)

    class Watch(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            if func in watched:
                pass
            return func(*args, **(kwargs or {}))

    return Watch()


def measure(problem_name: str, steps: int, rounds: int, hvp: bool) -> dict[str, float]:
    from framework.costs import AutogradCounter

    step, params, model = _step_function(problem_name, hvp)
    counts: list = []

    @contextlib.contextmanager
    def counted():  # as StepContext.counting: a forward hook on the model and the autograd counter
        handle = model.register_forward_hook(lambda *_: counts.append(1))
        try:
            with AutogradCounter(params, counts.append, counts.append):
                yield
        finally:
            handle.remove()

    contexts = {"counted": counted,
                "bare": contextlib.nullcontext, "mode": _watching_mode}
    timings: dict[str, list[float]] = {name: [] for name in contexts}
    for _ in range(rounds + 1):  # the first round warms up
        for name, context in contexts.items():
            started = time.perf_counter()
            for _ in range(steps):
                with context():
                    step()
            timings[name].append((time.perf_counter() - started) / steps * 1e3)
    return {name: statistics.median(values[1:]) for name, values in timings.items()}


def main() -> None:
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    print("| problem | step | ms/step counted | ms/step bare | ratio | torch-function mode |")
    print("|---|---|---:|---:|---:|---:|")
    for problem, hvp, n in [("quadratic", False, steps), ("mlp", False, steps), ("mlp", True, steps),
                            ("gpt2-nano", False, max(steps // 20, 5))]:
        ms = measure(problem, n, rounds, hvp)
        kind = "backward + HVP" if hvp else "backward"
        print(f"| {problem} | {kind} | {ms['counted']:.3f} | {ms['bare']:.3f} | {ms['counted'] / ms['bare']:.3f}x | "
              f"{ms['mode'] / ms['bare']:.3f}x |", flush=True)


if __name__ == "__main__":
    main()
