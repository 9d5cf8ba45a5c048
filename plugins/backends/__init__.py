"""Built-in backends; the YAML files are the ``backend`` options."""

from framework.entries import yaml_entries
from framework.hookspecs import hookimpl


@hookimpl
def optbench_backends() -> list:
    return yaml_entries(__name__)
