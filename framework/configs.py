"""Makes every registered plugin entry selectable in Hydra, through Hydra's ConfigStore.

The registry reads the YAML of each plugin package (installed, editable or zipped); storing the nodes
in the ConfigStore makes ``optimizer=<name>`` work for any installed plugin, with Hydra's usual
"available options" error for unknown names, whatever the package's layout.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from hydra.core.config_store import ConfigStore

from framework.lifecycle.rundir import register_unique_resolver
from framework.registry import Registry

GROUPS = ("optimizer", "model", "backend")


def quoted(value: str) -> str:
    """A Hydra override value that keeps any path as it is (spaces, commas, quotes)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def register_experiments(directory: Path) -> list[str]:
    """Each ``<directory>/<name>.yaml`` becomes ``+experiment=<name>``, merged at the top level."""
    store = ConfigStore.instance()
    names = []
    for path in sorted(Path(directory).glob("*.yaml")):
        node = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        store.store(group="experiment", name=path.stem, node=node, package="_global_", provider=str(path))
        names.append(path.stem)
    return names


def register_configs(registry: Registry | None = None, experiments: Path | None = None) -> Registry:
    """Store every usable plugin entry under its config group (and the experiments), register optbench's
    resolvers; return the registry."""
    register_unique_resolver()
    registry = registry or Registry()
    store = ConfigStore.instance()
    for group in GROUPS:
        for entry in registry.entries(group):
            store.store(group=group, name=entry.name, node=entry.config, provider=entry.source)
    if experiments is not None:
        register_experiments(experiments)
    return registry
