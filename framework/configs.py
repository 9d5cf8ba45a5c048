"""Makes every registered plugin entry selectable in Hydra, through Hydra's ConfigStore.

The registry reads the YAML of each plugin package (installed, editable or zipped); storing the nodes
in the ConfigStore makes ``optimizer=<name>`` work for any installed plugin, with Hydra's usual
"available options" error for unknown names, whatever the package's layout.
"""

from __future__ import annotations

from hydra.core.config_store import ConfigStore

from framework.registry import Registry

GROUPS = ("optimizer", "model", "backend")


def register_configs(registry: Registry | None = None) -> Registry:
    """Store every usable plugin entry under its config group; return the registry used."""
    registry = registry or Registry()
    store = ConfigStore.instance()
    for group in GROUPS:
        for entry in registry.entries(group):
            store.store(group=group, name=entry.name, node=entry.config, provider=entry.source)
    return registry
