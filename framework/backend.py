"""The backend protocol: which Lightning accelerator, strategy, precision and devices a run uses."""

from __future__ import annotations

from typing import Any

from torch import nn

from framework.errors import require

#: Lightning's precision settings (``trainer.precision``), with the aliases it also accepts
PRECISIONS = ("64-true", "32-true", "16-true", "bf16-true", "16-mixed", "bf16-mixed", "transformer-engine",
              "transformer-engine-float16")
_ALIASES = ("64", "32", "16", "bf16", 64, 32, 16)


class Backend:
    """Hardware settings for a run, turned into Lightning ``Trainer`` arguments.

    ``compile=True`` wraps the model in ``torch.compile`` before training. ``devices`` x ``num_nodes``
    processes train one run (:mod:`framework.distributed`); ``threads`` sets torch's CPU threads per process.
    """

    name = "backend"
    #: whether the strategy shards parameters, gradients and optimizer state over the processes (FSDP):
    #: only solvers whose update works on any shard of a parameter (``Solver.runs_sharded``) run there
    shards_parameters: bool = False

    def __init__(
        self,
        accelerator: str = "cpu",
        devices: int | str = 1,
        strategy: str = "auto",
        precision: str = "32-true",
        compile: bool = False,
        num_nodes: int = 1,
        threads: int | None = None,
    ) -> None:
        require(precision in PRECISIONS + _ALIASES, "backend.precision", precision,
                f"must be one of {', '.join(PRECISIONS)}")
        require(isinstance(num_nodes, int) and num_nodes >= 1, "backend.num_nodes", num_nodes, "must be an integer >= 1")
        require(threads is None or (isinstance(threads, int) and threads >= 1), "backend.threads", threads,
                "must be null or an integer >= 1")
        self.accelerator = accelerator
        self.devices = devices
        self.strategy = strategy
        self.precision = precision
        self.compile = compile
        self.num_nodes = num_nodes
        self.threads = threads

    @property
    def world_size(self) -> int:
        """Processes that train one run together (``devices`` x ``num_nodes`` where devices is a count)."""
        return self.devices * self.num_nodes if isinstance(self.devices, int) else self.num_nodes

    def resolve(self) -> "Backend":
        """The concrete backend to use on this machine (``auto`` picks one); raises if unusable."""
        return self

    def trainer_kwargs(self) -> dict[str, Any]:
        return {
            "accelerator": self.accelerator,
            "devices": self.devices,
            "strategy": self.strategy,
            "precision": self.precision,
            "num_nodes": self.num_nodes,
        }

    def prepare(self, model: nn.Module) -> nn.Module:
        """The model as training will hold it: float64 already for ``64-true`` (Lightning converts it only
        after restoring a checkpoint, which would round a float64 checkpoint to float32), compiled if asked."""
        if str(self.precision).startswith("64"):
            model = model.double()
        if not self.compile:
            return model
        import torch

        return torch.compile(model)

    def describe(self) -> str:
        extra = ", compiled" if self.compile else ""
        nodes = f" x{self.num_nodes} nodes" if self.num_nodes > 1 else ""
        return f"{self.name} ({self.accelerator} x{self.devices}{nodes}, {self.precision}{extra})"
