"""Cost accounting: what one optimizer step spent, so runs can be compared at equal compute."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


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
