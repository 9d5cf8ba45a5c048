"""Lightning's checkpoint I/O, made atomic: a kill during a write never damages the last good checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from framework.files import atomic_file


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a private temporary file, flushes it to the disk, then renames it into place.

    Lightning's own writer opens the target file and streams into it, so a process killed mid-write
    leaves a truncated checkpoint where the last good one was. Loading unpickles the whole file
    (RNG states, solver state): checkpoints are this run's own files, not downloads.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(path, "wb", durable=True) as out:
            torch.save(checkpoint, out)

    def load_checkpoint(self, path: Any, map_location: Callable | None = None,
                        weights_only: bool | None = None) -> dict[str, Any]:
        return torch.load(path, map_location=map_location or "cpu", weights_only=False)
