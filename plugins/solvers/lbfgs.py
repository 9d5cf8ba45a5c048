"""L-BFGS with a strong-Wolfe line search: ``torch.optim.LBFGS`` driven by the loop's closure."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from framework.errors import check_count, check_nonnegative, require
from framework.partitions import trainable
from framework.solver import Solver, StepContext


class LBFGS(Solver):
    """L-BFGS; each step calls the closure up to ``max_eval`` times (all counted as forward+backward).

    Gradient clipping does not apply: it would corrupt the curvature pairs and the line search.
    """

    def __init__(
        self,
        *, lr: float,
        max_iter: int,
        max_eval: int | None,
        history_size: int,
        tolerance_grad: float,
        tolerance_change: float,
        line_search_fn: str | None,
    ) -> None:
        super().__init__(lr)
        self.max_iter = check_count("optimizer.max_iter", max_iter)
        self.max_eval = None if max_eval is None else check_count("optimizer.max_eval", max_eval)
        self.history_size = check_count("optimizer.history_size", history_size)
        self.tolerance_grad = check_nonnegative("optimizer.tolerance_grad", tolerance_grad)
        self.tolerance_change = check_nonnegative("optimizer.tolerance_change", tolerance_change)
        require(line_search_fn in (None, "strong_wolfe"), "optimizer.line_search_fn", line_search_fn,
                "must be null or 'strong_wolfe'")
        self.line_search_fn = line_search_fn

    def build(self, model: nn.Module) -> torch.optim.Optimizer:
        return torch.optim.LBFGS(
            [p for _, p in trainable(model)], lr=self.lr, max_iter=self.max_iter, max_eval=self.max_eval,
            history_size=self.history_size, tolerance_grad=self.tolerance_grad,
            tolerance_change=self.tolerance_change, line_search_fn=self.line_search_fn,
        )

    def step(self, ctx: StepContext) -> Tensor:
        loss = ctx.optimizer_step(closure=ctx.closure())
        ctx.zero_grad()
        return loss.detach()
