"""The plugin API: the one module a solver, problem or backend package imports from.

    from framework.api import Solver, StepContext, hookimpl, yaml_entries

Names load on first use (PEP 562), so a plugin's entry-point module that imports only ``hookimpl`` and
``yaml_entries`` keeps ``optbench list`` free of torch. ``API_VERSION`` is this API's version, ``major.minor``:
a plugin package declares the version it was written against as ``OPTBENCH_API = "1.0"`` in its
entry-point module, and the registry lists it as broken, with the reason, when this optbench cannot serve
it (another major version, or a newer minor one). Within a major version, names are only added
(1.1: ``draw_for_rows``, ``Solver.runs_sharded``, ``Backend.shards_parameters``).
See docs/plugins.md for the contracts.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

API_VERSION = "1.1"

#: public name -> the module that defines it
_EXPORTS = {
    # solvers
    "Solver": "framework.solver",
    "StepContext": "framework.solver",
    "PerTensorOptimizer": "framework.solver",
    "rademacher_like": "framework.solver",
    "evaluate_closure": "framework.solver",
    "SEARCH_SPACE": "framework.solver",
    # problems
    "Problem": "framework.problem",
    "Forward": "framework.problem",
    "at_least_float32": "framework.problem",
    "sampled_loss": "framework.problem",
    "output_hessian_product": "framework.problem",
    "draw_for_rows": "framework.distributed.shard",
    # backends
    "Backend": "framework.backend",
    # parameter groups
    "trainable": "framework.partitions",
    "decay_groups": "framework.partitions",
    "hidden_matrices": "framework.partitions",
    "matrix_view": "framework.partitions",
    # settings: one-line errors for bad values
    "ConfigError": "framework.errors",
    "require": "framework.errors",
    "is_number": "framework.errors",
    "check_positive": "framework.errors",
    "check_nonnegative": "framework.errors",
    "check_at_least": "framework.errors",
    "check_unit_interval": "framework.errors",
    "check_betas": "framework.errors",
    "check_count": "framework.errors",
    # registration
    "hookimpl": "framework.hookspecs",
    "ConfigEntry": "framework.entries",
    "yaml_entries": "framework.entries",
    # cost accounting
    "Costs": "framework.costs",
    # the conformance suite (for a plugin package's tests)
    "check_solver": "framework.authoring.conformance",
    "check_problem": "framework.authoring.conformance",
    "check_backend": "framework.authoring.conformance",
}

__all__ = [
    "API_VERSION", "supports",
    "Solver", "StepContext", "PerTensorOptimizer", "rademacher_like", "evaluate_closure", "SEARCH_SPACE",
    "Problem", "Forward", "at_least_float32", "sampled_loss", "output_hessian_product", "draw_for_rows",
    "Backend",
    "trainable", "decay_groups", "hidden_matrices", "matrix_view",
    "ConfigError", "require", "is_number", "check_positive", "check_nonnegative", "check_at_least",
    "check_unit_interval", "check_betas", "check_count",
    "hookimpl", "ConfigEntry", "yaml_entries",
    "Costs",
    "check_solver", "check_problem", "check_backend",
]


def supports(required: str) -> str | None:
    """Why this optbench cannot serve a plugin written against API ``required`` (``"1.0"``), or None."""
    try:
        major, minor = (int(part) for part in str(required).split("."))
    except ValueError:
        return f"OPTBENCH_API={required!r} is not a version 'major.minor'"
    ours_major, ours_minor = (int(part) for part in API_VERSION.split("."))
    if major != ours_major or minor > ours_minor:
        return f"needs plugin API {major}.{minor}; this optbench provides {API_VERSION}"
    return None


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'framework.api' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # what type checkers and IDEs see
    from framework.authoring.conformance import check_backend, check_problem, check_solver
    from framework.backend import Backend
    from framework.costs import Costs
    from framework.distributed.shard import draw_for_rows
    from framework.entries import ConfigEntry, yaml_entries
    from framework.errors import (ConfigError, check_at_least, check_betas, check_count, check_nonnegative,
                                  check_positive, check_unit_interval, is_number, require)
    from framework.hookspecs import hookimpl
    from framework.partitions import decay_groups, hidden_matrices, matrix_view, trainable
    from framework.problem import Forward, Problem, at_least_float32, output_hessian_product, sampled_loss
    from framework.solver import (SEARCH_SPACE, PerTensorOptimizer, Solver, StepContext, evaluate_closure,
                                  rademacher_like)
