"""Records as typed values: contacts (any API version), interactions, pages, statistics."""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from collections.abc import Sequence

# ISO 8601 as CXone writes it: a date, a time with optional fractional seconds (of any
# length: .NET writes seven digits), and ``Z`` or an offset.
_ISO = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})[T ](?P<h>\d{2}):(?P<m>\d{2})"
    r"(?::(?P<s>\d{2})(?:[.,](?P<f>\d+))?)?"
    r"\s*(?P<zone>[Zz]|[+-]\d{2}(?::?\d{2})?)?"
)


def parse_datetime(text: str) -> datetime:
    """Read an ISO 8601 date and time, with ``Z`` or an offset, as an aware datetime.

    Fractional seconds of any length are accepted (beyond microseconds they are cut);
    a time without a zone is taken as UTC, as CXone reports in UTC.

    Raises:
        ValueError: If *text* is not such a date and time.
    """
    match = _ISO.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not an ISO 8601 date and time: {text!r}")
    zone = match["zone"]
    if zone is None or zone in "Zz":
        tz = timezone.utc
    else:
        digits = zone[1:].replace(":", "")
        offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:] or 0))
        tz = timezone(-offset if zone[0] == "-" else offset)
    year, month, day = (int(part) for part in match["date"].split("-"))
    micro = int((match["f"] or "0")[:6].ljust(6, "0"))
    return datetime(
        year, month, day, int(match["h"]), int(match["m"]), int(match["s"] or 0), micro, tz
    )


def _pick(raw: Mapping[str, object], names: Sequence[str]) -> tuple[str, object]:
    """The first of *names* that *raw* holds a value for (not ``None`` nor ``""``)."""
    for name in names:
        value = raw.get(name)
        if value is not None and value != "":
            return name, value
    return names[0], None


def _int(raw: Mapping[str, object], *names: str) -> int | None:
    name, value = _pick(raw, names)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
        return int(value)
    if isinstance(value, (str, float)):
        raise ValueError(f"{name} must be an integer, got {value!r}")  # noqa: TRY004 - a bad value
    raise TypeError(f"{name} must be an integer, got {value!r}")


def _float(raw: Mapping[str, object], *names: str) -> float | None:
    name, value = _pick(raw, names)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    number = math.nan
    with contextlib.suppress(ValueError):
        number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return number


def _str(raw: Mapping[str, object], *names: str) -> str | None:
    name, value = _pick(raw, names)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise TypeError(f"{name} must be text, got {value!r}")
    return str(value)


def _datetime(raw: Mapping[str, object], *names: str) -> datetime | None:
    name, value = _pick(raw, names)
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{name} must be an ISO 8601 date and time, got {value!r}")
    try:
        return parse_datetime(value)
    except ValueError:
        raise ValueError(f"{name} must be an ISO 8601 date and time, got {value!r}") from None


def _record(raw: object, what: str) -> Mapping[str, object]:
    if not isinstance(raw, Mapping):
        raise TypeError(f"{what} must be a JSON object, got {type(raw).__name__}")
    return raw


def _missing(record: Mapping[str, object], what: str, field: str) -> ValueError:
    """The error for *record* (*what*, such as "a contact") lacking its *field* (its id)."""
    keys = ", ".join(sorted(map(str, record))[:20]) or "none"
    return ValueError(f"{what} record must have {field}; its fields: {keys}")


@attrs.frozen
class Contact:
    """A completed contact, with the same fields whatever the API version.

    Versions 21 to 32 and 33 on name some fields differently (``contactStart`` and
    ``contactStartDate``, ``fromAddr`` and ``fromAddress``, ``toAddr`` and
    ``toAddress``, ``mediaType`` and ``mediaTypeId``/``mediaTypeName``,
    ``confSeconds`` and ``conferenceSeconds``, ``ACWSeconds`` and ``acwSeconds``);
    both spellings land in the same attributes.  Two contacts are equal when their
    attributes are, whatever version they came from: `raw` is not compared.

    Attributes:
        contact_id: The contact's id.
        master_contact_id: The id of its master contact, if any.
        start: When it started (aware, as given; CXone reports UTC).
        from_address: Where it came from (a phone number, an address, ...).
        to_address: Where it went.
        media_type: The media type's name when the record gives it (``mediaTypeName``),
            else its id or code as text.
        skill_id: The skill's id.
        agent_id: The agent's id.
        total_duration_seconds: How long it lasted, in seconds.
        conference_seconds: Seconds in conference.
        acw_seconds: Seconds of after-contact work.
        last_update_time: When the record last changed.
        raw: The record as received, every field kept.
    """

    contact_id: int
    master_contact_id: int | None = None
    start: datetime | None = None
    from_address: str | None = None
    to_address: str | None = None
    media_type: str | None = None
    skill_id: int | None = None
    agent_id: int | None = None
    total_duration_seconds: float | None = None
    conference_seconds: float | None = None
    acw_seconds: float | None = None
    last_update_time: datetime | None = None
    raw: Mapping[str, object] = attrs.field(factory=dict, eq=False, repr=False)

    @classmethod
    def from_raw(cls, raw: Mapping[str, object]) -> Contact:
        """Read a record of the completed contacts API, of any version from 21 on.

        Fields that are missing, ``null`` or empty become ``None``; so does everything
        but ``contactId``, which is required.  Newer names win when a record has both.

        Raises:
            ValueError: If ``contactId`` is missing or not an integer, or a field holds
                a value that cannot be read (the message names the field).
            TypeError: If *raw* is not a mapping, or a field holds a value of the wrong
                type (a list where a number belongs, say).
        """
        record = _record(raw, "a contact")
        contact_id = _int(record, "contactId")
        if contact_id is None:
            raise _missing(record, "a contact", "a contactId")
        return cls(
            contact_id=contact_id,
            master_contact_id=_int(record, "masterContactId"),
            start=_datetime(record, "contactStartDate", "contactStart"),
            from_address=_str(record, "fromAddress", "fromAddr"),
            to_address=_str(record, "toAddress", "toAddr"),
            media_type=_str(record, "mediaTypeName", "mediaType", "mediaTypeId"),
            skill_id=_int(record, "skillId"),
            agent_id=_int(record, "agentId"),
            total_duration_seconds=_float(record, "totalDurationSeconds"),
            conference_seconds=_float(record, "conferenceSeconds", "confSeconds"),
            acw_seconds=_float(record, "acwSeconds", "ACWSeconds"),
            last_update_time=_datetime(record, "lastUpdateTime"),
            raw=dict(record),
        )

    @property
    def key(self) -> str:
        """The contact's id as text: its key in storage."""
        return str(self.contact_id)


@attrs.frozen
class Interaction:
    """An interaction of the tutorial's contract (``/api/v2/ic/interactions``).

    Attributes:
        id: The interaction's id (a number in the record becomes its text).
        status: Its status, if given.
        channel: Its channel, if given.
        created_time: When it was created (aware).
        raw: The record as received; not compared.
    """

    id: str
    status: str | None = None
    channel: str | None = None
    created_time: datetime | None = None
    raw: Mapping[str, object] = attrs.field(factory=dict, eq=False, repr=False)

    @classmethod
    def from_raw(cls, raw: Mapping[str, object]) -> Interaction:
        """Read a record of the interactions listing.

        Raises:
            ValueError: If ``id`` is missing or empty, or a field holds a value that
                cannot be read (the message names the field).
            TypeError: If *raw* is not a mapping, or a field holds a value of the wrong
                type.
        """
        record = _record(raw, "an interaction")
        identity = _str(record, "id")
        if identity is None:
            raise _missing(record, "an interaction", "an id")
        return cls(
            id=identity,
            status=_str(record, "status"),
            channel=_str(record, "channel"),
            created_time=_datetime(record, "createdTime", "createdAt"),
            raw=dict(record),
        )

    @property
    def key(self) -> str:
        """The interaction's id: its key in storage."""
        return self.id


def _show_records(records: Sequence[object]) -> str:
    return f"<{len(records)} records>"


@attrs.frozen
class RecordPage:
    """One page of a listing, its records typed, in the API's order.

    Attributes:
        position: Where the page starts, as the API counts: for contacts the ``skip``
            of its first record, for interactions its ``pageNumber``.  Resume after
            it with ``skip=position + len(records)`` or ``first_page=position + 1``.
        records: `Contact` or `Interaction` values.
        total: The number of records of the whole listing, when the API tells it.
    """

    position: int
    records: list[Contact] | list[Interaction] = attrs.field(repr=_show_records)
    total: int | None = None


@attrs.frozen
class CXoneStatistics:
    """What a `CXoneClient` has done so far, as counts.

    Attributes:
        requests: Requests sent to the API and to its discovery endpoints (every
            attempt; token requests are not counted).
        throttled: Answers with status 429.
        retries: Attempts after a first one.
        failures: Attempts that could not connect, were dropped or timed out.
        pages: Pages handed out (empty ones are not).
        records: Records handed out.
        cooled: Seconds during which the server's ``Retry-After`` (on 429 and 503
            answers of the API) paused every request, each second counted once.
    """

    requests: int = 0
    throttled: int = 0
    retries: int = 0
    failures: int = 0
    pages: int = 0
    records: int = 0
    cooled: float = 0.0
