"""A small multilayer perceptron classifier on a scikit-learn table (8x8 digits by default)."""

from __future__ import annotations

from torch import nn

from framework.errors import check_count
from plugins.problems.tabular import TabularClassification


class MLPClassifier(TabularClassification):
    """``depth`` hidden layers of ``width`` units with GELU activations."""

    def __init__(self, dataset: str = "digits", batch_size: int | None = 64, width: int = 128, depth: int = 2,
                 val_fraction: float = 0.2, l2: float = 0.0, target: float | None = None) -> None:
        super().__init__(dataset, batch_size, val_fraction, l2, target)
        width = check_count("model.width", width)
        layers: list[nn.Module] = []
        size = self.num_features
        for _ in range(check_count("model.depth", depth, minimum=0)):
            layers += [nn.Linear(size, width), nn.GELU()]
            size = width
        head = nn.Linear(size, self.num_outputs)
        head.optbench_not_hidden = True  # the output head: not a hidden matrix (Muon-style partitions)
        self.model = nn.Sequential(*layers, head)
