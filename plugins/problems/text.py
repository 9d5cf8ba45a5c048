"""Text sources for language modelling, and fixed-length windows over their tokens.

The default corpus is the Python standard library's own source (``*.py`` under ``sysconfig``'s
``stdlib`` path, sorted, about 30 MB): it is on every machine that runs Python and needs no download.
The user's own files, or a Hugging Face data set streamed through ``datasets``, replace it. Sources
yield documents (bytes); :mod:`plugins.problems.tokens` tokenizes and caches them.
"""

from __future__ import annotations

import glob
import logging
import platform
import sysconfig
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from framework.errors import ConfigError


def stdlib_sources() -> list[Path]:
    """The standard library's ``.py`` files in a fixed order (installed packages excluded)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    return sorted(p for p in root.rglob("*.py") if "site-packages" not in p.parts and p.is_file())


def stdlib_source() -> dict[str, Any]:
    """What identifies the default corpus for the token cache: the interpreter's version and stdlib path."""
    return {"kind": "stdlib", "python": platform.python_version(), "path": sysconfig.get_paths()["stdlib"]}


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


def file_source(files: list[Path]) -> dict[str, Any]:
    """What identifies these files' text for the token cache: paths, sizes, modification times."""
    entries = []
    for path in files:
        try:
            stat = path.stat()
        except OSError as error:
            raise ConfigError("model.files", str(path), f"cannot be read ({error.strerror})") from None
        entries.append([str(path.resolve()), stat.st_size, stat.st_mtime_ns])
    return {"kind": "files", "files": entries}


def file_documents(files: list[Path]) -> Iterator[bytes]:
    """Each file's bytes, one document per file; an unreadable file is a one-line error naming it."""
    for path in files:
        try:
            yield path.read_bytes()
        except OSError as error:
            raise ConfigError("model.files", str(path), f"cannot be read ({error.strerror})") from None


#: short names for the corpora of the optimizer literature: (Hugging Face data set, configuration)
DATASETS = {
    "openwebtext": ("Skylion007/openwebtext", None),
    "fineweb-edu": ("HuggingFaceFW/fineweb-edu", "sample-10BT"),
}


def dataset_source(name: str, config: str | None, split: str, files: list[Path], text_field: str,
                   max_documents: int | None) -> dict[str, Any]:
    """What identifies a Hugging Face data set's text for the token cache."""
    name, config = DATASETS.get(name, (name, config))
    local = file_source(files)["files"] if files else None
    return {"kind": "datasets", "name": name, "config": config, "split": split, "data_files": local,
            "text_field": text_field, "max_documents": max_documents}


def dataset_documents(source: dict[str, Any]) -> Iterator[bytes]:
    """Stream the documents of a Hugging Face data set (``datasets.load_dataset(..., streaming=True)``).

    A local builder with ``data_files`` (``model.dataset=text model.files=[...]``) works offline.
    """
    setting = f"model.dataset={source['name']!r}"
    try:
        import datasets
    except ImportError:
        raise ConfigError("model.dataset", source["name"], "needs the datasets package "
                          "(pip install 'optbench[data]')") from None
    data_files = [entry[0] for entry in source["data_files"]] if source["data_files"] else None
    logging.getLogger("huggingface_hub").setLevel(logging.ERROR)  # its retries would print before our one line
    try:
        stream = datasets.load_dataset(source["name"], source["config"], split=source["split"],
                                       data_files=data_files, streaming=True)
        for index, record in enumerate(stream):
            if source["max_documents"] is not None and index >= source["max_documents"]:
                return
            if source["text_field"] not in record:
                raise ConfigError("model.text_field", source["text_field"],
                                  f"is not a field of {setting} (fields: {sorted(record)})")
            yield str(record[source["text_field"]]).encode()
    except ConfigError:
        raise
    except Exception as error:  # unknown name, offline, missing split: the library says which
        raise ConfigError("model.dataset", source["name"],
                          f"cannot be loaded ({type(error).__name__}: {str(error).splitlines()[0][:200]})") from None


class Windows(Dataset):
    """Non-overlapping windows of ``block_size + 1`` tokens: (input, next-token targets) pairs.

    ``tokens`` may be a memory map: a window is read from it only when asked for.
    """

    def __init__(self, tokens: np.ndarray, block_size: int, limit: int | None = None) -> None:
        self.tokens = tokens
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
        chunk = torch.from_numpy(self.tokens[start : start + self.block_size + 1].astype(np.int64))
        return chunk[:-1], chunk[1:]
