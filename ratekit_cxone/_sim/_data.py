"""The simulator's records: contacts and interactions made up from a seed.

Also how each API version of ``contacts/completed`` names the fields of a contact, and
the UTC text with a literal ``Z`` in which the API writes dates.
"""

from __future__ import annotations

import itertools
import random
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

_UTC = timezone.utc

#: The API versions of ``contacts/completed`` that the simulator serves.
SUPPORTED_VERSIONS = range(21, 35)

#: The first version whose records use the newer field names (``contactStartDate`` ...).
_RENAMED_IN = 33

_CONTACT_FIELDS_NEW = (
    "contactId",
    "masterContactId",
    "contactStartDate",
    "fromAddress",
    "toAddress",
    "mediaTypeId",
    "mediaTypeName",
    "skillId",
    "skillName",
    "agentId",
    "totalDurationSeconds",
    "conferenceSeconds",
    "acwSeconds",
    "lastUpdateTime",
)
_CONTACT_FIELDS_OLD = (
    "contactId",
    "masterContactId",
    "contactStart",
    "fromAddr",
    "toAddr",
    "mediaType",
    "mediaTypeName",
    "skillId",
    "skillName",
    "agentId",
    "totalDurationSeconds",
    "confSeconds",
    "ACWSeconds",
    "lastUpdateTime",
)

# (media type id, name, skills as (id, name), weight)
_MEDIA: tuple[tuple[int, str, tuple[tuple[int, str], ...], int], ...] = (
    (4, "Phone Call", ((4_100_001, "Sales Inbound"), (4_100_002, "Support Inbound")), 60),
    (3, "Chat", ((4_100_011, "Web Chat"),), 20),
    (1, "Email", ((4_100_021, "Email Support"),), 15),
    (7, "SMS", ((4_100_031, "SMS Support"),), 5),
)
_STATUSES = ("closed", "open", "pending", "abandoned")
_STATUS_WEIGHTS = (80, 8, 7, 5)
_CHANNELS = ("voice", "chat", "email")
_CHANNEL_WEIGHTS = (60, 25, 15)


#: One record's values, in the order of its field names (`_CONTACT_FIELDS_NEW` ...):
#: plain tuples, as a tenant may hold a great many of them.
_Row = tuple[Any, ...]

_INTERACTION_FIELDS = ("id", "status", "channel", "createdTime")


def _format_z(moment: datetime) -> str:
    """UTC with a literal ``Z``, in milliseconds (microseconds when they are not whole)."""
    moment = moment.astimezone(_UTC).replace(tzinfo=None)
    precision = "microseconds" if moment.microsecond % 1000 else "milliseconds"
    return moment.isoformat(timespec=precision) + "Z"


def _spread(first: datetime, span: timedelta, count: int) -> list[datetime]:
    """*count* instants spread evenly over ``[first, first + span)``, in whole milliseconds."""
    span_ms = span // timedelta(milliseconds=1)
    return [first + timedelta(milliseconds=span_ms * index // count) for index in range(count)]


def _generate_contacts(
    seed: int, count: int, first: datetime, span: timedelta
) -> tuple[list[datetime], list[_Row]]:
    """The start instants and the rows of *count* contacts, made up from *seed*."""
    rng = random.Random(seed)  # noqa: S311 - sample data, not secrets
    draw = rng.random

    def below(limit: int) -> int:  # like rng.randrange(limit), with less overhead
        return int(draw() * limit)

    media_weights = list(itertools.accumulate(media[3] for media in _MEDIA))
    starts = _spread(first, span, count)
    rows: list[_Row] = []
    contact_id = 700_000_000 + below(1_000_000)
    master = contact_id
    for start in starts:
        contact_id += 1 + below(9)
        media_id, media_name, skills, _ = rng.choices(_MEDIA, cum_weights=media_weights)[0]
        skill_id, skill_name = skills[below(len(skills))]
        if not rows or draw() >= 0.1:  # else a transfer: part of the contact before
            master = contact_id
        number = below(10**9)
        if media_id == 1:
            from_address, to_address = f"customer{number}@example.com", "support@example.com"
        elif media_id == 3:
            from_address, to_address = f"visitor-{number}", "WebChat"
        else:
            from_address, to_address = f"1{number:010d}", "18005550100"
        total = 20 + below(1781)
        conference = 10 + below(total // 2 - 9) if draw() < 0.05 else 0
        acw = below(121)
        rows.append(
            (
                contact_id,
                master,
                _format_z(start),
                from_address,
                to_address,
                media_id,
                media_name,
                skill_id,
                skill_name,
                5_000_001 + below(50),
                total,
                conference,
                acw,
                _format_z(start + timedelta(seconds=total + acw)),
            )
        )
    return starts, rows


def _generate_interactions(seed: int, count: int, first: datetime, span: timedelta) -> list[_Row]:
    """The rows of *count* interactions, made up from *seed*."""
    rng = random.Random(f"interactions:{seed}")  # noqa: S311 - sample data, not secrets
    width = max(6, len(str(count)))
    status_weights = list(itertools.accumulate(_STATUS_WEIGHTS))
    channel_weights = list(itertools.accumulate(_CHANNEL_WEIGHTS))
    return [
        (
            f"int-{index + 1:0{width}d}",
            rng.choices(_STATUSES, cum_weights=status_weights)[0],
            rng.choices(_CHANNELS, cum_weights=channel_weights)[0],
            _format_z(created),
        )
        for index, created in enumerate(_spread(first, span, count))
    ]


def _render(rows: Sequence[_Row], names: tuple[str, ...]) -> list[dict[str, Any]]:
    """Rows as the JSON objects the API serves (fresh dictionaries)."""
    return [dict(zip(names, row, strict=True)) for row in rows]
