"""A tuning search space written in Hydra's sweep syntax, turned into Optuna distributions.

Every override of a tuning sweep is one of three kinds:

- searched: ``interval(a, b)``, ``tag(log, interval(a, b))`` (``tag(int, ...)`` for integers),
  ``range(start, stop[, step])`` and ``choice(a, b, ...)``: Optuna samples it, trial by trial;
- a plain list ``a,b``: one study per value, each with the whole trial budget (``optimizer=adamw,sophia``
  tunes both solvers on equal terms instead of searching over them);
- a plain value: every trial gets it.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass, field
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from framework.configs import quoted
from framework.errors import ConfigError
from framework.solver import SEARCH_SPACE


@dataclass
class Space:
    """The searched distributions (by key), the fixed overrides, and the plain lists that split studies."""

    searched: dict[str, BaseDistribution] = field(default_factory=dict)
    #: the override as written for each searched key ("+key" adds a key the config does not have)
    override_keys: dict[str, str] = field(default_factory=dict)
    fixed: list[str] = field(default_factory=list)
    studies: dict[str, list[str]] = field(default_factory=dict)

    def keys(self) -> set[str]:
        return {*self.searched, *self.studies, *(line.partition("=")[0].lstrip("+~") for line in self.fixed)}

    def overrides(self, params: dict[str, Any]) -> list[str]:
        """The overrides of one trial: the fixed ones, then each searched key at its sampled value."""
        return [*self.fixed, *(f"{self.override_keys[key]}={_text(params[key])}" for key in self.searched)]

    def study_grid(self) -> list[list[str]]:
        """One list of overrides per study: every combination of the plain lists (one empty study if none)."""
        keys = list(self.studies)
        return [[f"{key}={value}" for key, value in zip(keys, values)]
                for values in itertools.product(*(self.studies[key] for key in keys))]

    def describe(self) -> dict[str, str]:
        """Each searched key with its distribution, as stored with a study to recognise it when resumed."""
        return {key: repr(dist) for key, dist in sorted(self.searched.items())}

    def grid(self) -> dict[str, list[Any]]:
        """The search space as GridSampler wants it: every searched key with a finite list of values."""
        values = {}
        for key, dist in self.searched.items():
            if isinstance(dist, CategoricalDistribution):
                values[key] = list(dist.choices)
            elif dist.step is not None:
                count = int(round((dist.high - dist.low) / dist.step)) + 1
                values[key] = [_step(dist, i) for i in range(count)]
            else:
                raise ConfigError("hydra.sweeper.sampler", "grid",
                                  f"needs a finite set of values for each key: {key} is continuous "
                                  f"({dist!r}); use choice(...) or range(...) for it")
        return values


def _step(dist: IntDistribution | FloatDistribution, i: int) -> int | float:
    value = dist.low + i * dist.step
    return value if isinstance(dist, IntDistribution) else round(value, 12)


def _text(value: Any) -> str:
    """A sampled value as an override value: floats exactly, strings quoted where Hydra would split them."""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str) and not re.fullmatch(r"[\w.+\-/]+", value):
        return quoted(value)
    return str(value)


def _distribution(override: Override) -> BaseDistribution:
    sweep = override.value()
    key = override.get_key_element()
    tags = set(getattr(sweep, "tags", ()) or ())
    unknown = tags - {"log", "int"}
    if unknown:
        raise ConfigError(key, override.input_line, f"tag(...) takes log and int, not {sorted(unknown)}")
    if isinstance(sweep, IntervalSweep):
        low, high = float(sweep.start), float(sweep.end)
        if not low < high or ("log" in tags and low <= 0):
            raise ConfigError(key, override.input_line.partition("=")[2],
                              "interval(low, high) needs low < high" + (" and low > 0 on a log scale" if "log" in tags else ""))
        if "int" in tags:
            return IntDistribution(math.ceil(low), math.floor(high), log="log" in tags)
        return FloatDistribution(low, high, log="log" in tags)
    if isinstance(sweep, RangeSweep):
        values = [float(v) for v in override.sweep_string_iterator()]
        if not values:
            raise ConfigError(key, override.input_line.partition("=")[2], "range(...) holds no value")
        step = float(sweep.step)
        if all(float(v).is_integer() for v in (sweep.start, step)):
            return IntDistribution(int(values[0]), int(values[-1]), step=int(step))
        return FloatDistribution(values[0], values[-1], step=step)
    if isinstance(sweep, ChoiceSweep):  # numbers stay numbers; anything else (lists, dicts) as written
        typed = all(isinstance(v, (bool, int, float, str)) for v in sweep.list)
        return CategoricalDistribution(list(sweep.list) if typed else list(override.sweep_string_iterator()))
    raise ConfigError(key, override.input_line, "is not a sweep Optuna can search")


def parse_space(overrides: list[str]) -> Space:
    """Sort the overrides into searched, study-splitting and fixed ones; later ones win for the same key."""
    space = Space()
    for override in OverridesParser.create().parse_overrides(overrides):
        key = override.key_or_group
        for part in (space.searched, space.override_keys, space.studies):
            part.pop(key, None)
        space.fixed = [line for line in space.fixed if line.partition("=")[0].lstrip("+~") != key]
        if not override.is_sweep_override():
            space.fixed.append(override.input_line)
        elif isinstance(override.value(), ChoiceSweep) and override.value().simple_form:
            space.studies[key] = list(override.sweep_string_iterator())
        else:
            space.searched[key] = _distribution(override)
            space.override_keys[key] = override.get_key_element()
    return space


__all__ = ["SEARCH_SPACE", "Space", "parse_space", "solver_space"]


def solver_space(search_space: dict[str, Any] | None, taken: set[str]) -> list[str]:
    """A solver's default search space (keys relative to ``optimizer.``) as overrides, leaving out every key
    the command line or the sweeper's params already set."""
    return [f"optimizer.{key}={value}" for key, value in (search_space or {}).items()
            if f"optimizer.{key}" not in taken]
