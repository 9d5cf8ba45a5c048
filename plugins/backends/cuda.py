"""The single-GPU CUDA backend: bf16 autocast by default, optional ``torch.compile``."""

from __future__ import annotations

from framework.backend import Backend
from framework.errors import ConfigError, require


class CUDABackend(Backend):
    """One CUDA device with Lightning's ``bf16-mixed`` precision (autocast, float32 weights)."""

    name = "cuda"

    def __init__(self, precision: str = "bf16-mixed", compile: bool = False, devices: int = 1) -> None:
        require(devices == 1, "backend.devices", devices, "must be 1: several GPUs train one run with "
                "backend=ddp backend.accelerator=gpu (or backend=fsdp)")
        super().__init__(accelerator="gpu", devices=devices, precision=precision, compile=compile)

    def resolve(self) -> Backend:
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("backend", "cuda", "no CUDA device is visible here; use backend=cpu or backend=auto")
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        return self
