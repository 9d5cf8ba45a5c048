"""Built-in problems: one module and one YAML per option; the YAML files are the ``model`` options."""

from framework.api import hookimpl, yaml_entries


@hookimpl
def optbench_problems() -> list:
    return yaml_entries(__name__)
