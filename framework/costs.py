"""Cost accounting: what one optimizer step spent, so runs can be compared at equal compute."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, Iterable

import torch
from torch.overrides import TorchFunctionMode


@dataclass
class Costs:
    """Counters for one step or, summed, for a whole run.

    ``forward``/``backward`` count passes over a batch, ``hvp`` Hessian-vector products,
    ``curvature`` extra passes with sampled targets, ``graph_backward`` backward passes that kept the
    graph (``create_graph=True``), ``items`` samples or tokens behind the training loss and
    ``flops`` the estimated floating-point operations of all of the above.
    """

    forward: int = 0
    backward: int = 0
    hvp: int = 0
    curvature: int = 0
    graph_backward: int = 0
    items: int = 0
    flops: float = 0.0

    def __iadd__(self, other: "Costs") -> "Costs":
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


class AutogradCounter(TorchFunctionMode):
    """Counts every differentiation made while it is active, whoever makes it: the loop, a solver through
    the :class:`~framework.solver.StepContext`, or a solver calling ``torch.autograd`` itself.

    ``Tensor.backward``, ``torch.autograd.backward`` and ``torch.autograd.grad`` all pass through
    ``__torch_function__`` while a torch-function mode is active, with their arguments. A call whose
    outputs depend on a gradient built with ``create_graph=True`` in this step (found by walking the
    outputs' autograd graph back to such a gradient) differentiates a gradient: it is a curvature product
    (one, or one per row of ``is_grads_batched``). Any other call is a backward pass, graph-keeping when
    it is made with ``create_graph=True``. ``on_backward(create_graph)`` and ``on_products(count)`` receive
    the counts.
    """

    _BACKWARDS = (torch.Tensor.backward, torch.autograd.backward)

    def __init__(self, parameters: list[torch.Tensor], on_backward: Callable[[bool], None],
                 on_products: Callable[[int], None]) -> None:
        super().__init__()
        self._parameters = parameters
        self._on_backward, self._on_products = on_backward, on_products
        self._gradient_nodes: set[Any] = set()  # grad_fns of the differentiable gradients made so far

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func is torch.autograd.grad:
            outputs = args[0]
            products = self._differentiates_a_gradient(outputs)
            result = func(*args, **kwargs)
            self._count(products, kwargs.get("create_graph", False),
                        _rows(kwargs.get("grad_outputs")) if kwargs.get("is_grads_batched") else 1)
            if kwargs.get("create_graph"):
                self._remember(result)
            return result
        if func in self._BACKWARDS:
            products = self._differentiates_a_gradient(args[0])
            result = func(*args, **kwargs)
            self._count(products, kwargs.get("create_graph", False), 1)
            if kwargs.get("create_graph"):
                self._remember([p.grad for p in self._parameters])
            return result
        return func(*args, **kwargs)

    def _count(self, products: bool, create_graph: bool, count: int) -> None:
        if products:
            self._on_products(count)
        else:
            self._on_backward(bool(create_graph))

    def _remember(self, gradients: Iterable[Any]) -> None:
        self._gradient_nodes.update(g.grad_fn for g in gradients if isinstance(g, torch.Tensor) and g.grad_fn)

    def _differentiates_a_gradient(self, outputs: Any) -> bool:
        if not self._gradient_nodes:
            return False
        pending = [t.grad_fn for t in ([outputs] if isinstance(outputs, torch.Tensor) else outputs)
                   if isinstance(t, torch.Tensor) and t.grad_fn is not None]
        seen: set[Any] = set()
        while pending:
            node = pending.pop()
            if node in self._gradient_nodes:
                return True
            if node is None or node in seen:
                continue
            seen.add(node)
            pending.extend(next_node for next_node, _ in node.next_functions)
        return False


def _rows(grad_outputs: Any) -> int:
    """The batch size of ``is_grads_batched`` grad_outputs (their leading dimension)."""
    first = grad_outputs if isinstance(grad_outputs, torch.Tensor) else grad_outputs[0]
    return int(first.shape[0])
