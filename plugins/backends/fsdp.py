"""Fully sharded data parallel on CUDA GPUs: parameters, gradients and optimizer state split over processes."""

from __future__ import annotations

from typing import Any

from framework.backend import Backend
from framework.errors import ConfigError, require


class FSDPBackend(Backend):
    """Lightning's FSDP strategy, one process per GPU on ``num_nodes`` machines (nccl), bf16 autocast.

    Each process holds a shard of every parameter, of its gradient and of the optimizer state, so only
    solvers whose update works on any piece of a parameter run here (``Solver.runs_sharded``: SGD, AdamW,
    Lion, SophiaG, schedule-free); those that need whole matrices (Muon, Shampoo, SOAP, PSGD), whole
    Hessians (Newton, Gauss-Newton, L-BFGS) or second derivatives (AdaHessian, SophiaH) are refused before
    training. FSDP reduces the gradients itself; the loss, item counts and sampled draws are the framework's.
    """

    name = "fsdp"
    shards_parameters = True

    def __init__(self, devices: int = 2, num_nodes: int = 1, precision: str = "bf16-mixed", compile: bool = False,
                 sharding_strategy: str = "FULL_SHARD") -> None:
        require(isinstance(devices, int) and devices >= 1, "backend.devices", devices, "must be an integer >= 1")
        require(sharding_strategy in ("FULL_SHARD", "SHARD_GRAD_OP", "HYBRID_SHARD", "NO_SHARD"),
                "backend.sharding_strategy", sharding_strategy,
                "must be FULL_SHARD, SHARD_GRAD_OP, HYBRID_SHARD or NO_SHARD")
        super().__init__(accelerator="gpu", devices=devices, precision=precision, compile=compile, num_nodes=num_nodes)
        self.sharding_strategy = sharding_strategy

    def resolve(self) -> Backend:
        import torch

        if torch.cuda.device_count() < self.devices:
            raise ConfigError("backend", "fsdp", f"needs {self.devices} CUDA devices per node, "
                              f"{torch.cuda.device_count()} visible here (Lightning's FSDP strategy runs on GPUs only); "
                              "backend=ddp runs on CPUs")
        return self

    def trainer_kwargs(self) -> dict[str, Any]:
        from pytorch_lightning.strategies import FSDPStrategy

        return {**super().trainer_kwargs(), "strategy": FSDPStrategy(sharding_strategy=self.sharding_strategy,
                                                                      use_orig_params=True)}
