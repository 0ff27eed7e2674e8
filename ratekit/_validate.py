"""Argument checks shared by every public constructor and method."""

from __future__ import annotations

import math


def positive(name: str, value: object) -> float:
    """Return *value* as a float if it is a positive finite number, else raise.

    Raises:
        TypeError: If *value* is not a real number.
        ValueError: If *value* is zero, negative, NaN or infinite.
    """
    if not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def optional_wait(name: str, value: object) -> float:
    """Return a timeout-like argument as seconds; ``None`` means no limit (infinity).

    Raises:
        TypeError: If *value* is neither ``None`` nor a real number.
        ValueError: If *value* is negative or NaN.
    """
    if value is None:
        return math.inf
    if not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds or None, got {value!r}")
    if not value >= 0:  # also catches NaN
        raise ValueError(f"{name} must be a non-negative number of seconds or None, got {value!r}")
    return float(value)


def whole_number(name: str, value: object, least: int) -> int:
    """Return *value* if it is an integer (not a bool) of at least *least*, else raise.

    Raises:
        TypeError: If *value* is not an integer.
        ValueError: If it is below *least*.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < least:
        raise ValueError(f"{name} must be at least {least}, got {value!r}")
    return value
