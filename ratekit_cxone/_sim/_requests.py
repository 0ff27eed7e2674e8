"""Reading a request: its dates, integers and field names, ``Accept``, paging links."""

from __future__ import annotations

import re
from datetime import datetime
from urllib.parse import urlencode

from ratekit_cxone._sim._answers import _bad_request
from ratekit_cxone._sim._data import _CONTACT_FIELDS_NEW, _CONTACT_FIELDS_OLD, _UTC

_Z_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?Z", re.ASCII)
_DIGITS = re.compile(r"\d{1,18}", re.ASCII)


def _parse_z(text: str) -> datetime | None:
    """A UTC date and time ending in a literal ``Z``, or ``None`` for anything else."""
    match = _Z_DATE.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction = match.groups()
    micro = int((fraction or "0").ljust(6, "0")[:6])
    try:
        return datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), micro, _UTC
        )
    except ValueError:  # month 13, February 30 ...
        return None


def _acceptable(accept: str | None) -> bool:
    """Whether an ``Accept`` header admits ``application/json`` (RFC 9110 section 12.5.1).

    The most specific media range that matches decides, by its ``q`` value.
    """
    if accept is None or not accept.strip():
        return True
    best_rank, best_q = 0, 0.0
    for item in accept.split(","):
        media_range, *parameters = (part.strip() for part in item.split(";"))
        rank = {"application/json": 3, "application/*": 2, "*/*": 1}.get(media_range.lower(), 0)
        if rank <= best_rank:
            continue
        quality = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value.strip())
                except ValueError:
                    quality = -1.0
        if 0.0 <= quality <= 1.0:
            best_rank, best_q = rank, quality
    return best_rank > 0 and best_q > 0


def _with_paging(path: str, query: list[tuple[str, str]], **values: int) -> str:
    """*path* with *query*, the parameters in *values* set (replaced or appended)."""
    pairs = [(name, value) for name, value in query if name not in values]
    pairs += [(name, str(value)) for name, value in values.items()]
    return f"{path}?{urlencode(pairs, safe=':,')}"


def _z_parameter(values: dict[str, str], name: str) -> datetime:
    text = values.get(name)
    if text is None:
        raise _bad_request(f"{name} is required")
    moment = _parse_z(text)
    if moment is None:
        raise _bad_request(
            f"{name} must be a UTC date and time ending in Z, such as 2026-01-01T00:00:00Z "
            f"or 2026-01-01T00:00:00.000Z; got {text!r}"
        )
    return moment


def _integer_parameter(
    values: dict[str, str], name: str, default: int, least: int, most: int | None
) -> int:
    text = values.get(name)
    if text is None:
        return default
    value = int(text) if _DIGITS.fullmatch(text) else None
    if value is None or value < least or (most is not None and value > most):
        limits = f"from {least} to {most}" if most is not None else f"at least {least}"
        raise _bad_request(f"{name} must be an integer {limits}; got {text!r}")
    return value


def _fields_parameter(values: dict[str, str], major: int, modern: bool) -> frozenset[str]:
    """The field names asked for by ``fields`` (empty: all of them)."""
    names = _CONTACT_FIELDS_NEW if modern else _CONTACT_FIELDS_OLD
    wanted = [name.strip() for name in values.get("fields", "").split(",") if name.strip()]
    unknown = [name for name in wanted if name not in names]
    if unknown:
        raise _bad_request(
            f"fields names unknown fields for v{major}.0: {', '.join(unknown)} "
            f"(known: {', '.join(names)})"
        )
    return frozenset(wanted)
