"""``optbench list --check``: each option's ``_target_`` imported and matched against its YAML.

Catches a plugin author's mistakes before a run does: a target that does not import, a class of the
wrong kind for its group (a solver that is not a :class:`~framework.solver.Solver`), a YAML key the
constructor does not take, and a constructor argument the YAML leaves out (a solver's defaults live in
its YAML only). Importing targets loads torch, so the plain listing does not do this.
"""

from __future__ import annotations

import inspect
from typing import Any

from framework.entries import ConfigEntry

#: config group -> (the module and class its targets must derive from)
BASES = {"optimizer": ("framework.solver", "Solver"), "model": ("framework.problem", "Problem"),
         "backend": ("framework.backend", "Backend")}


def _base(group: str) -> type:
    import importlib

    module, name = BASES[group]
    return getattr(importlib.import_module(module), name)


def check_entry(group: str, entry: ConfigEntry) -> str | None:
    """What is wrong with one option, on one line, or None."""
    from hydra.utils import get_object

    from framework.solver import SEARCH_SPACE

    try:
        target: Any = get_object(entry.target)
    except Exception as error:  # noqa: BLE001 - any import error of the plugin's module
        return f"_target_ {entry.target} does not import: {type(error).__name__}: {error}".splitlines()[0]
    partial = bool(entry.config.get("_partial_"))
    if partial and group == "optimizer":  # optimizer=external: a torch optimizer the loop gives parameters to
        import torch

        if not (isinstance(target, type) and issubclass(target, torch.optim.Optimizer)):
            return f"_target_ {entry.target} is not a torch.optim.Optimizer (needed with _partial_: true)"
    elif not (isinstance(target, type) and issubclass(target, _base(group))):
        module, name = BASES[group]
        return f"_target_ {entry.target} is not a subclass of {module}.{name}"
    return _signature_problem(target, entry, skip_first=partial, ignored={SEARCH_SPACE})


def _signature_problem(target: type, entry: ConfigEntry, skip_first: bool, ignored: set[str]) -> str | None:
    try:
        parameters = list(inspect.signature(target).parameters.values())
    except (TypeError, ValueError):
        return None  # a C extension without a signature: nothing to check against
    if skip_first and parameters:
        parameters = parameters[1:]
    keys = {key for key in entry.settings if key not in ignored}
    names = {p.name for p in parameters if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    takes_any = any(p.kind is p.VAR_KEYWORD for p in parameters)
    unknown = sorted(keys - names) if not takes_any else []
    missing = sorted(p.name for p in parameters if p.default is p.empty and p.name not in keys
                     and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))
    problems = []
    if unknown:
        problems.append(f"YAML keys {', '.join(unknown)} are not arguments of {entry.target}")
    if missing:
        problems.append(f"{entry.target} needs {', '.join(missing)}, which the YAML does not set")
    return "; ".join(problems) or None
