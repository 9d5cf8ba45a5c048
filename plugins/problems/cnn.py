"""A small convolutional classifier on scikit-learn's 8x8 digits: 4-D kernels for AdaHessian's spatial
averaging and for Shampoo-type preconditioners."""

from __future__ import annotations

import math

from torch import nn

from framework.errors import ConfigError, check_count
from plugins.problems.tabular import TabularClassification


class CNNClassifier(TabularClassification):
    """Two 3x3 convolutions (``channels``, then twice as many; GELU, the second with stride 2) and a
    linear head, on the table's rows read as square one-channel images."""

    def __init__(self, dataset: str = "digits", batch_size: int | None = 64, channels: int = 16,
                 val_fraction: float = 0.2, l2: float = 0.0, target: float | None = None) -> None:
        super().__init__(dataset, batch_size, val_fraction, l2, target)
        side = math.isqrt(self.num_features)
        if side * side != self.num_features:
            raise ConfigError("model.dataset", dataset, "must be a table of square images (digits)")
        channels = check_count("model.channels", channels)
        head = nn.Linear(2 * channels * ((side + 1) // 2) ** 2, self.num_outputs)
        head.optbench_not_hidden = True
        self.model = nn.Sequential(
            nn.Unflatten(1, (1, side, side)),
            nn.Conv2d(1, channels, 3, padding=1), nn.GELU(),
            nn.Conv2d(channels, 2 * channels, 3, stride=2, padding=1), nn.GELU(),
            nn.Flatten(), head,
        )
