"""The solver protocol: one interface through which every optimizer runs under Lightning.

A :class:`Solver` builds one torch optimizer for the model and, at each training step, asks the loop
for what it needs through a :class:`StepContext`: a plain forward-backward, a closure that re-evaluates
the loss many times (L-BFGS), a backward that keeps the graph for Hessian-vector products (AdaHessian),
or an extra pass with targets sampled from the model's own outputs (SophiaG). The context counts every
pass, so no solver can spend compute that the results do not show. Gradient clipping is the loop's job
(``ctx.clip_gradients()``), so fused optimizers under bf16 work as well as any other.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, Callable, Iterator

import torch
from torch import Tensor, nn

from framework.costs import AutogradCounter, Costs
from framework.distributed.shard import holding
from framework.errors import ConfigError, check_nonnegative
from framework.problem import Forward

#: the key of a solver's YAML that holds its default tuning search space (keys relative to ``optimizer.``,
#: values in Hydra's sweep syntax); the tuner reads it, the solver's constructor never sees it
SEARCH_SPACE = "search_space"

if TYPE_CHECKING:
    from framework.task import TrainingTask


class StepContext:
    """What a solver may ask of the training loop during one step; counts everything it is asked."""

    def __init__(self, task: "TrainingTask", batch: Any, step: int) -> None:
        self.task = task
        self.batch = batch
        self.step = step
        self.costs = Costs()
        self.parallel = task.parallel
        self.grad_norm: Tensor | None = None
        self._flops_per_item = task.flops_per_item
        self._items_counted = False
        self._in_forward = False
        self._last_items = 0

    @property
    def model(self) -> nn.Module:
        return self.task.model

    @property
    def world_size(self) -> int:
        return self.task.trainer.world_size

    def parameters(self) -> list[Tensor]:
        """The parameters being trained."""
        return list(self.task.trainable)

    def forward(self, on_data: bool = True) -> Forward:
        """A counted forward; the batch's items count once per step, and only for data targets. In a
        data-parallel run the loss has the global batch's value (its graph is this process's slice's), the
        outputs and ``items`` are this process's."""
        self._in_forward = True
        try:
            out = self.task.problem.forward(self.model, self.batch)
        finally:
            self._in_forward = False
        items = out.items
        if self.parallel is not None:  # the loss and the items of the whole batch, over all processes
            loss, items = self.parallel.forward(out.loss, out.items)
            out = Forward(loss=loss, outputs=out.outputs, items=out.items)
        self._count_forward(items, on_data)
        return out

    def _count_forward(self, items: int, on_data: bool) -> None:
        self.costs.forward += 1
        self.costs.flops += self._flops_per_item / 3 * items  # a forward is 1/3 of forward+backward
        self._last_items = items
        if on_data and not self._items_counted:
            self.costs.items += items
            self._items_counted = True

    def _count_model_call(self, *_: Any) -> None:
        """A forward hook on the model: a call made outside :meth:`forward` (a solver running the model by
        itself) counts as a forward over the problem's batch."""
        if not self._in_forward:
            self._count_forward(self.task.problem.items_per_batch(), on_data=True)

    def backward(self, loss: Tensor, create_graph: bool = False, retain_graph: bool | None = None) -> None:
        """Backward of the last forward's loss through Lightning (precision, strategies); straight to torch
        where Lightning would add nothing (:attr:`TrainingTask.backward_directly`)."""
        if self.task.backward_directly:
            loss.backward(create_graph=create_graph, retain_graph=retain_graph)
        else:
            self.task.manual_backward(loss, create_graph=create_graph, retain_graph=retain_graph)

    @contextlib.contextmanager
    def counting(self) -> Iterator[None]:
        """Active around the solver's step: counts every model call and every differentiation with its
        FLOPs, whoever makes them. A backward is 2/3 of a forward+backward of the last forward's items, a
        curvature product (HVP, GGN product) about one more forward+backward."""
        handle = self.model.register_forward_hook(self._count_model_call)
        combine = self.parallel.reduce if self.parallel is not None and self.parallel.reduce_gradients else None
        try:
            with holding(), AutogradCounter(self.task.trainable, self._count_backward, self._count_products, combine):
                yield
        finally:
            handle.remove()

    def _count_backward(self, create_graph: bool) -> None:
        self.costs.backward += 1
        self.costs.graph_backward += int(create_graph)
        self.costs.flops += 2 * self._flops_per_item / 3 * self._last_items

    def _count_products(self, count: int) -> None:
        self.costs.hvp += count
        self.costs.flops += count * self._flops_per_item * self._last_items

    def forward_backward(self, create_graph: bool = False) -> Tensor:
        """Loss on the batch and its gradient in ``p.grad``; ``create_graph`` keeps it differentiable."""
        with _math_attention() if create_graph else contextlib.nullcontext():
            out = self.forward()
            self.backward(out.loss, create_graph=create_graph)
        return out.loss.detach()

    def closure(self) -> Callable[[], Tensor]:
        """A closure for optimizers that re-evaluate the loss (L-BFGS): zero grads, forward, backward."""

        def evaluate() -> Tensor:
            with torch.enable_grad():
                self.zero_grad()
                return self.forward_backward()

        return evaluate

    def loss_closure(self, differentiable_twice: bool = False) -> Callable[[], Tensor]:
        """A closure for optimizers that differentiate by themselves (PSGD): a counted forward that returns
        the loss with its graph and calls no backward; the optimizer's own autograd calls are counted as
        any others are. Lightning's precision plugin does not see these backwards, so there is no loss
        scaling (use fp32 or bf16). ``differentiable_twice`` selects the attention kernel that has a second
        derivative, as ``forward_backward(create_graph=True)`` does.
        """

        def evaluate() -> Tensor:
            with torch.enable_grad(), _math_attention() if differentiable_twice else contextlib.nullcontext():
                return self.forward().loss

        return evaluate

    def sampled_forward_backward(self) -> int:
        """Backward of the loss against targets sampled from the model's own predictions.

        This is the Gauss-Newton-Bartlett pass of SophiaG: its squared gradient estimates the diagonal of
        the Gauss-Newton matrix. Returns the global number of samples or tokens behind that gradient
        (all processes), which is the batch-size scale the estimator needs.
        """
        out = self.forward(on_data=False)
        self.backward(self.task.problem.sampled_loss(out))
        self.costs.curvature += 1
        return self._last_items

    def hvp(self, grads: list[Tensor], vectors: list[Tensor], params: list[Tensor]) -> tuple[Tensor, ...]:
        """Hessian-vector products ``H v`` from gradients built with ``create_graph=True``."""
        return torch.autograd.grad(grads, params, grad_outputs=vectors, retain_graph=False)

    def hessian(self, grads: list[Tensor], params: list[Tensor]) -> Tensor:
        """The full Hessian (n x n) from gradients built with ``create_graph=True``: n batched HVPs."""
        flat = torch.cat([g.reshape(-1) for g in grads])
        n = flat.numel()
        basis = torch.eye(n, dtype=flat.dtype, device=flat.device)
        rows = torch.autograd.grad(flat, params, grad_outputs=basis, is_grads_batched=True)
        return torch.cat([row.reshape(n, -1) for row in rows], dim=1)

    def hutchinson(self) -> tuple[Tensor, list[Tensor], list[Tensor], list[Tensor]]:
        """Loss and gradient with one Hutchinson probe: ``(loss, params, z, Hz)`` for Rademacher ``z``.

        The backward keeps its graph for the one HVP; afterwards ``p.grad`` holds plain, detached
        gradients again (which also breaks the parameter-gradient reference cycle).
        """
        loss = self.forward_backward(create_graph=True)
        params = [p for p in self.parameters() if p.grad is not None]
        vectors = [rademacher_like(p) for p in params]
        products = self.hvp([p.grad for p in params], vectors, params)
        for p in params:
            p.grad = p.grad.detach()
        return loss, params, vectors, list(products)

    def clip_gradients(self, record: bool = True) -> None:
        """Clip the global gradient norm to the run's ``grad_clip`` (no-op when unset); record the norm
        (logged as ``train/grad_norm``) unless ``record`` is false (an auxiliary gradient's)."""
        max_norm = self.task.grad_clip
        if max_norm:
            sharded = getattr(self.task.trainer.strategy.model, "clip_grad_norm_", None)  # FSDP: over all shards
            norm = sharded(max_norm) if callable(sharded) else torch.nn.utils.clip_grad_norm_(
                self.parameters(), max_norm, foreach=True)
            if record:
                self.grad_norm = norm

    def optimizer_step(self, closure: Callable[[], Tensor] | None = None) -> Any:
        """Step the solver's optimizer through Lightning (counts the global step, handles precision)."""
        return self.task.optimizers().step(closure=closure)

    def zero_grad(self) -> None:
        self.task.solver.optimizer.zero_grad(set_to_none=True)

    def finish_step(self) -> None:
        """Clip the gradients in ``p.grad``, step the optimizer, zero the gradients."""
        self.clip_gradients()
        self.optimizer_step()
        self.zero_grad()

    def step_along(self, direction: Tensor) -> None:
        """Move along a flat ``direction`` (Newton-type solvers): it becomes ``p.grad``, then a step."""
        params = self.parameters()
        for p, d in zip(params, direction.split([p.numel() for p in params])):
            p.grad = d.view_as(p).clone()
        self.finish_step()


def _tensor_bytes(value: Any) -> int:
    """Bytes of the tensors in an optimizer-state value, looking into lists and tuples (PSGD's factors)."""
    if isinstance(value, Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, (list, tuple)):
        return sum(_tensor_bytes(item) for item in value)
    return 0


def rademacher_like(p: Tensor) -> Tensor:
    """Entries +1 or -1 with equal probability (``randint``'s upper bound is exclusive: 2, not 1)."""
    return torch.randint_like(p, 0, 2).mul_(2).sub_(1)


def evaluate_closure(closure: Callable[[], Tensor] | None) -> Tensor | None:
    """What a torch optimizer's ``step(closure)`` does first: the loss, with gradients enabled."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


class PerTensorOptimizer(torch.optim.Optimizer):
    """A torch optimizer whose update is written one tensor at a time (matrix-product methods such as
    Shampoo and SOAP, where per-tensor launches are not the cost): subclasses implement :meth:`update`."""

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        loss = evaluate_closure(closure)
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self.update(p, group)
        return loss

    def update(self, p: Tensor, group: dict) -> None:
        """Update ``p`` in place from ``p.grad`` with its group's settings."""
        raise NotImplementedError


@contextlib.contextmanager
def _math_attention() -> Iterator[None]:
    """Double backward needs SDPA's math kernel: the flash kernel has no second derivative."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel([SDPBackend.MATH]):
        yield


class Solver(ABC):
    """A training algorithm: builds one torch optimizer and decides what each step asks of the loop.

    Subclasses implement :meth:`build`; first-order methods need nothing else. Methods that need
    more override :meth:`step` and use the :class:`StepContext`. A solver's constructor takes its settings
    as keyword-only arguments without defaults: the YAML beside it is the one place its defaults live. Every piece of state a solver keeps
    outside its torch optimizer belongs in :meth:`state_dict`, so that runs resume exactly.
    """

    #: whether steps use the problem's predictive distribution (sampled targets, output Hessians)
    needs_likelihood: bool = False
    #: a solver that sets its own learning rate over time (schedule-free methods): the loop's ``schedule``
    #: must stay ``constant`` (its own warmup is a solver setting)
    schedules_itself: bool = False
    #: whether the update works on any piece of a parameter from plain gradients (elementwise methods), so
    #: that backends which shard parameters over processes (FSDP) can run it; every solver runs under DDP
    runs_sharded: bool = False

    def __init__(self, lr: float, weight_decay: float = 0.0) -> None:
        self.lr = check_nonnegative("optimizer.lr", lr)
        self.weight_decay = check_nonnegative("optimizer.weight_decay", weight_decay)
        self.optimizer: torch.optim.Optimizer | None = None

    @abstractmethod
    def build(self, model: nn.Module) -> torch.optim.Optimizer:
        """Create the torch optimizer for ``model`` (one optimizer; combine partitions inside it)."""

    def setup(self, model: nn.Module) -> torch.optim.Optimizer:
        self.optimizer = self.build(model)
        return self.optimizer

    def step(self, ctx: StepContext) -> Tensor:
        """One training step; the default is forward, backward, clip, optimizer step."""
        loss = ctx.forward_backward()
        ctx.finish_step()
        return loss

    def train_mode(self) -> None:
        """Called before training resumes after validation (schedule-free methods swap weights)."""

    def eval_mode(self) -> None:
        """Called before validation."""

    def state_dict(self) -> dict[str, Any]:
        """Solver state beyond the torch optimizer's (which Lightning checkpoints itself)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""

    def state_bytes(self) -> int:
        """Memory held by the optimizer's state tensors, in bytes."""
        if self.optimizer is None:
            return 0
        return sum(_tensor_bytes(value) for state in self.optimizer.state.values() for value in state.values())



class FactorySolver(Solver):
    """A first-order solver around any ``torch.optim.Optimizer`` class, bound to its keyword arguments.

    Built when the ``optimizer`` config instantiates to a factory instead of a :class:`Solver`, as
    ``optimizer=external optimizer._target_=torch.optim.Adagrad optimizer.lr=0.05`` does through
    Hydra's ``_partial_: true``.
    """

    def __init__(self, factory: Callable[..., torch.optim.Optimizer]) -> None:
        keywords: dict[str, Any] = dict(getattr(factory, "keywords", {}))
        target = getattr(factory, "func", factory)
        if not (isinstance(target, type) and issubclass(target, torch.optim.Optimizer)):
            raise ConfigError("optimizer._target_", getattr(target, "__qualname__", str(target)),
                              "must name a Solver or a torch.optim.Optimizer subclass")
        super().__init__(lr=keywords.get("lr", 0.0), weight_decay=keywords.get("weight_decay", 0.0))
        self.factory = factory

    def build(self, model: nn.Module) -> torch.optim.Optimizer:
        return self.factory([p for p in model.parameters() if p.requires_grad])
