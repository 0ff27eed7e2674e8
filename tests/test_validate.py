"""The argument checks every public entry point uses: one vocabulary, the argument named."""

from __future__ import annotations

import math
import re

import attrs
import pytest

from ratekit._validate import (
    at_least,
    attribute,
    callable_or_none,
    one_of,
    optional_wait,
    positive,
    seconds,
    text,
    whole_number,
)


@pytest.mark.parametrize(
    ("check", "value", "error", "message"),
    [
        (positive, "1", TypeError, "x must be a number, got str '1'"),
        (positive, 0, ValueError, "x must be a positive finite number, got 0"),
        (positive, math.inf, ValueError, "x must be a positive finite number, got inf"),
        (seconds, None, TypeError, "x must be a number of seconds, got NoneType None"),
        (seconds, -1, ValueError, "x must be a non-negative number of seconds, got -1"),
        (optional_wait, math.nan, ValueError, "x must be a non-negative number of seconds or None"),
        (optional_wait, "5", TypeError, "x must be a number of seconds or None, got str '5'"),
        (callable_or_none, 3, TypeError, "x must be a callable or None, got 3"),
        (text, "", ValueError, "x must be a non-empty string, got ''"),
        (text, 7, ValueError, "x must be a non-empty string, got 7"),
    ],
)
def test_each_check_names_the_argument_and_what_it_got(check, value, error, message):
    """The message starts with the argument's name and says what was expected."""
    with pytest.raises(error, match=f"^{re.escape(message)}"):
        check("x", value)


def test_numbers_come_back_as_floats_and_whole_numbers_as_given():
    """A check returns the value in the type the code works with."""
    assert positive("x", 2) == 2.0
    assert isinstance(positive("x", 2), float)
    assert seconds("x", math.inf) == math.inf
    assert optional_wait("x", None) == math.inf
    assert at_least("x", 1, 1) == 1.0
    assert whole_number("x", 5, 1, 5) == 5
    assert one_of("x", "a", ("a", "b")) == "a"
    assert text("x", "t") == "t"


def test_bools_are_numbers_only_where_the_limiters_always_took_them():
    """Costs and waits take True as 1; durations, bounds and counts refuse a bool."""
    assert positive("cost", True) == 1.0
    assert optional_wait("timeout", False) == 0.0
    for check, args in ((seconds, ()), (at_least, (0,)), (whole_number, (0,))):
        with pytest.raises(TypeError, match=r"^x must be"):
            check("x", True, *args)


def test_ranges_name_their_bounds():
    """at_least, whole_number and one_of say the bounds or the choices."""
    with pytest.raises(ValueError, match=r"^x must be a non-negative finite number, got -1$"):
        at_least("x", -1, 0)
    with pytest.raises(ValueError, match=r"^x must be a finite number of at least 1, got 0\.5$"):
        at_least("x", 0.5, 1)
    with pytest.raises(ValueError, match=r"^x must be between 1 and 3, got 4$"):
        whole_number("x", 4, 1, 3)
    with pytest.raises(ValueError, match=r"^x must be at least 1, got 0$"):
        whole_number("x", 0, 1)
    with pytest.raises(TypeError, match=r"^x must be an integer, got 1\.5$"):
        whole_number("x", 1.5, 1)
    with pytest.raises(ValueError, match=r"^x must be one of 'a', 'b', got 'c'$"):
        one_of("x", "c", ("a", "b"))


def test_a_secret_is_named_by_its_type_only():
    """text(secret=True) never shows the value it refuses."""
    with pytest.raises(ValueError, match=r"^password must be a non-empty string, got int$"):
        text("password", 12345, secret=True)
    with pytest.raises(ValueError, match=r"got an empty string$"):
        text("password", "", secret=True)


def test_attribute_makes_an_attrs_validator_that_names_the_field():
    """A frozen value checks its fields in the same words, by the name its caller uses."""

    @attrs.frozen
    class Settings:
        workers: int = attrs.field(validator=attribute(whole_number, 1))
        wait: float | None = attrs.field(default=None, validator=attribute(seconds, optional=True))
        _hidden: float = attrs.field(default=1.0, validator=attribute(positive))

    assert Settings(2).wait is None
    with pytest.raises(ValueError, match=r"^workers must be at least 1, got 0$"):
        Settings(0)
    with pytest.raises(ValueError, match=r"^wait must be a non-negative number of seconds"):
        Settings(1, -1)
    with pytest.raises(ValueError, match=r"^hidden must be a positive finite number"):
        Settings(1, hidden=0)
