"""Parameter partitions that solvers build their parameter groups from."""

from __future__ import annotations

from torch import Tensor, nn


def matrix_view(t: Tensor) -> Tensor:
    """How Kronecker-factored solvers see a tensor: weights as matrices (out x everything else, so a
    conv kernel is out x in*kh*kw), vectors and scalars as vectors."""
    return t.reshape(t.shape[0], -1) if t.ndim > 1 else t.reshape(-1)


def trainable(model: nn.Module) -> list[tuple[str, Tensor]]:
    return [(name, p) for name, p in model.named_parameters() if p.requires_grad]


def _embedding_ids(model: nn.Module, marked: bool = False) -> set[int]:
    """Parameters of ``nn.Embedding`` modules, and of any module sharing one (a tied output head); with
    ``marked``, also of modules a problem marks with ``optbench_not_hidden = True``."""
    excluded: set[int] = set()
    for module in model.modules():
        if isinstance(module, nn.Embedding) or (marked and getattr(module, "optbench_not_hidden", False)):
            excluded.update(id(p) for p in module.parameters())
    return excluded


def decay_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices and kernels (ndim >= 2) but embeddings and a head tied to one; none on
    biases, norms and other vectors. This is nanoGPT's rule as the Sophia repository's GPT-2 model has it
    (``configure_optimizers``: Linear weights decay, Embedding and LayerNorm parameters and biases do not)."""
    params, embeddings = trainable(model), _embedding_ids(model)
    decay = [p for _, p in params if p.ndim >= 2 and id(p) not in embeddings]
    no_decay = [p for _, p in params if p.ndim < 2 or id(p) in embeddings]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [group for group in groups if group["params"]]


def hidden_matrices(model: nn.Module) -> tuple[list[Tensor], list[Tensor]]:
    """(hidden weights: matrices and conv kernels, everything else) for Muon-style methods, as the Muon
    README routes them: embeddings (``nn.Embedding``) and any parameter shared with one (a tied output
    head), the input layer (the first weight of a model without an embedding), 1-D parameters and the
    modules a problem marks with ``optbench_not_hidden = True`` (output heads) go to the second list.
    """
    excluded = _embedding_ids(model, marked=True)
    weights = [p for _, p in trainable(model) if p.ndim >= 2]
    if weights and not any(isinstance(m, nn.Embedding) for m in model.modules()):
        excluded.add(id(weights[0]))  # the input layer
    hidden, rest = [], []
    for _, p in trainable(model):
        (hidden if p.ndim >= 2 and id(p) not in excluded else rest).append(p)
    return hidden, rest
