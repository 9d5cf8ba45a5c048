"""The built-in plugins pass the conformance suite that third-party authors run (framework.authoring.conformance)."""

from __future__ import annotations

import pytest

from framework.api import check_backend, check_problem, check_solver
from framework.registry import Registry

# settings that suit the two small problems of the suite (a quadratic and logistic regression): the
# suite checks behaviour, not a solver's defaults for other problems
SOLVER_SETTINGS = {
    "newton": ["optimizer.damping=1.0"],
    "external": [],
}
SOLVERS = sorted(entry.name for entry in Registry().entries("optimizer"))
# problems that need a download, a GPU or minutes on a CPU are checked on their small relatives
PROBLEMS = sorted(entry.name for entry in Registry().entries("model") if entry.name not in ("gpt2", "gpt2-medium",
                                                                                              "gpt2-large"))
BACKENDS = ["cpu", "auto", "ddp"]  # fsdp runs on GPUs only (Lightning 2.6)


@pytest.mark.parametrize("name", SOLVERS)
def test_solver_conforms(tmp_path, name):
    check_solver(name, tmp_path, SOLVER_SETTINGS.get(name, []))


@pytest.mark.parametrize("name", PROBLEMS)
def test_problem_conforms(tmp_path, name):
    check_problem(name, tmp_path)


@pytest.mark.parametrize("name", BACKENDS)
def test_backend_conforms(tmp_path, name):
    check_backend(name, tmp_path)
