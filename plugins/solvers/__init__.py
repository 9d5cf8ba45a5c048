"""Built-in solvers: one module and one YAML each; the YAML files are the ``optimizer`` options."""

from framework.api import hookimpl, yaml_entries


@hookimpl
def optbench_solvers() -> list:
    return yaml_entries(__name__)
