"""Classification on a table that ships with scikit-learn: standardized, fixed train/validation split."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from framework.errors import ConfigError, check_at_least, check_count, check_nonnegative, require
from framework.problem import Forward, Problem


def _loaders() -> dict[str, Callable[..., Any]]:
    from sklearn import datasets

    return {
        "breast_cancer": datasets.load_breast_cancer,
        "digits": datasets.load_digits,
        "iris": datasets.load_iris,
        "wine": datasets.load_wine,
    }


def synthetic_table(num_samples: int, num_features: int, condition_number: float) -> tuple[np.ndarray, np.ndarray]:
    """Features with covariance of a chosen condition number, labels from a logistic model (seed 0).

    ``x = z diag(s) Q^T`` with Gaussian ``z``, a random rotation ``Q`` and scales ``s`` log-spaced from 1
    down to ``condition_number^-1/2``, so ``cov(x)`` has eigenvalues from 1 to ``1/condition_number``;
    the labels are Bernoulli draws of ``sigmoid(x w)`` for a fixed random ``w`` of norm ``3 sqrt(d)``.
    """
    check_count("model.num_samples", num_samples, minimum=2)
    check_count("model.num_features", num_features)
    check_at_least("model.condition_number", condition_number, 1)
    rng = np.random.default_rng(0)
    rotation, _ = np.linalg.qr(rng.standard_normal((num_features, num_features)))
    scales = np.logspace(0, -0.5 * np.log10(condition_number), num_features)
    x = rng.standard_normal((num_samples, num_features)) * scales @ rotation.T
    w = rng.standard_normal(num_features)
    w *= 3 * np.sqrt(num_features) / np.linalg.norm(w)
    y = (rng.random(num_samples) < 1 / (1 + np.exp(-x @ w))).astype(np.int64)
    return x, y


def load_table(name: str, val_fraction: float, synthetic: dict[str, Any] | None = None
               ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(x_train, y_train, x_val, y_val) of a bundled scikit-learn data set or the synthetic table.

    The split is fixed (seed 0), so every run and every seed validates on the same rows. Bundled
    tables are standardized on the train part; the synthetic one keeps its designed covariance.
    """
    loaders = _loaders()
    if name != "synthetic" and name not in loaders:
        raise ConfigError("model.dataset", name, f"must be one of {sorted(loaders) + ['synthetic']}")
    require(0 < val_fraction < 1, "model.val_fraction", val_fraction, "must be in (0, 1)")
    x, y = synthetic_table(**(synthetic or {})) if name == "synthetic" else loaders[name](return_X_y=True)
    order = np.random.default_rng(0).permutation(len(x))
    n_val = max(1, int(round(len(x) * val_fraction)))
    val, train = order[:n_val], order[n_val:]
    if name != "synthetic":
        mean, std = x[train].mean(0), x[train].std(0)
        std[std == 0] = 1.0
        x = (x - mean) / std
    as_x = lambda rows: torch.tensor(x[rows], dtype=torch.float32)  # noqa: E731
    as_y = lambda rows: torch.tensor(y[rows], dtype=torch.long)  # noqa: E731
    return as_x(train), as_y(train), as_x(val), as_y(val)


class TabularClassification(Problem):
    """A classifier on a scikit-learn table; subclasses build ``self.model`` from the table's shape.

    ``batch_size: null`` gives full-batch training (for L-BFGS and Newton). ``l2`` adds
    ``l2/2 * |w|^2`` to the loss, which makes logistic regression strongly convex.
    """

    def __init__(self, dataset: str, batch_size: int | None, val_fraction: float = 0.2, l2: float = 0.0,
                 target: float | None = None, synthetic: dict[str, Any] | None = None) -> None:
        super().__init__(batch_size, target)
        self.dataset = dataset
        self.l2 = check_nonnegative("model.l2", l2)
        self.x_train, self.y_train, self.x_val, self.y_val = load_table(dataset, val_fraction, synthetic)
        self.num_features = self.x_train.shape[1]
        self.num_classes = int(torch.cat([self.y_train, self.y_val]).max()) + 1
        self.binary = self.num_classes == 2
        self.likelihood = "bernoulli" if self.binary else "categorical"

    @property
    def num_outputs(self) -> int:
        return 1 if self.binary else self.num_classes

    def items_per_batch(self) -> int:
        return self.batch_size or len(self.x_train)

    def data_info(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "train_rows": len(self.x_train), "val_rows": len(self.x_val),
                "features": self.num_features, "classes": self.num_classes, "split_seed": 0}

    def train_loader(self, seed: int) -> DataLoader:
        generator = torch.Generator().manual_seed(seed)
        # every step sees a full batch: equal steps mean equal samples, and curvature scales stay fixed
        return DataLoader(TensorDataset(self.x_train, self.y_train), batch_size=self.items_per_batch(),
                          shuffle=True, drop_last=True, generator=generator)

    def val_loader(self) -> DataLoader:
        return DataLoader(TensorDataset(self.x_val, self.y_val), batch_size=len(self.x_val))

    def _loss(self, logits: Tensor, y: Tensor) -> Tensor:
        if self.binary:
            return F.binary_cross_entropy_with_logits(logits.squeeze(-1), y.to(logits.dtype))
        return F.cross_entropy(logits, y)

    def forward(self, model: nn.Module, batch: Any) -> Forward:
        x, y = batch
        logits = model(x)
        loss = self._loss(logits, y)
        if self.l2:
            loss = loss + 0.5 * self.l2 * sum((p * p).sum() for p in model.parameters() if p.ndim >= 2)
        outputs = logits.squeeze(-1) if self.binary else logits
        return Forward(loss=loss, outputs=outputs, items=len(y))

    def validation_metrics(self, model: nn.Module, batch: Any) -> dict[str, Tensor]:
        x, y = batch
        logits = model(x)
        predicted = (logits.squeeze(-1) > 0).long() if self.binary else logits.argmax(-1)
        return {"loss": self._loss(logits, y), "accuracy": (predicted == y).float().mean()}
