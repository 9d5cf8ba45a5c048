"""How a run ended, in ``summary.json`` and in the process's exit code (documented in the README).

| status | meaning | exit code |
|---|---|---|
| ``completed`` | trained every step (or reached its target with ``stop_at_target``) | 0 |
| ``failed`` | an error stopped it (the summary's ``error`` says which) | 1 |
| (bad input) | a setting was refused before anything ran; one line names it | 2 |
| ``diverged`` | the loss or the parameters became NaN or infinite | 3 |
| ``pruned`` | a tuning trial stopped early by the study's pruner (``hydra.sweeper.pruner``) | 0 |
| ``interrupted`` | a stop signal (SIGTERM, SIGINT, SIGUSR1): checkpoint written, ``resume=<run dir>`` continues | 75 |

75 is ``EX_TEMPFAIL`` of ``sysexits.h``: "try again later", the code a launcher can requeue on. A sweep exits
with the number of its members that did not complete (at most 125).
"""

from __future__ import annotations

COMPLETED = "completed"
FAILED = "failed"
DIVERGED = "diverged"
INTERRUPTED = "interrupted"
PRUNED = "pruned"

EXIT_CONFIG = 2
EXIT_CODES = {COMPLETED: 0, FAILED: 1, DIVERGED: 3, INTERRUPTED: 75, PRUNED: 0}


class Diverged(ArithmeticError):
    """Training produced a non-finite loss or non-finite parameters."""

    def __init__(self, step: int, quantity: str, value: float) -> None:
        self.step, self.quantity, self.value = step, quantity, value
        super().__init__(f"{quantity} is {value} at step {step}")

    def as_dict(self) -> dict[str, object]:
        return {"step": self.step, "quantity": self.quantity, "value": self.value}
