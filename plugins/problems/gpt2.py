"""GPT-2 language modelling on byte tokens: the standard library's source, or the user's text files."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from framework.errors import check_count, require
from framework.problem import Forward, Problem
from plugins.problems.text import Windows, read_bytes, stdlib_sources, user_files
from plugins.problems.transformer import GPT, GPTShape


class GPT2(Problem):
    """Next-token prediction with a GPT-2 decoder; the validation metric is the loss in nats per token.

    ``files`` (paths or globs) replaces the default corpus; ``max_bytes`` caps how much text is read;
    the last ``val_fraction`` of the text is held out. ``vocab_size`` may exceed 256 to keep a model's
    true shape (GPT-2's 50304); byte tokens then use the first 256 entries.
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
    ) -> None:
        super().__init__(batch_size, target)
        require(vocab_size >= 256, "model.vocab_size", vocab_size, "must be >= 256 for byte tokens")
        require(n_embd % n_head == 0, "model.n_embd", n_embd, f"must be divisible by model.n_head={n_head}")
        require(0 < val_fraction < 1, "model.val_fraction", val_fraction, "must be in (0, 1)")
        self.shape = GPTShape(check_count("model.n_layer", n_layer), check_count("model.n_head", n_head),
                              check_count("model.n_embd", n_embd), check_count("model.block_size", block_size),
                              vocab_size)
        self.val_batches = check_count("model.val_batches", val_batches)
        sources = user_files(list(files)) if files else stdlib_sources()
        tokens = read_bytes(sources, max_bytes)
        split = int(len(tokens) * (1 - val_fraction))
        self.train_windows = Windows(tokens[:split], block_size)
        self.val_windows = Windows(tokens[split:], block_size, limit=self.val_batches * self.batch_size)
        self.model = GPT(self.shape)

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
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1))
        return Forward(loss=loss, outputs=logits, items=y.numel())
