"""The CPU backend: one process, float32 unless told otherwise."""

from __future__ import annotations

from framework.backend import Backend
from framework.errors import require


class CPUBackend(Backend):
    """Lightning's CPU accelerator; ``threads`` sets torch's intra-op threads (null: torch's default)."""

    name = "cpu"

    def __init__(self, precision: str = "32-true", compile: bool = False, threads: int | None = None) -> None:
        super().__init__(accelerator="cpu", devices=1, precision=precision, compile=compile)
        require(threads is None or (isinstance(threads, int) and threads >= 1), "backend.threads", threads,
                "must be null or an integer >= 1")
        self.threads = threads

    def resolve(self) -> Backend:
        if self.threads:
            import torch

            torch.set_num_threads(self.threads)
        return self
