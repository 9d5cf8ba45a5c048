"""Built-in backends; the YAML files are the ``backend`` options."""

from framework.api import hookimpl, yaml_entries


@hookimpl
def optbench_backends() -> list:
    return yaml_entries(__name__)
