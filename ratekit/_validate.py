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
