"""Tokenizers and the token cache: text is tokenized once into a uint16 memmap keyed by source and tokenizer.

A cache entry is ``<cache>/tokens/<key>.bin`` (the tokens, uint16, as nanoGPT stores them) beside
``<key>.json`` (what it holds). The key hashes a description of the source (files with their sizes and
modification times, or a data set's name, configuration, split and document limit) together with the
tokenizer's name, so a changed file or another tokenizer makes a new entry. An entry is written under a
temporary name and renamed into place when complete; workers and ranks that build it at the same time
write identical files, and readers only ever see whole ones. An entry is trusted only when it matches its
record (its size against the token count, and a SHA-256 of the whole file, or of its first and last MiB
beyond 64 MiB): a truncated or damaged entry is rebuilt, with a one-line note. The cache directory is ``model.cache_dir``,
else ``$OPTBENCH_CACHE``, else ``$XDG_CACHE_HOME/optbench`` (``~/.cache/optbench``): never the source tree.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from framework.errors import ConfigError
from framework.files import atomic_file

TOKEN_DTYPE = np.uint16


def cache_root(override: str | None = None) -> Path:
    """Where token caches live (see the module docstring for the order of precedence)."""
    if override:
        return Path(override).expanduser()
    if os.environ.get("OPTBENCH_CACHE"):
        return Path(os.environ["OPTBENCH_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "optbench"


class Tokenizer:
    """Turns a document into token ids (uint16) and counts how often it was asked to."""

    name: str
    vocab_size: int

    def __init__(self, note: str = "") -> None:
        self.note = note  # why this tokenizer was chosen, where that was a fallback
        self.calls = 0

    def encode(self, document: bytes) -> np.ndarray:
        self.calls += 1
        return self._encode(document)

    def _encode(self, document: bytes) -> np.ndarray:
        raise NotImplementedError


class ByteTokenizer(Tokenizer):
    """Each byte is a token (vocabulary 256); documents end with a blank line."""

    name, vocab_size = "bytes", 256

    def _encode(self, document: bytes) -> np.ndarray:
        return np.frombuffer(document + b"\n\n", dtype=np.uint8).astype(TOKEN_DTYPE)


class GPT2Tokenizer(Tokenizer):
    """GPT-2's byte-pair encoding through ``tiktoken`` (vocabulary 50257); documents end with ``<|endoftext|>``."""

    name, vocab_size = "gpt2-bpe", 50257

    def __init__(self, encoding: Any, note: str = "") -> None:
        super().__init__(note)
        self.encoding = encoding

    def _encode(self, document: bytes) -> np.ndarray:
        ids = self.encoding.encode_ordinary(document.decode("utf-8", errors="replace"))
        ids.append(self.encoding.eot_token)
        return np.asarray(ids, dtype=TOKEN_DTYPE)


def load_tokenizer(choice: str) -> Tokenizer:
    """``bytes``, ``gpt2`` (an error when tiktoken cannot load it) or ``auto`` (GPT-2 BPE when it loads,
    bytes otherwise, with the reason kept in ``note``). tiktoken loads the encoding from its cache
    (``TIKTOKEN_CACHE_DIR``) or downloads it once."""
    if choice == "bytes":
        return ByteTokenizer()
    if choice not in ("gpt2", "auto"):
        raise ConfigError("model.tokenizer", choice, "must be one of ['auto', 'bytes', 'gpt2']")
    try:
        return GPT2Tokenizer(_gpt2_encoding(wait=EXPLICIT_WAIT_S if choice == "gpt2" else AUTO_WAIT_S))
    except Exception as error:  # not installed, offline without a cache, a corrupt cache file, too slow
        reason = f"tiktoken cannot load the GPT-2 encoding ({type(error).__name__})"
        if choice == "gpt2":
            raise ConfigError("model.tokenizer", choice, f"is unavailable: {reason}; install tiktoken and go "
                              "online once, or set TIKTOKEN_CACHE_DIR to a cache holding it") from None
        return ByteTokenizer(note=f"auto chose bytes: {reason}")


#: how long tiktoken may take to load (or download) the encoding: ``auto`` then uses bytes, ``gpt2`` fails
AUTO_WAIT_S = 15.0
EXPLICIT_WAIT_S = 120.0


def _gpt2_encoding(wait: float) -> Any:
    """``tiktoken.get_encoding("gpt2")``, given up after ``wait`` seconds: tiktoken downloads without a
    timeout, and a network that neither answers nor refuses must not stall a run."""
    import tiktoken

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        return pool.submit(tiktoken.get_encoding, "gpt2").result(timeout=wait)
    finally:
        pool.shutdown(wait=False)


@dataclass
class TokenCache:
    """The tokens of one source under one tokenizer, built on first use."""

    tokens: np.ndarray
    path: Path
    built: bool


#: entries up to this size are checksummed whole; larger ones by their first and last MiB
WHOLE_HASH_LIMIT = 64 * 2**20
_MIB = 2**20


def fingerprint(path: Path) -> dict[str, Any]:
    """Size and SHA-256 of a cache entry (the whole file, or its first and last MiB when it is large)."""
    size = path.stat().st_size
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        if size <= WHOLE_HASH_LIMIT:
            for chunk in iter(lambda: file.read(_MIB), b""):
                digest.update(chunk)
        else:
            digest.update(file.read(_MIB))
            file.seek(size - _MIB)
            digest.update(file.read(_MIB))
    return {"bytes": size, "sha256": digest.hexdigest(), "hashed": "whole" if size <= WHOLE_HASH_LIMIT else "ends"}


def damage(path: Path, record_path: Path) -> str | None:
    """Why the entry at ``path`` cannot be trusted (it exists), or None when it matches its record."""
    try:
        record = json.loads(record_path.read_text())
    except FileNotFoundError:
        return "its record is missing"
    except (OSError, ValueError):
        return "its record cannot be read"
    found = fingerprint(path)
    expected = int(record.get("tokens", -1)) * np.dtype(TOKEN_DTYPE).itemsize
    if found["bytes"] != expected:
        return f"it holds {found['bytes']:,} bytes where its record says {record.get('tokens')} tokens ({expected:,} bytes)"
    if found["sha256"] != record.get("sha256"):
        return "its checksum differs from its record"
    return None


def cached_tokens(source: dict[str, Any], documents: Callable[[], Iterable[bytes]],
                  tokenizer: Tokenizer, root: Path, max_bytes: int | None = None) -> TokenCache:
    """Memory-map the cached tokens of ``source``, tokenizing ``documents()`` first if no entry exists.

    ``max_bytes`` stops reading once that much text has been taken (the last document is cut).
    """
    description = {"source": source, "tokenizer": tokenizer.name, "max_bytes": max_bytes, "format": 1}
    key = hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:20]
    folder = root / "tokens"
    path, record = folder / f"{key}.bin", folder / f"{key}.json"
    damaged = damage(path, record) if path.exists() else None
    if damaged:
        print(f"note: token cache {path} is damaged ({damaged}); rebuilding it", file=sys.stderr)
    built = damaged is not None or not path.exists()
    if built:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ConfigError("model.cache_dir", str(root), f"cannot be created ({error.strerror})") from None
        count = _write_tokens(path, documents(), tokenizer, max_bytes)
        with atomic_file(record) as out:
            out.write(json.dumps({**description, "tokens": count, **fingerprint(path)}, indent=1))
    tokens = np.memmap(path, dtype=TOKEN_DTYPE, mode="r")
    return TokenCache(tokens=tokens, path=path, built=built)


def _write_tokens(path: Path, documents: Iterable[bytes], tokenizer: Tokenizer,
                  max_bytes: int | None) -> int:
    count, taken = 0, 0
    with atomic_file(path, "wb") as out:
        for document in documents:
            if max_bytes is not None:
                document = document[: max_bytes - taken]
                taken += len(document)
            ids = tokenizer.encode(document)
            out.write(ids.tobytes())
            count += len(ids)
            if max_bytes is not None and taken >= max_bytes:
                break
    return count
