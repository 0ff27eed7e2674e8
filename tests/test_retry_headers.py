"""Retry-After and rate-limit headers: the forms servers send, and what garbage gives."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from email.utils import format_datetime, mktime_tz, parsedate_tz

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st
from urllib3 import HTTPHeaderDict

from ratekit.retry._headers import (
    DEFAULT_RETRY_AFTER_CAP,
    RateLimitInfo,
    RateLimitPolicy,
    parse_rate_limit_headers,
    parse_retry_after,
)

UTC = timezone.utc
#: A cap far above every wait the round trips produce, so that they compare exact deltas.
HUGE_CAP = 1e12
#: The instant of RFC 9110's example date, and a moment 37 seconds before it.
EXAMPLE = datetime(1994, 11, 6, 8, 49, 37, tzinfo=UTC)
BEFORE_EXAMPLE = EXAMPLE - timedelta(seconds=37)

DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
LONG_DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
LONG_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
#: The zone names email.utils.parsedate_tz knows, and their offsets from GMT in hours.
ZONE_HOURS = {
    "GMT": 0,
    "UT": 0,
    "UTC": 0,
    "Z": 0,
    "": 0,  # no zone at all
    "AST": -4,
    "ADT": -3,
    "EST": -5,
    "EDT": -4,
    "CST": -6,
    "CDT": -5,
    "MST": -7,
    "MDT": -6,
    "PST": -8,
    "PDT": -7,
}


def imf_fixdate(when: datetime) -> str:
    """Format *when* as an IMF-fixdate, ``Sun, 06 Nov 1994 08:49:37 GMT``."""
    return format_datetime(when.astimezone(UTC), usegmt=True)


def rfc850_date(when: datetime) -> str:
    """Format *when* in the obsolete RFC 850 form, ``Sunday, 06-Nov-94 08:49:37 GMT``."""
    when = when.astimezone(UTC)
    return (
        f"{LONG_DAY_NAMES[when.weekday()]}, {when.day:02d}-{MONTHS[when.month - 1]}-"
        f"{when.year % 100:02d} {when.hour:02d}:{when.minute:02d}:{when.second:02d} GMT"
    )


def asctime_date(when: datetime) -> str:
    """Format *when* in the asctime form, ``Sun Nov  6 08:49:37 1994``."""
    when = when.astimezone(UTC)
    return (
        f"{DAY_NAMES[when.weekday()]} {MONTHS[when.month - 1]} {when.day:2d} "
        f"{when.hour:02d}:{when.minute:02d}:{when.second:02d} {when.year:04d}"
    )


def test_formatters_match_the_rfc_examples():
    """The test's own date formatters write RFC 9110's three example dates exactly."""
    assert imf_fixdate(EXAMPLE) == "Sun, 06 Nov 1994 08:49:37 GMT"
    assert rfc850_date(EXAMPLE) == "Sunday, 06-Nov-94 08:49:37 GMT"
    assert asctime_date(EXAMPLE) == "Sun Nov  6 08:49:37 1994"


# --- parse_retry_after: delta-seconds ---------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("3", 3.0),
        ("0", 0.0),
        ("0.503", 0.503),
        (" 2 ", 2.0),
        ("\t7\r\n", 7.0),
        ("120", 120.0),
        ("007", 7.0),
        (b"5", 5.0),
        (b" 1.5 ", 1.5),
    ],
)
def test_delta_seconds_are_read(value, seconds):
    """Delta-seconds, whole or fractional, text or bytes, give that many seconds."""
    assert parse_retry_after(value) == seconds


@pytest.mark.parametrize(
    "value",
    [
        "",
        " ",
        "-1",
        "+1",
        "1e3",
        "1E3",
        "1m0s",
        "1_000",
        "NaN",
        "nan",
        "inf",
        "Infinity",
        "3.",
        ".5",
        "0x10",
        "1 2",
        "\u0661\u0662",  # Arabic-Indic digits, which float() would accept
        "\uff13",  # a fullwidth 3
        "soon",
        b"\xff",
        b"",
    ],
)
def test_anything_but_plain_digits_is_not_delta_seconds(value):
    """Signs, exponents, separators, non-ASCII digits and words give None."""
    assert parse_retry_after(value, BEFORE_EXAMPLE) is None


def test_missing_header_gives_none():
    """No header (None) gives None."""
    assert parse_retry_after(None) is None


def test_huge_delta_is_capped_not_an_error():
    """A number too large for a float comes back as the cap."""
    assert parse_retry_after("9" * 400) == DEFAULT_RETRY_AFTER_CAP
    assert parse_retry_after("9" * 400 + ".5", cap=10) == 10.0


def test_delta_is_capped():
    """Waits longer than the cap come back as the cap, six hours by default."""
    assert DEFAULT_RETRY_AFTER_CAP == 6 * 3600.0
    assert parse_retry_after("100000") == DEFAULT_RETRY_AFTER_CAP
    assert parse_retry_after("30", cap=10) == 10.0
    assert parse_retry_after("30", cap=0) == 0.0
    assert parse_retry_after("30", cap=30) == 30.0


def test_cap_is_returned_as_a_float():
    """An integer cap still gives a float wait."""
    result = parse_retry_after("30", cap=10)
    assert isinstance(result, float)


# --- parse_retry_after: HTTP-dates ------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "Sun, 06 Nov 1994 08:49:37 GMT",
        "Sunday, 06-Nov-94 08:49:37 GMT",
        "Sun Nov  6 08:49:37 1994",
        "Sun Nov 06 08:49:37 1994",
        "  Sun, 06 Nov 1994 08:49:37 GMT  ",
        b"Sun, 06 Nov 1994 08:49:37 GMT",
    ],
)
def test_the_three_date_forms_give_seconds_from_now(value):
    """IMF-fixdate, RFC 850 and asctime dates give the seconds from now to that date."""
    assert parse_retry_after(value, BEFORE_EXAMPLE) == 37.0


def test_asctime_two_digit_day():
    """An asctime date with a two-digit day is read too."""
    now = datetime(1994, 11, 16, 8, 49, 0, tzinfo=UTC)
    assert parse_retry_after("Wed Nov 16 08:49:37 1994", now) == 37.0


def test_now_in_another_time_zone():
    """The wait is the same whatever time zone *now* is given in."""
    now = BEFORE_EXAMPLE.astimezone(timezone(timedelta(hours=-5)))
    assert parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now) == 37.0


def test_past_dates_mean_no_wait():
    """A date at or before now gives 0.0."""
    assert parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", EXAMPLE) == 0.0
    assert parse_retry_after("Sat, 05 Nov 1994 08:49:37 GMT", EXAMPLE) == 0.0
    assert parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT") == 0.0


def test_far_dates_are_capped():
    """A date further away than the cap gives the cap."""
    assert parse_retry_after("Mon, 07 Nov 1994 08:49:37 GMT", EXAMPLE, cap=60) == 60.0
    assert parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT") == DEFAULT_RETRY_AFTER_CAP


def test_leap_second_is_accepted():
    """Second 60, a leap second in RFC 9110's grammar, is the next minute's first second."""
    now = datetime(2016, 12, 31, 23, 59, 0, tzinfo=UTC)
    assert parse_retry_after("Sat, 31 Dec 2016 23:59:60 GMT", now) == 60.0


@pytest.mark.parametrize(
    "value",
    [
        "Sun, 30 Feb 1994 08:49:37 GMT",  # no 30 February
        "Tue, 29 Feb 1994 08:49:37 GMT",  # not a leap year
        "Sun, 31 Nov 1994 08:49:37 GMT",
        "Sun, 00 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 25:00:00 GMT",
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 06 Nov 1994 08:60:00 GMT",
        "Sun, 06 Nov 1994 08:49:61 GMT",
        "Sun, 06 Nov 0000 08:49:37 GMT",  # no year 0
        "Sunday, 30-Feb-94 08:49:37 GMT",
        "Sun Feb 30 08:49:37 1994",
        "Sun Nov  6 25:49:37 1994",
        "Fri, 31 Dec 9999 23:59:60 GMT",  # a leap second past the last date
    ],
)
def test_dates_that_do_not_exist_are_invalid(value):
    """A day, month or time that does not exist gives None."""
    assert parse_retry_after(value, BEFORE_EXAMPLE) is None


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("sun, 06 nov 1994 08:49:37 gmt", 37.0),  # names in any case
        ("SUN, 06 NOV 1994 08:49:37 GMT", 37.0),
        ("sunday, 06-nov-94 08:49:37 gmt", 37.0),
        ("sun nov  6 08:49:37 1994", 37.0),
        ("Sun, 6 Nov 1994 08:49:37 GMT", 37.0),  # a one-digit day
        ("Sun, 06 Nov 1994 08:49:37 UTC", 37.0),  # other names and offsets for GMT
        ("Sun, 06 Nov 1994 08:49:37 UT", 37.0),
        ("Sun, 06 Nov 1994 08:49:37 Z", 37.0),
        ("Sun, 06 Nov 1994 08:49:37 +0000", 37.0),
        ("Sun, 06 Nov 1994 08:49:37 -0000", 37.0),
        ("Sun, 06 Nov 1994 08:49:37", 37.0),  # no zone: GMT
        ("Sun, 06 Nov 1994 09:49:37 +0100", 37.0),  # other zones
        ("Sun, 06 Nov 1994 03:49:37 -0500", 37.0),
        ("Sun, 06 Nov 1994 03:49:37 EST", 37.0),
        ("Sun, 06 Nov 1994 00:49:37 PST", 37.0),
        ("Sun, 06 Nov 94 08:49:37 GMT", 37.0),  # a two-digit year in another form
        ("Sun Nov  6 08:49:37 94", 37.0),
        ("Sun, 06-Nov-94 08:49:37 GMT", 37.0),
        ("Sunday, 06-Nov-1994 08:49:37 GMT", 37.0),
        ("Sun, 06 Nov 1994 08:49 GMT", 0.0),  # no seconds: 08:49:00, which is now
        ("Sun, 06 Nov 1994 08:50 GMT", 60.0),
        ("Sun, 06 Nov 1994 8:49:37 GMT", 37.0),
        ("Sun, 06 Nov 1994 08.49.37 GMT", 37.0),
        ("Sun, 06  Nov 1994 08:49:37 GMT", 37.0),  # free spacing
        ("Sun 06 Nov 1994 08:49:37 GMT", 37.0),
        ("Sun,06 Nov 1994 08:49:37 GMT", 37.0),
        ("06 Nov 1994 08:49:37 GMT", 37.0),  # no weekday, or any word in its place
        ("Sunday, 06 Nov 1994 08:49:37 GMT", 37.0),
        ("Xyz, 06 Nov 1994 08:49:37 GMT", 37.0),
        ("Nov 06 1994 08:49:37 GMT", 37.0),  # month first
        ("Sun Nov  6 08:49:37 1994 GMT", 37.0),
        ("Sun, 06 Nov 1994 08:49:37 GMT; later", 37.0),  # words after the zone
        (b"sun, 6 nov 1994 08:49:37 +0000", 37.0),
    ],
)
def test_dates_that_parsedate_tz_reads_are_accepted(value, seconds):
    """Any date email.utils.parsedate_tz reads, as urllib3 does, gives the seconds to it."""
    assert parse_retry_after(value, BEFORE_EXAMPLE) == seconds


@pytest.mark.parametrize(
    ("readable", "garbage"),
    [
        ("06 Nov 1994 08:49:37 GMT", "06 Foo 1994 08:49:37 GMT"),  # no such month
        ("06 Nov 1994 08:49:37 UTC", "1994-11-06T08:49:37Z"),  # ISO 8601
        ("sun, 6 nov 1994 08:49:37", "sun, 6 nov 1994"),  # no time
        ("sun, 6 nov 1994 08:49:37", "sun, 6 nov 08:49:37"),  # no year
        ("sun, 6 nov 1994 08:49:37", "sun, 6 nov 1994 08:49:37:00"),
        ("sun, 6 nov 1994 08:49:37", "sun, 6 nov 1994 08h49m37s"),
        ("sun, 6 nov 1994 08:49:37", "sun, 6 1994 08:49:37"),  # no month
        ("Sun, 6 Nov 1994 08:49:37 GMT", "tomorrow at noon"),
    ],
)
def test_what_parsedate_tz_cannot_read_is_invalid(readable, garbage):
    """A date the other forms allow is read; what parsedate_tz cannot read gives None."""
    assert parse_retry_after(readable, BEFORE_EXAMPLE) == 37.0
    assert parse_retry_after(garbage, BEFORE_EXAMPLE) is None


@pytest.mark.parametrize(
    ("existing", "missing"),
    [
        ("sun, 28 feb 1994 08:49:37 gmt", "sun, 30 feb 1994 08:49:37 gmt"),
        ("Sun, 30 Nov 1994 08:49:37 +0000", "Sun, 31 Nov 1994 08:49:37 +0000"),
        ("Sun, 6 Nov 1994 23:00:00 GMT", "Sun, 6 Nov 1994 25:00:00 GMT"),
        ("Sun, 6 Nov 1994 08:59:00 GMT", "Sun, 6 Nov 1994 08:60:00 GMT"),
        ("Sun, 6 Nov 1994 08:49:59 GMT", "Sun, 6 Nov 1994 08:49:61 GMT"),
        ("Sun, 6 Nov 1994 08:49:01 GMT", "Sun, 6 Nov 1994 08:49:-1 GMT"),  # parsedate_tz reads -1
        ("Sun, 6 Nov 9999 08:49:37 GMT", "Sun, 6 Nov 99999 08:49:37 GMT"),  # beyond datetime
        ("Fri, 31 Dec 9999 23:59:59 +0100", "Fri, 31 Dec 9999 23:59:59 -0100"),  # in UTC too
        ("Sun, 6 Nov 1994 08:49:37 +2359", "Sun, 6 Nov 1994 08:49:37 +99999999999999999999"),
    ],
)
def test_other_forms_of_dates_that_do_not_exist_are_invalid(existing, missing):
    """In the other forms too, a date that exists is read and one that does not gives None."""
    assert parse_retry_after(existing, BEFORE_EXAMPLE, cap=HUGE_CAP) is not None
    assert parse_retry_after(missing, BEFORE_EXAMPLE, cap=HUGE_CAP) is None


def test_leap_second_is_accepted_in_the_other_forms():
    """Second 60 is the next minute's first in the forms parsedate_tz reads, too."""
    now = datetime(2016, 12, 31, 23, 59, 0, tzinfo=UTC)
    assert parse_retry_after("sat, 31 dec 2016 23:59:60 gmt", now) == 60.0
    assert parse_retry_after("Sun, 1 Jan 2017 00:59:60 +0100", now) == 60.0


def test_two_digit_years_of_the_other_forms_keep_the_fifty_year_rule():
    """A year parsedate_tz reads as two digits is within 50 years of now, not in 1969-2068."""
    now = datetime(2025, 1, 1, tzinfo=UTC)
    # parsedate_tz alone would read 1970 (past): 2070 is less than 50 years ahead.
    in_2070 = (datetime(2070, 1, 1, tzinfo=UTC) - now).total_seconds()
    assert parse_retry_after("Wed, 01 Jan 70 00:00:00 GMT", now, cap=HUGE_CAP) == in_2070
    assert parse_retry_after("wednesday, 01-jan-70 00:00:00 gmt", now, cap=HUGE_CAP) == in_2070
    # More than 50 years ahead, 2075-01-01 00:00:01 is 1975, as in the RFC 850 form.
    assert parse_retry_after("Wednesday, 01-Jan-75 00:00:01 UTC", now, cap=HUGE_CAP) == 0.0
    # Late in a century, parsedate_tz alone would read 2005, 75 years back.
    late = datetime(2080, 1, 1, tzinfo=UTC)
    in_2105 = (datetime(2105, 1, 1, tzinfo=UTC) - late).total_seconds()
    assert parse_retry_after("Thu, 1 Jan 05 00:00:00 GMT", late, cap=HUGE_CAP) == in_2105
    # A year written in full is that year, even one that two digits would name.
    assert parse_retry_after("thu, 01 jan 1970 00:00:00 +0000", now, cap=HUGE_CAP) == 0.0
    in_2068 = (datetime(2068, 1, 1, tzinfo=UTC) - now).total_seconds()
    assert parse_retry_after("sun, 1 jan 2068 00:00:00 gmt", now, cap=HUGE_CAP) == in_2068


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("30, 30", 30.0),
        ("30,60", 30.0),
        ("30 , 60", 30.0),
        (", 30", 30.0),  # an empty member is skipped
        ("1,000", 1.0),  # two members, not a thousands separator
        ("0.5, soon", 0.5),
        (b"7, 7", 7.0),
        ("Sun, 06 Nov 1994 08:49:37 GMT, Sun, 06 Nov 1994 08:49:37 GMT", 37.0),
        ("Sun, 06 Nov 1994 08:49:37 GMT,Sun, 06 Nov 1994 08:49:37 GMT", 37.0),
        ("Sun, 06 Nov 1994 08:49:37 GMT, 600", 37.0),
        ("30, Sun, 06 Nov 1994 08:49:37 GMT", 30.0),
        ("Sunday, 06-Nov-94 08:49:37 GMT, Sunday, 06-Nov-94 08:49:37 GMT", 37.0),
        ("Sun Nov  6 08:49:37 1994, Sun Nov  6 08:49:37 1994", 37.0),
        # Read whole, parsedate_tz would take "+0100," for no zone: an hour off.
        ("Sun, 06 Nov 1994 09:49:37 +0100, Sun, 06 Nov 1994 09:49:37 +0100", 37.0),
        ("sun, 6 nov 1994 08:49:37 gmt, sun, 6 nov 1994 08:49:37 gmt", 37.0),
        # No first member is readable: the whole value is one date with another comma.
        ("Sun, 06 Nov 1994, 08:49:37 GMT", 37.0),
    ],
)
def test_a_repeated_header_gives_its_first_value(value, seconds):
    """Values joined with commas, as a header sent twice arrives, give the first one."""
    assert parse_retry_after(value, BEFORE_EXAMPLE) == seconds


@pytest.mark.parametrize(
    ("first_readable", "first_garbage"),
    [
        ("30, soon", "soon, 30"),
        ("30, -1", "-1, 30"),
        ("30, ,", ", , "),
        ("30, Sun", "Sun, 30"),
    ],
)
def test_the_first_of_repeated_values_decides(first_readable, first_garbage):
    """Joined values read as their first: readable gives its wait, garbage gives None."""
    assert parse_retry_after(first_readable, BEFORE_EXAMPLE) == 30.0
    assert parse_retry_after(first_garbage, BEFORE_EXAMPLE) is None


def test_weekday_is_not_checked_against_the_date():
    """A well-formed but wrong weekday does not invalidate the date."""
    assert parse_retry_after("Mon, 06 Nov 1994 08:49:37 GMT", BEFORE_EXAMPLE) == 37.0


def test_rfc850_year_within_fifty_years_stays_in_this_century():
    """An RFC 850 two-digit year up to 50 years ahead is read in the current century."""
    now = datetime(2025, 1, 1, tzinfo=UTC)
    expected = (datetime(2030, 1, 1, tzinfo=UTC) - now).total_seconds()
    assert parse_retry_after("Tuesday, 01-Jan-30 00:00:00 GMT", now, cap=HUGE_CAP) == expected
    exactly_fifty = (datetime(2075, 1, 1, tzinfo=UTC) - now).total_seconds()
    assert parse_retry_after("Tuesday, 01-Jan-75 00:00:00 GMT", now, cap=HUGE_CAP) == exactly_fifty


def test_rfc850_year_more_than_fifty_years_ahead_is_last_century():
    """An RFC 850 year more than 50 years ahead is the most recent past year with its digits."""
    now = datetime(2025, 1, 1, tzinfo=UTC)
    # 2075-01-01 00:00:01 is one second more than 50 years ahead: it is 1975, in the past.
    assert parse_retry_after("Wednesday, 01-Jan-75 00:00:01 GMT", now, cap=HUGE_CAP) == 0.0
    assert parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", now, cap=HUGE_CAP) == 0.0


def test_rfc850_year_late_in_a_century_may_be_the_next_one():
    """Late in a century, an RFC 850 year up to 50 years ahead is in the next century."""
    now = datetime(1999, 7, 1, tzinfo=UTC)
    expected = (datetime(2000, 1, 1, tzinfo=UTC) - now).total_seconds()
    assert parse_retry_after("Saturday, 01-Jan-00 00:00:00 GMT", now, cap=HUGE_CAP) == expected
    # 1960 is more than 50 years back from 2080 and 2060 already past: 2160 is too far.
    assert (
        parse_retry_after("Friday, 01-Jan-60 00:00:00 GMT", datetime(2080, 1, 1, tzinfo=UTC)) == 0.0
    )


def test_rfc850_year_rule_counts_from_now_in_utc():
    """The 50 years count from now in UTC, whatever time zone now is given in."""
    # 01:00 on 1 January 2025 at UTC+2 is still 2024 in UTC: 2075 is then beyond 50 years.
    now = datetime(2025, 1, 1, 1, 0, tzinfo=timezone(timedelta(hours=2)))
    assert parse_retry_after("Tuesday, 01-Jan-75 00:00:00 GMT", now, cap=HUGE_CAP) == 0.0


def test_rfc850_year_near_the_end_of_datetime():
    """An RFC 850 date whose year cannot be represented gives None, not an error."""
    near_year_0 = datetime(49, 6, 1, tzinfo=UTC)  # "00" is then year 0, which does not exist
    assert parse_retry_after("Saturday, 01-Jan-00 00:00:00 GMT", near_year_0) is None
    near_year_10000 = datetime(9999, 6, 1, tzinfo=UTC)  # "10" is then year 10010
    assert parse_retry_after("Friday, 01-Jan-10 00:00:00 GMT", near_year_10000) is None
    far_now = datetime.max.replace(tzinfo=timezone(timedelta(hours=-1)))  # past 9999 in UTC
    assert parse_retry_after("Friday, 01-Jan-10 00:00:00 GMT", far_now) is None
    assert parse_retry_after("Fri, 01 Jan 2010 00:00:00 GMT", far_now) == 0.0


def test_default_now_is_the_wall_clock():
    """Without now, the date is measured from the current wall-clock time."""
    now = datetime.now(UTC)
    soon = imf_fixdate(now + timedelta(seconds=3600))
    result = parse_retry_after(soon)
    assert result is not None
    assert 3500 < result <= 3600


# --- parse_retry_after: bad arguments ---------------------------------------------------


def test_naive_now_is_refused():
    """A naive now raises ValueError naming now, whatever the value."""
    naive = datetime(2025, 1, 1)  # noqa: DTZ001 (the point of the test)
    for value in ("Sun, 06 Nov 1994 08:49:37 GMT", "3", None):
        with pytest.raises(ValueError, match=r"^now must be an aware datetime"):
            parse_retry_after(value, naive)


@pytest.mark.parametrize("cap", [-1, -0.5, math.nan, math.inf, -math.inf])
def test_bad_cap_is_refused(cap):
    """A negative, NaN or infinite cap raises ValueError naming cap."""
    with pytest.raises(ValueError, match=r"^cap must be a non-negative finite number"):
        parse_retry_after("3", cap=cap)


def test_non_number_cap_is_refused():
    """A cap that is not a number raises TypeError naming cap."""
    with pytest.raises(TypeError, match=r"^cap must be a number"):
        parse_retry_after("3", cap="10")  # type: ignore[arg-type]


# --- parse_retry_after: properties ------------------------------------------------------

caps = st.one_of(st.just(DEFAULT_RETRY_AFTER_CAP), st.floats(min_value=0, max_value=1e7))
aware_nows = st.datetimes(
    min_value=datetime(1950, 1, 1),  # noqa: DTZ001 (hypothesis bounds are naive)
    max_value=datetime(9900, 12, 31),  # noqa: DTZ001
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30))]),
)
#: Offsets from now under 49 years either way, where an RFC 850 year is unambiguous.
offsets = st.integers(min_value=-49 * 365 * 86400, max_value=49 * 365 * 86400).map(
    lambda seconds: timedelta(seconds=seconds)
)
paddings = st.sampled_from(["", " ", "\t", "  "])


#: Text made of what dates are made of, to reach the deep paths of the date parsers.
date_like = st.text(alphabet=" \t,:-+.0123456789adeghjlmnorstuvyzADEGHJMNOSTUZ", max_size=40)


@given(value=st.one_of(st.text(), date_like), cap=caps)
def test_retry_after_never_raises_on_text(value, cap):
    """Any text gives None or a wait from 0 to the cap."""
    result = parse_retry_after(value, BEFORE_EXAMPLE, cap=cap)
    assert result is None or (isinstance(result, float) and 0.0 <= result <= cap)


@given(value=st.binary(), cap=caps)
def test_retry_after_never_raises_on_bytes(value, cap):
    """Any bytes give None or a wait from 0 to the cap."""
    result = parse_retry_after(value, cap=cap)
    assert result is None or (isinstance(result, float) and 0.0 <= result <= cap)


@given(number=st.integers(min_value=0, max_value=10**400), pad=paddings, cap=caps)
def test_integer_round_trip(number, pad, cap):
    """A non-negative integer comes back as that many seconds, capped."""
    expected = cap if number > cap else float(number)
    assert parse_retry_after(f"{pad}{number}{pad}", cap=cap) == expected


@given(
    number=st.decimals(min_value=0, max_value=Decimal("1e400"), allow_nan=False).map(
        Decimal.copy_abs
    ),
    cap=caps,
)
def test_decimal_round_trip(number, cap):
    """A non-negative decimal written out in full comes back as that float, capped."""
    text = format(number, "f")
    expected = cap if number > cap else float(number)
    assert parse_retry_after(text, cap=cap) == expected


@pytest.mark.parametrize("formatter", [imf_fixdate, rfc850_date, asctime_date])
@given(now=aware_nows, offset=offsets)
def test_date_round_trip(formatter, now, offset):
    """A date in each form comes back as the seconds from now to it, 0.0 if past."""
    when = (now + offset).astimezone(UTC).replace(microsecond=0)
    expected = max(0.0, (when - now).total_seconds())
    assert parse_retry_after(formatter(when), now, cap=HUGE_CAP) == expected


def cased(name: str) -> st.SearchStrategy[str]:
    """*name* as written, in lower case, in capitals, or capitalised."""
    return st.sampled_from([name, name.lower(), name.upper(), name.capitalize()])


@st.composite
def other_form_dates(draw):
    """``(now, instant, text)``: the instant as a date that parsedate_tz reads, in some zone.

    Names in any case, one- or two-digit days, named or numeric zones (or none), with or
    without a weekday, in day-month, month-day, asctime and RFC 850 orders.
    """
    now = draw(aware_nows).replace(microsecond=0)
    when = (now + draw(offsets)).astimezone(UTC)
    name = draw(st.sampled_from([*ZONE_HOURS, None]))
    if name is None:
        minutes = draw(st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59))
        zone = f"{'-' if minutes < 0 else '+'}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"
    else:
        minutes, zone = ZONE_HOURS[name] * 60, draw(cased(name))
    local = when + timedelta(minutes=minutes)
    day = draw(st.sampled_from([str(local.day), f"{local.day:02d}"]))
    month = draw(cased(draw(st.sampled_from([MONTHS, LONG_MONTHS]))[local.month - 1]))
    short_day = draw(cased(DAY_NAMES[local.weekday()]))
    weekday = draw(
        st.sampled_from(
            ["", f"{short_day}, ", f"{short_day},", f"{LONG_DAY_NAMES[local.weekday()]}, "]
        )
    )
    hour = draw(st.sampled_from([str(local.hour), f"{local.hour:02d}"]))
    time = f"{hour}:{local.minute:02d}:{local.second:02d}"
    year = f"{local.year:04d}"
    layout = draw(
        st.sampled_from(
            [
                f"{weekday}{day} {month} {year} {time} {zone}",
                f"{weekday}{month} {day} {year} {time} {zone}",
                f"{short_day} {month} {day} {time} {year} {zone}",
                # parsedate_tz splits day-month-year only when a zone follows.
                f"{weekday}{day}-{month}-{year} {time} {zone or 'GMT'}",
            ]
        )
    )
    return now, when, layout.strip()


@given(case=other_form_dates())
def test_other_form_round_trip(case):
    """A date in any form parsedate_tz reads gives the seconds to it, as urllib3 computes them."""
    now, when, text = case
    expected = max(0.0, (when - now).total_seconds())
    as_urllib3 = max(0.0, mktime_tz(parsedate_tz(text)) - now.timestamp())
    assert parse_retry_after(text, now, cap=HUGE_CAP) == expected == as_urllib3


#: The now against which the repeated values below are read.
REPEAT_NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
retry_after_values = st.one_of(
    st.integers(min_value=0, max_value=10**6).map(str),
    st.decimals(min_value=0, max_value=10**6, places=3).map(lambda d: format(d, "f")),
    st.builds(
        lambda offset, formatter: formatter(REPEAT_NOW + offset),
        offsets,
        st.sampled_from([imf_fixdate, rfc850_date, asctime_date]),
    ),
    other_form_dates().map(lambda case: case[2]),
)


@given(
    first=retry_after_values,
    rest=st.lists(st.one_of(retry_after_values, st.text(max_size=20)), min_size=1, max_size=3),
    separator=st.sampled_from([", ", ",", " , ", ",\t"]),
)
def test_repeated_header_reads_as_its_first_value(first, rest, separator):
    """Any readable value with others joined after it by commas reads as that value alone."""
    alone = parse_retry_after(first, REPEAT_NOW, cap=HUGE_CAP)
    assert alone is not None
    joined = separator.join([first, *rest])
    assert parse_retry_after(joined, REPEAT_NOW, cap=HUGE_CAP) == alone


# --- RateLimitPolicy and RateLimitInfo --------------------------------------------------


def test_policy_fields_default_to_unknown():
    """A policy built with no arguments knows nothing; numbers become floats."""
    assert RateLimitPolicy() == RateLimitPolicy(
        name=None, quota=None, window=None, remaining=None, reset=None
    )
    policy = RateLimitPolicy(quota=100, remaining=0)
    assert policy.quota == 100.0
    assert isinstance(policy.quota, float)


@pytest.mark.parametrize("bad", [-1, -0.5, math.nan, math.inf])
@pytest.mark.parametrize("field", ["quota", "window", "remaining", "reset"])
def test_policy_refuses_bad_numbers(field, bad):
    """A negative, NaN or infinite number raises ValueError naming the field."""
    with pytest.raises(ValueError, match=rf"^{field} must be a non-negative finite number"):
        RateLimitPolicy(**{field: bad})


def test_policy_name_must_be_text():
    """A name that is not a str raises TypeError."""
    with pytest.raises(TypeError, match="name"):
        RateLimitPolicy(name=5)  # type: ignore[arg-type]


def test_values_are_frozen():
    """Policies and infos cannot be changed."""
    policy = RateLimitPolicy(remaining=1)
    info = RateLimitInfo((policy,))
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        policy.remaining = 2.0  # type: ignore[misc]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        info.policies = ()  # type: ignore[misc]


def test_info_needs_at_least_one_policy():
    """An info without policies raises ValueError naming policies."""
    with pytest.raises(ValueError, match=r"^policies must hold at least one"):
        RateLimitInfo(())


def test_info_holds_only_policies():
    """An info of something other than policies raises TypeError naming policies."""
    with pytest.raises(TypeError, match=r"^policies must hold RateLimitPolicy"):
        RateLimitInfo([5])  # type: ignore[list-item]


def test_info_accepts_any_iterable_of_policies():
    """Policies may be given as any iterable; they are kept as a tuple."""
    policy = RateLimitPolicy(remaining=1)
    assert RateLimitInfo([policy]).policies == (policy,)
    assert RateLimitInfo(iter([policy])).policies == (policy,)


def test_most_restrictive_has_fewest_remaining():
    """The most restrictive policy is the one with the fewest units left."""
    burst = RateLimitPolicy(name="burst", quota=100, remaining=50, reset=30)
    daily = RateLimitPolicy(name="daily", quota=1000, remaining=20, reset=3600)
    info = RateLimitInfo((burst, daily))
    assert info.most_restrictive == daily
    assert (info.remaining, info.reset, info.quota) == (20.0, 3600.0, 1000.0)


def test_most_restrictive_ties_go_to_the_latest_reset():
    """Among equal remaining, the policy that resets last wins; an unknown reset is earliest."""
    early = RateLimitPolicy(name="early", remaining=0, reset=5)
    late = RateLimitPolicy(name="late", remaining=0, reset=60)
    unknown = RateLimitPolicy(name="unknown", remaining=0)
    assert RateLimitInfo((early, late, unknown)).most_restrictive == late
    assert RateLimitInfo((unknown, early)).most_restrictive == early
    first = RateLimitPolicy(name="first", remaining=0)
    assert RateLimitInfo((first, unknown)).most_restrictive == first


def test_most_restrictive_ignores_unknown_remaining_when_one_is_known():
    """A policy with an unknown remaining is never chosen over one with a known remaining."""
    described = RateLimitPolicy(name="described", quota=10, window=1)
    counted = RateLimitPolicy(name="counted", remaining=900)
    info = RateLimitInfo((described, counted))
    assert info.most_restrictive == counted
    assert info.quota is None


def test_most_restrictive_without_any_remaining():
    """With no remaining known, the latest reset wins, then the first listed."""
    a = RateLimitPolicy(name="a", quota=10, window=1)
    b = RateLimitPolicy(name="b", quota=1000, window=3600)
    info = RateLimitInfo((a, b))
    assert info.most_restrictive == a
    assert (info.remaining, info.reset, info.quota) == (None, None, 10.0)
    c = RateLimitPolicy(name="c", reset=7)
    assert RateLimitInfo((a, c)).most_restrictive == c


def test_wait_is_the_latest_reset_of_the_exhausted_policies():
    """When policies are exhausted, the wait is until the last of them resets."""
    info = RateLimitInfo(
        (
            RateLimitPolicy(name="a", remaining=0, reset=10),
            RateLimitPolicy(name="b", remaining=5, reset=100),
            RateLimitPolicy(name="c", remaining=0, reset=40),
            RateLimitPolicy(name="d", remaining=0),
        )
    )
    assert info.wait == 40.0


def test_wait_of_an_exhausted_policy_without_reset_is_unknown():
    """An exhausted policy whose reset is unknown gives an unknown wait."""
    info = RateLimitInfo((RateLimitPolicy(remaining=0), RateLimitPolicy(remaining=3, reset=9)))
    assert info.wait is None


def test_wait_is_zero_while_units_remain():
    """With units left in every policy that tells, the wait is 0.0."""
    info = RateLimitInfo((RateLimitPolicy(remaining=1, reset=60), RateLimitPolicy(quota=5)))
    assert info.wait == 0.0


def test_wait_is_unknown_without_any_remaining():
    """Without any remaining, the headers do not tell a wait."""
    assert RateLimitInfo((RateLimitPolicy(quota=5, reset=60),)).wait is None


# --- parse_rate_limit_headers: IETF draft 10 --------------------------------------------

DRAFT10 = {
    "RateLimit-Policy": '"burst";q=100;w=60, "daily";q=1000;w=86400',
    "RateLimit": '"burst";r=50;t=30, "daily";r=999;t=3600',
}
BURST = RateLimitPolicy(name="burst", quota=100, window=60, remaining=50, reset=30)
DAILY = RateLimitPolicy(name="daily", quota=1000, window=86400, remaining=999, reset=3600)


def test_draft10_policies_are_matched_by_name():
    """Draft-10 fields give one policy per name, with quota, window, remaining and reset."""
    info = parse_rate_limit_headers(DRAFT10)
    assert info == RateLimitInfo((BURST, DAILY))
    assert (info.remaining, info.reset, info.quota, info.wait) == (50.0, 30.0, 100.0, 0.0)


def test_draft10_order_of_items_does_not_matter():
    """RateLimit items are matched to policies by name, not by position."""
    headers = {**DRAFT10, "RateLimit": '"daily";r=999;t=3600, "burst";r=50;t=30'}
    assert parse_rate_limit_headers(headers) == RateLimitInfo((BURST, DAILY))


def test_draft10_item_without_policy():
    """A RateLimit item with no matching policy still gives its remaining and reset."""
    headers = {"RateLimit-Policy": '"burst";q=100;w=60', "RateLimit": '"other";r=0;t=12'}
    assert parse_rate_limit_headers(headers) == RateLimitInfo(
        (
            RateLimitPolicy(name="burst", quota=100, window=60),
            RateLimitPolicy(name="other", remaining=0, reset=12),
        )
    )
    assert parse_rate_limit_headers({"RateLimit": '"default";r=5'}) == RateLimitInfo(
        (RateLimitPolicy(name="default", remaining=5),)
    )


def test_draft10_exhausted_policy_gives_a_wait():
    """An exhausted draft-10 policy makes wait its reset."""
    headers = {**DRAFT10, "RateLimit": '"burst";r=0;t=30, "daily";r=999;t=3600'}
    info = parse_rate_limit_headers(headers)
    assert info is not None
    assert info.wait == 30.0
    assert info.most_restrictive.name == "burst"


def test_draft10_is_lenient_about_numbers_and_spacing():
    """Decimals, spaces around ';' and '=' and unknown parameters are all accepted."""
    headers = {
        "RateLimit-Policy": (
            '"a" ; q = 1.5 ; w=60;qu="requests";pk=:cHsxMjM0:, '
            '"b";q=10;w=1;flag;when=@1700000000;show=%"x";ok=?1;n=-1'
        ),
        "RateLimit": '"a";r=0.5;t=2;pk=:cHsxMjM0:,"b";r=3;t=1;extra=*tok;zzz',
    }
    assert parse_rate_limit_headers(headers) == RateLimitInfo(
        (
            RateLimitPolicy(name="a", quota=1.5, window=60, remaining=0.5, reset=2),
            RateLimitPolicy(name="b", quota=10, window=1, remaining=3, reset=1),
        )
    )


def test_draft10_ignores_bad_parameter_values():
    """Negative, non-numeric or non-finite parameters are ignored, not the whole policy."""
    headers = {
        "RateLimit-Policy": f'"a";q=-5;w="60", "b";q={"9" * 400};w=abc, "c";q=7',
        "RateLimit": '"a";r=-1;t=5',
    }
    assert parse_rate_limit_headers(headers) == RateLimitInfo(
        (RateLimitPolicy(name="a", reset=5), RateLimitPolicy(name="c", quota=7))
    )


def test_draft10_minus_zero_is_zero():
    """A parameter of -0 reads as 0."""
    info = parse_rate_limit_headers({"RateLimit": '"a";r=-0'})
    assert info is not None
    assert math.copysign(1.0, info.policies[0].remaining) == 1.0


def test_draft10_name_escapes():
    """Policy names are sf-strings: backslash escapes are undone."""
    headers = {
        "RateLimit-Policy": r'"say \"hi\" \\ bye";q=1, "a, b";q=2',
        "RateLimit": r'"say \"hi\" \\ bye";r=0',
    }
    assert parse_rate_limit_headers(headers) == RateLimitInfo(
        (
            RateLimitPolicy(name='say "hi" \\ bye', quota=1, remaining=0),
            RateLimitPolicy(name="a, b", quota=2),
        )
    )


def test_earlier_named_drafts_with_tokens_and_l():
    """Token names and an 'l' quota (drafts before 09) are read like draft 10."""
    headers = {"RateLimit-Policy": "default;l=100;w=10", "RateLimit": "default;r=50;t=5"}
    assert parse_rate_limit_headers(headers) == RateLimitInfo(
        (RateLimitPolicy(name="default", quota=100, window=10, remaining=50, reset=5),)
    )
    both = {"RateLimit-Policy": '"p";q=7;l=100'}
    assert parse_rate_limit_headers(both) == RateLimitInfo((RateLimitPolicy(name="p", quota=7),))


def test_draft10_repeated_name_keeps_the_first():
    """A name listed twice in one field keeps its first item."""
    headers = {"RateLimit-Policy": '"a";q=1, "a";q=2', "RateLimit": '"a";r=3, "a";r=4'}
    assert parse_rate_limit_headers(headers) == RateLimitInfo(
        (RateLimitPolicy(name="a", quota=1, remaining=3),)
    )


def test_draft10_policies_without_numbers_are_dropped():
    """A policy that carries no number at all is left out; with none left, None."""
    headers = {"RateLimit-Policy": '"a";pk=:eA==:, "b";q=5', "RateLimit": '"c"'}
    assert parse_rate_limit_headers(headers) == RateLimitInfo((RateLimitPolicy(name="b", quota=5),))
    assert parse_rate_limit_headers({"RateLimit-Policy": '"a", "b";qu="requests"'}) is None


@pytest.mark.parametrize(
    "policy",
    [
        '"burst";q=100;w=60,',  # trailing comma
        '"burst";q=100;w=60 "daily"',  # no comma between members
        '"burst;q=100',  # unterminated string
        '"burst";q=1e3',  # not a number
        '"burst";Q=100;=5',  # empty key
        '("burst";q=100',  # unterminated inner list
        '"burst";q=100;w=60, #',  # not an item
        '"bu\x01rst";q=100',  # control character in a string
    ],
)
def test_broken_structured_field_is_ignored(policy):
    """A field that is not a Structured Field is ignored as a whole."""
    headers = {"RateLimit-Policy": policy, "RateLimit": '"burst";r=50;t=30'}
    assert parse_rate_limit_headers(headers) == RateLimitInfo(
        (RateLimitPolicy(name="burst", remaining=50, reset=30),)
    )


def test_draft10_parameter_keys_in_capitals():
    """Parameter keys in capitals are read as their lowercase names."""
    headers = {"RateLimit-Policy": '"a";Q=10;W=1'}
    assert parse_rate_limit_headers(headers) == RateLimitInfo(
        (RateLimitPolicy(name="a", quota=10, window=1),)
    )


def test_inner_lists_are_not_policies():
    """Inner lists are valid members but name no policy."""
    headers = {"RateLimit-Policy": '("a" "b");q=1, "c";q=2'}
    assert parse_rate_limit_headers(headers) == RateLimitInfo((RateLimitPolicy(name="c", quota=2),))


# --- parse_rate_limit_headers: earlier drafts -------------------------------------------


def test_older_dictionary_form():
    """RateLimit: limit=100, remaining=50, reset=30 gives one unnamed policy."""
    info = parse_rate_limit_headers({"RateLimit": "limit=100, remaining=50, reset=30"})
    assert info == RateLimitInfo((RateLimitPolicy(quota=100, remaining=50, reset=30),))


def test_older_dictionary_form_is_lenient_and_skips_other_members():
    """Spacing and unknown members are accepted; bad or missing values are ignored."""
    info = parse_rate_limit_headers(
        {"RateLimit": "limit = 100 ;x=1, remaining=-1, reset=(1 2), policy, extra=?1"}
    )
    assert info == RateLimitInfo((RateLimitPolicy(quota=100),))


def test_older_separate_fields():
    """RateLimit-Limit, -Remaining and -Reset give one unnamed policy."""
    headers = {"RateLimit-Limit": "100", "RateLimit-Remaining": "50", "RateLimit-Reset": "30"}
    assert parse_rate_limit_headers(headers) == RateLimitInfo(
        (RateLimitPolicy(quota=100, remaining=50, reset=30),)
    )


def test_older_reset_may_be_a_unix_time():
    """RateLimit-Reset of at least 1e9 is a Unix time, as X-RateLimit-Reset is."""
    info = parse_rate_limit_headers({"RateLimit-Reset": "1700000000"}, now=1700000000.0)
    assert info == RateLimitInfo((RateLimitPolicy(reset=0),))
    later = parse_rate_limit_headers({"RateLimit-Reset": "1700000060"}, now=1700000000.0)
    assert later == RateLimitInfo((RateLimitPolicy(reset=60),))


def test_older_dictionary_takes_precedence_over_separate_fields():
    """Members of the RateLimit dictionary win; separate fields fill what it lacks."""
    headers = {
        "RateLimit": "limit=100, remaining=50",
        "RateLimit-Remaining": "7",
        "RateLimit-Reset": "30",
    }
    assert parse_rate_limit_headers(headers) == RateLimitInfo(
        (RateLimitPolicy(quota=100, remaining=50, reset=30),)
    )


def test_older_policy_item():
    """RateLimit-Policy: 100;w=60 gives quota and window, joined with the counters."""
    headers = {"RateLimit-Policy": "100;w=60", "RateLimit-Remaining": "50", "RateLimit-Reset": "3"}
    assert parse_rate_limit_headers(headers) == RateLimitInfo(
        (RateLimitPolicy(quota=100, window=60, remaining=50, reset=3),)
    )
    assert parse_rate_limit_headers({"RateLimit-Policy": "100;w=60"}) == RateLimitInfo(
        (RateLimitPolicy(quota=100, window=60),)
    )


def test_older_policy_list():
    """In '10, 10;w=1, 1000;w=3600' the bare number is the current limit."""
    headers = {
        "RateLimit-Limit": "10",
        "RateLimit-Policy": "10, 10;w=1, 1000;w=3600",
        "RateLimit-Remaining": "4",
        "RateLimit-Reset": "1",
    }
    expected = RateLimitInfo(
        (
            RateLimitPolicy(quota=10, window=1, remaining=4, reset=1),
            RateLimitPolicy(quota=1000, window=3600),
        )
    )
    assert parse_rate_limit_headers(headers) == expected
    del headers["RateLimit-Limit"]
    assert parse_rate_limit_headers(headers) == expected


def test_older_limit_field_with_policies():
    """RateLimit-Limit may carry quota policies after the limit, named w or window."""
    headers = {"RateLimit-Limit": "100, 100;window=60, 5000;window=86400"}
    assert parse_rate_limit_headers(headers) == RateLimitInfo(
        (RateLimitPolicy(quota=100, window=60), RateLimitPolicy(quota=5000, window=86400))
    )


def test_older_policy_listed_in_both_fields_is_kept_once():
    """A quota policy repeated in RateLimit-Limit and RateLimit-Policy is one policy."""
    headers = {
        "RateLimit-Limit": "10, 10;w=1, 50;w=60",
        "RateLimit-Policy": "10;w=1, 50;w=60",
        "RateLimit-Remaining": "9",
    }
    assert parse_rate_limit_headers(headers) == RateLimitInfo(
        (RateLimitPolicy(quota=10, window=1, remaining=9), RateLimitPolicy(quota=50, window=60))
    )


def test_older_several_policies_without_limit():
    """With several quota policies and no current limit, the counters stand alone."""
    headers = {"RateLimit-Policy": "10;w=1, 1000;w=3600", "RateLimit-Remaining": "3"}
    assert parse_rate_limit_headers(headers) == RateLimitInfo(
        (
            RateLimitPolicy(remaining=3),
            RateLimitPolicy(quota=10, window=1),
            RateLimitPolicy(quota=1000, window=3600),
        )
    )
    no_counters = {"RateLimit-Policy": "10;w=1, 1000;w=3600"}
    assert parse_rate_limit_headers(no_counters) == RateLimitInfo(
        (RateLimitPolicy(quota=10, window=1), RateLimitPolicy(quota=1000, window=3600))
    )


def test_older_limit_not_matching_any_policy():
    """A limit that matches no quota policy stands on its own, beside the policies."""
    headers = {"RateLimit-Limit": "7", "RateLimit-Policy": "10;w=1, -3;w=5, ?1;w=2, 4;w=-1"}
    assert parse_rate_limit_headers(headers) == RateLimitInfo(
        (RateLimitPolicy(quota=7), RateLimitPolicy(quota=10, window=1))
    )


def test_older_remaining_takes_the_first_number():
    """Repeated counter fields, joined with commas, give their first value."""
    headers = [("RateLimit-Remaining", "5"), ("RateLimit-Remaining", "6")]
    assert parse_rate_limit_headers(headers) == RateLimitInfo((RateLimitPolicy(remaining=5),))


# --- parse_rate_limit_headers: X-RateLimit-* --------------------------------------------

NOW = 1_700_000_000.0


def test_x_headers_with_delta_reset():
    """X-RateLimit-Limit, -Remaining and a small -Reset give a policy with delta reset."""
    headers = {
        "X-RateLimit-Limit": "60",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": "42",
    }
    info = parse_rate_limit_headers(headers, now=NOW)
    assert info == RateLimitInfo((RateLimitPolicy(quota=60, remaining=0, reset=42),))
    assert info.wait == 42.0


@pytest.mark.parametrize(
    ("reset", "seconds"),
    [
        ("1700000100", 100.0),  # Unix time in seconds (GitHub, Twitter)
        ("1700000100.5", 100.5),  # with a fraction (Discord)
        ("1700000100000", 100.0),  # Unix time in milliseconds
        ("1699999000", 0.0),  # already past
        ("1000000000", 0.0),  # exactly 1e9: a Unix time (2001), long past
        ("999999999", 999999999.0),  # just below: seconds from now
        ("999999999999", 999999999999 - NOW),  # below 1e12: a Unix time in seconds
        ("1000000000000", 0.0),  # exactly 1e12: milliseconds, 2001
    ],
)
def test_x_reset_epoch_or_delta(reset, seconds):
    """X-RateLimit-Reset of at least 1e9 is a Unix time, of at least 1e12 in milliseconds."""
    info = parse_rate_limit_headers({"X-RateLimit-Reset": reset}, now=NOW)
    assert info == RateLimitInfo((RateLimitPolicy(reset=seconds),))


def test_x_reset_default_now_is_the_wall_clock():
    """Without now, a Unix-time reset is measured from the wall clock."""
    info = parse_rate_limit_headers({"X-RateLimit-Reset": "1000000000"})
    assert info == RateLimitInfo((RateLimitPolicy(reset=0),))
    delta = parse_rate_limit_headers({"X-RateLimit-Reset": "30"})
    assert delta == RateLimitInfo((RateLimitPolicy(reset=30),))


def test_x_rate_limit_spelling():
    """The X-Rate-Limit-* spelling (Twitter's) is read too."""
    headers = {
        "x-rate-limit-limit": "15",
        "x-rate-limit-remaining": "14",
        "x-rate-limit-reset": "1700000900",
    }
    assert parse_rate_limit_headers(headers, now=NOW) == RateLimitInfo(
        (RateLimitPolicy(quota=15, remaining=14, reset=900),)
    )


def test_x_reset_after_is_preferred():
    """X-RateLimit-Reset-After, in seconds, wins over X-RateLimit-Reset."""
    headers = {"X-RateLimit-Reset": "1700000100", "X-RateLimit-Reset-After": "64.57"}
    assert parse_rate_limit_headers(headers, now=NOW) == RateLimitInfo(
        (RateLimitPolicy(reset=64.57),)
    )


@pytest.mark.parametrize("bad", ["-1", "NaN", "abc", "1e3", "", "9" * 400, "1,", '"5"'])
def test_x_bad_values_are_ignored(bad):
    """Negative, NaN, non-numeric and unreadable values are ignored."""
    headers = {"X-RateLimit-Limit": bad, "X-RateLimit-Remaining": "3"}
    assert parse_rate_limit_headers(headers) == RateLimitInfo((RateLimitPolicy(remaining=3),))


def test_x_repeated_values_take_the_first():
    """Repeated X- fields take the first value; bad ones fall back to the other spelling."""
    headers = {
        "X-RateLimit-Limit": "100, 200",
        "X-RateLimit-Remaining": "x",
        "X-Rate-Limit-Remaining": "9",
    }
    assert parse_rate_limit_headers(headers) == RateLimitInfo(
        (RateLimitPolicy(quota=100, remaining=9),)
    )


# --- parse_rate_limit_headers: Unix-time resets in every field --------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"RateLimit-Policy": '"p";q=10', "RateLimit": '"p";r=0;t=1700000100'},
        {"RateLimit": '"p";r=0;t=1700000100000'},
        {"RateLimit": "remaining=0, reset=1700000100"},
        {"RateLimit-Remaining": "0", "RateLimit-Reset": "1700000100"},
        {"RateLimit-Remaining": "0", "RateLimit-Reset": "1700000100000"},
        {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset-After": "1700000100"},
    ],
)
def test_every_reset_field_may_be_a_unix_time(headers):
    """A reset of at least 1e9 is a Unix time in every field (1e12: milliseconds)."""
    info = parse_rate_limit_headers(headers, now=NOW)
    assert info is not None
    assert (info.reset, info.wait) == (100.0, 100.0)


def test_unix_time_resets_are_not_capped():
    """A Unix-time reset far ahead gives its true distance; one in the past gives 0."""
    ahead = parse_rate_limit_headers({"RateLimit-Reset": "4102444800"}, now=NOW)  # 2100
    assert ahead == RateLimitInfo((RateLimitPolicy(reset=4102444800 - NOW),))
    past = parse_rate_limit_headers({"RateLimit": '"p";r=0;t=1600000000'}, now=NOW)
    assert past == RateLimitInfo((RateLimitPolicy(name="p", remaining=0, reset=0),))


#: Every reset field except X-RateLimit-Reset, which test_x_epoch_reset_round_trip covers:
#: (header name, value with a {} for the reset).
OTHER_RESET_FIELDS = [
    ("RateLimit", '"p";r=0;t={}'),
    ("RateLimit", "remaining=0, reset={}"),
    ("RateLimit-Reset", "{}"),
    ("X-RateLimit-Reset-After", "{}"),
]


@pytest.mark.parametrize(("name", "template"), OTHER_RESET_FIELDS)
@given(
    now=st.integers(min_value=10**9 + 10**6, max_value=4 * 10**9),
    delta=st.integers(min_value=-(10**6), max_value=10**7),
    milliseconds=st.booleans(),
)
def test_epoch_reset_round_trip_in_every_field(name, template, now, delta, milliseconds):
    """In every reset field, a Unix time in seconds or milliseconds is seconds from now."""
    epoch = now + delta
    text = template.format(epoch * 1000 if milliseconds else epoch)
    info = parse_rate_limit_headers({name: text}, now=float(now))
    assert info is not None
    assert info.reset == max(0, delta)


# --- parse_rate_limit_headers: families, names and containers ---------------------------


def test_draft10_is_preferred_to_older_forms_and_x():
    """When draft-10 fields yield anything, the other families are not read."""
    headers = {**DRAFT10, "RateLimit-Remaining": "1", "X-RateLimit-Remaining": "2"}
    assert parse_rate_limit_headers(headers) == RateLimitInfo((BURST, DAILY))


def test_older_forms_are_preferred_to_x():
    """When the older IETF fields yield anything, X-RateLimit-* is not read."""
    headers = {"RateLimit-Remaining": "1", "X-RateLimit-Remaining": "2"}
    assert parse_rate_limit_headers(headers) == RateLimitInfo((RateLimitPolicy(remaining=1),))


def test_unusable_families_fall_through():
    """A family whose fields yield nothing gives way to the next one."""
    headers = {
        "RateLimit-Policy": '"a";pk=:eA==:',
        "RateLimit": "nonsense=",
        "X-RateLimit-Remaining": "2",
    }
    assert parse_rate_limit_headers(headers) == RateLimitInfo((RateLimitPolicy(remaining=2),))


@pytest.mark.parametrize(
    "headers",
    [{}, [], {"Content-Type": "text/html"}, {"RateLimit": ""}, {"X-RateLimit-Limit": "-"}],
)
def test_nothing_usable_gives_none(headers):
    """Without any usable rate-limit field, the result is None."""
    assert parse_rate_limit_headers(headers) is None


def test_header_names_are_case_insensitive():
    """Header names match in any case."""
    headers = {"ratelimit-POLICY": DRAFT10["RateLimit-Policy"], "RATELIMIT": DRAFT10["RateLimit"]}
    assert parse_rate_limit_headers(headers) == RateLimitInfo((BURST, DAILY))


def test_same_name_in_different_cases_is_joined():
    """Keys of a plain dict that differ only in case are joined like repeated lines."""
    headers = {
        "RateLimit-Policy": '"burst";q=100;w=60',
        "ratelimit-policy": '"daily";q=1000;w=86400',
        "RateLimit": DRAFT10["RateLimit"],
    }
    assert parse_rate_limit_headers(headers) == RateLimitInfo((BURST, DAILY))


def test_urllib3_header_dict_with_repeated_lines():
    """urllib3's HTTPHeaderDict works, with repeated lines joined into one list."""
    headers = HTTPHeaderDict()
    headers.add("RateLimit-Policy", '"burst";q=100;w=60')
    headers.add("ratelimit-policy", '"daily";q=1000;w=86400')
    headers.add("RateLimit", '"burst";r=50;t=30')
    headers.add("RateLimit", '"daily";r=999;t=3600')
    assert parse_rate_limit_headers(headers) == RateLimitInfo((BURST, DAILY))


def test_pairs_iterable_with_repeated_lines():
    """An iterable of (name, value) pairs works, repeated names joined."""
    pairs = [
        ("RateLimit-Policy", '"burst";q=100;w=60'),
        ("RateLimit", '"burst";r=50;t=30'),
        ("Content-Type", "application/json"),
        ("ratelimit-policy", '"daily";q=1000;w=86400'),
        ("ratelimit", '"daily";r=999;t=3600'),
    ]
    assert parse_rate_limit_headers(pairs) == RateLimitInfo((BURST, DAILY))
    assert parse_rate_limit_headers(iter(pairs)) == RateLimitInfo((BURST, DAILY))


@pytest.mark.parametrize("now", [-1.0, math.nan, math.inf, -math.inf])
def test_bad_now_is_refused(now):
    """A negative, NaN or infinite now raises ValueError naming now."""
    with pytest.raises(ValueError, match=r"^now must be a non-negative finite Unix time"):
        parse_rate_limit_headers({}, now=now)


# --- parse_rate_limit_headers: properties -----------------------------------------------

KNOWN_NAMES = (
    "RateLimit-Policy",
    "RateLimit",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "X-RateLimit-Reset-After",
    "X-Rate-Limit-Limit",
    "X-Rate-Limit-Remaining",
    "X-Rate-Limit-Reset",
)
header_names = st.one_of(
    st.sampled_from(KNOWN_NAMES),
    st.sampled_from(KNOWN_NAMES).map(str.lower),
    st.text(max_size=20),
)
#: Text built from the characters that matter to Structured Fields, to reach deep paths.
sf_like = st.text(alphabet=' \t"\\;=,()-.:?@%*0123456789abcdelmnopqrstwxyzQ', max_size=60)
header_values = st.one_of(st.text(), sf_like)


def assert_valid(info):
    """Check that a parse result is None or a well-formed RateLimitInfo."""
    if info is None:
        return
    assert isinstance(info, RateLimitInfo)
    assert info.policies
    for policy in info.policies:
        for value in (policy.quota, policy.window, policy.remaining, policy.reset):
            assert value is None or (isinstance(value, float) and 0 <= value < math.inf)
    assert info.wait is None or info.wait >= 0


@given(
    headers=st.dictionaries(header_names, header_values, max_size=8),
    now=st.one_of(st.none(), st.floats(min_value=0, max_value=4e9)),
)
def test_rate_limit_headers_never_raise(headers, now):
    """Any names and values give None or a well-formed RateLimitInfo."""
    assert_valid(parse_rate_limit_headers(headers, now=now))


@given(pairs=st.lists(st.tuples(header_names, header_values), max_size=8))
def test_rate_limit_header_pairs_never_raise(pairs):
    """Any pairs, names repeated or not, give None or a well-formed RateLimitInfo."""
    assert_valid(parse_rate_limit_headers(pairs, now=NOW))


def sf_string(name: str) -> str:
    """Write *name* as a Structured Field string."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


#: (text, value) pairs of sf-integers and sf-decimals.
sf_numbers = st.one_of(
    st.integers(min_value=0, max_value=10**15).map(lambda n: (str(n), float(n))),
    st.decimals(min_value=0, max_value=10**12, places=3).map(lambda d: (format(d, "f"), float(d))),
)
optional_numbers = st.one_of(st.none(), sf_numbers)
#: (text, value) pairs of resets below 1e9, which every reset field reads as seconds.
sf_delta_resets = st.one_of(
    st.integers(min_value=0, max_value=10**9 - 1).map(lambda n: (str(n), float(n))),
    st.decimals(min_value=0, max_value=10**9 - 1, places=3).map(
        lambda d: (format(d, "f"), float(d))
    ),
)
optional_resets = st.one_of(st.none(), sf_delta_resets)
policy_names = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E))


@st.composite
def draft10_headers(draw):
    """Draft-10 fields and the policies they describe."""
    names = draw(st.lists(policy_names, min_size=1, max_size=5, unique=True))
    described = draw(st.integers(min_value=0, max_value=len(names)))
    policy_items, limit_items, expected = [], [], []
    for index, name in enumerate(names):
        quota, window = (
            (draw(sf_numbers), draw(optional_numbers)) if index < described else (None, None)
        )
        remaining = draw(sf_numbers) if index >= described else draw(optional_numbers)
        reset = draw(optional_resets)
        if quota is not None:
            params = f";q={quota[0]}" + (f";w={window[0]}" if window else "")
            policy_items.append(f"{sf_string(name)}{params}")
        if remaining is not None:
            params = f";r={remaining[0]}" + (f";t={reset[0]}" if reset else "")
            limit_items.append(f"{sf_string(name)}{params}")
        else:
            reset = None
        expected.append(
            RateLimitPolicy(
                name=name,
                quota=quota and quota[1],
                window=window and window[1],
                remaining=remaining and remaining[1],
                reset=reset and reset[1],
            )
        )
    separator = draw(st.sampled_from([",", ", ", " ,\t"]))
    headers = {}
    if policy_items:
        headers["RateLimit-Policy"] = separator.join(policy_items)
    if limit_items:
        headers["RateLimit"] = separator.join(limit_items)
    return headers, RateLimitInfo(expected)


@given(case=draft10_headers())
def test_draft10_round_trip(case):
    """Policies written as draft-10 fields come back equal, in the order listed."""
    headers, expected = case
    assert parse_rate_limit_headers(headers) == expected


counters = st.tuples(optional_numbers, optional_numbers, optional_resets).filter(
    lambda values: any(value is not None for value in values)
)


def expected_policy(limit, remaining, reset):
    """The unnamed policy that counters should give."""
    return RateLimitInfo(
        (
            RateLimitPolicy(
                quota=limit and limit[1],
                remaining=remaining and remaining[1],
                reset=reset and reset[1],
            ),
        )
    )


@given(values=counters)
def test_older_dictionary_round_trip(values):
    """limit, remaining and reset written as a RateLimit dictionary come back equal."""
    members = [
        f"{key}={value[0]}"
        for key, value in zip(("limit", "remaining", "reset"), values, strict=True)
        if value is not None
    ]
    assert parse_rate_limit_headers({"RateLimit": ", ".join(members)}) == expected_policy(*values)


@given(values=counters)
def test_older_separate_fields_round_trip(values):
    """Separate RateLimit-Limit, -Remaining and -Reset come back equal."""
    names = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")
    headers = {
        name: value[0] for name, value in zip(names, values, strict=True) if value is not None
    }
    assert parse_rate_limit_headers(headers) == expected_policy(*values)


@given(values=counters)
def test_x_fields_round_trip(values):
    """X-RateLimit-Limit, -Remaining and a delta -Reset come back equal."""
    names = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")
    headers = {
        name: value[0] for name, value in zip(names, values, strict=True) if value is not None
    }
    assert parse_rate_limit_headers(headers, now=NOW) == expected_policy(*values)


@given(
    now=st.integers(min_value=10**9 + 10**6, max_value=4 * 10**9),
    delta=st.integers(min_value=-(10**6), max_value=10**7),
    milliseconds=st.booleans(),
)
def test_x_epoch_reset_round_trip(now, delta, milliseconds):
    """A Unix-time reset, in seconds or milliseconds, comes back as seconds from now."""
    epoch = now + delta
    text = str(epoch * 1000) if milliseconds else str(epoch)
    info = parse_rate_limit_headers({"X-RateLimit-Reset": text}, now=float(now))
    assert info == RateLimitInfo((RateLimitPolicy(reset=max(0, delta)),))
