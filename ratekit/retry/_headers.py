"""Reading what a server says about its limits: ``Retry-After`` and rate-limit headers.

Both parsers treat header values as untrusted input: anything they cannot read is
ignored (``None``), never raised.  Only bad arguments from the calling program raise.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_tz
from typing import TYPE_CHECKING

import attrs

from ratekit._clock import wall_time
from ratekit._validate import at_least, attribute

if TYPE_CHECKING:
    from collections.abc import Iterable

#: The longest wait, in seconds, that `parse_retry_after` returns by default (six hours).
#: A server that asks for more is more likely wrong than right, and a client that obeys a
#: runaway value looks hung; callers that truly need longer waits pass their own ``cap``.
DEFAULT_RETRY_AFTER_CAP = 6 * 3600.0

# --- Retry-After ------------------------------------------------------------------------

# RFC 9110 section 10.2.3: delta-seconds is 1*DIGIT.  Fractions are not in the grammar,
# but servers send them ("0.503") and their meaning is plain, so they are accepted.  Signs,
# exponents, underscores and "inf"/"nan", which float() would take, are not.
_DELTA_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?")

# The optional whitespace around a field value (RFC 9110 section 5.5), plus line ends in
# case a caller hands over a raw header line.
_OWS_CHARS = " \t\r\n"

# A leading word before a comma: a weekday, whose comma belongs to the date.
_WORD = re.compile(r"[A-Za-z]+")

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH = rf"(?P<month>{'|'.join(_MONTHS)})"
_DAY_NAME = r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_DAY_NAME_LONG = r"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)"
_TIME_OF_DAY = r"(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2}):(?P<second>[0-9]{2})"

# The three forms of RFC 9110 section 5.6.7, exactly as its grammar spells them (names
# are case-sensitive there).  They are read first and, when one matches, alone: its
# four-digit year is the year, even 0000 (no such year: invalid), where
# email.utils.parsedate_tz would read any year below 100 as a two-digit one.
_IMF_FIXDATE = re.compile(
    rf"{_DAY_NAME}, (?P<day>[0-9]{{2}}) {_MONTH} (?P<year>[0-9]{{4}}) {_TIME_OF_DAY} GMT"
)
_RFC850_DATE = re.compile(
    rf"{_DAY_NAME_LONG}, (?P<day>[0-9]{{2}})-{_MONTH}-(?P<year>[0-9]{{2}}) {_TIME_OF_DAY} GMT"
)
_ASCTIME_DATE = re.compile(
    rf"{_DAY_NAME} {_MONTH} (?P<day>[0-9]{{2}}| [0-9]) {_TIME_OF_DAY} (?P<year>[0-9]{{4}})"
)

# Seconds run to 60 in the grammar, for a leap second.
_LAST_SECOND = 60

# email.utils.parsedate_tz turns a year below 100 into 1969-2068 (the POSIX rule) without
# saying so; a year in this range may have been written with two digits.
_PARSEDATE_SHORT_YEARS = range(1969, 2069)

# The words parsedate_tz takes a date apart into: split at whitespace and commas, and an
# RFC 850 date's day-month-year at its hyphens.
_DATE_WORD_SEPARATORS = re.compile(r"[\s,-]+")


def parse_retry_after(
    value: str | bytes | None,
    now: datetime | None = None,
    *,
    cap: float = DEFAULT_RETRY_AFTER_CAP,
) -> float | None:
    """Read a ``Retry-After`` header value as the number of seconds to wait.

    The value, without its optional surrounding whitespace, is read as the first of:

    - delta-seconds (RFC 9110 section 10.2.3): plain ASCII digits with an optional
      fractional part, such as ``"3"`` or ``"0.503"``.  No sign, exponent, underscore,
      ``inf`` or ``nan``.
    - an HTTP-date in one of the three forms of RFC 9110 section 5.6.7, exactly as its
      grammar spells them: IMF-fixdate (``Sun, 06 Nov 1994 08:49:37 GMT``), the obsolete
      RFC 850 form (``Sunday, 06-Nov-94 08:49:37 GMT``) and asctime
      (``Sun Nov  6 08:49:37 1994``).  Their four-digit years are taken as written.
    - any other date that `email.utils.parsedate_tz` reads, as urllib3's
      ``Retry.parse_retry_after`` reads it: names in any case
      (``sun, 06 nov 1994 08:49:37 gmt``), a one-digit day (``Sun, 6 Nov 1994``), no
      weekday or any word with a comma in its place, no seconds, a zone such as ``UTC``,
      ``EST``, ``+0000`` or ``-0500`` or none (GMT), day and month in either order, and
      the other variations of RFC 5322 dates.  Words after the zone are ignored, as
      `parsedate_tz` ignores them.

    No weekday is checked against its date.  A day, month or time that does not exist
    (30 February, 25:00:00, second 61) makes a date invalid; second 60, a leap second, is
    the next minute's first.  A two-digit year (in the RFC 850 form, or any year that
    `parsedate_tz` reads as below 100, which it alone would put in 1969-2068) is the one
    year with those digits that puts the date after *now* minus 50 years and no more
    than 50 years after *now*: a date more than 50 years ahead is read as the most recent
    past year with those digits, as RFC 9110 requires, and late in a century the next
    century's first years count as near.

    A header sent more than once arrives as one value, its lines joined with commas
    (RFC 9110 section 5.3), such as ``"30, 30"`` or two dates joined with ``", "``.  Its
    first member counts: the text up to the first comma, or the second if the first
    follows a leading word (a weekday, as in IMF-fixdate), with empty members skipped.
    Only if that member is unreadable is the whole value tried as one date (for a
    date with other commas, ``Sun, 06 Nov 1994, 08:49:37 GMT``).  So ``"1,000"`` is one
    second, the first of two members.

    An HTTP-date is a wall-clock time, so the wait is measured from *now*, which defaults
    to the system's wall clock.  A date in the past means no wait (``0.0``).

    Args:
        value: The header value; `bytes` are decoded as Latin-1, the HTTP default.
            ``None`` (no header) gives ``None``.
        now: The current time, as an aware `datetime`; only HTTP-dates use it.
            Defaults to the system clock's UTC time (HTTP-dates are wall-clock dates).
        cap: The longest wait to return, in seconds: longer waits, and numbers too
            large for a float, come back as *cap*.

    Returns:
        Seconds to wait, from ``0.0`` to *cap*, or ``None`` if the value is missing or
        is not one of the forms above.  It never raises because of the value.

    Raises:
        ValueError: If *now* is a naive `datetime`, or *cap* is negative, NaN or infinite.
        TypeError: If *cap* is not a number.
    """
    limit = at_least("cap", cap, 0)
    if now is not None and now.utcoffset() is None:
        raise ValueError(
            f"now must be an aware datetime (with tzinfo, such as timezone.utc), got {now!r}"
        )
    if value is None:
        return None
    text = (value.decode("latin-1") if isinstance(value, bytes) else value).strip(_OWS_CHARS)
    member = _first_member(text)
    seconds = _seconds_until(member, now)
    if seconds is None and member != text:
        seconds = _seconds_until(text, now)
    # Too many digits for a float give inf, which the cap turns into the cap.
    return None if seconds is None else min(max(0.0, seconds), limit)


def _first_member(text: str) -> str:
    """The first member of a value whose lines were joined with commas (RFC 9110 5.3).

    It ends at the first comma, or at the second when the first follows a leading word
    (a weekday: IMF-fixdate has a comma of its own); empty members are skipped.
    """
    head, comma, tail = text.lstrip(_OWS_CHARS + ",").partition(",")
    if comma and _WORD.fullmatch(head.rstrip(_OWS_CHARS)):
        head = f"{head},{tail.partition(',')[0]}"
    return head.strip(_OWS_CHARS)


def _seconds_until(text: str, now: datetime | None) -> float | None:
    """The seconds one ``Retry-After`` value asks for (negative if past), or ``None``."""
    if _DELTA_SECONDS.fullmatch(text):
        return float(text)
    current = datetime.fromtimestamp(wall_time(), timezone.utc) if now is None else now
    date = _http_date(text, current)
    return None if date is None else (date - current).total_seconds()


def _http_date(text: str, now: datetime) -> datetime | None:
    """Return the instant an HTTP-date names, or ``None`` if it is not a valid one."""
    for pattern in (_IMF_FIXDATE, _RFC850_DATE, _ASCTIME_DATE):
        match = pattern.fullmatch(text)
        if match is not None:
            break
    else:
        return _lenient_date(text, now)
    month = _MONTHS.index(match["month"]) + 1
    day, hour, minute, second = (int(match[name]) for name in ("day", "hour", "minute", "second"))
    rest = (month, day, hour, minute, second)
    year: int | None = int(match["year"])
    if pattern is _RFC850_DATE:
        year = _two_digit_year(int(match["year"]), rest, now)
    return _instant(year, rest)


def _lenient_date(text: str, now: datetime) -> datetime | None:
    """Return the instant a date that `parsedate_tz` reads names, or ``None``."""
    # parsedate_tz returns None for what it cannot read; it raises for no str.
    fields = parsedate_tz(text)
    if fields is None:
        return None
    year, rest = fields[0], fields[1:6]
    # parsedate_tz gives 0 for a missing zone, and for -0000 ("zone unknown").
    offset = fields[9] or 0
    if year in _PARSEDATE_SHORT_YEARS and _short_year(text, year):
        return _instant(_two_digit_year(year % 100, rest, now), rest, offset)
    return _instant(year, rest, offset)


def _short_year(text: str, year: int) -> bool:
    """Whether `parsedate_tz` read *year* from a number below 100, which it expanded.

    The year was written in full if one of the date's words, as `parsedate_tz` splits
    them, is that number (it takes a year only from a word that starts with a digit).
    """
    for word in _DATE_WORD_SEPARATORS.split(text):
        if word[:1].isdigit():
            with contextlib.suppress(ValueError):  # a time, or too many digits for int()
                if int(word) == year:
                    return False
    return True


def _instant(
    year: int | None, rest: tuple[int, int, int, int, int], offset: int = 0
) -> datetime | None:
    """The instant of a UTC date and time, less *offset* seconds.

    *rest* is the month, day, hour, minute and second.  ``None`` if the year is
    ``None``, a field is out of its range, or the instant is beyond what `datetime` holds.
    """
    month, day, hour, minute, second = rest
    if year is None or not 0 <= second <= _LAST_SECOND:
        return None
    try:
        # Adding the seconds, rather than passing them, lets a leap second (60) through.
        return datetime(year, month, day, hour, minute, tzinfo=timezone.utc) + timedelta(
            seconds=second - offset
        )
    except (ValueError, OverflowError):
        return None


def _two_digit_year(
    two_digits: int, rest: tuple[int, int, int, int, int], now: datetime
) -> int | None:
    """Expand a two-digit year so that the date falls within 50 years of *now*, either way.

    ``None`` if *now* is so close to the limits of `datetime` that it cannot be moved to UTC.
    """
    try:
        utc = now.astimezone(timezone.utc)
    except OverflowError:
        return None
    year = utc.year - utc.year % 100 + two_digits
    fifty_years_on = (utc.year + 50, utc.month, utc.day, utc.hour, utc.minute, utc.second)
    # Compared field by field, so "50 years" is calendar years, 29 February included.
    if (year + 100, *rest) <= fifty_years_on:
        # Late in a century, the next one's early years are near: "05" read in 2080 is 2105.
        year += 100
    elif (year, *rest) > fifty_years_on:
        # RFC 9110: more than 50 years ahead means the most recent past year.
        year -= 100
    return year


# --- Rate-limit headers -----------------------------------------------------------------


def _optional_float(value: float | None) -> float | None:
    return value if value is None else float(value)


@attrs.frozen(kw_only=True)
class RateLimitPolicy:
    """One limit a server announces, with what it says is left of it.

    Every field is optional, since servers announce different parts; a number is a
    non-negative finite float when known.

    Attributes:
        name: The policy's name (IETF ``RateLimit-Policy`` items are named), or ``None``.
        quota: How many units the policy allows per window (``q``, ``limit``).
        window: The window's length, in seconds (``w``).
        remaining: Units left in the current window (``r``, ``remaining``).
        reset: Seconds from now until the quota is restored (``t``, ``reset``).
    """

    name: str | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.instance_of(str))
    )
    quota: float | None = attrs.field(
        default=None, converter=_optional_float, validator=attribute(at_least, 0, optional=True)
    )
    window: float | None = attrs.field(
        default=None, converter=_optional_float, validator=attribute(at_least, 0, optional=True)
    )
    remaining: float | None = attrs.field(
        default=None, converter=_optional_float, validator=attribute(at_least, 0, optional=True)
    )
    reset: float | None = attrs.field(
        default=None, converter=_optional_float, validator=attribute(at_least, 0, optional=True)
    )


def _policies_tuple(policies: Iterable[RateLimitPolicy]) -> tuple[RateLimitPolicy, ...]:
    return tuple(policies)


def _at_least_one_policy(
    _inst: object,
    attribute: attrs.Attribute[tuple[RateLimitPolicy, ...]],
    value: tuple[object, ...],
) -> None:
    if not value:
        raise ValueError(f"{attribute.name} must hold at least one RateLimitPolicy")
    for policy in value:
        if not isinstance(policy, RateLimitPolicy):
            raise TypeError(
                f"{attribute.name} must hold RateLimitPolicy values, got {type(policy).__name__}"
            )


def _restrictiveness(policy: RateLimitPolicy) -> tuple[bool, float, float]:
    # Sorts first: a known remaining, then the fewest remaining, then the latest reset
    # (an unknown reset last).
    return (
        policy.remaining is None,
        0.0 if policy.remaining is None else policy.remaining,
        math.inf if policy.reset is None else -policy.reset,
    )


@attrs.frozen
class RateLimitInfo:
    """What a response's rate-limit headers say, as one or more policies.

    The convenience properties `remaining`, `reset` and `quota` come from
    `most_restrictive`; `wait` looks at every policy.

    Args:
        policies: The policies, in the order the server listed them; at least one.
    """

    policies: tuple[RateLimitPolicy, ...] = attrs.field(
        converter=_policies_tuple, validator=_at_least_one_policy
    )

    @property
    def most_restrictive(self) -> RateLimitPolicy:
        """The policy with the fewest units remaining.

        Among policies with equal remaining, the one that resets last (an unknown reset
        counts as earliest); then the first listed.  Policies whose remaining is unknown
        only count when none is known, ranked the same way by reset.
        """
        return min(self.policies, key=_restrictiveness)

    @property
    def remaining(self) -> float | None:
        """Units remaining in the `most_restrictive` policy, or ``None`` if unknown."""
        return self.most_restrictive.remaining

    @property
    def reset(self) -> float | None:
        """Seconds until the `most_restrictive` policy resets, or ``None`` if unknown."""
        return self.most_restrictive.reset

    @property
    def quota(self) -> float | None:
        """The quota of the `most_restrictive` policy, or ``None`` if unknown."""
        return self.most_restrictive.quota

    @property
    def wait(self) -> float | None:
        """Seconds to wait before the next request, as far as these headers tell.

        - Some policy is exhausted (remaining ``0`` or less): the latest `reset` among
          the exhausted policies, since each of them must reset before a request can
          pass; ``None`` if none of the exhausted policies tells its reset.
        - Otherwise ``0.0`` if any policy tells its remaining (a request may go now).
        - Otherwise ``None``: the headers do not say.

        It is not capped (nor are the resets it comes from): cap it before sleeping on
        it, as `parse_rate_limit_headers` explains.
        """
        exhausted = [p for p in self.policies if p.remaining is not None and p.remaining <= 0]
        if exhausted:
            resets = [p.reset for p in exhausted if p.reset is not None]
            return max(resets) if resets else None
        if any(p.remaining is not None for p in self.policies):
            return 0.0
        return None


# A reset may be seconds from now or a Unix time, with nothing to say which: the drafts
# and X-RateLimit-Reset-After mean seconds, but servers send Unix times in every field
# (X-RateLimit-Reset of GitHub, Twitter and Discord; "RateLimit-Reset: 1772366460" read as
# seconds would be 56 years).  A delta of 1e9 s is 31.7 years: no API announces a window
# that long, while every Unix time since 2001-09-09 is above 1e9.  Epochs in milliseconds
# passed 1e12 on the same day, and no epoch in seconds reaches 1e12 before the year 33658,
# so that threshold tells those two apart.  One rule, in `_reset`, for every reset field.
_EPOCH_SECONDS_FROM = 1e9
_EPOCH_MILLISECONDS_FROM = 1e12


def parse_rate_limit_headers(
    headers: Mapping[str, str] | Iterable[tuple[str, str]], now: float | None = None
) -> RateLimitInfo | None:
    """Read the rate-limit headers of a response.

    Header names are matched without regard to case; repeated fields are joined with
    ``", "`` (as urllib3's ``HTTPHeaderDict`` joins them).  Three families are known,
    tried in this order; the first one that yields any number wins:

    1. IETF ``RateLimit-Policy`` and ``RateLimit`` as Structured Field lists of named
       policies (draft-ietf-httpapi-ratelimit-headers-10), such as
       ``RateLimit-Policy: "burst";q=100;w=60, "daily";q=1000;w=86400`` and
       ``RateLimit: "burst";r=50;t=30``.  ``RateLimit`` items are matched to policies by
       name; one with no policy still gives a policy with its remaining and reset.  Names
       may also be tokens, and ``l`` is read when ``q`` is missing (earlier drafts).
    2. Earlier IETF drafts: ``RateLimit: limit=100, remaining=50, reset=30``, or separate
       ``RateLimit-Limit``, ``RateLimit-Remaining`` and ``RateLimit-Reset`` (seconds),
       with unnamed quota policies such as ``RateLimit-Policy: 100;w=60`` or
       ``RateLimit-Limit: 10, 10;w=1, 1000;w=3600`` (the first bare number is the
       current limit; ``window`` is read for ``w``).  The policy whose quota equals the
       current limit, or the only one when no limit is given, gets the remaining and
       reset; the others keep just their quota and window.
    3. ``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and ``X-RateLimit-Reset`` (also
       spelled ``X-Rate-Limit-*``), and ``X-RateLimit-Reset-After``, which is preferred
       to ``X-RateLimit-Reset`` when both are sent.

    Every reset (``t``, ``reset``, ``RateLimit-Reset``, ``X-RateLimit-Reset``,
    ``X-RateLimit-Reset-After``) may be seconds from now or a Unix time, by one rule: a
    value of at least 1e9 (2001-09-09 as a Unix time, 31.7 years as a delta) is a Unix
    time in seconds, and one of at least 1e12 a Unix time in milliseconds; smaller
    values are seconds from now.  A Unix time in the past gives a reset of ``0.0``.

    Resets are not capped: a long one is the truth for a daily quota, and the rate it
    implies (remaining over reset) is only the slower for it.  Whoever turns a reset
    into a wait caps it, as `parse_retry_after` caps ``Retry-After``:
    `ratekit.http.AdaptiveLimiter` holds requests no longer than its ``max_hold``, and a
    `RetryPolicy` obeys a wait that its ``retry_after`` function reads from these headers
    no longer than its ``max_retry_after``.

    Numbers are read leniently (decimals are accepted, whitespace is free around ``;``,
    ``=`` and ``,``, unknown parameters such as ``qu`` or ``pk`` are skipped), but a field
    that is not a Structured Field, and any negative, non-finite or non-numeric value, is
    ignored.  It never raises because of header names or values.

    Args:
        headers: A mapping of header names to values (a `dict` with names in any case,
            or urllib3's ``HTTPHeaderDict``), or an iterable of ``(name, value)`` pairs.
        now: The current Unix time, in seconds, used only to turn a Unix-time reset into
            seconds from now.  It defaults to the system clock, read only when such a
            reset is present: a Unix time can only be compared with another wall-clock
            reading.

    Returns:
        The policies found, or ``None`` if no known header yields a number.

    Raises:
        ValueError: If *now* is negative, NaN or infinite.
    """
    if now is not None and not 0 <= now < math.inf:
        raise ValueError(f"now must be a non-negative finite Unix time in seconds, got {now!r}")
    fields = _join_fields(headers)
    policies = (
        _ietf_policies(fields, now) or _older_policies(fields, now) or _x_policies(fields, now)
    )
    return RateLimitInfo(policies) if policies else None


def _join_fields(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> dict[str, str]:
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    values: dict[str, list[str]] = {}
    for name, value in pairs:
        values.setdefault(name.lower(), []).append(value)
    return {name: ", ".join(joined) for name, joined in values.items()}


def _has_number(policy: RateLimitPolicy) -> bool:
    return any(
        value is not None for value in (policy.quota, policy.window, policy.remaining, policy.reset)
    )


def _ietf_policies(fields: dict[str, str], now: float | None) -> list[RateLimitPolicy]:
    quotas: dict[str, tuple[float | None, float | None]] = {}
    for value, params in _parse_list(fields.get("ratelimit-policy")):
        if isinstance(value, str) and value not in quotas:
            quota = _first_quantity(params, "q", "l")
            quotas[value] = (quota, _first_quantity(params, "w"))
    current: dict[str, tuple[float | None, float | None]] = {}
    for value, params in _parse_list(fields.get("ratelimit")):
        if isinstance(value, str) and value not in current:
            reset = _reset(_first_quantity(params, "t"), now)
            current[value] = (_first_quantity(params, "r"), reset)
    # A name listed twice in one field keeps its first item.  Policies come in the order
    # of RateLimit-Policy, then those only RateLimit names.
    names = [*quotas, *(name for name in current if name not in quotas)]
    policies = []
    for name in names:
        quota, window = quotas.get(name, (None, None))
        remaining, reset = current.get(name, (None, None))
        policies.append(
            RateLimitPolicy(name=name, quota=quota, window=window, remaining=remaining, reset=reset)
        )
    return [policy for policy in policies if _has_number(policy)]


def _older_policies(fields: dict[str, str], now: float | None) -> list[RateLimitPolicy]:
    combined = _parse_dictionary(fields.get("ratelimit"))
    limit = _quantity(combined.get("limit"))
    remaining = _quantity(combined.get("remaining"))
    if remaining is None:
        remaining = _first_number(fields.get("ratelimit-remaining"))
    reset = _quantity(combined.get("reset"))
    if reset is None:
        reset = _first_number(fields.get("ratelimit-reset"))
    reset = _reset(reset, now)
    windows: list[tuple[float, float]] = []
    items = [
        *_parse_list(fields.get("ratelimit-limit")),
        *_parse_list(fields.get("ratelimit-policy")),
    ]
    for value, params in items:
        quota = _quantity(value)
        window = _first_quantity(params, "w", "window")
        if quota is not None and window is not None:
            # Servers of drafts 03 to 07 may list a policy in both fields: keep it once.
            if (quota, window) not in windows:
                windows.append((quota, window))
        elif quota is not None and limit is None:
            limit = quota
    window = None
    if limit is None and len(windows) == 1:
        limit, window = windows.pop()
    else:
        for index, (quota, length) in enumerate(windows):
            if quota == limit:
                window = length
                del windows[index]
                break
    current = RateLimitPolicy(quota=limit, window=window, remaining=remaining, reset=reset)
    others = [RateLimitPolicy(quota=quota, window=length) for quota, length in windows]
    return [policy for policy in (current, *others) if _has_number(policy)]


def _x_policies(fields: dict[str, str], now: float | None) -> list[RateLimitPolicy]:
    limit = _first_number(fields.get("x-ratelimit-limit"), fields.get("x-rate-limit-limit"))
    remaining = _first_number(
        fields.get("x-ratelimit-remaining"), fields.get("x-rate-limit-remaining")
    )
    reset = _first_number(fields.get("x-ratelimit-reset-after"))
    if reset is None:
        reset = _first_number(fields.get("x-ratelimit-reset"), fields.get("x-rate-limit-reset"))
    reset = _reset(reset, now)
    policy = RateLimitPolicy(quota=limit, remaining=remaining, reset=reset)
    return [policy] if _has_number(policy) else []


def _reset(value: float | None, now: float | None) -> float | None:
    """Seconds until a reset given either as seconds from now or as a Unix time."""
    if value is None or value < _EPOCH_SECONDS_FROM:
        return value
    epoch = value / 1000 if value >= _EPOCH_MILLISECONDS_FROM else value
    # Both are finite and non-negative, so the difference cannot overflow.
    return max(0.0, epoch - (wall_time() if now is None else now))


# --- Structured Fields (RFC 8941), read leniently ---------------------------------------


class _Number(float):
    """A numeric bare item, kept apart from names (strings and tokens)."""

    __slots__ = ()


#: A bare item: a number, a name (String or Token), or ``None`` for anything else
#: (byte sequences, booleans, dates, inner lists) and for a parameter without a value.
_BareItem = _Number | str | None
_Item = tuple[_BareItem, dict[str, _BareItem]]


class _Malformed(Exception):
    """A field value that is not a Structured Field; the field is ignored."""


_OWS = re.compile(r"[ \t]*")
_SF_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_SF_STRING = re.compile(r'"((?:[^"\\\x00-\x1f\x7f]|\\["\\])*)"')
_SF_TOKEN = re.compile(r"[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*")
_SF_KEY = re.compile(r"[A-Za-z*][A-Za-z0-9_\-.*]*")
# Items that carry no number or name here, read only to be skipped: byte sequences,
# booleans, and RFC 9651's dates and display strings.
_SF_OTHER = re.compile(r':[A-Za-z0-9+/=]*:|\?[01]|@-?[0-9]+|%"[^"\x00-\x1f\x7f]*"')
_SF_ESCAPE = re.compile(r"\\(.)")


class _Reader:
    """A cursor over one field value."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def skip_ows(self) -> None:
        self.match(_OWS)

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def take(self, char: str) -> bool:
        """Consume *char* if it comes next, after optional whitespace."""
        self.skip_ows()
        if self.text.startswith(char, self.pos):
            self.pos += len(char)
            self.skip_ows()
            return True
        return False

    def match(self, pattern: re.Pattern[str]) -> re.Match[str] | None:
        """Consume *pattern* if it matches here."""
        match = pattern.match(self.text, self.pos)
        if match is not None:
            self.pos = match.end()
        return match

    def expect(self, pattern: re.Pattern[str]) -> re.Match[str]:
        match = self.match(pattern)
        if match is None:
            raise _Malformed
        return match

    def key(self) -> str:
        # Keys are lowercase in RFC 8941; other cases are read as lowercase.
        return self.expect(_SF_KEY).group().lower()

    def bare_item(self) -> _BareItem:
        # The patterns start with different characters, so at most one can match.
        if string := self.match(_SF_STRING):
            return _SF_ESCAPE.sub(r"\1", string.group(1))
        if number := self.match(_SF_NUMBER):
            # Too many digits give inf, which is refused later with other bad numbers.
            return _Number(number.group())
        if token := self.match(_SF_TOKEN):
            return token.group()
        self.expect(_SF_OTHER)
        return None

    def parameters(self) -> dict[str, _BareItem]:
        params: dict[str, _BareItem] = {}
        while self.take(";"):
            name = self.key()
            params[name] = self.bare_item() if self.take("=") else None
        return params

    def item_or_inner_list(self) -> _Item:
        if not self.take("("):
            return self.bare_item(), self.parameters()
        while not self.take(")"):
            if self.at_end():
                raise _Malformed
            self.bare_item()
            self.parameters()
        return None, self.parameters()

    def next_member(self) -> bool:
        """Move past the comma between members; ``False`` at the end of the field."""
        self.skip_ows()
        if self.at_end():
            return False
        if not self.take(","):
            raise _Malformed
        return True


def _parse_list(text: str | None) -> list[_Item]:
    """Read an sf-list; an empty list if absent or malformed."""
    reader = _Reader(text or "")
    reader.skip_ows()
    if reader.at_end():
        return []
    items = []
    try:
        while True:
            items.append(reader.item_or_inner_list())
            if not reader.next_member():
                return items
    except _Malformed:
        return []


def _parse_dictionary(text: str | None) -> dict[str, _BareItem]:
    """Read an sf-dictionary's keys and bare values; empty if absent or malformed."""
    reader = _Reader(text or "")
    reader.skip_ows()
    if reader.at_end():
        return {}
    members: dict[str, _BareItem] = {}
    try:
        while True:
            name = reader.key()
            if reader.take("="):
                members[name] = reader.item_or_inner_list()[0]
            else:
                reader.parameters()
                members[name] = None
            if not reader.next_member():
                return members
    except _Malformed:
        return {}


def _quantity(value: _BareItem) -> float | None:
    """A number that may count or time something: non-negative and finite."""
    if isinstance(value, _Number) and 0 <= value < math.inf:
        return float(value) + 0.0  # + 0.0 turns -0 into 0
    return None


def _first_quantity(params: dict[str, _BareItem], *names: str) -> float | None:
    for name in names:
        value = _quantity(params.get(name))
        if value is not None:
            return value
    return None


def _first_number(*texts: str | None) -> float | None:
    """The first item of the first field that starts with a usable number."""
    for text in texts:
        items = _parse_list(text)
        value = _quantity(items[0][0]) if items else None
        if value is not None:
            return value
    return None
