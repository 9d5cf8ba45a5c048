"""The CPU backend: one process, float32 unless told otherwise."""

from __future__ import annotations

from framework.backend import Backend


class CPUBackend(Backend):
    """Lightning's CPU accelerator; ``threads`` sets torch's intra-op threads (null: torch's default)."""

    name = "cpu"

    def __init__(self, precision: str = "32-true", compile: bool = False, threads: int | None = None) -> None:
        super().__init__(accelerator="cpu", devices=1, precision=precision, compile=compile, threads=threads)

    def resolve(self) -> Backend:
        if self.threads:
            import torch

            torch.set_num_threads(self.threads)
        return self
