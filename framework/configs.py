"""Makes every registered plugin entry selectable in Hydra.

The registry reads the YAML of each plugin package (installed, editable or zipped); a Hydra config source
(``hydra_plugins/optbench_configs``, on every search path) serves the collected nodes, so that
``optimizer=<name>`` works for any installed plugin, with Hydra's usual "available options" error for
unknown names, whatever the package's layout. Every option is also
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


#: group -> option name -> (config node, provider): what the Hydra config source serves
_OPTIONS: dict[str, dict[str, tuple[Any, str]]] = {}


def register_configs(registry: Registry | None = None, experiments: Path | None = None) -> Registry:
    """Make every usable plugin entry an option of its config group (and the experiments), register
    optbench's resolvers; return the registry."""
    register_unique_resolver()
    registry = registry or Registry()
    options: dict[str, dict[str, tuple[Any, str]]] = {}
    for group in GROUPS:
        chosen = options.setdefault(group, {})
        for item in registry.usable(group):
            entry = item.entry
            node = OmegaConf.create(entry.config)
            chosen[item.qualified] = (node, entry.source)
            if item.clashes:  # the plain name selects nothing: the runner refuses it, naming the candidates
                candidates = sorted(other.qualified for other in registry.usable(group) if other.name == item.name)
                chosen[item.name] = (OmegaConf.create({AMBIGUOUS: candidates}), "optbench")
            else:
                chosen[entry.name] = (node, entry.source)
    _OPTIONS.clear()
    _OPTIONS.update(options)
    if experiments is not None:
        register_experiments(experiments)
    return registry


def plugin_options() -> dict[str, dict[str, tuple[Any, str]]]:
    """The options :func:`register_configs` collected; collected now where this process has none yet (a
    launcher's worker process composing a sweep member)."""
    if not _OPTIONS:
        register_configs()
    return _OPTIONS
