"""The reductions that make several processes compute what one process computes on the whole batch.

Each process computes its forward pass on its slice of the global batch; its loss is the mean over that
slice. The global loss is the item-weighted mean of the processes' losses, so every derivative of it, a
gradient, a Hessian-vector product, a Gauss-Newton product, is the item-weighted sum of the processes' own
derivatives. :class:`DataParallel` makes these sums where the values come out: the loss of every forward
pass, and every result of ``torch.autograd.grad`` and ``torch.autograd.backward`` with respect to the
parameters (through the step's autograd interception, :class:`~framework.costs.AutogradCounter`), whoever
made the call. A result that carries a graph (``create_graph=True``) gets the global value and keeps the
process's own graph, so that differentiating it again gives this process's part of the next derivative,
which is summed in its turn. Results with respect to anything else (a Jacobian-vector product's dummy
variable, the outputs) stay per process, as they should.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.distributed as dist
from torch import Tensor

from framework.distributed.shard import Shard, set_current


class _GlobalValue(torch.autograd.Function):
    """``value`` forwards, the gradient flows to ``local``: a process's tensor given the global value."""

    @staticmethod
    def forward(ctx: Any, local: Tensor, value: Tensor) -> Tensor:  # noqa: ARG004
        return value.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:  # noqa: ARG004
        return grad, None


def with_global_value(local: Tensor, value: Tensor) -> Tensor:
    """``value`` where ``local`` has no graph; else a tensor equal to ``value`` whose graph is ``local``'s."""
    value = value.view_as(local).to(local.dtype)
    return _GlobalValue.apply(local, value) if local.requires_grad else value


class DataParallel:
    """One process's part in a data-parallel step (the default process group, ``world`` processes).

    ``reduce_gradients`` is false where the strategy reduces gradients itself (FSDP shards them): then only
    the loss and the item counts are made global.
    """

    def __init__(self, world: int, reduce_gradients: bool = True) -> None:
        self.world = world
        self.reduce_gradients = reduce_gradients
        #: this process's share of the items of the last forward pass: the weight of its derivatives
        self.weight = 1.0 / world

    @property
    def rank(self) -> int:
        return dist.get_rank()

    def forward(self, loss: Tensor, items: int) -> tuple[Tensor, int]:
        """The global loss (its value: the item-weighted mean over processes; its graph: this process's)
        and the global item count of a forward pass over this process's ``items``."""
        local = torch.stack([loss.detach().double() * items, loss.new_tensor(items, dtype=torch.float64)])
        gathered = [torch.empty_like(local) for _ in range(self.world)]
        dist.all_gather(gathered, local)
        counts = [int(part[1]) for part in gathered]
        total = sum(counts)
        start = sum(counts[: self.rank])
        self.weight = items / total
        set_current(Shard(start, start + items, total))
        value = torch.stack([part[0] for part in gathered]).sum() / total
        return with_global_value(loss, value), total

    def reduce(self, tensors: Sequence[Tensor]) -> list[Tensor]:
        """The item-weighted sums over the processes of ``tensors`` (each process's derivatives of its own
        loss): one all-reduce per dtype and device, of the tensors laid end to end."""
        reduced: list[Tensor | None] = [None] * len(tensors)
        groups: dict[tuple[torch.dtype, torch.device], list[int]] = {}
        for index, tensor in enumerate(tensors):
            groups.setdefault((tensor.dtype, tensor.device), []).append(index)
        for indices in groups.values():
            parts = [tensors[i].detach().reshape(-1) for i in indices]
            flat = torch.cat(parts).mul_(self.weight)
            dist.all_reduce(flat)
            for i, piece in zip(indices, flat.split([p.numel() for p in parts])):
                reduced[i] = with_global_value(tensors[i], piece)
        return reduced  # type: ignore[return-value]

    def any(self, *flags: bool) -> tuple[bool, ...]:
        """Each flag, true if it is true in any process (decisions every process must take together)."""
        values = torch.tensor([float(flag) for flag in flags])
        if dist.get_backend() == "nccl":
            values = values.cuda()
        dist.all_reduce(values, op=dist.ReduceOp.MAX)
        return tuple(bool(v) for v in values.tolist())
