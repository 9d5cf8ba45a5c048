"""Atomic file writes: readers see the previous file or the whole new one, never a half-written one."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import IO, Any, Iterator


@contextlib.contextmanager
def atomic_file(path: Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a private temporary file beside ``path`` (``<name>.<pid>.partial``) and rename it onto ``path``
    when the block ends; if the block raises, the temporary file is removed and ``path`` is untouched.

    Processes that write the same file at once each rename a whole file of their own.
    """
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    try:
        with open(partial, mode) as out:
            yield out
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
