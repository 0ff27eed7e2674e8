"""Argument checks shared by every public constructor and method.

Each check takes the argument's name and its value, returns the value as the type the
code works with, and raises `TypeError` (not the right kind of value) or `ValueError`
(the right kind, out of range) with a message that names the argument:

```text
timeout must be a non-negative number of seconds or None, got -1
```

`attribute` turns a check into an attrs validator that names the field, so a frozen
value checks its fields with the same words as a function checks its arguments.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Collection

    import attrs


def _number(name: str, value: object, what: str = "a number", *, bools: bool = False) -> float:
    """*value* as a float if it is a real number, else raise TypeError.

    A bool is refused unless *bools*: the costs and waits of the limiters take ``True``
    as 1 and ``False`` as 0, as Python's arithmetic does.
    """
    if (isinstance(value, bool) and not bools) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be {what}, got {type(value).__name__} {value!r}")
    return float(value)


def positive(name: str, value: object) -> float:
    """Return *value* as a float if it is a positive finite number, else raise.

    Raises:
        TypeError: If *value* is not a real number.
        ValueError: If *value* is zero, negative, NaN or infinite.
    """
    number = _number(name, value, bools=True)
    if not (number > 0 and math.isfinite(number)):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return number


def at_least(name: str, value: object, least: float) -> float:
    """Return *value* as a float if it is a finite number of at least *least*, else raise.

    Raises:
        TypeError: If *value* is not a real number.
        ValueError: If *value* is below *least*, NaN or infinite.
    """
    number = _number(name, value)
    if not (math.isfinite(number) and number >= least):
        if least == 0:  # the usual case, in the usual words
            raise ValueError(f"{name} must be a non-negative finite number, got {value!r}")
        raise ValueError(f"{name} must be a finite number of at least {least:g}, got {value!r}")
    return number


def seconds(name: str, value: object, *, none: bool = False) -> float:
    """Return a duration as seconds: a non-negative number, infinity included.

    With *none*, ``None`` is accepted too, as no limit (infinity).

    Raises:
        TypeError: If *value* is not a real number (or ``None``, with *none*).
        ValueError: If *value* is negative or NaN.
    """
    return _seconds(name, value, none=none, bools=False)


def optional_wait(name: str, value: object) -> float:
    """A timeout or wait of a limiter: `seconds` with *none* (a bool counts as 0 or 1)."""
    return _seconds(name, value, none=True, bools=True)


def _seconds(name: str, value: object, *, none: bool, bools: bool) -> float:
    if value is None and none:
        return math.inf
    what = "a number of seconds or None" if none else "a number of seconds"
    number = _number(name, value, what, bools=bools)
    if not number >= 0:  # also catches NaN
        raise ValueError(f"{name} must be a non-negative {what[2:]}, got {value!r}")
    return number


def whole_number(name: str, value: object, least: int, most: int | None = None) -> int:
    """Return *value* if it is an integer (not a bool) from *least* to *most*, else raise.

    Raises:
        TypeError: If *value* is not an integer.
        ValueError: If it is below *least* or above *most*.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if most is not None and not least <= value <= most:
        raise ValueError(f"{name} must be between {least} and {most}, got {value!r}")
    if value < least:
        raise ValueError(f"{name} must be at least {least}, got {value!r}")
    return value


def text(name: str, value: object, *, secret: bool = False) -> str:
    """Return *value* if it is a non-empty string, else raise ValueError.

    With *secret*, the message names what was given by its type only, never its value.
    """
    if not isinstance(value, str) or not value:
        if secret:
            got = "an empty string" if value == "" else type(value).__name__
        else:
            got = repr(value)
        raise ValueError(f"{name} must be a non-empty string, got {got}")
    return value


def one_of(name: str, value: object, choices: Collection[object]) -> object:
    """Return *value* if it is one of *choices*, else raise ValueError listing them."""
    if value not in choices:
        listed = ", ".join(repr(choice) for choice in choices)
        raise ValueError(f"{name} must be one of {listed}, got {value!r}")
    return value


def callable_or_none(name: str, value: object) -> object:
    """Return *value* if it is ``None`` or callable, else raise TypeError."""
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be a callable or None, got {value!r}")
    return value


def attribute(
    check: Callable[..., object], *args: object, optional: bool = False
) -> Callable[[object, attrs.Attribute[Any], Any], None]:
    """An attrs validator that runs ``check(field name, value, *args)``.

    With *optional*, ``None`` is accepted as it is.
    """

    def validate(_instance: object, field: attrs.Attribute[Any], value: object) -> None:
        if value is None and optional:
            return
        check(field.alias or field.name, value, *args)

    return validate
