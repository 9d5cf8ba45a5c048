"""The one error type for bad user input, rendered as a single line naming setting, value and rule."""

from __future__ import annotations

import math
from typing import Any


class ConfigError(ValueError):
    """A setting has a value that is not allowed.

    ``str(error)`` is one line: ``optimizer.lr=-0.1: must be >= 0``.
    """

    def __init__(self, setting: str, value: Any, allowed: str) -> None:
        self.setting, self.value, self.allowed = setting, value, allowed
        super().__init__(f"{setting}={value!r}: {allowed}")


def require(condition: bool, setting: str, value: Any, allowed: str) -> None:
    """Raise :class:`ConfigError` unless ``condition`` holds."""
    if not condition:
        raise ConfigError(setting, value, allowed)


def is_number(value: Any) -> bool:
    """A real number (int or float, not a bool); NaN and infinities included."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_number(setting: str, value: Any, rule: str, holds: bool) -> float:
    """A finite number for which ``holds`` is true; the message says ``rule`` (``"> 0"``), or that it must
    be finite where it is an infinity or NaN."""
    if is_number(value) and not math.isfinite(value):
        raise ConfigError(setting, value, f"must be a finite number {rule}")
    require(is_number(value) and holds, setting, value, f"must be a number {rule}")
    return float(value)


def check_nonnegative(setting: str, value: float) -> float:
    return check_number(setting, value, ">= 0", is_number(value) and value >= 0)


def check_positive(setting: str, value: float) -> float:
    return check_number(setting, value, "> 0", is_number(value) and value > 0)


def check_at_least(setting: str, value: float, minimum: float) -> float:
    return check_number(setting, value, f">= {minimum:g}", is_number(value) and value >= minimum)


def check_unit_interval(setting: str, value: float) -> float:
    """A decay rate such as a momentum or a beta: 0 <= value < 1."""
    require(is_number(value) and 0 <= value < 1, setting, value, "must be in [0, 1)")
    return float(value)


def check_betas(setting: str, values: Any) -> tuple[float, ...]:
    values = tuple(values)
    for i, beta in enumerate(values):
        check_unit_interval(f"{setting}[{i}]", beta)
    return values


def check_count(setting: str, value: Any, minimum: int = 1) -> int:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= minimum
    require(ok, setting, value, f"must be an integer >= {minimum}")
    return int(value)
