"""The default backend: CUDA when a GPU is visible, otherwise the CPU."""

from __future__ import annotations

from framework.backend import Backend
from plugins.backends.cpu import CPUBackend
from plugins.backends.cuda import CUDABackend


class AutoBackend(Backend):
    """Resolves to :class:`CUDABackend` (with ``compile``) or :class:`CPUBackend` at run time."""

    name = "auto"

    def __init__(self, compile: bool = False) -> None:
        super().__init__(compile=compile)

    def resolve(self) -> Backend:
        import torch

        if torch.cuda.is_available():
            return CUDABackend(compile=self.compile).resolve()
        return CPUBackend().resolve()
