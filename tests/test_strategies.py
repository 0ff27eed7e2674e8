"""Behaviour every strategy shares, then what is particular to each new strategy.

The shared tests are parametrised over every strategy and a composition, so that all of
them have the same protocol, the same errors and the same blocking behaviour as
`TokenBucket` (whose own tests go further).
"""

from __future__ import annotations

import asyncio
import math
import threading
from typing import TYPE_CHECKING

import pytest
from hypothesis import given
from hypothesis import strategies as st
from specs import KINDS

from ratekit import (
    AcquireCancelled,
    AcquireTimeout,
    CostTooLarge,
    FixedWindow,
    LeakyBucket,
    MonotonicClock,
    QueueFull,
    SlidingWindow,
    TokenBucket,
)
from ratekit.testing import FakeClock
from ratekit.typing import Limiter

if TYPE_CHECKING:
    from ratekit._limiter import LimiterBase

every_kind = pytest.mark.parametrize("kind", list(KINDS))


def make(kind: str) -> tuple[LimiterBase, FakeClock]:
    """A limiter of *kind* on a fresh FakeClock."""
    clock = FakeClock()
    return KINDS[kind](clock), clock


def exhaust(limiter: LimiterBase) -> float:
    """Take units until one is denied; return that denial's retry_after."""
    for _ in range(10):
        decision = limiter.try_acquire()
        if not decision:
            return decision.retry_after
    raise AssertionError("never denied")


class StallingClock:
    """A clock whose sleeps are always woken early, as by cancellation."""

    def __init__(self) -> None:
        self.fake = FakeClock()
        self.now = self.fake.now

    def sleep(self, seconds: float, cancel: object = None) -> bool:
        return False

    async def sleep_async(self, seconds: float) -> None:
        await asyncio.sleep(3600)


class SetOnFirstWait:
    """A cancel event that becomes set while the acquire sleeps."""

    def __init__(self) -> None:
        self.flag = False

    def is_set(self) -> bool:
        return self.flag

    def wait(self, timeout: float | None = None) -> bool:
        self.flag = True
        return True


# -- the protocol, for every kind ---------------------------------------------------------


@every_kind
def test_is_a_limiter_on_the_monotonic_clock_by_default(kind):
    """Every kind satisfies the Limiter protocol and reads the real clock unless given one."""
    limiter, _ = make(kind)
    assert isinstance(limiter, Limiter)
    assert repr(limiter).startswith(
        ("TokenBucket(", "LeakyBucket(", "SlidingWindow(", "FixedWindow(", "all_of(")
    )
    default = type(limiter)(*_arguments(kind))
    assert isinstance(default.clock, MonotonicClock)


def _arguments(kind: str) -> tuple[object, ...]:
    if kind == "all_of":
        return (TokenBucket(2.0, 4), SlidingWindow(100, 60.0))
    return (2.0, 4) if kind in {"TokenBucket", "LeakyBucket"} else (4, 2.0)


@every_kind
@pytest.mark.parametrize("bad", [0, -1, math.nan, math.inf, -math.inf])
def test_rejects_a_bad_cost_in_every_method(kind, bad):
    """A bad cost raises an error naming cost from every method, consuming nothing."""
    limiter, clock = make(kind)
    calls = [
        lambda: limiter.try_acquire(bad),
        lambda: limiter.acquire(bad),
        lambda: limiter.reserve(bad),
        lambda: asyncio.run(limiter.acquire_async(bad)),
    ]
    for call in calls:
        with pytest.raises(ValueError, match=r"^cost must be a positive finite number"):
            call()
    with pytest.raises(TypeError, match=r"^cost must be a number"):
        limiter.try_acquire("1")  # type: ignore[arg-type]
    assert limiter.statistics().level == 4.0
    assert clock.sleeps == []


@every_kind
def test_a_cost_above_capacity_raises_at_once_from_every_method(kind):
    """A cost above capacity raises CostTooLarge at once, never a wait that cannot end."""
    limiter, clock = make(kind)
    calls = [
        lambda: limiter.try_acquire(5),
        lambda: limiter.acquire(4.5),
        lambda: limiter.reserve(5),
        lambda: asyncio.run(limiter.acquire_async(5)),
    ]
    for call in calls:
        with pytest.raises(CostTooLarge, match=r"capacity of 4\.0"):
            call()
    assert clock.now() == 0.0
    assert clock.sleeps == []


@every_kind
@pytest.mark.parametrize("bad", [-1.0, math.nan])
def test_rejects_a_negative_timeout_and_max_wait(kind, bad):
    """A negative or NaN timeout or max_wait raises ValueError naming it."""
    limiter, _ = make(kind)
    with pytest.raises(ValueError, match=r"^timeout must be a non-negative"):
        limiter.acquire(1, timeout=bad)
    with pytest.raises(ValueError, match=r"^max_wait must be a non-negative"):
        limiter.reserve(1, max_wait=bad)
    assert limiter.statistics().level == 4.0


@every_kind
def test_boolean_cost_counts_as_one(kind):
    """True is accepted as a cost of one, as everywhere in Python."""
    limiter, _ = make(kind)
    assert limiter.try_acquire(True)
    assert limiter.statistics().level <= 3.0


@every_kind
def test_acquire_sleeps_once_for_exactly_the_retry_after(kind):
    """A blocking acquire sleeps once, for exactly the wait a denial announced."""
    limiter, clock = make(kind)
    retry_after = exhaust(limiter)
    start = clock.now()
    limiter.acquire()
    assert clock.sleeps == [retry_after]
    assert clock.now() == start + retry_after


@every_kind
def test_acquire_times_out_at_once_consuming_nothing(kind):
    """A wait longer than the timeout raises at once, without sleeping or consuming."""
    limiter, clock = make(kind)
    retry_after = exhaust(limiter)
    level = limiter.statistics().level
    with pytest.raises(AcquireTimeout) as info:
        limiter.acquire(1, timeout=retry_after / 2)
    assert info.value.retry_after == retry_after
    assert clock.sleeps == []
    stats = limiter.statistics()
    assert (stats.level, stats.timed_out) == (level, 1)
    limiter.acquire(1, timeout=retry_after)  # exactly fits
    assert clock.sleeps == [retry_after]


@every_kind
def test_a_set_cancel_event_stops_acquire_before_it_books(kind):
    """A cancel event already set stops an acquire before it books anything."""
    limiter, _ = make(kind)
    exhaust(limiter)
    level = limiter.statistics().level
    event = threading.Event()
    event.set()
    with pytest.raises(AcquireCancelled):
        limiter.acquire(cancel=event)
    assert limiter.statistics().level == level
    assert limiter.statistics().cancelled == 1


@every_kind
def test_a_wait_cancelled_midway_gives_back_its_booking(kind):
    """An acquire cancelled while it waits returns its booking."""
    stalling = StallingClock()
    limiter = KINDS[kind](stalling)  # type: ignore[arg-type]
    retry_after = exhaust(limiter)
    before = limiter.statistics()
    with pytest.raises(AcquireCancelled) as info:
        limiter.acquire(1, cancel=SetOnFirstWait())
    assert info.value.cost == 1.0
    assert isinstance(info.value.cost, float)
    after = limiter.statistics()
    assert after.level == before.level
    assert (after.cancelled, after.waiting, after.granted) == (1, 0, before.granted)
    # The slot it held is free again: the same question gets the same wait as before.
    assert limiter.try_acquire().retry_after == retry_after


class OversleepingClock:
    """A clock whose sleeps report cancellation only after sleeping past the deadline."""

    def __init__(self) -> None:
        self.fake = FakeClock()
        self.now = self.fake.now

    def sleep(self, seconds: float, cancel: object = None) -> bool:
        self.fake.advance(seconds + 1.0)
        return False

    async def sleep_async(self, seconds: float) -> None:
        self.fake.advance(seconds)


@every_kind
def test_a_cancellation_noticed_after_the_booking_fell_due_is_too_late(kind):
    """A wait cancelled only after its time came returns granted: the booking was used."""
    clock = OversleepingClock()
    limiter = KINDS[kind](clock)  # type: ignore[arg-type]
    exhaust(limiter)
    before = limiter.statistics()
    limiter.acquire(cancel=SetOnFirstWait())
    after = limiter.statistics()
    assert (after.granted, after.cancelled, after.waiting) == (before.granted + 1, 0, 0)


@every_kind
def test_waiters_are_served_in_arrival_order(kind):
    """Bookings are served in arrival order; a large cost is not overtaken."""
    limiter, _ = make(kind)
    exhaust(limiter)
    ready = [limiter.reserve(cost).ready_at for cost in (3, 1, 1)]
    # The large cost, booked first, is served first: never overtaken by small ones.
    assert ready == sorted(ready)


@every_kind
def test_reservation_cancel_refunds_the_latest_booking(kind):
    """Cancelling the latest reservation returns it exactly, once."""
    limiter, _ = make(kind)
    limiter.try_acquire()
    first = limiter.reserve(2)
    level = limiter.statistics().level
    second = limiter.reserve(3)
    assert second.cancel()
    assert not second.cancel()
    assert limiter.statistics().level == level
    assert limiter.reserve(3).ready_at == second.ready_at
    assert first.ok


@every_kind
def test_acquire_async_waits_exactly_and_times_out_at_once(kind):
    """acquire_async times out at once, or waits exactly as long as needed."""
    limiter, clock = make(kind)
    retry_after = exhaust(limiter)

    async def main() -> None:
        with pytest.raises(AcquireTimeout):
            await limiter.acquire_async(1, timeout=retry_after / 2)
        await limiter.acquire_async()

    asyncio.run(main())
    assert clock.sleeps == [retry_after]


@every_kind
def test_a_cancelled_async_task_gives_back_its_booking(kind):
    """Cancelling a waiting task returns its booking and propagates CancelledError."""
    stalling = StallingClock()
    limiter = KINDS[kind](stalling)  # type: ignore[arg-type]
    exhaust(limiter)
    level = limiter.statistics().level

    async def main() -> None:
        task = asyncio.create_task(limiter.acquire_async())
        await asyncio.sleep(0)
        assert limiter.statistics().waiting == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    stats = limiter.statistics()
    assert (stats.level, stats.waiting, stats.cancelled) == (level, 0, 1)


@every_kind
def test_statistics_count_every_outcome(kind):
    """Statistics count grants, denials and timeouts."""
    limiter, _ = make(kind)
    exhaust(limiter)
    limiter.reserve()
    with pytest.raises(AcquireTimeout):
        limiter.acquire(timeout=0)
    stats = limiter.statistics()
    assert stats.denied == 1
    assert stats.timed_out == 1
    assert stats.granted >= 2
    assert stats.capacity == 4.0


# -- constructors -------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [LeakyBucket, TokenBucket])
@pytest.mark.parametrize(
    ("args", "name"), [((0, 1), "rate"), ((1, 0), "capacity"), ((1, math.inf), "capacity")]
)
def test_buckets_name_a_bad_argument(cls, args, name):
    """A bad rate or capacity raises ValueError naming it."""
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        cls(*args)


@pytest.mark.parametrize("cls", [SlidingWindow, FixedWindow])
@pytest.mark.parametrize(
    ("args", "name"),
    [((0, 1), "limit"), ((-1, 1), "limit"), ((1, 0), "window"), ((1, math.nan), "window")],
)
def test_windows_name_a_bad_argument(cls, args, name):
    """A bad limit or window raises an error naming it."""
    with pytest.raises(ValueError, match=rf"^{name} must be a positive finite number"):
        cls(*args)
    with pytest.raises(TypeError, match=r"^limit must be a number"):
        cls("10", 1)


# -- LeakyBucket --------------------------------------------------------------------------


def test_leaky_bucket_spaces_grants_by_cost_over_rate_with_no_burst():
    """Grants drip out cost/rate apart; a long rest allows no burst."""
    clock = FakeClock()
    bucket = LeakyBucket("4/s", 10, clock=clock)
    assert bucket.try_acquire(2)
    denied = bucket.try_acquire()
    assert not denied
    assert denied.retry_after == 0.5  # 2 units at 4/s
    clock.advance(0.5)
    assert bucket.try_acquire()
    clock.advance(100)  # a long rest does not allow a burst
    assert bucket.try_acquire()
    assert not bucket.try_acquire()


def test_leaky_bucket_queues_at_most_its_capacity_then_refuses():
    """At most capacity waits are queued; the next is refused at once with QueueFull."""
    clock = FakeClock()
    bucket = LeakyBucket(10, 3, clock=clock)
    assert bucket.try_acquire()
    # 0.1 + 0.1 + 0.1 exceeds 0.3 in floats; the third waiter is still accepted.
    delays = [bucket.reserve().delay for _ in range(3)]
    assert delays == pytest.approx([0.1, 0.2, 0.3])
    refused = bucket.reserve()
    assert not refused.ok
    assert refused.delay == pytest.approx(0.4)
    with pytest.raises(
        QueueFull, match=r"longer than the 0\.3 s that a LeakyBucket queue holds"
    ) as info:
        bucket.acquire()
    assert isinstance(info.value, AcquireTimeout)
    assert info.value.timeout == 0.3
    assert clock.sleeps == []
    assert bucket.statistics().level == pytest.approx(-1.0)  # 4 units queued, room for 3
    clock.advance(0.15)
    assert bucket.reserve().ok  # one has dripped out: room again


# -- SlidingWindow ------------------------------------------------------------------------


def test_sliding_window_counts_each_grant_for_exactly_one_window():
    """A grant counts from its instant until exactly one window later."""
    clock = FakeClock()
    window = SlidingWindow(3, 10.0, clock=clock)
    assert (window.limit, window.window, window.capacity) == (3.0, 10.0, 3.0)
    for instant in (0.0, 4.0, 7.0):
        clock.advance_to(instant)
        assert window.try_acquire()
    clock.advance_to(9.0)
    denied = window.try_acquire()
    assert denied.retry_after == 1.0  # the grant at 0 leaves at 10
    clock.advance_to(10.0)
    assert window.try_acquire()
    assert not window.try_acquire(2)
    assert window.try_acquire(2).retry_after == 7.0  # 4 and 7 must both leave: at 17


def test_sliding_window_never_admits_more_than_its_limit_across_any_edge():
    """Unlike a fixed window, no burst of twice the limit around an edge."""
    clock = FakeClock(start=0.9)
    window = SlidingWindow(5, 1.0, clock=clock)
    assert sum(bool(window.try_acquire()) for _ in range(10)) == 5
    clock.advance_to(1.1)
    assert not window.try_acquire()


def test_sliding_window_memory_stays_bounded_and_calls_stay_cheap_for_large_limits():
    """100,000 per day: the log holds at most the window's entries, however long it runs."""
    clock = FakeClock()
    window = SlidingWindow(100_000, 86_400.0, clock=clock)
    granted = 0
    for _ in range(300_000):  # one call every half second, for 150,000 seconds
        clock.advance(0.5)
        granted += bool(window.try_acquire())
    # 100,000 by 50,000 s; then none until the first leaves at 86,400.5 s; then one
    # per call as the earlier ones leave, 100,000 more by 136,400 s; then none.
    assert granted == 200_000
    assert window.statistics().level == 0
    # White-box: the log never holds more than the limit's entries, plus expired ones
    # waiting for the next batch to be dropped (at most as many again).
    assert len(window._times) <= 2 * 100_000


def test_sliding_window_log_is_compacted_as_entries_expire():
    """Expired entries are dropped, and answers stay exact across compactions."""
    clock = FakeClock()
    window = SlidingWindow(100, 1.0, clock=clock)
    for _ in range(10_000):
        clock.advance(0.001)
        window.try_acquire()
    assert len(window._times) <= 2 * 100 + 32
    # Denial and exact retry_after still hold after many compactions.
    assert sum(bool(window.try_acquire()) for _ in range(200)) == 0
    decision = window.try_acquire()
    clock.advance(decision.retry_after)
    assert window.try_acquire()


def test_sliding_window_merges_grants_at_one_instant():
    """Grants at one instant share one log entry."""
    clock = FakeClock()
    window = SlidingWindow(1_000, 1.0, clock=clock)
    for _ in range(1_000):
        assert window.try_acquire()
    assert len(window._times) == 1
    assert not window.try_acquire()


# -- FixedWindow --------------------------------------------------------------------------


def test_fixed_window_resets_at_aligned_edges_allowing_an_edge_burst():
    """Windows reset at aligned edges, which allows the documented edge burst."""
    clock = FakeClock(start=0.5)
    window = FixedWindow(3, 1.0, clock=clock)
    assert (window.limit, window.window, window.capacity) == (3.0, 1.0, 3.0)
    assert sum(bool(window.try_acquire()) for _ in range(5)) == 3
    denied = window.try_acquire()
    assert denied.retry_after == 0.5
    clock.advance_to(0.999)
    assert not window.try_acquire()
    clock.advance_to(1.0)
    # The documented edge burst: 6 grants within half a second.
    assert sum(bool(window.try_acquire()) for _ in range(5)) == 3


@given(
    instant=st.floats(min_value=0, max_value=1e7),
    window=st.one_of(st.sampled_from([0.1, 0.3, 1.0, 7.0]), st.floats(1e-3, 1e4)),
)
def test_fixed_window_edges_agree_with_floor_to_the_float(instant, window):
    """The limiter's window edges are exactly where floor(t / window) changes."""
    limiter = FixedWindow(1, window)
    end = limiter._window_end(instant)
    index = math.floor(instant / window)
    assert math.floor(end / window) == index + 1
    assert math.floor(math.nextafter(end, -math.inf) / window) == index
