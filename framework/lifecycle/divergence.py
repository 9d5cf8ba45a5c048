"""The divergence check of training losses that stay on an accelerator between two logged steps.

Reading a GPU loss (``loss.item()``) makes the host wait for the step to finish, so that the next step's kernels
cannot be queued while this one runs. Between logged steps the loop records instead, on the device, the first
step whose loss was not finite; the host reads that verdict when it reads the loss anyway (a logged step),
before a checkpoint and at the end of training. The run is then reported diverged at the step that diverged,
a few steps after it happened.
"""

from __future__ import annotations

import torch

from framework.lifecycle.status import Diverged


class DeferredLossCheck:
    """The first non-finite training loss since the last :meth:`raise_if_any`, kept on the loss's device."""

    def __init__(self) -> None:
        self._step: torch.Tensor | None = None  # -1 while every loss was finite
        self._value: torch.Tensor | None = None

    def record(self, step: int, loss: torch.Tensor) -> None:
        """Note ``loss`` of ``step`` without waiting for it."""
        loss = loss.detach().float()
        bad = ~torch.isfinite(loss)
        if self._step is None:
            self._step = torch.where(bad, step, -1)
            self._value = loss.clone()
            return
        first = bad & (self._step < 0)
        self._step = torch.where(first, step, self._step)
        self._value = torch.where(first, loss, self._value)

    def raise_if_any(self) -> None:
        """:class:`Diverged` at the first recorded non-finite loss, if there was one (waits for the device)."""
        if self._step is None:
            return
        step, value = int(self._step), float(self._value)  # type: ignore[arg-type]
        self._step = self._value = None
        if step >= 0:
            raise Diverged(step, "train/loss", value)
