"""In-context linear regression (Garg et al. 2022; Fu et al. 2023): a transformer reads (x, y) pairs of a
random linear function and predicts y for the next x.

Each prompt draws ``w ~ N(0, I_d)`` and ``n_points`` inputs ``x_i ~ N(0, S)``; ``y_i = w.x_i + noise``.
The model sees two tokens per example, ``(x_i, 0)`` and then ``(x_i, y_i)``, mapped to its width by a
linear read-in, and predicts ``y_i`` at the position of ``(x_i, 0)`` from what precedes it, through a
GPT-2 backbone and a linear read-out. Garg et al.'s ``y`` token is ``(y_i, 0, ..., 0)`` instead; repeating
``x_i`` beside ``y_i`` lets a single attention layer form ``sum_j y_j x_j . x`` (one gradient-descent
step) without first copying ``x_j`` forward. Measured here with the default settings and AdamW: Garg's
layout stayed on the predict-zero plateau (0.947) for 2,750 steps; this one is at 0.56 after 400. ``condition_number`` gives ``S`` eigenvalues log-spaced
from 1 down to ``1/condition_number`` in a fixed random basis: the ill-conditioned setting where
gradient descent struggles and Newton's method does not.

The training loss is half the mean squared error (the Gaussian negative log-likelihood, which is what
curvature estimators sample). Validation reports the squared error normalized by ``d`` (predicting 0
scores about 1 with ``S = I``) overall as ``loss`` and at each number of in-context examples as
``mse_at<i>``, next to the least-squares prediction from the same ``i`` examples (minimum-norm when
``i < d``) as ``lsq_at<i>`` and ``lsq``: the reference line of the papers.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from framework.errors import check_at_least, check_count, check_nonnegative, require
from framework.problem import Forward, Problem, at_least_float32
from plugins.problems.transformer import Backbone, GPTShape, init_gpt2

_VALIDATION_SEED = 2**31 - 1


class PromptSampler:
    """Draws batches of prompts ``(xs: B x n x d, ys: B x n)`` from a generator."""

    def __init__(self, dim: int, n_points: int, noise_std: float, condition_number: float) -> None:
        self.dim, self.n_points, self.noise_std = dim, n_points, noise_std
        gen = torch.Generator().manual_seed(0)
        basis, _ = torch.linalg.qr(torch.randn(dim, dim, generator=gen))
        scales = torch.logspace(0, -0.5 * math.log10(condition_number), dim)
        self.input_map = (basis * scales) @ basis.T  # x = z @ input_map has covariance basis diag(s^2) basis^T

    def sample(self, batch_size: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        xs = torch.randn(batch_size, self.n_points, self.dim, generator=gen) @ self.input_map
        w = torch.randn(batch_size, self.dim, 1, generator=gen)
        ys = (xs @ w).squeeze(-1)
        if self.noise_std:
            ys = ys + self.noise_std * torch.randn(ys.shape, generator=gen)
        return xs, ys


class PromptBatches(Dataset):
    """Batch ``i`` is drawn from a generator seeded by ``(seed, i)``: the same batches for the same seed."""

    def __init__(self, sampler: PromptSampler, batch_size: int, seed: int, length: int) -> None:
        self.sampler, self.batch_size, self.seed, self.length = sampler, batch_size, seed, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        return self.sampler.sample(self.batch_size, gen)


class InContextRegressor(nn.Module):
    """Linear read-in, GPT-2 backbone, linear read-out; one prediction per ``x`` token."""

    def __init__(self, dim: int, shape: GPTShape) -> None:
        super().__init__()
        self.read_in = nn.Linear(dim + 1, shape.n_embd)
        self.backbone = Backbone(shape)
        self.read_out = nn.Linear(shape.n_embd, 1)
        init_gpt2(self, shape.n_layer)
        for layer in (self.read_in, self.read_out):
            layer.optbench_not_hidden = True  # input and output maps, as embeddings and heads

    def forward(self, xs: Tensor, ys: Tensor) -> Tensor:
        b, n, d = xs.shape
        tokens = xs.new_zeros(b, 2 * n, d + 1)
        tokens[:, :, :d] = xs.repeat_interleave(2, dim=1)
        tokens[:, 1::2, d] = ys
        features = self.backbone(self.read_in(tokens))
        return self.read_out(features[:, 0::2])  # B x n x 1


def least_squares_predictions(xs: Tensor, ys: Tensor) -> Tensor:
    """For every position ``i``, ``x_i . w_i`` with ``w_i`` the minimum-norm least-squares fit to the
    first ``i`` examples (0 for ``i = 0``)."""
    predictions = [torch.zeros_like(ys[:, 0])]
    for i in range(1, xs.shape[1]):
        w = torch.linalg.pinv(xs[:, :i].double()) @ ys[:, :i, None].double()
        predictions.append((xs[:, i : i + 1].double() @ w).reshape(-1).to(ys.dtype))
    return torch.stack(predictions, dim=1)


class InContextLinearRegression(Problem):
    """The in-context linear regression task with a GPT-2 style model (Garg et al.'s setting, CPU-sized)."""

    metric = "loss"
    item_unit = "prompts"
    likelihood = "gaussian"

    def __init__(self, dim: int = 5, n_points: int = 11, noise_std: float = 0.0, condition_number: float = 1.0,
                 n_layer: int = 3, n_head: int = 4, n_embd: int = 64, batch_size: int = 64, val_batches: int = 4,
                 target: float | None = None) -> None:
        super().__init__(batch_size, target)
        self.dim = check_count("model.dim", dim)
        n_points = check_count("model.n_points", n_points, minimum=2)
        check_at_least("model.condition_number", condition_number, 1)
        require(n_embd % n_head == 0, "model.n_embd", n_embd, f"must be divisible by model.n_head={n_head}")
        self.sampler = PromptSampler(self.dim, n_points, check_nonnegative("model.noise_std", noise_std),
                                     condition_number)
        self.val_batches = check_count("model.val_batches", val_batches)
        shape = GPTShape(check_count("model.n_layer", n_layer), check_count("model.n_head", n_head),
                         check_count("model.n_embd", n_embd), 2 * n_points, vocab_size=0)
        self.model = InContextRegressor(self.dim, shape)

    def train_loader(self, seed: int) -> DataLoader:
        return DataLoader(PromptBatches(self.sampler, self.batch_size, seed, length=10**9), batch_size=None)

    def val_loader(self) -> DataLoader:
        batches = PromptBatches(self.sampler, self.batch_size, _VALIDATION_SEED, length=self.val_batches)
        return DataLoader(batches, batch_size=None)

    def forward(self, model: nn.Module, batch: Any) -> Forward:
        xs, ys = batch
        predictions = model(xs, ys)
        loss = 0.5 * (at_least_float32(predictions.squeeze(-1)) - ys).square().mean()
        return Forward(loss=loss, outputs=predictions, items=len(ys))

    def validation_metrics(self, model: nn.Module, batch: Any) -> dict[str, Tensor]:
        xs, ys = batch
        errors = (at_least_float32(model(xs, ys).squeeze(-1)) - ys).square().mean(0) / self.dim
        reference = (least_squares_predictions(xs, ys) - ys).square().mean(0) / self.dim
        metrics = {"loss": errors.mean(), "lsq": reference.mean()}
        for i in range(len(errors)):
            metrics[f"mse_at{i:02d}"] = errors[i]
            metrics[f"lsq_at{i:02d}"] = reference[i]
        return metrics
