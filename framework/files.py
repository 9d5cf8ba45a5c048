"""Atomic file writes: readers see the previous file or the whole new one, never a half-written one."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import IO, Any, Iterator


@contextlib.contextmanager
def atomic_file(path: Path, mode: str = "w", durable: bool = False, newline: str | None = None
                ) -> Iterator[IO[Any]]:
    """Open a private temporary file beside ``path`` (``<name>.<pid>.partial``) and rename it onto ``path``
    when the block ends; if the block raises, the temporary file is removed and ``path`` is untouched.

    Processes that write the same file at once each rename a whole file of their own. ``durable`` also
    flushes the bytes to the disk before the rename (checkpoints: a crash of the machine, not only of
    the process, then leaves the old file or the new one).
    """
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    try:
        with open(partial, mode, newline=newline) as out:
            yield out
            if durable:
                out.flush()
                os.fsync(out.fileno())
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
