"""Deterministic test functions with a known minimum: the convex quadratic and Rosenbrock's valley.

The model is the point ``x`` itself and every batch is the same empty one, so a training step is one
exact evaluation of ``f`` and its derivatives, and convergence rates can be read off exactly (use
``backend.precision=64-true`` to follow them below float32's resolution). The validation metrics are
``loss = f(x) - f(x*)`` and ``distance = |x - x*|``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from framework.errors import check_at_least, check_count, check_positive
from framework.problem import Forward, Problem


class Point(nn.Module):
    """A single trainable vector, the argument of the test function."""

    def __init__(self, start: Tensor) -> None:
        super().__init__()
        self.x = nn.Parameter(start.clone())
        self.optbench_not_hidden = True  # a vector, not a layer


class Evaluations(Dataset):
    """``length`` identical empty items: one item per function evaluation."""

    def __init__(self, length: int) -> None:
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Tensor:
        return torch.zeros(0)


class TestFunction(Problem):
    """A function ``f`` of a point, minimized from a fixed start; subclasses define ``f`` and ``x*``."""

    __test__ = False  # not a pytest class, despite the name
    likelihood = "none"
    item_unit = "evaluations"

    def __init__(self, start: Tensor, optimum: Tensor, target: float | None) -> None:
        super().__init__(batch_size=1, target=target)
        self.optimum = optimum
        self.model = Point(start)

    def value(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def train_loader(self, seed: int) -> DataLoader:
        return DataLoader(Evaluations(10_000), batch_size=1)

    def val_loader(self) -> DataLoader:
        return DataLoader(Evaluations(1), batch_size=1)

    def forward(self, model: nn.Module, batch: Any) -> Forward:
        loss = self.value(model.x)
        return Forward(loss=loss, outputs=loss.reshape(1), items=1)

    def validation_metrics(self, model: nn.Module, batch: Any) -> dict[str, Tensor]:
        x = model.x
        return {"loss": self.value(x) - self.value(self.optimum.to(x)),
                "distance": (x - self.optimum.to(x)).norm()}

    def flops_per_item(self) -> float:
        return 0.0  # no data: compare these problems by steps and evaluations


class Quadratic(TestFunction):
    """``f(x) = 1/2 (x - x*)^T H (x - x*)`` with ``H``'s eigenvalues log-spaced from 1 down to
    ``1/condition_number`` in a random basis; ``x*`` is Gaussian and the start is 0 (fixed seed 0)."""

    def __init__(self, dim: int = 100, condition_number: float = 100.0, target: float | None = 1e-6) -> None:
        check_count("model.dim", dim)
        check_at_least("model.condition_number", condition_number, 1)
        gen = torch.Generator().manual_seed(0)
        basis, _ = torch.linalg.qr(torch.randn(dim, dim, generator=gen, dtype=torch.float64))
        eigenvalues = torch.logspace(0, -math.log10(condition_number), dim, dtype=torch.float64)
        self.hessian = (basis * eigenvalues) @ basis.T
        optimum = torch.randn(dim, generator=gen, dtype=torch.float64)
        super().__init__(torch.zeros(dim), optimum.float(), target)
        self.optimum = optimum

    def value(self, x: Tensor) -> Tensor:
        d = x - self.optimum.to(x)
        return 0.5 * d @ self.hessian.to(x) @ d


class Rosenbrock(TestFunction):
    """``f(x) = sum_i b (x_{i+1} - x_i^2)^2 + (1 - x_i)^2`` (the chained form), minimum 0 at all ones,
    started at the classic ``(-1.2, 1, -1.2, 1, ...)``; ``b`` sets how narrow the curved valley is."""

    def __init__(self, dim: int = 2, b: float = 100.0, target: float | None = 1e-8) -> None:
        check_count("model.dim", dim, minimum=2)
        self.b = check_positive("model.b", b)
        start = torch.tensor([-1.2 if i % 2 == 0 else 1.0 for i in range(dim)])
        super().__init__(start, torch.ones(dim, dtype=torch.float64), target)

    def value(self, x: Tensor) -> Tensor:
        return (self.b * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()
