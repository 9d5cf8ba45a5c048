"""Discovers plugins from installed package metadata and collects their config entries.

Each entry point of the group ``optbench.plugins`` is loaded on its own: one that fails to import, or
whose hook raises, is recorded as broken with its reason and the others keep working. ``strict=True``
turns the first failure into an exception. No state is global: build as many registries as you like.
"""

from __future__ import annotations

import functools
import importlib.metadata
import inspect
import importlib.util
import sys
from importlib.metadata import EntryPoint, entry_points, packages_distributions
from typing import Iterable

import pluggy

from framework import ENTRY_POINT_GROUP
from framework import hookspecs
from framework.api import supports
from framework.entries import ConfigEntry, Listed


@functools.lru_cache(maxsize=1)
def _distributions_of_packages() -> dict[str, list[str]]:
    """Top-level import name -> the distributions that install it (a scan of every installed one, so once)."""
    return packages_distributions()


def provider(obj: object) -> dict[str, str | None]:
    """The class (or function) behind ``obj`` and the installed distribution that ships it, with its version:
    what a run records of each plugin it used (``summary.json``: ``versions.plugins``). A factory such as
    ``optimizer=external`` is traced to the class it wraps."""
    target = getattr(obj, "factory", obj)
    target = getattr(target, "func", target)  # functools.partial
    if not isinstance(target, type) and not inspect.isfunction(target):  # an instance: its class
        target = type(target)
    module = target.__module__
    names = sorted(set(_distributions_of_packages().get(module.split(".")[0], [])))
    distribution = names[0] if names else None
    return {"target": f"{module}.{target.__qualname__}",
            "distribution": distribution, "version": _version(distribution) if distribution else None}


@functools.lru_cache(maxsize=None)
def _version(distribution: str) -> str | None:
    """The installed version of ``distribution`` (each lookup scans the import path: ~1 ms, three per run
    summary, once per process)."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


class PluginError(RuntimeError):
    """Raised in strict mode when a plugin cannot be loaded or its hook fails."""


def _package_of(ep: EntryPoint) -> tuple[str, str]:
    """(the distribution's name, "name version") of the installed package that declares ``ep``."""
    dist = getattr(ep, "dist", None)
    if dist is None:
        return ep.name, "?"
    return dist.name, f"{dist.name} {dist.version}"


def _reason(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}".splitlines()[0]


def _target_problem(entry: ConfigEntry) -> str | None:
    """Why ``entry``'s ``_target_`` cannot be imported, checked without importing anything new.

    Each dotted prefix is looked up only where that costs no import: a top-level package (found
    without executing it) or a module whose parent is already imported. ``torch.optim.SGD`` is
    checked as far as ``torch``, never by importing torch.
    """
    target = entry.target
    if not target:
        return "no _target_ in its config"
    parts = target.split(".")[:-1]
    for depth in range(1, len(parts) + 1):
        module = ".".join(parts[:depth])
        if module in sys.modules:
            continue
        if depth > 1 and ".".join(parts[: depth - 1]) not in sys.modules:
            return None  # deeper checks would import the parent package
        try:
            found = importlib.util.find_spec(module)
        except (ImportError, ValueError) as error:
            return f"_target_ {target}: {_reason(error)}"
        if found is None:
            return f"_target_ {target}: module {module} not found"
    return None


class Registry:
    """The installed solver, problem and backend plugins.

    ``entries(group)`` yields what a config group may select; ``listing()`` shows everything,
    broken plugins included.
    """

    def __init__(
        self,
        group: str = ENTRY_POINT_GROUP,
        strict: bool = False,
        points: Iterable[EntryPoint] | None = None,
    ) -> None:
        self.strict = strict
        self.manager = pluggy.PluginManager(hookspecs.PROJECT)
        self.manager.add_hookspecs(hookspecs)
        self._listed: list[Listed] = []
        self._packages: dict[str, tuple[str, str]] = {}
        for ep in sorted(points if points is not None else entry_points(group=group), key=lambda e: e.name):
            self._load(ep)
        for hook_name, config_group in hookspecs.GROUPS.items():
            self._collect(hook_name, config_group)
        self._find_clashes()

    def _fail(self, listed: Listed, error: BaseException) -> None:
        listed.status = f"broken: {_reason(error)}"
        self._listed.append(listed)
        if self.strict:
            raise PluginError(f"plugin {listed.plugin!r} ({listed.package}): {listed.status}") from error

    def _load(self, ep: EntryPoint) -> None:
        distribution, package = _package_of(ep)
        try:
            plugin = ep.load()
            refusal = supports(plugin.OPTBENCH_API) if hasattr(plugin, "OPTBENCH_API") else None
            if refusal is not None:
                raise PluginError(f"{distribution}: {refusal}")
            self.manager.register(plugin, name=ep.name)
            self._packages[ep.name] = distribution, package
        except Exception as error:  # a plugin's import may raise anything
            self._fail(Listed(group="plugin", name=ep.name, plugin=ep.name, package=package,
                              distribution=distribution), error)

    def _collect(self, hook_name: str, config_group: str) -> None:
        hook = getattr(self.manager.hook, hook_name)
        for impl in hook.get_hookimpls():
            plugin = impl.plugin_name
            distribution, package = self._packages.get(plugin, (plugin, "?"))
            try:
                entries = list(impl.function())
            except Exception as error:
                self._fail(Listed(group=config_group, name="*", plugin=plugin, package=package,
                                  distribution=distribution), error)
                continue
            for entry in entries:
                listed = Listed(config_group, entry.name, plugin, package, entry=entry, distribution=distribution)
                problem = _target_problem(entry)
                if problem is not None:
                    self._fail(listed, PluginError(problem))
                    continue
                self._listed.append(listed)

    def _find_clashes(self) -> None:
        """Options of one group with one name from several distributions: each is told the others, and
        strict mode refuses them (neither may silently replace the other)."""
        by_name: dict[tuple[str, str], list[Listed]] = {}
        for item in self._listed:
            if item.ok:
                by_name.setdefault((item.group, item.name), []).append(item)
        for (group, name), items in sorted(by_name.items()):
            if len(items) < 2:
                continue
            for item in items:
                item.clashes = [other.package for other in items if other is not item]
            if self.strict:
                raise PluginError(f"{group}={name} is provided by {' and '.join(i.package for i in items)}; "
                                  f"select one as {' or '.join(f'{group}={i.qualified}' for i in items)}")

    def listing(self) -> list[Listed]:
        """Every entry and every broken plugin, in group then name order."""
        order = {group: i for i, group in enumerate([*hookspecs.GROUPS.values(), "plugin"])}
        return sorted(self._listed, key=lambda item: (order.get(item.group, 99), item.name, item.plugin))

    def usable(self, group: str) -> list[Listed]:
        """The options of one config group (``optimizer``, ``model`` or ``backend``) that load, clashing
        names included."""
        return [item for item in self.listing() if item.group == group and item.ok and item.entry]

    def entries(self, group: str) -> list[ConfigEntry]:
        """The usable options of one config group."""
        return [item.entry for item in self.usable(group) if item.entry]

    @property
    def broken(self) -> list[Listed]:
        return [item for item in self._listed if not item.ok]
