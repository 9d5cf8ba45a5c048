"""Hydra's view of the installed optbench plugins' configs: a config source (``optbench://plugins``, added to
every search path) serving the ``optimizer``, ``model`` and ``backend`` options that
:func:`framework.configs.register_configs` collected from the plugins' packages.

Why not Hydra's ConfigStore: Hydra deep-copies its config repository, the whole ConfigStore with it, before
every composition. With every plugin option stored twice (plain and qualified names) that copy cost ~15 ms a
composition, and every run and sweep member is composed. This source is read-only, so its copy is itself.
"""

from __future__ import annotations

import copy
from typing import Any, List, Optional

from hydra.core.config_search_path import ConfigSearchPath
from hydra.core.object_type import ObjectType
from hydra.plugins.config_source import ConfigLoadError, ConfigResult, ConfigSource
from hydra.plugins.search_path_plugin import SearchPathPlugin


def _options() -> dict[str, dict[str, tuple[Any, str]]]:
    """group -> option name -> (config node, provider), collected once per process."""
    from framework.configs import plugin_options

    return plugin_options()


class PluginConfigSource(ConfigSource):
    """The plugins' options under their groups: ``<group>/<name>.yaml`` as Hydra names them."""

    @staticmethod
    def scheme() -> str:
        return "optbench"

    def __deepcopy__(self, memo: dict[int, Any]) -> "PluginConfigSource":
        return self  # nothing in it changes: the options are fixed once collected

    def _find(self, config_path: str) -> Any:
        """The group's dict, the option's (node, provider), or None."""
        parts = [part for part in config_path.split("/") if part]
        if not parts:
            return _options()
        group = _options().get(parts[0])
        if group is None or len(parts) == 1:
            return group
        if len(parts) == 2 and parts[1].endswith(".yaml"):
            return group.get(parts[1][: -len(".yaml")])
        return None

    def load_config(self, config_path: str) -> ConfigResult:
        found = self._find(self._normalize_file_name(config_path))
        if not isinstance(found, tuple):
            raise ConfigLoadError(f"optbench plugin config not found: {config_path}")
        node, provider = found
        return ConfigResult(config=copy.deepcopy(node), path=self.full_path(), provider=provider,
                            header={"package": None})

    def is_group(self, config_path: str) -> bool:
        return isinstance(self._find(config_path), dict)

    def is_config(self, config_path: str) -> bool:
        return isinstance(self._find(self._normalize_file_name(config_path.rstrip("/"))), tuple)

    def available(self) -> bool:
        return True

    def list(self, config_path: str, results_filter: Optional[ObjectType]) -> List[str]:
        found = self._find(config_path)
        if not isinstance(found, dict):
            return []
        names: List[str] = []
        for name, value in found.items():
            file_name = name if isinstance(value, dict) else f"{name}.yaml"
            self._list_add_result(files=names, file_path=f"{config_path}/{file_name}".lstrip("/"),
                                  file_name=file_name, results_filter=results_filter)
        return sorted(set(names))


class PluginConfigSearchPath(SearchPathPlugin):
    """Puts :class:`PluginConfigSource` on Hydra's search path, after the application's own configs."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        search_path.append(provider="optbench", path="optbench://plugins")
