"""Built-in solvers: one module and one YAML each; the YAML files are the ``optimizer`` options."""

from framework.entries import yaml_entries
from framework.hookspecs import hookimpl


@hookimpl
def optbench_solvers() -> list:
    return yaml_entries(__name__)
