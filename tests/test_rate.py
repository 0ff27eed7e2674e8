"""Rate: construction, parsing and the errors for bad input."""

from __future__ import annotations

import math
import re

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ratekit import Rate
from ratekit._rate import to_rate
from ratekit.testing import rates


def test_rate_per_second_and_interval():
    """Rate(90, per=60) is 1.5 per second, one every 2/3 s."""
    rate = Rate(90, per=60.0)
    assert rate.per_second == 1.5
    assert rate.interval == pytest.approx(2 / 3)
    assert str(rate) == "90/60s"


@pytest.mark.parametrize(
    ("text", "limit", "per"),
    [
        ("90/minute", 90, 60),
        ("1.5/s", 1.5, 1),
        ("100/10s", 100, 10),
        ("10/second", 10, 1),
        ("1000/hour", 1000, 3600),
        ("5 / 2 minutes", 5, 120),
        ("10 per second", 10, 1),
        ("3/day", 3, 86400),
        ("2/500ms", 2, 0.5),
        ("  7/H  ", 7, 3600),
        (".5/sec", 0.5, 1),
        ("1e3/hours", 1000, 3600),
    ],
)
def test_parse_accepts_the_usual_forms(text, limit, per):
    """Rate.parse reads count/unit and count/n-unit forms, singular or plural."""
    assert Rate.parse(text) == Rate(limit, per=per)


@pytest.mark.parametrize(
    "text", ["abc", "", "10", "10/", "/s", "10/fortnight", "-1/s", "0/s", "10/0s", "1/s/s"]
)
def test_parse_rejects_garbage_naming_text_and_forms(text):
    """Rate.parse raises ValueError naming the text and the accepted forms."""
    with pytest.raises(ValueError, match="invalid rate") as info:
        Rate.parse(text)
    assert repr(text) in str(info.value)


def test_parse_error_lists_the_forms():
    """The error for unreadable text shows the forms that are accepted."""
    with pytest.raises(ValueError, match=r"'90/minute', '1\.5/s' or '100/10s'"):
        Rate.parse("abc")


def test_parse_refuses_non_text():
    """Rate.parse of a number raises TypeError saying it takes a str."""
    with pytest.raises(TypeError, match="takes a str"):
        Rate.parse(10)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [0, -1, math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("argument", ["limit", "per"])
def test_rate_refuses_non_positive_or_non_finite(bad, argument):
    """Rate(...) with a zero, negative, NaN or infinite number names the argument."""
    kwargs = {"limit": 1.0, "per": 1.0, argument: bad}
    with pytest.raises(ValueError, match=rf"^{argument} must be a positive finite number"):
        Rate(**kwargs)


def test_rate_is_frozen():
    """A Rate cannot be changed after construction; evolve makes a new one."""
    rate = Rate(10)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        rate.limit = 5  # type: ignore[misc]
    assert attrs.evolve(rate, per=2.0) == Rate(10, per=2.0)


def test_to_rate_accepts_rates_numbers_and_text():
    """Limiters take a Rate, a per-second number or text."""
    assert to_rate(Rate(3)) == Rate(3)
    assert to_rate(2.5) == Rate(2.5)
    assert to_rate("90/minute") == Rate(90, per=60)
    with pytest.raises(ValueError, match=r"^rate must be"):
        to_rate(-1)
    with pytest.raises(TypeError, match=r"^rate must be a number"):
        to_rate(None)  # type: ignore[arg-type]


@given(rates())
def test_testing_rates_strategy_gives_valid_rates(rate):
    """ratekit.testing.rates() yields rates within the requested speeds."""
    assert 0.01 * (1 - 1e-9) <= rate.per_second <= 10_000.0 * (1 + 1e-9)


@given(
    limit=st.floats(min_value=1e-3, max_value=1e6),
    count=st.integers(min_value=1, max_value=1000),
    unit=st.sampled_from(sorted(Rate.UNITS)),
)
def test_parse_round_trips_any_number_and_unit(limit, count, unit):
    """Any positive limit over any count of any unit parses to the same rate."""
    rate = Rate.parse(f"{limit!r}/{count}{unit}")
    assert rate.limit == limit
    assert rate.per == pytest.approx(count * Rate.parse(f"1/{unit}").per)


def test_parse_many_reads_rates_and_texts_of_several_limits():
    """Rate values pass as they are; texts split at commas and semicolons, in order."""
    minute = Rate(90, per=60.0)
    assert Rate.parse_many([minute, "10/second, 1000/hour; 5/s"]) == [
        minute,
        Rate(10),
        Rate(1000, per=3600.0),
        Rate(5),
    ]


@pytest.mark.parametrize(
    ("limits", "error", "message"),
    [
        ([], ValueError, 'f() needs at least one limit, such as "10/second"'),
        (["5/s", 3], TypeError, "f() argument 2 must be a Rate or text, got 3"),
        (["5/s", "5/s,"], ValueError, "f() argument 2 has an empty limit: '5/s,'"),
        (["often"], ValueError, "invalid rate 'often'"),
    ],
)
def test_parse_many_names_the_argument_counting_from_one(limits, error, message):
    """Errors name the caller and the argument's position, the first being 1."""
    with pytest.raises(error, match=f"^{re.escape(message)}"):
        Rate.parse_many(limits, caller="f()")
