"""Data parallel: ``devices`` x ``num_nodes`` processes train one run, each on its slice of the batch."""

from __future__ import annotations

from typing import Any

from framework.backend import Backend
from framework.errors import ConfigError, require


class DDPBackend(Backend):
    """Lightning's DDP processes on CPUs (gloo) or CUDA GPUs (nccl), one per device, on ``num_nodes`` machines.

    ``model.batch_size`` stays the global batch: each process trains on its contiguous slice of it, and
    every solver computes what one process computes on the whole batch (:mod:`framework.distributed`).
    On one machine the run starts its other processes itself; on several (``num_nodes`` > 1) a launcher
    starts one process per device on each: SLURM (``hydra/launcher=slurm``, ``tasks_per_node``) or torchrun.
    """

    name = "ddp"

    def __init__(self, accelerator: str = "cpu", devices: int = 2, num_nodes: int = 1, precision: str = "32-true",
                 compile: bool = False, process_group_backend: str | None = None, threads: int | None = None,
                 timeout_minutes: float = 30) -> None:
        require(accelerator in ("cpu", "gpu", "cuda"), "backend.accelerator", accelerator, "must be cpu or gpu")
        require(isinstance(devices, int) and devices >= 1, "backend.devices", devices, "must be an integer >= 1")
        require(process_group_backend in (None, "gloo", "nccl"), "backend.process_group_backend",
                process_group_backend, "must be null (gloo on CPUs, nccl on GPUs), gloo or nccl")
        super().__init__(accelerator="gpu" if accelerator == "cuda" else accelerator, devices=devices,
                         precision=precision, compile=compile, num_nodes=num_nodes, threads=threads)
        self.process_group_backend = process_group_backend or ("gloo" if self.accelerator == "cpu" else "nccl")
        self.timeout_minutes = timeout_minutes

    def resolve(self) -> Backend:
        if self.accelerator == "gpu":
            import torch

            if torch.cuda.device_count() < self.devices:
                raise ConfigError("backend.devices", self.devices, f"needs {self.devices} CUDA devices per node; "
                                  f"{torch.cuda.device_count()} visible here (backend.accelerator=cpu runs on CPUs)")
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        return self

    def trainer_kwargs(self) -> dict[str, Any]:
        from datetime import timedelta

        from framework.distributed.strategy import ReplicatedDDPStrategy

        strategy = ReplicatedDDPStrategy(process_group_backend=self.process_group_backend,
                                         timeout=timedelta(minutes=self.timeout_minutes))
        return {**super().trainer_kwargs(), "strategy": strategy}
