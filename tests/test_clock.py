"""Clocks: the monotonic clock, and the fake one that tests run on."""

from __future__ import annotations

import asyncio
import math
import threading

import pytest

from ratekit import MonotonicClock
from ratekit.testing import FakeClock
from ratekit.typing import Clock


def test_both_clocks_satisfy_the_protocol():
    """MonotonicClock and FakeClock are both Clocks."""
    assert isinstance(MonotonicClock(), Clock)
    assert isinstance(FakeClock(), Clock)


def test_monotonic_clock_never_goes_backwards():
    """Successive readings of the real clock never decrease."""
    clock = MonotonicClock()
    readings = [clock.now() for _ in range(1000)]
    assert readings == sorted(readings)


def test_monotonic_sleep_returns_false_when_cancelled_before():
    """A real sleep with an already-set cancel event returns False at once."""
    event = threading.Event()
    event.set()
    clock = MonotonicClock()
    before = clock.now()
    assert clock.sleep(60.0, event) is False
    assert clock.now() - before < 5.0


def test_monotonic_sleep_sleeps_at_least_the_duration():
    """A real sleep without cancellation lasts at least what was asked."""
    clock = MonotonicClock()
    before = clock.now()
    assert clock.sleep(0.02) is True
    assert clock.now() - before >= 0.02
    assert clock.sleep(0.02, threading.Event()) is True
    assert clock.sleep(-1.0) is True


def test_fake_clock_starts_where_told_and_advances():
    """FakeClock reads its start and moves only when advanced."""
    clock = FakeClock(start=10.0)
    assert clock.now() == 10.0
    assert clock.advance(2.5) == 12.5
    assert clock.now() == 12.5
    assert clock.advance_to(20.0) == 20.0


@pytest.mark.parametrize("bad", [-1.0, -1e-12, math.nan, math.inf])
def test_fake_clock_refuses_to_go_backwards_or_nowhere(bad):
    """advance() with a negative or non-finite amount raises ValueError naming seconds."""
    clock = FakeClock()
    with pytest.raises(ValueError, match="seconds"):
        clock.advance(bad)
    assert clock.now() == 0.0


def test_fake_clock_advance_to_refuses_the_past():
    """advance_to() an earlier instant raises and leaves the clock alone."""
    clock = FakeClock(start=5.0)
    with pytest.raises(ValueError, match="backwards"):
        clock.advance_to(4.0)
    with pytest.raises(ValueError, match="instant"):
        clock.advance_to(math.nan)
    with pytest.raises(ValueError, match="start"):
        FakeClock(start=math.inf)
    assert clock.now() == 5.0


def test_fake_clock_always_makes_progress():
    """An advance too small to change the sum still moves the clock by one step."""
    clock = FakeClock(start=1e9)
    before = clock.now()
    clock.advance(1e-30)
    assert clock.now() > before


def test_fake_sleep_advances_and_records():
    """sleep() advances virtual time at once and records each duration."""
    clock = FakeClock()
    assert clock.sleep(1.5) is True
    assert clock.sleep(0.5, threading.Event()) is True
    assert clock.now() == 2.0
    assert clock.sleeps == [1.5, 0.5]


def test_fake_sleep_cancelled_does_not_advance():
    """A fake sleep whose cancel event is set returns False and leaves time alone."""
    clock = FakeClock()
    event = threading.Event()
    event.set()
    assert clock.sleep(3.0, event) is False
    assert clock.now() == 0.0


def test_fake_sleep_async_advances():
    """sleep_async() on a FakeClock advances virtual time without real waiting."""
    clock = FakeClock()
    asyncio.run(clock.sleep_async(100.0))
    assert clock.now() == 100.0


def test_real_sleep_async_sleeps():
    """MonotonicClock.sleep_async waits on the event loop for at least the duration."""
    clock = MonotonicClock()
    before = clock.now()
    asyncio.run(clock.sleep_async(0.01))
    assert clock.now() - before >= 0.01


def test_reprs():
    """Clocks have informative reprs."""
    assert repr(MonotonicClock()) == "MonotonicClock()"
    assert repr(FakeClock(start=3.0)) == "FakeClock(now=3.0)"
