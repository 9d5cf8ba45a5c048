"""Makes every registered plugin entry selectable in Hydra, through Hydra's ConfigStore.

The registry reads the YAML of each plugin package (installed, editable or zipped); storing the nodes
in the ConfigStore makes ``optimizer=<name>`` work for any installed plugin, with Hydra's usual
"available options" error for unknown names, whatever the package's layout. Every option is also
selectable by its qualified name, ``optimizer=<distribution>:<name>``; where two distributions provide
the same name, only the qualified names select, and the plain name is refused with the candidates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from framework.entries import QUALIFIER
from framework.errors import ConfigError
from framework.lifecycle.rundir import register_unique_resolver
from framework.registry import Registry

GROUPS = ("optimizer", "model", "backend")
#: the key of the node that a plain name provided by several distributions selects
AMBIGUOUS = "_ambiguous_"


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


def refuse_ambiguous(cfg: Any) -> None:
    """One :class:`ConfigError` line for a plain option name that several distributions provide."""
    for group in GROUPS:
        candidates = OmegaConf.select(cfg, f"{group}.{AMBIGUOUS}", default=None)
        if candidates is not None:
            name = str(candidates[0]).partition(QUALIFIER)[2]
            raise ConfigError(group, name, "is provided by several installed packages; select one by its "
                              f"qualified name: {', '.join(f'{group}={c}' for c in candidates)}")


def register_configs(registry: Registry | None = None, experiments: Path | None = None) -> Registry:
    """Store every usable plugin entry under its config group (and the experiments), register optbench's
    resolvers; return the registry."""
    register_unique_resolver()
    registry = registry or Registry()
    store = ConfigStore.instance()
    for group in GROUPS:
        for item in registry.usable(group):
            entry = item.entry
            store.store(group=group, name=item.qualified, node=entry.config, provider=entry.source)
            if item.clashes:  # the plain name selects nothing: the runner refuses it, naming the candidates
                candidates = sorted(other.qualified for other in registry.usable(group) if other.name == item.name)
                store.store(group=group, name=item.name, node={AMBIGUOUS: candidates}, provider="optbench")
            else:
                store.store(group=group, name=entry.name, node=entry.config, provider=entry.source)
    if experiments is not None:
        register_experiments(experiments)
    return registry
