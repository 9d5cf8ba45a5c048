"""What each option says it can run with, read from its source without importing it.

``optbench list`` shows which backends each solver runs on: a backend that shards parameters
(``Backend.shards_parameters``, FSDP) runs only solvers whose update works on any shard
(``Solver.runs_sharded``). Both are class attributes; the listing reads them from the modules' source
(the class, then its bases, in its module or the modules it imports them from), so it stays free of torch.
Where the source does not say (a base class built at run time), the answer is unknown and the run decides.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

#: the framework's base classes and the defaults of the attributes they declare
_DEFAULTS = {"Solver": {"runs_sharded": False}, "Backend": {"shards_parameters": False},
             "FactorySolver": {"runs_sharded": False}}


def declared(target: str, attribute: str, depth: int = 0) -> bool | None:
    """The literal value that ``target``'s class (or its first base class, followed through imports) gives
    ``attribute``, the framework's default where it inherits straight from a framework base, else None."""
    module, _, name = target.rpartition(".")
    if name in _DEFAULTS:
        return _DEFAULTS[name].get(attribute)
    try:
        spec = importlib.util.find_spec(module)
        tree = ast.parse(Path(spec.origin).read_text())  # type: ignore[union-attr,arg-type]
    except (ImportError, AttributeError, OSError, SyntaxError, TypeError, ValueError):
        return None
    classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
    imported = {alias.asname or alias.name: f"{node.module}.{alias.name}" for node in tree.body
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 for alias in node.names}
    seen: set[str] = set()
    while name in classes and name not in seen:
        seen.add(name)
        node = classes[name]
        for statement in node.body:
            value = _assigned(statement, attribute)
            if value is not None:
                return value
        bases = [base.id for base in node.bases if isinstance(base, ast.Name)]
        if not bases:
            return None
        name = bases[0]
    if name in imported and depth < 8:
        return declared(imported[name], attribute, depth + 1)
    return _DEFAULTS.get(name, {}).get(attribute)


def _assigned(statement: ast.stmt, attribute: str) -> bool | None:
    if isinstance(statement, ast.Assign):
        names = [t.id for t in statement.targets if isinstance(t, ast.Name)]
        value = statement.value
    elif isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
        names, value = [statement.target.id], statement.value
    else:
        return None
    if attribute in names and isinstance(value, ast.Constant) and isinstance(value.value, bool):
        return value.value
    return None


def runs_on(solver_target: str, partial: bool, backends: dict[str, str]) -> list[str] | None:
    """The backends (name -> target) a solver runs on; None where its source does not say."""
    sharded = False if partial else declared(solver_target, "runs_sharded")
    names = []
    for name, target in backends.items():
        shards = declared(target, "shards_parameters")
        if shards is None or (shards and sharded is None):
            return None
        if not shards or sharded:
            names.append(name)
    return names
