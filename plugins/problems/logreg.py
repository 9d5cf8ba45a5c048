"""Logistic regression (binary or multinomial) on a scikit-learn table; convex, so optima are exact."""

from __future__ import annotations

from torch import nn

from plugins.problems.tabular import TabularClassification


class LogisticRegression(TabularClassification):
    """One linear layer: a single logit for two classes, one logit per class otherwise.

    ``dataset: synthetic`` draws ``num_samples`` x ``num_features`` features whose covariance has the
    given ``condition_number`` (see :func:`synthetic_table`); the three settings apply to it only.
    """

    def __init__(self, dataset: str = "breast_cancer", batch_size: int | None = 64, val_fraction: float = 0.2,
                 l2: float = 1e-3, target: float | None = None, num_samples: int = 2000, num_features: int = 20,
                 condition_number: float = 1e4) -> None:
        synthetic = {"num_samples": num_samples, "num_features": num_features, "condition_number": condition_number}
        super().__init__(dataset, batch_size, val_fraction, l2, target, synthetic)
        self.model = nn.Linear(self.num_features, self.num_outputs)
        self.model.optbench_not_hidden = True  # the whole model is the output head
