"""The checks of the simulator's arguments: each names the argument it refuses."""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from ratekit._composite import limiter as _make_limiter
from ratekit_cxone._sim._data import _UTC, SUPPORTED_VERSIONS

if TYPE_CHECKING:
    from ratekit._limiter import LimiterBase
    from ratekit.typing import Clock

_VERSION = re.compile(r"v?(\d+)(?:\.0)?", re.ASCII)


def _check_integer(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    return value


def _check_port(value: object) -> int:
    port = _check_integer("port", value)
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be from 0 to 65535, got {port!r}")
    return port


def _build_limiter(rate: object, clock: Clock) -> LimiterBase | None:
    if rate is None:
        return None
    if not isinstance(rate, str):
        raise TypeError(f"rate must be text such as '50/second', or None; got {rate!r}")
    try:
        return _make_limiter(rate, clock=clock)
    except ValueError as error:
        raise ValueError(f"rate {rate!r} is not a limit: {error}") from error


def _check_shares(**shares: object) -> tuple[float, ...]:
    values = tuple(_check_share(name, value) for name, value in shares.items())
    if sum(values) > 1.0:
        names = " + ".join(shares)
        raise ValueError(f"{names} must not exceed 1, got {' + '.join(map(str, values))}")
    return values


def _check_scopes(scopes: object) -> tuple[str, ...]:
    if isinstance(scopes, str) or not isinstance(scopes, (list, tuple)):
        raise TypeError(f"scopes_supported must be a list or tuple of names, got {scopes!r}")
    for scope in scopes:
        if not isinstance(scope, str) or not scope or any(c.isspace() for c in scope):
            raise ValueError(
                f"scopes_supported must hold non-empty names without spaces, got {scope!r}"
            )
    return tuple(scopes)


def _check_span(span: object) -> timedelta:
    if not isinstance(span, timedelta) or span <= timedelta(0):
        raise ValueError(f"span must be a positive timedelta, got {span!r}")
    return span


def _check_share(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number from 0 to 1, got {value!r}")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be from 0 to 1, got {value!r}")
    return float(value)


def _check_seconds(name: str, value: object, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        wanted = "a positive" if positive else "a non-negative"
        raise ValueError(f"{name} must be {wanted} finite number of seconds, got {value!r}")
    return float(value)


def _check_count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must not be negative, got {value!r}")
    return value


def _check_text(name: str, value: object) -> str:
    if not isinstance(value, str) or not value or value != value.strip():
        raise ValueError(f"{name} must be a non-empty string without surrounding spaces")
    return value


def _check_moment(name: str, value: object) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, got {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (UTC), got {value!r}")
    return value.astimezone(_UTC)


def _major(version: object) -> int:
    """The major version from ``"34.0"``, ``"v34.0"``, ``"34"`` or ``34``."""
    text = str(version) if isinstance(version, (str, int)) and version is not True else ""
    match = _VERSION.fullmatch(text)
    major = int(match.group(1)) if match else 0
    if major not in SUPPORTED_VERSIONS:
        raise ValueError(f"version must be one of 21.0 to 34.0 (such as '34.0'), got {version!r}")
    return major
