"""Stop signals: SIGTERM and SIGUSR1 (what SLURM sends at preemption, at the time limit, and as
``--signal=USR1@90``'s warning), SIGUSR2 (submitit's default warning signal) and SIGINT (Ctrl-C) end a run
cleanly between two steps."""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any

import pytorch_lightning as pl

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2)


class StopSignals(pl.Callback):
    """Records the first stop signal; the run then finishes its current step, writes a checkpoint and a
    summary with ``status: interrupted`` and exits with code 75. A second Ctrl-C stops at once.

    Lightning installs a SIGTERM handler of its own when training starts (it aborts validation midway and
    exits with code 0); ours is put back in its place for the training loop. A handler that was there
    before us and is Python code (submitit's, which requeues a SLURM job) gets the signal once the run has
    written its checkpoint and summary: :meth:`hand_on`.
    """

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict[int, Any] = {}
        self._outer: Any = None  # the handler before ours of the signal received
        #: whether the run stops before the step about to begin, as every process agreed (a signal can arrive
        #: at any moment; decisions within a step read this, not :attr:`requested`)
        self.stopping = False

    @property
    def requested(self) -> bool:
        return self.received is not None

    def install(self) -> None:
        """Handle the stop signals from now on (main thread only: elsewhere signals cannot be handled)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in STOP_SIGNALS:
            previous = signal.signal(signum, self._handle)
            self._previous.setdefault(signum, previous)

    def restore(self) -> None:
        """Put back the handlers that were there before :meth:`install`."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, _frame: Any) -> None:
        name = signal.Signals(signum).name
        if self.received is not None:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            return
        self.received = name
        self._outer = self._previous.get(signum)
        print(f"\n{name}: stopping after the current step (checkpoint, summary, exit code 75)"
              + ("; Ctrl-C again stops at once" if signum == signal.SIGINT else ""), file=sys.stderr, flush=True)

    def hand_on(self) -> None:
        """Pass the received signal on to the handler we displaced, if it is Python code other than Ctrl-C's
        default (which would raise KeyboardInterrupt): e.g. submitit's checkpoint-and-requeue, which exits."""
        outer = self._outer
        if self.received is not None and callable(outer) and outer is not signal.default_int_handler:
            outer(signal.Signals[self.received].value, None)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.install()

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        """Decide whether the run stops before this step (:attr:`stopping`); in a data-parallel run a signal
        to any process, or a stop decided by one (a tuning pruner on rank 0), stops them all before it."""
        parallel = getattr(pl_module, "parallel", None)
        if parallel is None:
            self.stopping = self.requested
            return
        signalled, stop = parallel.any(self.requested, trainer.should_stop)
        if signalled and not self.requested:
            self.received = "another process's signal"
        self.stopping = signalled  # a signal arriving from here on counts before the next step, in all processes
        trainer.should_stop = stop
