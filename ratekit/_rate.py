"""`Rate`: how many units per how many seconds."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, ClassVar

import attrs

from ._validate import attribute, positive

if TYPE_CHECKING:
    from collections.abc import Iterable

#: What separates several limits in one text: ``"10/second, 1000/hour"``.
_SEPARATOR = re.compile(r"[,;]")

#: Unit names accepted by `Rate.parse`, in seconds.
_UNITS: dict[str, float] = {
    "ms": 0.001,
    "millisecond": 0.001,
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "hour": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
}

_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_RATE_RE = re.compile(
    rf"^\s*(?P<limit>{_NUMBER})\s*(?:/|per\b)\s*(?P<count>{_NUMBER})?\s*(?P<unit>[a-zA-Z]+)\s*$"
)

_FORMS = "'<limit>/<unit>' or '<limit>/<n><unit>', such as '90/minute', '1.5/s' or '100/10s'"


def _unit_seconds(name: str) -> float | None:
    key = name.lower()
    if key in _UNITS:
        return _UNITS[key]
    if key.endswith("s") and key[:-1] in _UNITS and len(key) > 2:
        return _UNITS[key[:-1]]  # plural: "seconds", "hours", "mins"
    return None


@attrs.frozen
class Rate:
    """A rate: *limit* units per *per* seconds.

    ``Rate(90, per=60.0)`` is 90 per minute (1.5 per second).  Both numbers must be
    positive and finite.  `Rate.parse` reads the usual text forms.

    Args:
        limit: How many units.
        per: In how many seconds (default one second).
    """

    limit: float = attrs.field(converter=float, validator=attribute(positive))
    per: float = attrs.field(default=1.0, converter=float, validator=attribute(positive))

    #: The units `parse` accepts (singular; a plural "s" is accepted too).
    UNITS: ClassVar[tuple[str, ...]] = tuple(_UNITS)

    @property
    def per_second(self) -> float:
        """Units per second."""
        return self.limit / self.per

    @property
    def interval(self) -> float:
        """Seconds per unit: the spacing of a steady drip at this rate."""
        return self.per / self.limit

    @classmethod
    def parse(cls, text: str) -> Rate:
        """Read a rate from text such as ``"90/minute"``, ``"1.5/s"`` or ``"100/10s"``.

        The period is an optional count followed by a unit (``ms``, ``s``, ``sec``,
        ``second``, ``m``, ``min``, ``minute``, ``h``, ``hr``, ``hour``, ``d``, ``day``,
        singular or plural); ``per`` may replace the slash (``"10 per second"``).

        Raises:
            ValueError: If the text is not one of those forms; the message names the
                text and the accepted forms.
            TypeError: If *text* is not a `str`.
        """
        if not isinstance(text, str):
            raise TypeError(f"Rate.parse() takes a str, got {type(text).__name__} {text!r}")
        match = _RATE_RE.match(text)
        unit = _unit_seconds(match["unit"]) if match else None
        if match is None or unit is None:
            raise ValueError(f"invalid rate {text!r}: expected {_FORMS}")
        count = float(match["count"]) if match["count"] else 1.0
        limit = float(match["limit"])
        if not (limit > 0 and count > 0):
            raise ValueError(f"invalid rate {text!r}: the limit and the period must be positive")
        return cls(limit, per=count * unit)

    @classmethod
    def parse_many(
        cls, limits: Iterable[str | Rate], *, caller: str = "Rate.parse_many()"
    ) -> list[Rate]:
        """Read several limits: `Rate` values, or texts that may each hold several.

        A text is split at commas and semicolons (``"10/second, 1000/hour"``), and each
        part is read by `parse`.  This is how `ratekit.limiter` and the stores'
        factories read their arguments.

        Args:
            limits: The limits.
            caller: How messages name the function the limits were given to; its
                arguments are counted from 1.

        Raises:
            TypeError: If an item is neither a `Rate` nor text.
            ValueError: If there is no limit, a text has an empty part, or a part is
                not a rate (the message quotes it).
        """
        rates: list[Rate] = []
        for number, item in enumerate(limits, start=1):
            if isinstance(item, Rate):
                rates.append(item)
                continue
            if not isinstance(item, str):
                raise TypeError(f"{caller} argument {number} must be a Rate or text, got {item!r}")
            for part in _SEPARATOR.split(item):
                text = part.strip()
                if not text:
                    raise ValueError(f"{caller} argument {number} has an empty limit: {item!r}")
                rates.append(cls.parse(text))
        if not rates:
            raise ValueError(f'{caller} needs at least one limit, such as "10/second"')
        return rates

    def __str__(self) -> str:
        return f"{self.limit:g}/{self.per:g}s"


def to_rate(value: Rate | float | str, name: str = "rate") -> Rate:
    """Accept a `Rate`, a number (units per second) or text for `Rate.parse`."""
    if isinstance(value, Rate):
        return value
    if isinstance(value, str):
        return Rate.parse(value)
    return Rate(positive(name, value))
