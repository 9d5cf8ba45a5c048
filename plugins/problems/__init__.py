"""Built-in problems: one module and one YAML per option; the YAML files are the ``model`` options."""

from framework.entries import yaml_entries
from framework.hookspecs import hookimpl


@hookimpl
def optbench_problems() -> list:
    return yaml_entries(__name__)
