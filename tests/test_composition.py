"""Composition: `all_of`, the `limiter` constructor, and `Keyed`."""

from __future__ import annotations

import asyncio
import sys
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st
from specs import SPECS
from strategies import advances

from ratekit import (
    AllOf,
    FixedWindow,
    Keyed,
    LeakyBucket,
    QueueFull,
    Rate,
    SlidingWindow,
    TokenBucket,
    TooManyKeys,
    all_of,
    limiter,
)
from ratekit.testing import FakeClock

# -- all_of -------------------------------------------------------------------------------


def test_all_of_is_all_or_nothing():
    """A call one member denies takes nothing from the others."""
    clock = FakeClock()
    bucket = TokenBucket(1.0, 5, clock=clock)
    window = SlidingWindow(2, 10.0, clock=clock)
    both = all_of(bucket, window)
    assert both.try_acquire()
    assert both.try_acquire()
    denied = both.try_acquire()
    assert not denied
    assert bucket.statistics().level == 3.0  # untouched by the denial
    assert window.statistics().level == 0.0
    assert denied.retry_after == 10.0  # the window's wait, the longer of the two
    assert both.statistics().level == 0.0


def test_all_of_waits_for_the_earliest_instant_every_member_grants():
    """A blocking call waits for the first instant at which all members grant."""
    clock = FakeClock()
    bucket = TokenBucket(1.0, 1, clock=clock)  # next unit at 1 s
    window = FixedWindow(2, 3.0, clock=clock)  # next window at 3 s
    both = all_of(bucket, window)
    both.acquire()
    both.acquire()  # both members grant at 1 s
    assert clock.now() == 1.0
    both.acquire()  # the bucket could at 2 s, the window only at 3 s
    assert clock.now() == 3.0
    assert clock.sleeps == [1.0, 2.0]


def test_all_of_reservations_book_and_withdraw_every_member():
    """A reservation books every member, and cancelling it withdraws it from all."""
    clock = FakeClock()
    bucket = TokenBucket(1.0, 1, clock=clock)
    leaky = LeakyBucket(2.0, 5, clock=clock)
    both = all_of(bucket, leaky)
    assert both.try_acquire()
    reservation = both.reserve()
    assert reservation.delay == 1.0
    assert bucket.statistics().level == -1.0
    assert reservation.cancel()
    assert bucket.statistics().level == 0.0
    assert leaky.try_acquire().retry_after == 0.5  # its booking at 1 s was withdrawn


def test_all_of_respects_a_member_queue_bound():
    """A LeakyBucket member's queue bound limits the composition's waits."""
    clock = FakeClock()
    both = all_of(TokenBucket(1.0, 1, clock=clock), LeakyBucket(10.0, 1, clock=clock))
    both.try_acquire()
    with pytest.raises(QueueFull):
        both.acquire()  # the bucket needs 1 s, more than the leaky queue holds (0.1 s)
    assert not both.reserve().ok


def test_a_shared_bucket_still_grants_before_a_composed_booking_when_it_can():
    """A member booked ahead by a composition grants others what its level allows."""
    clock = FakeClock(start=0.5)
    bucket = TokenBucket(1.0, 10, clock=clock)
    window = FixedWindow(1, 1.0, clock=clock)
    both = all_of(bucket, window)
    assert both.try_acquire()  # the window is used until 1.0
    booked = both.reserve()
    assert booked.ready_at == 1.0  # the bucket is booked at 1.0, though full now
    assert bucket.reserve(5).delay == 0.0  # it still has 9 for earlier callers: 5 now
    assert bucket.try_acquire(3)  # and 3 more; the booking at 1.0 keeps its unit
    assert not bucket.try_acquire(2)
    assert booked.ready_at == 1.0


def test_all_of_flattens_nested_compositions_and_counts_a_limiter_once():
    """Nested compositions are flattened and duplicates count once."""
    clock = FakeClock()
    a, b, c = (TokenBucket(1.0, n, clock=clock) for n in (1, 2, 3))
    composed = all_of(all_of(a, b), c, a)
    assert isinstance(composed, AllOf)
    assert composed.members == (a, b, c)
    assert composed.capacity == 1.0
    assert repr(composed).startswith("all_of(TokenBucket(")
    assert composed.try_acquire()
    assert a.statistics().level == 0.0  # taken once, not twice


def test_all_of_rejects_what_it_cannot_compose():
    """Non-limiters, no limiters and mixed clocks are refused with clear errors."""
    with pytest.raises(ValueError, match="at least one limiter"):
        all_of()
    with pytest.raises(TypeError, match="argument 1 must be a ratekit limiter"):
        all_of(TokenBucket(1, 1), "10/s")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must share one clock"):
        all_of(TokenBucket(1, 1, clock=FakeClock()), TokenBucket(1, 1, clock=FakeClock()))
    # Limiters on the default clock compose, whichever instances they hold.
    assert all_of(TokenBucket(10, 20), SlidingWindow(10_000, 86_400)).capacity == 20


def test_compositions_sharing_members_in_opposite_orders_do_not_deadlock():
    """Threads on all_of(a, b), all_of(b, a), a and b finish, and never over-admit."""
    clock = FakeClock()
    a = TokenBucket(1.0, 1_000, clock=clock)
    b = SlidingWindow(1_000, 60.0, clock=clock)
    users = [all_of(a, b), all_of(b, a), a, b]
    now_grants = [0, 0, 0, 0]  # grants at the frozen instant, per user
    lock = threading.Lock()
    start = threading.Barrier(8)

    def work(index: int) -> None:
        user = users[index % 4]
        granted = 0
        start.wait()
        for _ in range(300):
            reservation = user.reserve()
            if reservation.ready_at == 0.0:
                granted += 1
            elif index % 2:  # withdraw some bookings ahead, which the clock never reaches
                reservation.cancel()
            granted += bool(user.try_acquire())
        with lock:
            now_grants[index % 4] += granted

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(8)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often, to interleave the lock taking
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)  # a deadlock would leave a thread alive here
            assert not thread.is_alive()
    finally:
        sys.setswitchinterval(interval)
    composed, direct_a, direct_b = now_grants[0] + now_grants[1], now_grants[2], now_grants[3]
    # At the frozen instant no member granted more than its capacity.  (Not always all
    # of it: a composition's booking ahead, held for the other member, makes a shared
    # member's later callers wait behind it, as all_of documents.)
    assert 0 < composed + direct_a <= 1_000
    assert 0 < composed + direct_b <= 1_000


class _InterruptedLock:
    """A lock whose acquire is interrupted, as by KeyboardInterrupt."""

    def acquire(self) -> bool:
        raise KeyboardInterrupt

    def release(self) -> None:
        raise AssertionError("never taken, so never released")


def test_an_interrupted_multi_lock_releases_what_it_took():
    """If taking one member's lock is interrupted, the locks already taken are released."""
    from ratekit._composite import _Locks

    taken = [threading.Lock() for _ in range(3)]
    locks = _Locks([*taken, _InterruptedLock()])  # type: ignore[list-item]
    locks._locks = (*taken, _InterruptedLock())  # type: ignore[assignment] # interrupted last
    with pytest.raises(KeyboardInterrupt):
        locks.acquire()
    assert not any(lock.locked() for lock in taken)


# -- limiter(...) -------------------------------------------------------------------------


def test_limiter_states_several_limits_in_one_line():
    """limiter('10/second, 1000/hour') enforces both limits."""
    clock = FakeClock()
    limits = limiter("10/second, 1000/hour", clock=clock)
    assert isinstance(limits, AllOf)
    assert [repr(member) for member in limits.members] == [
        "SlidingWindow(limit=10.0, window=1.0)",
        "SlidingWindow(limit=1000.0, window=3600.0)",
    ]
    assert sum(bool(limits.try_acquire()) for _ in range(20)) == 10  # 10 per second
    for _ in range(99):
        clock.advance(1.0)
        assert sum(bool(limits.try_acquire()) for _ in range(20)) == 10
    clock.advance(1.0)  # 1000 granted in 100 s: the hour is used up
    denied = limits.try_acquire()
    assert not denied
    assert denied.retry_after == 3500.0  # the first ten leave at 3600 s


def test_limiter_counts_the_hourly_quota():
    """The longer limit's exact retry_after is reported once it is reached."""
    clock = FakeClock()
    limits = limiter("10/second; 25/hour", clock=clock)
    granted = 0
    for _ in range(10):
        granted += sum(bool(limits.try_acquire()) for _ in range(20))
        clock.advance(1.0)
    assert granted == 25
    assert limits.try_acquire().retry_after == pytest.approx(3600.0 - 10.0)


def test_limiter_builds_one_strategy_per_limit():
    """One limit gives one strategy; several give their composition."""
    assert isinstance(limiter("5/s"), SlidingWindow)
    assert isinstance(limiter("5/s", strategy="fixed"), FixedWindow)
    bucket = limiter(Rate(90, per=60), strategy="token")
    assert isinstance(bucket, TokenBucket)
    assert bucket.capacity == 90.0
    composed = limiter("5/s", Rate(100, per=60.0))
    assert isinstance(composed, AllOf)
    assert len(composed.members) == 2


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        ((), {}, ValueError, "at least one limit"),
        (("5/s,",), {}, ValueError, "empty limit"),
        (("5/s, often",), {}, ValueError, "invalid rate 'often'"),
        ((5,), {}, TypeError, "argument 0 must be a Rate or text"),
        (("5/s",), {"strategy": "leaky"}, ValueError, "strategy must be one of"),
    ],
)
def test_limiter_explains_bad_input(args, kwargs, error, match):
    """Bad limits and strategies raise errors that say what is wrong."""
    with pytest.raises(error, match=match):
        limiter(*args, **kwargs)


# -- Keyed --------------------------------------------------------------------------------


def test_keyed_limits_each_key_on_its_own():
    """Each key has its own limiter, made on first use."""
    clock = FakeClock()
    keyed: Keyed[str] = Keyed(lambda: TokenBucket(1.0, 2, clock=clock))
    assert [bool(keyed.try_acquire("alice")) for _ in range(3)] == [True, True, False]
    assert keyed.try_acquire("bob", 2)
    assert len(keyed) == 2
    assert "alice" in keyed
    assert "carol" not in keyed
    stats = keyed.statistics("alice")
    assert stats is not None
    assert (stats.granted, stats.denied) == (2, 1)
    assert keyed.statistics("carol") is None
    assert keyed.reserve("alice").delay == 1.0
    keyed.acquire("bob")
    assert clock.now() == 1.0
    asyncio.run(keyed.acquire_async("bob"))
    assert clock.now() == 2.0


def test_keyed_forgets_only_keys_back_at_rest():
    """Only a key back at rest is forgotten; otherwise TooManyKeys is raised."""
    clock = FakeClock()
    keyed: Keyed[str] = Keyed(lambda: TokenBucket(1.0, 2, clock=clock), max_keys=2)
    assert keyed.max_keys == 2
    keyed.try_acquire("a", 2)  # at rest again at 2 s
    keyed.try_acquire("b", 1)  # at rest again at 1 s
    with pytest.raises(TooManyKeys) as info:
        keyed.try_acquire("c")
    assert info.value.retry_after == pytest.approx(1.0)
    assert "max_keys=2" in str(info.value)
    assert len(keyed) == 2
    clock.advance(1.0)
    assert keyed.try_acquire("c")  # b was at rest and is forgotten; a was not
    assert "b" not in keyed
    assert "a" in keyed
    assert keyed.evicted == 1
    assert not keyed.try_acquire("a", 2)  # a keeps its limit: nothing was reset


def test_keyed_keeps_a_key_with_a_booking_ahead():
    """A key with a booking ahead is not at rest and is kept."""
    clock = FakeClock()
    keyed: Keyed[str] = Keyed(lambda: SlidingWindow(1, 1.0, clock=clock), max_keys=1)
    keyed.try_acquire("a")
    keyed.reserve("a")  # booked at 1 s: a is not at rest before 2 s
    clock.advance(1.5)
    with pytest.raises(TooManyKeys):
        keyed.try_acquire("b")
    clock.advance(0.5)
    assert keyed.try_acquire("b")


def test_keyed_checks_its_arguments_and_factory():
    """Bad arguments, and a factory making non-limiters or mixed clocks, are refused."""
    with pytest.raises(TypeError, match="factory must be a callable"):
        Keyed(5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_keys must be at least 1"):
        Keyed(lambda: TokenBucket(1, 1), max_keys=0)
    with pytest.raises(TypeError, match="max_keys must be an integer"):
        Keyed(lambda: TokenBucket(1, 1), max_keys=2.5)  # type: ignore[arg-type]
    wrong: Keyed[str] = Keyed(lambda: "bucket")  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError, match="factory must return a ratekit limiter"):
        wrong.try_acquire("a")
    clocks = iter([FakeClock(), FakeClock()])
    mixed: Keyed[str] = Keyed(lambda: TokenBucket(1, 1, clock=next(clocks)))
    mixed.try_acquire("a")
    with pytest.raises(ValueError, match="one clock"):
        mixed.try_acquire("b")
    assert "max_keys=10000" in repr(mixed)


keyed_ops = st.lists(
    st.tuples(st.sampled_from("abcd"), advances, st.floats(0.1, 1.0), st.booleans()),
    max_size=40,
)


@pytest.mark.parametrize("spec", SPECS, ids=[spec.name for spec in SPECS])
@given(data=st.data(), ops=keyed_ops, max_keys=st.integers(1, 3))
def test_keyed_answers_as_if_it_never_forgot_anything(spec, data, ops, max_keys):
    """Bounded or not, every key gets the answers it would get from its own limiter.

    A key is forgotten only at rest, so a bounded `Keyed` answers exactly as a plain
    dictionary of limiters that keeps every key forever, except that it refuses new keys
    (TooManyKeys) when none can be forgotten.  Each key's grants keep its guarantee.
    """
    builder = data.draw(spec.builders)
    clock = FakeClock()
    keyed: Keyed[str] = Keyed(lambda: builder(clock).limiter, max_keys=max_keys)
    model_clock = FakeClock()
    model = {key: builder(model_clock) for key in "abcd"}
    grants: dict[str, list[tuple[float, float]]] = {key: [] for key in "abcd"}
    for key, seconds, fraction, book in ops:
        clock.advance(seconds)
        model_clock.advance(seconds)
        cost = fraction * model[key].limiter.capacity
        try:
            if book:
                reservation = keyed.reserve(key, cost)
            else:
                decision = keyed.try_acquire(key, cost)
        except TooManyKeys as error:
            assert key not in keyed
            assert len(keyed) == max_keys
            assert error.retry_after > 0  # noqa: PT017 - inside a loop of steps
            continue
        assert len(keyed) <= max_keys
        if book:
            expected = model[key].limiter.reserve(cost)
            assert (reservation.ok, reservation.ready_at) == (expected.ok, expected.ready_at)
            if reservation.ok:
                grants[key].append((reservation.ready_at, cost))
        else:
            assert decision == model[key].limiter.try_acquire(cost)
            if decision:
                grants[key].append((clock.now(), cost))
    for key, granted in grants.items():
        assert model[key].holds(granted)
