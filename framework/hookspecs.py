"""The pluggy hook specifications that solver, problem and backend plugins implement.

A plugin is any importable object (usually a module) named by an entry point of the group
``optbench.plugins``. It implements one or more of the hooks below; each returns
:class:`framework.entries.ConfigEntry` objects, one per selectable option (``optimizer=<name>``,
``model=<name>``, ``backend=<name>``). :func:`framework.entries.yaml_entries` builds them from the
YAML files that sit beside the plugin's code.
"""

from __future__ import annotations

import pluggy

PROJECT = "optbench"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def optbench_solvers() -> list:
    """Options of the ``optimizer`` config group: targets are :class:`framework.solver.Solver`."""


@hookspec
def optbench_problems() -> list:
    """Options of the ``model`` config group: targets are :class:`framework.problem.Problem`."""


@hookspec
def optbench_backends() -> list:
    """Options of the ``backend`` config group: targets are :class:`framework.backend.Backend`."""


#: hook name -> Hydra config group it fills
GROUPS = {
    "optbench_solvers": "optimizer",
    "optbench_problems": "model",
    "optbench_backends": "backend",
}
