"""``optbench new plugin <dir>``: a ready plugin package with a solver, a problem and a backend.

The package is named after the folder (``my-plugin`` -> distribution ``my-plugin``, module ``my_plugin``);
its options are prefixed with that name so they never clash with the built-ins: ``<name>-signum`` (sign
descent with momentum), ``<name>-linreg`` (linear regression on a fixed synthetic table) and
``<name>-cpu`` (the CPU with one thread). It holds their YAML, the entry point, the package-data line
and a test file that runs the conformance suite, so that ``pip install -e <dir>`` then
``optbench run optimizer=<name>-signum`` work at once and ``pytest <dir>`` passes.
"""

from __future__ import annotations

import re
from pathlib import Path

from framework.api import API_VERSION
from framework.errors import ConfigError

_PYPROJECT = '''\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "{dist}"
version = "0.1.0"
description = "optbench plugins: a solver, a problem and a backend."
requires-python = ">=3.10"
dependencies = ["optbench"]

# optbench finds the plugins through this entry point
[project.entry-points."optbench.plugins"]
{module} = "{module}"

[tool.setuptools.packages.find]
include = ["{module}*"]

# the YAML files are the options: without this line they are not installed
[tool.setuptools.package-data]
"*" = ["*.yaml"]
'''

_INIT = '''\
"""optbench plugins of {dist}: each YAML file beside the code is one option."""

from framework.api import hookimpl, yaml_entries

# the plugin API this package is written against (optbench lists the package as broken otherwise)
OPTBENCH_API = "{api}"


@hookimpl
def optbench_solvers():
    return yaml_entries("{module}.solvers")


@hookimpl
def optbench_problems():
    return yaml_entries("{module}.problems")


@hookimpl
def optbench_backends():
    return yaml_entries("{module}.backends")
'''

_SOLVER = '''\
"""Signum (Bernstein et al. 2018): sign descent on a momentum, p -= lr * sign(m), m = b*m + (1-b)*g."""

from __future__ import annotations

import torch

from framework.api import Solver, check_positive, check_unit_interval, trainable


class SignumOptimizer(torch.optim.Optimizer):
    """The update, one tensor at a time."""

    def __init__(self, params, lr: float, momentum: float) -> None:
        super().__init__(params, {{"lr": lr, "momentum": momentum}})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                m = self.state[p].setdefault("momentum", torch.zeros_like(p))
                m.lerp_(p.grad, 1 - group["momentum"])
                p.add_(m.sign(), alpha=-group["lr"])


class Signum(Solver):
    """Signum; the loop runs forward, backward, clipping and the step (``Solver.step``'s default)."""

    def __init__(self, *, lr: float, momentum: float) -> None:
        super().__init__(check_positive("optimizer.lr", lr))
        self.momentum = check_unit_interval("optimizer.momentum", momentum)

    def build(self, model: torch.nn.Module) -> torch.optim.Optimizer:
        return SignumOptimizer([p for _, p in trainable(model)], lr=self.lr, momentum=self.momentum)
'''

_SOLVER_YAML = '''\
# Signum: sign descent on a momentum (Bernstein et al. 2018). The YAML holds every default.
_target_: {module}.solvers.Signum
lr: 0.01
momentum: 0.9

# the default tuning space (hydra/sweeper=optuna)
search_space:
  lr: tag(log, interval(1e-4, 1e-1))
'''

_PROBLEM = '''\
"""Linear regression on a fixed synthetic table: y = X w* + noise, the squared error as the loss."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, TensorDataset

from framework.api import Forward, Problem, check_count


class LinearRegression(Problem):
    """A convex problem with a Gaussian likelihood (so Sophia-type solvers can sample targets)."""

    likelihood = "gaussian"

    def __init__(self, dim: int, samples: int, batch_size: int | None, target: float | None) -> None:
        super().__init__(batch_size, target)
        self.dim = check_count("model.dim", dim)
        generator = torch.Generator().manual_seed(1234)  # the data never depends on the run's seed
        x = torch.randn(check_count("model.samples", samples), self.dim, generator=generator)
        y = x @ torch.randn(self.dim, generator=generator) + 0.1 * torch.randn(samples, generator=generator)
        cut = int(0.8 * samples)
        self.train_set, self.val_set = TensorDataset(x[:cut], y[:cut]), TensorDataset(x[cut:], y[cut:])
        self.model = torch.nn.Linear(self.dim, 1)

    def train_loader(self, seed: int) -> DataLoader:
        size = self.batch_size or len(self.train_set)
        return DataLoader(self.train_set, batch_size=size, shuffle=True, drop_last=True,
                          generator=torch.Generator().manual_seed(seed))

    def val_loader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=len(self.val_set))

    def forward(self, model: torch.nn.Module, batch) -> Forward:
        x, y = batch
        outputs = model(x).squeeze(-1)
        return Forward(loss=0.5 * (outputs - y).square().mean(), outputs=outputs, items=len(y))
'''

_PROBLEM_YAML = '''\
# Linear regression on a fixed synthetic table (2,000 x 20), half the mean squared error as the loss.
_target_: {module}.problems.LinearRegression
dim: 20
samples: 2000
batch_size: 64
target: 0.01
'''

_BACKEND = '''\
"""The CPU with a single intra-op thread (one run per core in a parallel sweep)."""

from __future__ import annotations

import torch

from framework.api import Backend


class SingleThreadCPU(Backend):
    """``backend={dist}-cpu``: Lightning's CPU accelerator, torch limited to one thread."""

    name = "{dist}-cpu"

    def __init__(self, precision: str = "32-true") -> None:
        super().__init__(accelerator="cpu", devices=1, precision=precision)

    def resolve(self) -> Backend:
        torch.set_num_threads(1)
        return self
'''

_BACKEND_YAML = '''\
# The CPU with one intra-op thread.
_target_: {module}.backends.SingleThreadCPU
precision: 32-true
'''

_TEST = '''\
"""optbench's conformance suite on this package's plugins: ``pytest``."""

from framework.api import check_backend, check_problem, check_solver


def test_solver_conforms(tmp_path):
    check_solver("{dist}-signum", tmp_path)


def test_problem_conforms(tmp_path):
    check_problem("{dist}-linreg", tmp_path)


def test_backend_conforms(tmp_path):
    check_backend("{dist}-cpu", tmp_path)
'''

_README = '''\
# {dist}

optbench plugins: a solver (`optimizer={dist}-signum`), a problem (`model={dist}-linreg`) and a backend
(`backend={dist}-cpu`).

    pip install -e .
    optbench list                                   # the three options, with this package's name
    optbench run optimizer={dist}-signum model={dist}-linreg trainer.max_steps=200
    pytest                                          # optbench's conformance suite on them

Each option is a YAML file beside its code; add one by adding a file. See optbench's docs/plugins.md.
'''


def new_plugin(directory: Path) -> list[Path]:
    """Write the package into ``directory`` (which must not exist or be empty); return the files."""
    directory = Path(directory)
    dist = directory.resolve().name.lower()
    if not re.fullmatch(r"[a-z][a-z0-9-]*", dist):
        raise ConfigError("directory", directory.name, "must be a package name: a letter, then letters, digits "
                                                       "or '-'")
    if directory.exists() and any(directory.iterdir()):
        raise ConfigError("directory", str(directory), "is not empty; nothing was written")
    module = dist.replace("-", "_")
    values = {"dist": dist, "module": module, "api": API_VERSION}
    files = {
        "pyproject.toml": _PYPROJECT, "README.md": _README, f"{module}/__init__.py": _INIT,
        f"{module}/solvers/__init__.py": _SOLVER, f"{module}/solvers/{dist}-signum.yaml": _SOLVER_YAML,
        f"{module}/problems/__init__.py": _PROBLEM, f"{module}/problems/{dist}-linreg.yaml": _PROBLEM_YAML,
        f"{module}/backends/__init__.py": _BACKEND, f"{module}/backends/{dist}-cpu.yaml": _BACKEND_YAML,
        "tests/test_conformance.py": _TEST,
    }
    written = []
    for relative, text in files.items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.format(**values), encoding="utf-8")
        written.append(path)
    return written
