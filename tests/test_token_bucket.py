"""TokenBucket: behaviour, errors for bad input, and hypothesis properties on a FakeClock."""

from __future__ import annotations

import asyncio
import math
import threading

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import (
    EPSILON,
    JUST_BEFORE,
    advances,
    capacities,
    costs,
    rates,
    worst_interval_excess,
)

from ratekit import (
    AcquireCancelled,
    AcquireTimeout,
    CostTooLarge,
    Decision,
    LimiterStatistics,
    Rate,
    RateKitError,
    TokenBucket,
)
from ratekit.testing import FakeClock
from ratekit.typing import Limiter


def make(rate: float = 1.0, capacity: float = 5.0) -> tuple[TokenBucket, FakeClock]:
    """A bucket on a fresh FakeClock."""
    clock = FakeClock()
    return TokenBucket(rate, capacity, clock=clock), clock


# -- basic behaviour --------------------------------------------------------------------


def test_is_a_limiter():
    """TokenBucket satisfies the Limiter protocol."""
    assert isinstance(make()[0], Limiter)


def test_starts_full_and_refills_at_rate():
    """A new bucket grants its capacity at once, then one token per 1/rate seconds."""
    bucket, clock = make(rate=2.0, capacity=3)
    assert [bool(bucket.try_acquire()) for _ in range(4)] == [True, True, True, False]
    clock.advance(0.5)
    assert bucket.try_acquire()
    assert not bucket.try_acquire()


def test_decision_is_truthy_iff_granted():
    """A Decision is truthy iff granted; a grant has retry_after 0.0."""
    bucket, _ = make(capacity=1)
    granted = bucket.try_acquire()
    denied = bucket.try_acquire()
    assert granted
    assert granted.granted
    assert granted.retry_after == 0.0
    assert not denied
    assert not denied.granted
    assert denied.retry_after == 1.0
    assert Decision(True, 0.0) == granted


def test_accepts_rate_objects_numbers_and_text():
    """Rate may be a Rate, a per-second number or text."""
    clock = FakeClock()
    for rate in (Rate(90, per=60), 1.5, "90/minute"):
        bucket = TokenBucket(rate, 100, clock=clock)
        assert bucket.rate.per_second == 1.5
        assert bucket.capacity == 100.0
        assert bucket.clock is clock


def test_default_clock_is_monotonic():
    """Without a clock, a bucket uses the real monotonic clock."""
    bucket = TokenBucket(10, 1)
    assert type(bucket.clock).__name__ == "MonotonicClock"
    assert repr(bucket) == "TokenBucket(rate=Rate(limit=10.0, per=1.0), capacity=1.0)"


def test_never_refills_above_capacity():
    """However long it rests, the bucket holds at most its capacity."""
    bucket, clock = make(rate=100.0, capacity=3)
    clock.advance(1e6)
    assert sum(bool(bucket.try_acquire()) for _ in range(10)) == 3


def test_fractional_costs():
    """Costs need not be whole: 0.25 four times empties one token."""
    bucket, _ = make(rate=1.0, capacity=1)
    assert all(bucket.try_acquire(0.25) for _ in range(4))
    assert not bucket.try_acquire(0.25)


# -- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0, -1, math.nan, math.inf])
def test_rejects_bad_rate_and_capacity(bad):
    """A zero, negative, NaN or infinite rate or capacity raises ValueError naming it."""
    with pytest.raises(ValueError, match=r"^rate must be a positive finite number"):
        TokenBucket(bad, 10)
    with pytest.raises(ValueError, match=r"^capacity must be a positive finite number"):
        TokenBucket(1, bad)


def test_rejects_non_numbers():
    """A capacity that is not a number raises TypeError naming it."""
    with pytest.raises(TypeError, match=r"^capacity must be a number"):
        TokenBucket(1, "10")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="invalid rate 'fast'"):
        TokenBucket("fast", 10)


@pytest.mark.parametrize("bad", [0, -1, math.nan, math.inf, -math.inf])
def test_rejects_bad_cost_in_every_method(bad):
    """A bad cost raises ValueError naming cost from every method, consuming nothing."""
    bucket, _ = make()
    calls = [
        lambda: bucket.try_acquire(bad),
        lambda: bucket.acquire(bad),
        lambda: bucket.reserve(bad),
        lambda: asyncio.run(bucket.acquire_async(bad)),
    ]
    for call in calls:
        with pytest.raises(ValueError, match=r"^cost must be a positive finite number"):
            call()
    with pytest.raises(TypeError, match=r"^cost must be a number"):
        bucket.try_acquire("1")  # type: ignore[arg-type]
    assert bucket.statistics().level == 5.0


def test_cost_above_capacity_raises_at_once_from_every_method():
    """A cost above capacity raises CostTooLarge at once, never a wait that cannot end."""
    bucket, clock = make(capacity=5)
    calls = [
        lambda: bucket.try_acquire(6),
        lambda: bucket.acquire(6),
        lambda: bucket.acquire(5.5, timeout=None),
        lambda: bucket.reserve(6),
        lambda: asyncio.run(bucket.acquire_async(6)),
    ]
    for call in calls:
        with pytest.raises(CostTooLarge) as info:
            call()
        assert info.value.capacity == 5.0
        assert "capacity of 5.0" in str(info.value)
        assert isinstance(info.value, (ValueError, RateKitError))
    assert clock.now() == 0.0
    assert clock.sleeps == []


@pytest.mark.parametrize("bad", [-1.0, -1e-9, math.nan])
def test_rejects_negative_timeout_and_max_wait(bad):
    """A negative or NaN timeout or max_wait raises ValueError naming it."""
    bucket, _ = make()
    with pytest.raises(ValueError, match=r"^timeout must be a non-negative"):
        bucket.acquire(1, timeout=bad)
    with pytest.raises(ValueError, match=r"^timeout must be a non-negative"):
        asyncio.run(bucket.acquire_async(1, timeout=bad))
    with pytest.raises(ValueError, match=r"^max_wait must be a non-negative"):
        bucket.reserve(1, max_wait=bad)
    with pytest.raises(TypeError, match=r"^timeout must be a number"):
        bucket.acquire(1, timeout="1")  # type: ignore[arg-type]
    assert bucket.statistics().level == 5.0


# -- blocking -----------------------------------------------------------------------------


def test_acquire_sleeps_once_for_the_exact_delay():
    """A blocking acquire sleeps exactly once, for exactly the time the token needs."""
    bucket, clock = make(rate=4.0, capacity=1)
    bucket.acquire()
    bucket.acquire()
    assert clock.sleeps == [0.25]
    assert clock.now() == 0.25


def test_acquire_times_out_at_once_consuming_nothing():
    """A wait longer than the timeout raises AcquireTimeout without sleeping or consuming."""
    bucket, clock = make(rate=1.0, capacity=2)
    bucket.try_acquire(2)
    with pytest.raises(AcquireTimeout) as info:
        bucket.acquire(1, timeout=0.5)
    assert info.value.retry_after == 1.0
    assert info.value.timeout == 0.5
    assert isinstance(info.value, TimeoutError)
    assert clock.sleeps == []
    assert bucket.statistics().level == 0.0
    assert bucket.statistics().timed_out == 1
    bucket.acquire(1, timeout=1.0)  # exactly fits
    assert clock.now() == 1.0


def test_acquire_with_cancel_already_set_raises_and_consumes_nothing():
    """A set cancel event stops an acquire before it books anything."""
    bucket, _ = make(capacity=1)
    event = threading.Event()
    event.set()
    with pytest.raises(AcquireCancelled):
        bucket.acquire(cancel=event)
    assert bucket.statistics().level == 1.0
    assert bucket.statistics().cancelled == 1


def test_waiters_are_served_in_arrival_order_and_big_costs_are_not_starved():
    """Bookings are FIFO: a large cost booked first is served before later small ones."""
    bucket, clock = make(rate=1.0, capacity=5)
    bucket.try_acquire(5)
    big = bucket.reserve(5)
    small = bucket.reserve(1)
    assert big.ready_at == 5.0
    assert small.ready_at == 6.0
    clock.advance(5.5)
    assert not bucket.try_acquire(0.5)  # a late small call does not jump the queue


def test_reservation_delay_and_max_wait():
    """reserve() books the earliest slot; past max_wait it refuses and books nothing."""
    bucket, _ = make(rate=2.0, capacity=1)
    now = bucket.reserve()
    assert (now.ok, now.delay) == (True, 0.0)
    later = bucket.reserve(max_wait=1.0)
    assert (later.ok, later.delay, later.ready_at) == (True, 0.5, 0.5)
    refused = bucket.reserve(max_wait=0.9)
    assert (refused.ok, refused.delay) == (False, 1.0)
    assert refused.cancel() is False
    assert bucket.statistics().denied == 1


def test_reservation_cancel_refunds_and_is_idempotent():
    """Cancelling the latest reservation restores the level; a second cancel does nothing."""
    bucket, _ = make(rate=1.0, capacity=2)
    bucket.try_acquire(2)
    reservation = bucket.reserve(1)
    assert bucket.statistics().level == -1.0
    assert reservation.cancel() is True
    assert reservation.cancelled
    assert bucket.statistics().level == 0.0
    assert reservation.cancel() is False
    assert bucket.statistics().level == 0.0


def test_cancel_after_ready_returns_nothing():
    """A reservation whose time has passed counts as used: cancel gives nothing back."""
    bucket, clock = make(rate=1.0, capacity=1)
    reservation = bucket.reserve()
    clock.advance(0.5)
    assert reservation.cancel() is False
    assert not reservation.cancelled
    stats = bucket.statistics()
    assert (stats.level, stats.granted, stats.cancelled) == (0.5, 1, 0)


def test_withdrawn_reservation_moves_from_granted_to_cancelled():
    """A withdrawn reservation counts as cancelled, no longer as granted."""
    bucket, _ = make(rate=1.0, capacity=1)
    bucket.reserve()
    pending = bucket.reserve()
    assert bucket.statistics().granted == 2
    assert pending.cancel()
    stats = bucket.statistics()
    assert (stats.granted, stats.cancelled) == (1, 1)


def test_reservation_is_frozen():
    """A Reservation cannot be altered, so cancel() can trust what it holds."""
    bucket, _ = make()
    reservation = bucket.reserve()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        reservation.ready_at = 100.0  # type: ignore[misc]
    with pytest.raises(AttributeError):
        reservation.cancelled = True  # type: ignore[misc]


def test_boolean_cost_is_one_everywhere():
    """True counts as a cost of 1 and False as 0 (refused) in every method alike."""
    bucket, _ = make(capacity=2)
    assert bucket.try_acquire(True)
    bucket.acquire(True)
    assert bucket.statistics().level == 0.0
    with pytest.raises(ValueError, match=r"^cost must be"):
        bucket.try_acquire(False)


def test_cancel_with_later_bookings_keeps_their_slots():
    """Cancelling a booking that later bookings rely on frees nothing they rely on."""
    bucket, _ = make(rate=1.0, capacity=1)
    first = bucket.reserve()
    second = bucket.reserve()
    third = bucket.reserve()
    assert [first.ready_at, second.ready_at, third.ready_at] == [0.0, 1.0, 2.0]
    assert second.cancel() is True  # withdrawn, but the third still holds its slot at 2.0
    newcomer = bucket.reserve()
    assert newcomer.ready_at == 3.0
    assert newcomer.cancel() is True  # the latest booking gives back all of it
    assert bucket.reserve().ready_at == 3.0
    grants = [(r.ready_at, 1.0) for r in (first, third, newcomer)]
    assert worst_interval_excess(grants, 1.0, 1.0) <= EPSILON


def test_withdrawn_bookings_come_back_once_everything_after_them_is_withdrawn():
    """Cancelled in any order, a queue of bookings gives back everything in the end."""
    bucket, _ = make(rate=1.0, capacity=2)
    bucket.try_acquire(2)
    level = bucket.statistics().level
    queue = [bucket.reserve(cost) for cost in (1.0, 0.5, 2.0)]
    for index in (1, 0):  # the middle one, then the first: later bookings still stand
        assert queue[index].cancel()
        assert bucket.statistics().level == level - 3.5
    assert queue[2].cancel()  # the last one: now all three come back
    assert bucket.statistics().level == level
    assert bucket.reserve(2.0).ready_at == 2.0


def test_a_withdrawn_booking_is_lost_when_a_later_one_is_used():
    """If a booking made after a withdrawn one is used, the withdrawn cost stays spent."""
    bucket, clock = make(rate=1.0, capacity=1)
    bucket.try_acquire()
    first = bucket.reserve()
    second = bucket.reserve()
    assert first.cancel()
    clock.advance_to(second.ready_at + 0.5)  # the second one's time has passed: used
    assert not second.cancel()
    assert bucket.reserve().ready_at == 3.0


def test_statistics_snapshot():
    """statistics() counts grants, denials and waits, and is frozen."""
    bucket, _ = make(rate=1.0, capacity=1)
    bucket.try_acquire()
    bucket.try_acquire()
    bucket.acquire()
    stats = bucket.statistics()
    assert stats == LimiterStatistics(
        granted=2, denied=1, timed_out=0, cancelled=0, waiting=0, waited=1.0, level=0.0,
        capacity=1.0,
    )  # fmt: skip
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        stats.granted = 3  # type: ignore[misc]


# -- async --------------------------------------------------------------------------------


def test_acquire_async_waits_exactly_on_the_clock():
    """acquire_async sleeps on the clock for the exact delay, in arrival order."""
    bucket, clock = make(rate=10.0, capacity=1)

    async def main() -> list[float]:
        order: list[float] = []

        async def one() -> None:
            await bucket.acquire_async()
            order.append(clock.now())

        await asyncio.gather(*(one() for _ in range(3)))
        return order

    times = asyncio.run(main())
    assert times[0] == 0.0
    assert all(t >= i / 10 - EPSILON for i, t in enumerate(sorted(times)))
    assert bucket.statistics().granted == 3


def test_acquire_async_timeout_raises_at_once():
    """acquire_async with a timeout too short raises AcquireTimeout without sleeping."""
    bucket, clock = make(rate=1.0, capacity=1)
    bucket.try_acquire()
    with pytest.raises(AcquireTimeout):
        asyncio.run(bucket.acquire_async(timeout=0.1))
    assert clock.sleeps == []


# -- properties ---------------------------------------------------------------------------

operations = st.lists(
    st.tuples(advances, st.floats(min_value=0.01, max_value=1.0), st.booleans()),
    max_size=60,
)


@given(rate=rates, capacity=capacities, ops=operations)
def test_grants_never_exceed_capacity_plus_rate_times_t(rate, capacity, ops):
    """For any advances and costs, grants in any interval t sum to <= capacity + rate*t."""
    bucket = TokenBucket(rate, capacity, clock=FakeClock())
    clock = bucket.clock
    assert isinstance(clock, FakeClock)
    grants: list[tuple[float, float]] = []
    for advance, fraction, blocking in ops:
        clock.advance(advance)
        cost = fraction * capacity
        if blocking:
            reservation = bucket.reserve(cost)
            grants.append((reservation.ready_at, cost))
        elif bucket.try_acquire(cost):
            grants.append((clock.now(), cost))
    limit = rate.per_second
    assert worst_interval_excess(grants, capacity, limit) <= EPSILON * max(1.0, capacity)


@given(rate=rates, capacity=capacities, data=st.data())
def test_retry_after_is_exact(rate, capacity, data):
    """Denied with retry_after r: granted at now + r, denied a nanosecond before."""
    bucket = TokenBucket(rate, capacity, clock=FakeClock())
    clock = bucket.clock
    assert isinstance(clock, FakeClock)
    for _ in range(data.draw(st.integers(0, 5))):
        clock.advance(data.draw(advances))
        bucket.try_acquire(data.draw(costs(capacity)))
    cost = data.draw(costs(capacity))
    decision = bucket.try_acquire(cost)
    if decision:
        decision = bucket.try_acquire(capacity)
        cost = capacity
    if decision:
        return  # a full bucket after a full grant cannot happen; nothing to check
    start = clock.now()
    assert decision.retry_after > 0
    # Asking a nanosecond early is denied ...
    if decision.retry_after > JUST_BEFORE:
        clock.advance_to(start + decision.retry_after - JUST_BEFORE)
        assert not bucket.try_acquire(cost)
    # ... and waiting exactly retry_after is granted.
    clock.advance_to(start + decision.retry_after)
    assert bucket.try_acquire(cost)


@given(rate=rates, capacity=capacities, data=st.data())
def test_denied_call_changes_nothing(rate, capacity, data):
    """A denied try_acquire leaves the level and the next answer unchanged."""
    bucket = TokenBucket(rate, capacity, clock=FakeClock())
    clock = bucket.clock
    assert isinstance(clock, FakeClock)
    bucket.try_acquire(capacity)
    clock.advance(data.draw(st.floats(0, capacity / rate.per_second * 0.99)))
    cost = capacity
    first = bucket.try_acquire(cost)
    level = bucket.statistics().level
    second = bucket.try_acquire(cost)
    assert not first
    assert not second
    assert first.retry_after == second.retry_after
    assert bucket.statistics().level == level


@given(rate=rates, capacity=capacities, data=st.data())
def test_cancelling_the_latest_reservation_refunds_it(rate, capacity, data):
    """Reserving then cancelling (with nothing in between) leaves the level as it was."""
    bucket = TokenBucket(rate, capacity, clock=FakeClock())
    clock = bucket.clock
    assert isinstance(clock, FakeClock)
    for _ in range(data.draw(st.integers(0, 4))):
        clock.advance(data.draw(advances))
        bucket.reserve(data.draw(costs(capacity)))
    level = bucket.statistics().level
    reservation = bucket.reserve(data.draw(costs(capacity)))
    assert reservation.cancel()
    assert bucket.statistics().level == pytest.approx(level, abs=1e-9 * capacity)


@given(
    rate=rates,
    capacity=st.integers(min_value=1, max_value=100),
    start=st.sampled_from([0.0, 1e5, 1e6, 1e8, 1e9]),
    surplus=st.floats(min_value=0.01, max_value=1000.0),
)
def test_a_rested_bucket_grants_exactly_its_capacity_at_any_clock_reading(
    rate, capacity, start, surplus
):
    """Whatever the clock reads, a full bucket grants cost == capacity, and whole units add up."""
    clock = FakeClock(start=start)
    bucket = TokenBucket(rate, capacity, clock=clock)
    assert bucket.try_acquire(capacity)
    # Rest long enough to refill the capacity and then some (the boundary itself is a
    # float coin toss, and not what this test is about).
    clock.advance(capacity / rate.per_second * (1 + surplus))
    assert sum(bool(bucket.try_acquire()) for _ in range(capacity + 1)) == capacity
