"""Config entries: one selectable option of a config group, and how plugins build them from YAML."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import yaml


@dataclass(frozen=True)
class ConfigEntry:
    """One option of a config group (``optimizer=sophia``): its Hydra node and a one-line description."""

    name: str
    config: dict[str, Any]
    description: str = ""
    source: str = ""  # where the config came from (a file), for messages

    @property
    def target(self) -> str:
        return str(self.config.get("_target_", ""))

    @property
    def settings(self) -> dict[str, Any]:
        return {k: v for k, v in self.config.items() if not k.startswith("_")}


def _description(text: str) -> str:
    """The YAML file's leading comment, joined into one line."""
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return " ".join(part for part in lines if part)


def yaml_entries(package: str) -> list[ConfigEntry]:
    """Every ``*.yaml`` file shipped in ``package`` (a dotted name), as entries named by file stem.

    Works for installed, editable and zipped packages alike because it reads through
    :mod:`importlib.resources`, never through a file path guessed from ``__file__``.
    """
    found = []
    for item in sorted(resources.files(package).iterdir(), key=lambda p: p.name):
        if not item.name.endswith(".yaml"):
            continue
        text = item.read_text(encoding="utf-8")
        config = yaml.safe_load(text) or {}
        if not isinstance(config, dict):
            raise ValueError(f"{package}/{item.name}: expected a mapping at the top level")
        found.append(
            ConfigEntry(
                name=item.name[: -len(".yaml")],
                config=config,
                description=_description(text),
                source=f"{package}/{item.name}",
            )
        )
    return found


#: separates a distribution from an option's name in a qualified name: ``optimizer=optbench-extra:adamw``
QUALIFIER = ":"


@dataclass
class Listed:
    """An entry as the registry lists it: where it came from and whether it can be used.

    ``distribution`` is the installed distribution that provides it (``optbench`` for the built-ins);
    ``clashes`` the other distributions that provide an option of the same name in the same group, which
    makes the plain name ambiguous: such an option is selected by :attr:`qualified` name only.
    """

    group: str
    name: str
    plugin: str
    package: str
    status: str = "ok"
    entry: ConfigEntry | None = None
    distribution: str = "?"
    clashes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def qualified(self) -> str:
        return f"{self.distribution}{QUALIFIER}{self.name}"
