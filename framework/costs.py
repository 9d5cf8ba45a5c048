"""Cost accounting: what one optimizer step spent, so runs can be compared at equal compute."""

from __future__ import annotations

import functools
import inspect
from contextvars import ContextVar
from dataclasses import dataclass, fields
from typing import Any, Callable, Iterable, Sequence

import torch


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
        for name in _COUNTERS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        return self

    def as_dict(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in _COUNTERS}  # not asdict(), which deep-copies


#: the counters' names, in order (``dataclasses.fields`` builds them anew on every call)
_COUNTERS = tuple(f.name for f in fields(Costs))


class AutogradCounter:
    """Counts every differentiation made while it is active, whoever makes it: the loop, a solver through
    the :class:`~framework.solver.StepContext`, or a solver calling ``torch.autograd`` itself.

    On first use it wraps ``torch.autograd.grad`` and ``torch.autograd.backward`` once per process
    (``Tensor.backward`` calls the latter); the wrappers report to the counter active in the current
    context and cost one context-variable lookup when none is. (A torch-function mode sees the same calls
    without wrapping anything, but it runs Python for every tensor operation of the step: 1.6x the step
    time of an MLP; benchmarks/autograd_counter.py.) Code that bound ``grad`` by ``from torch.autograd
    import grad`` before the first run is not seen.

    A call whose outputs depend on a gradient built with ``create_graph=True`` in this step (found by
    walking the outputs' autograd graph back to such a gradient) differentiates a gradient: it is a
    curvature product (one, or one per row of ``is_grads_batched``). Any other call is a backward pass,
    graph-keeping when made with ``create_graph=True``. ``on_backward(create_graph)`` and
    ``on_products(count)`` receive the counts.

    ``combine``, where given, replaces every result with respect to the parameters (the returned gradients
    of ``grad``, the ``p.grad`` a ``backward`` changed) before the caller sees it: a data-parallel run makes
    them global there (:class:`~framework.distributed.DataParallel`).
    """

    def __init__(self, parameters: list[torch.Tensor], on_backward: Callable[[bool], None],
                 on_products: Callable[[int], None],
                 combine: Callable[[Sequence[torch.Tensor]], list[torch.Tensor]] | None = None) -> None:
        self._parameters = parameters
        self._combine = combine
        self._on_backward, self._on_products = on_backward, on_products
        self._gradient_nodes: set[Any] = set()  # grad_fns of the differentiable gradients made so far
        self._token: Any = None

    def __enter__(self) -> "AutogradCounter":
        _wrap_autograd()
        self._token = _ACTIVE.set(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        _ACTIVE.reset(self._token)

    def grad(self, original: Callable[..., Any], call: "_Call") -> Any:
        """``torch.autograd.grad``, counted."""
        products = self._differentiates_a_gradient(call["outputs"])
        result = original(*call.args, **call.kwargs)
        if self._combine is not None:
            result = self._combined(call["inputs"], result)
        rows = _rows(call["grad_outputs"]) if call["is_grads_batched"] else 1
        self._count(products, bool(call["create_graph"]), rows)
        if call["create_graph"]:
            self._remember(result)
        return result

    def backward(self, original: Callable[..., Any], call: "_Call") -> Any:
        """``torch.autograd.backward`` (and so ``Tensor.backward``), counted."""
        products = self._differentiates_a_gradient(call["tensors"])
        before = None if self._combine is None else [(p.grad, None if p.grad is None else p.grad._version)
                                                     for p in self._parameters]
        result = original(*call.args, **call.kwargs)
        if before is not None:  # a data-parallel run: the gradients this backward changed become global
            changed = [p for p, (grad, version) in zip(self._parameters, before)
                       if p.grad is not None and (p.grad is not grad or p.grad._version != version)]
            for p, combined in zip(changed, self._combine([p.grad for p in changed])):
                p.grad = combined
        self._count(products, bool(call["create_graph"]), 1)
        if call["create_graph"]:
            self._remember([p.grad for p in self._parameters])
        return result

    def _combined(self, inputs: Any, result: tuple[Any, ...]) -> tuple[Any, ...]:
        """``result`` with its gradients with respect to parameters combined."""
        inputs = [inputs] if isinstance(inputs, torch.Tensor) else list(inputs)
        ids = {id(p) for p in self._parameters}
        chosen = [i for i, (x, g) in enumerate(zip(inputs, result)) if id(x) in ids and g is not None]
        values = list(result)
        for i, combined in zip(chosen, self._combine([values[i] for i in chosen])):  # type: ignore[misc]
            values[i] = combined
        return tuple(values)

    def _count(self, products: bool, create_graph: bool, count: int) -> None:
        if products:
            self._on_products(count)
        else:
            self._on_backward(create_graph)

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


#: the counter of the step under way in this context, if any
_ACTIVE: ContextVar[AutogradCounter | None] = ContextVar("optbench_autograd_counter", default=None)


class _Call:
    """The arguments of one call of a wrapped autograd function, read by name as its signature binds them
    (a positional argument, a keyword, or the default). ``inspect.Signature.bind`` does the same in ~3 us,
    a sizeable part of a small problem's step."""

    __slots__ = ("args", "kwargs", "_positions", "_defaults")

    def __init__(self, args: tuple[Any, ...], kwargs: dict[str, Any], positions: dict[str, int],
                 defaults: dict[str, Any]) -> None:
        self.args, self.kwargs, self._positions, self._defaults = args, kwargs, positions, defaults

    def __getitem__(self, name: str) -> Any:
        position = self._positions[name]
        if position < len(self.args):
            return self.args[position]
        return self.kwargs.get(name, self._defaults[name])


def _wrap_autograd() -> None:
    """Wrap ``torch.autograd.grad`` and ``torch.autograd.backward`` once, to report to the active counter."""
    for name in ("grad", "backward"):
        original = getattr(torch.autograd, name)
        if getattr(original, "_optbench_counted", False):
            continue
        parameters = inspect.signature(original).parameters
        positions = {key: i for i, key in enumerate(parameters)}
        defaults = {key: None if p.default is inspect.Parameter.empty else p.default for key, p in parameters.items()}

        def counted(*args: Any, _original: Any = original, _name: str = name, _positions: dict[str, int] = positions,
                    _defaults: dict[str, Any] = defaults, **kwargs: Any) -> Any:
            counter = _ACTIVE.get()
            if counter is None:
                return _original(*args, **kwargs)
            return getattr(counter, _name)(_original, _Call(args, kwargs, _positions, _defaults))

        functools.update_wrapper(counted, original)
        counted._optbench_counted = True  # type: ignore[attr-defined]
        setattr(torch.autograd, name, counted)


def _rows(grad_outputs: Any) -> int:
    """The batch size of ``is_grads_batched`` grad_outputs (their leading dimension)."""
    first = grad_outputs if isinstance(grad_outputs, torch.Tensor) else grad_outputs[0]
    return int(first.shape[0])
