"""GPT-2 language modelling on the standard library's source, the user's text files or a Hugging Face data set."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from framework.errors import ConfigError, check_count, require
from framework.problem import Forward, Problem, at_least_float32
from plugins.problems.text import (
    Windows,
    dataset_documents,
    dataset_source,
    file_documents,
    file_source,
    stdlib_source,
    stdlib_sources,
    user_files,
)
from plugins.problems.tokens import cache_root, cached_tokens, load_tokenizer
from plugins.problems.transformer import GPT, GPTShape


class GPT2(Problem):
    """Next-token prediction with a GPT-2 decoder; the validation metric is the loss in nats per token.

    Text comes from the standard library's source (default), the user's ``files`` (paths or globs), or a
    Hugging Face data set (``dataset``: a name such as ``openwebtext`` or ``fineweb-edu``, or any
    ``datasets`` builder; with ``files`` as its ``data_files``), and is tokenized once into the token
    cache (:mod:`plugins.problems.tokens`). ``tokenizer`` is ``bytes``, ``gpt2`` or ``auto``;
    ``max_bytes`` caps the text read from files, ``max_documents`` the documents read from a data set.
    The last ``val_fraction`` of the tokens is held out. ``vocab_size`` may exceed the tokenizer's to keep
    a model's true shape (GPT-2's 50304).
    """

    metric = "loss"
    item_unit = "tokens"
    likelihood = "categorical"
    smaller_option = "gpt2-nano"

    def __init__(
        self,
        n_layer: int,
        n_head: int,
        n_embd: int,
        block_size: int,
        vocab_size: int = 256,
        batch_size: int = 16,
        files: list[str] | None = None,
        max_bytes: int | None = None,
        val_fraction: float = 0.05,
        val_batches: int = 8,
        target: float | None = None,
        tokenizer: str = "bytes",
        dataset: str | None = None,
        dataset_config: str | None = None,
        dataset_split: str = "train",
        text_field: str = "text",
        max_documents: int | None = None,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__(batch_size, target)
        require(n_embd % n_head == 0, "model.n_embd", n_embd, f"must be divisible by model.n_head={n_head}")
        require(0 < val_fraction < 1, "model.val_fraction", val_fraction, "must be in (0, 1)")
        self.tokenizer = load_tokenizer(tokenizer)
        require(vocab_size >= self.tokenizer.vocab_size, "model.vocab_size", vocab_size,
                f"must be >= {self.tokenizer.vocab_size} for the {self.tokenizer.name} tokenizer")
        self.shape = GPTShape(check_count("model.n_layer", n_layer), check_count("model.n_head", n_head),
                              check_count("model.n_embd", n_embd), check_count("model.block_size", block_size),
                              vocab_size)
        self.val_batches = check_count("model.val_batches", val_batches)
        paths = user_files(list(files)) if files else []
        if dataset:
            limit = None if max_documents is None else check_count("model.max_documents", max_documents)
            source = dataset_source(dataset, dataset_config, dataset_split, paths, text_field, limit)
            documents = lambda: dataset_documents(source)  # noqa: E731
        elif paths:
            source, documents = file_source(paths), lambda: file_documents(paths)  # noqa: E731
        else:
            source, documents = stdlib_source(), lambda: file_documents(stdlib_sources())  # noqa: E731
        self.cache = cached_tokens(source, documents, self.tokenizer, cache_root(cache_dir), max_bytes)
        tokens = self.cache.tokens
        if len(tokens) < 2:
            raise ConfigError("model.files" if paths else "model.dataset", files or dataset, "hold too little text")
        split = int(len(tokens) * (1 - val_fraction))
        self.train_windows = Windows(tokens[:split], block_size)
        self.val_windows = Windows(tokens[split:], block_size, limit=self.val_batches * self.batch_size)
        self.source = source
        self.model = GPT(self.shape)

    def data_info(self) -> dict[str, Any]:
        return {"source": self.source, "tokenizer": self.tokenizer.name, "tokenizer_note": self.tokenizer.note,
                "tokens": len(self.cache.tokens), "cache": str(self.cache.path)}

    def items_per_batch(self) -> int:
        return self.batch_size * self.shape.block_size

    def flops_per_item(self) -> float:
        return self.model.flops_per_token()

    def train_loader(self, seed: int) -> DataLoader:
        generator = torch.Generator().manual_seed(seed)
        return DataLoader(self.train_windows, batch_size=self.batch_size, shuffle=True, drop_last=True,
                          generator=generator)

    def val_loader(self) -> DataLoader:
        return DataLoader(self.val_windows, batch_size=self.batch_size)

    def forward(self, model: nn.Module, batch: Any) -> Forward:
        x, y = batch
        logits = model(x)
        loss = F.cross_entropy(at_least_float32(logits.reshape(-1, logits.shape[-1])), y.reshape(-1))
        return Forward(loss=loss, outputs=logits, items=y.numel())
