"""A GPT-2 style decoder: pre-norm blocks, SDPA causal attention, no biases, tied embeddings."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class GPTShape:
    """Layer count, heads, width, context length and (padded) vocabulary size."""

    n_layer: int
    n_head: int
    n_embd: int
    block_size: int
    vocab_size: int


class CausalSelfAttention(nn.Module):
    """Multi-head causal attention through ``F.scaled_dot_product_attention``."""

    def __init__(self, shape: GPTShape) -> None:
        super().__init__()
        self.n_head = shape.n_head
        self.qkv = nn.Linear(shape.n_embd, 3 * shape.n_embd, bias=False)
        self.proj = nn.Linear(shape.n_embd, shape.n_embd, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        b, t, c = x.shape
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in self.qkv(x).split(c, dim=2))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).contiguous().view(b, t, c))


class Block(nn.Module):
    """LayerNorm -> attention -> residual, LayerNorm -> 4x GELU MLP -> residual."""

    def __init__(self, shape: GPTShape) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(shape.n_embd, bias=False)
        self.attn = CausalSelfAttention(shape)
        self.ln_2 = nn.LayerNorm(shape.n_embd, bias=False)
        self.fc = nn.Linear(shape.n_embd, 4 * shape.n_embd, bias=False)
        self.proj = nn.Linear(4 * shape.n_embd, shape.n_embd, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.proj(F.gelu(self.fc(self.ln_2(x))))


class Backbone(nn.Module):
    """Learned positions, the blocks and the final LayerNorm: embeddings (B, T, C) in, features out."""

    def __init__(self, shape: GPTShape) -> None:
        super().__init__()
        self.wpe = nn.Embedding(shape.block_size, shape.n_embd)
        self.blocks = nn.ModuleList(Block(shape) for _ in range(shape.n_layer))
        self.ln_f = nn.LayerNorm(shape.n_embd, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.wpe(torch.arange(x.shape[1], device=x.device))
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x)


def init_gpt2(model: nn.Module, n_layer: int) -> None:
    """GPT-2's initialization: N(0, 0.02) weights, residual projections scaled by 1/sqrt(2 n_layer)."""
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
    for name, p in model.named_parameters():
        if name.endswith("proj.weight"):
            nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * n_layer))


class GPT(nn.Module):
    """GPT-2 (Radford et al. 2019) as trained in the Sophia paper: the 124M shape is 12 x 12 x 768."""

    def __init__(self, shape: GPTShape) -> None:
        super().__init__()
        self.shape = shape
        self.wte = nn.Embedding(shape.vocab_size, shape.n_embd)
        self.backbone = Backbone(shape)
        self.lm_head = nn.Linear(shape.n_embd, shape.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight
        init_gpt2(self, shape.n_layer)

    def forward(self, idx: Tensor) -> Tensor:
        return self.lm_head(self.backbone(self.wte(idx)))

    def flops_per_token(self) -> float:
        """Training FLOPs per token: 6N (N without position embeddings) + 12 * L * width * context."""
        s = self.shape
        n = sum(p.numel() for p in self.parameters()) - self.backbone.wpe.weight.numel()
        return 6.0 * n + 12.0 * s.n_layer * s.n_embd * s.block_size
