"""The problem protocol: a model, its data, its loss, a validation metric and a target value.

A problem also says how to sample targets from the model's own outputs (``likelihood``), which
curvature estimators such as SophiaG's Gauss-Newton-Bartlett pass need: categorical for language
models and classifiers, Bernoulli for a single logit, Gaussian for regression.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from framework.distributed.shard import draw_for_rows
from framework.errors import check_count, require

Likelihood = Literal["categorical", "bernoulli", "gaussian", "none"]


@dataclass
class Forward:
    """A forward pass: the mean loss, the raw outputs (logits or predictions) and the item count."""

    loss: Tensor
    outputs: Tensor
    items: int


def at_least_float32(t: Tensor) -> Tensor:
    """``t`` in float32 if it is in a half-precision type (bf16 autocast outputs), else as it is: float64
    runs keep every digit."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def sampled_loss(outputs: Tensor, likelihood: Likelihood) -> Tensor:
    """Loss of ``outputs`` against targets drawn from the model's predictive distribution.

    The targets are sampled without gradient; the loss is the mean negative log-likelihood, so its
    gradient is the Gauss-Newton-Bartlett sample that SophiaG squares. The random numbers are those a
    single process draws for the whole batch, also when this process holds a slice of it
    (:func:`~framework.distributed.draw_for_rows`); categorical targets are drawn exactly as
    ``torch.distributions.Categorical(logits).sample()`` draws them (``argmax(p / q)``, ``q ~ Exp(1)``).
    """
    if likelihood == "categorical":
        logits = at_least_float32(outputs.reshape(-1, outputs.shape[-1]))
        with torch.no_grad():
            probs = torch.distributions.Categorical(logits=logits).probs
            targets = (probs / draw_for_rows(Tensor.exponential_, probs)).argmax(-1)
        return F.cross_entropy(logits, targets)
    if likelihood == "bernoulli":
        logits = at_least_float32(outputs)
        with torch.no_grad():
            targets = (draw_for_rows(Tensor.uniform_, logits) < torch.sigmoid(logits)).to(logits.dtype)
        return F.binary_cross_entropy_with_logits(logits, targets)
    if likelihood == "gaussian":
        predictions = at_least_float32(outputs)
        with torch.no_grad():
            targets = predictions + draw_for_rows(Tensor.normal_, predictions)
        return 0.5 * ((predictions - targets) ** 2).sum(-1).mean()
    raise ValueError(f"unknown likelihood {likelihood!r}")


def output_hessian_product(outputs: Tensor, vector: Tensor, likelihood: Likelihood) -> Tensor:
    """``(d^2 loss / d outputs^2) v`` for the mean negative log-likelihood: the middle factor of the GGN.

    Categorical: ``(diag(p) - p p^T) v`` per item; Bernoulli: ``p (1 - p) v``; each divided by the item count.
    """
    if likelihood == "categorical":
        logits = outputs.reshape(-1, outputs.shape[-1])
        p, v = torch.softmax(logits, dim=-1), vector.reshape_as(logits)
        return ((p * v - p * (p * v).sum(-1, keepdim=True)) / len(logits)).reshape_as(outputs)
    if likelihood == "bernoulli":
        p = torch.sigmoid(outputs)
        return p * (1 - p) * vector / outputs.numel()
    raise ValueError(f"no output Hessian for likelihood {likelihood!r}: the loss scale is problem-specific")


class Problem(ABC):
    """A workload on which optimizers are compared.

    Subclasses build ``self.model`` in ``__init__`` and implement the data loaders and
    :meth:`forward`. ``metric`` names the validation metric (logged as ``val/<metric>``) whose
    ``target`` value defines time-to-target; ``item_unit`` says what a batch item is
    (``samples`` or ``tokens``).
    """

    metric: str = "loss"
    metric_mode: Literal["min", "max"] = "min"
    item_unit: str = "samples"
    likelihood: Likelihood = "categorical"

    def __init__(self, batch_size: int | None, target: float | None = None, val_batch_size: int | None = None) -> None:
        self.batch_size = None if batch_size is None else check_count("model.batch_size", batch_size)
        self.val_batch_size = val_batch_size
        self.target = target
        self.model: nn.Module

    @abstractmethod
    def train_loader(self, seed: int) -> DataLoader:
        """Training batches, shuffled deterministically from ``seed``."""

    @abstractmethod
    def val_loader(self) -> DataLoader:
        """Validation batches, in a fixed order."""

    @abstractmethod
    def forward(self, model: nn.Module, batch: Any) -> Forward:
        """The training loss of ``model`` on ``batch``."""

    def sampled_loss(self, out: Forward) -> Tensor:
        """Loss against targets sampled from ``out.outputs`` (see :func:`sampled_loss`)."""
        return sampled_loss(out.outputs, self.likelihood)

    def validation_metrics(self, model: nn.Module, batch: Any) -> dict[str, Tensor]:
        """Metrics on one validation batch, averaged by the loop; must include ``self.metric``."""
        return {"loss": self.forward(model, batch).loss}

    def data_info(self) -> dict[str, Any]:
        """Where the data came from and how it was prepared (source, tokenizer), for ``summary.json``."""
        return {}

    def items_per_batch(self) -> int:
        """Samples or tokens in one training batch."""
        return self.batch_size or 0

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def flops_per_item(self) -> float:
        """Training FLOPs (forward + backward) per sample or token; 6N unless the model knows better."""
        return 6.0 * self.num_parameters()

    def check_target(self) -> None:
        if self.target is not None:
            require(isinstance(self.target, (int, float)), "model.target", self.target, "must be a number or null")
