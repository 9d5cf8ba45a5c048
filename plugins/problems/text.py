"""Text corpora as byte tokens, and fixed-length windows over them for next-token prediction.

The default corpus is the Python standard library's own source (``*.py`` under ``sysconfig``'s
``stdlib`` path, sorted, about 30 MB): it is on every machine that runs Python and needs no download.
The byte-level tokenizer maps each byte to its value (vocabulary 256) and needs no vocabulary file.
"""

from __future__ import annotations

import glob
import sysconfig
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from framework.errors import ConfigError


def stdlib_sources() -> list[Path]:
    """The standard library's ``.py`` files in a fixed order (installed packages excluded)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    return sorted(p for p in root.rglob("*.py") if "site-packages" not in p.parts and p.is_file())


def user_files(patterns: list[str]) -> list[Path]:
    """Expand the user's paths and globs; a path that matches nothing is a one-line error."""
    files: list[Path] = []
    for pattern in patterns:
        matches = sorted(glob.glob(str(Path(pattern).expanduser()), recursive=True))
        if not matches:
            raise ConfigError("model.files", pattern, "no such file")
        for match in matches:
            if not Path(match).is_file():
                raise ConfigError("model.files", match, "is not a readable file")
            files.append(Path(match))
    return files


def read_bytes(files: list[Path], max_bytes: int | None) -> np.ndarray:
    """The files' bytes joined by blank lines, cut at ``max_bytes``: the byte-level token stream."""
    parts, total = [], 0
    for path in files:
        try:
            data = path.read_bytes() + b"\n\n"
        except OSError as error:
            raise ConfigError("model.files", str(path), f"cannot be read ({error.strerror})") from None
        parts.append(data)
        total += len(data)
        if max_bytes is not None and total >= max_bytes:
            break
    stream = b"".join(parts)[:max_bytes]
    if len(stream) < 2:
        raise ConfigError("model.files", [str(f) for f in files], "hold too little text to train on")
    return np.frombuffer(stream, dtype=np.uint8)


class Windows(Dataset):
    """Non-overlapping windows of ``block_size + 1`` tokens: (input, next-token targets) pairs."""

    def __init__(self, tokens: np.ndarray, block_size: int, limit: int | None = None) -> None:
        self.tokens = torch.from_numpy(tokens.astype(np.int64))
        self.block_size = block_size
        count = (len(tokens) - 1) // block_size
        if count < 1:
            raise ConfigError("model.block_size", block_size, f"is longer than the text ({len(tokens)} tokens)")
        stride = max(1, count // limit) if limit else 1
        self.starts = list(range(0, count * block_size, block_size * stride))[:limit]

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        start = self.starts[index]
        chunk = self.tokens[start : start + self.block_size + 1]
        return chunk[:-1], chunk[1:]
