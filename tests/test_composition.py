"""Composition: `all_of`, the `limiter` constructor, and `Keyed`."""

from __future__ import annotations

import asyncio
import sys
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st
from specs import SPECS
from stepped_clock import SteppedClock
from strategies import advances

from ratekit import (
    AcquireCancelled,
    AcquireTimeout,
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
    with pytest.raises(TypeError, match="argument 2 must be a limiter"):
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
        ((5,), {}, TypeError, "argument 1 must be a Rate or text"),
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
    with pytest.raises(TypeError, match="factory must return a limiter"):
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


# -- Keyed with shared limits ----------------------------------------------------------------


def test_keyed_forgets_a_key_whose_own_part_rests_while_a_shared_limit_is_busy():
    """Steady traffic on a shared account limit does not keep keys from being forgotten."""
    clock = FakeClock()
    account = TokenBucket("10/s", capacity=10, clock=clock)
    keyed: Keyed[str] = Keyed(
        lambda: TokenBucket("1/s", capacity=5, clock=clock), max_keys=2, shared=[account]
    )
    assert keyed.shared == (account,)
    assert keyed.try_acquire("a")
    assert keyed.try_acquire("b")
    for step in range(1, 11):  # the account is used every 0.5 s: never back at rest
        clock.advance(0.5)
        assert account.try_acquire()
        assert account.statistics().level < account.capacity
        if step < 2:  # a and b each refill their one token after 1 s
            with pytest.raises(TooManyKeys):
                keyed.try_acquire(f"new {step}")
    assert keyed.try_acquire("c")  # a is at rest on its own: forgotten
    assert "a" not in keyed
    assert keyed.evicted == 1
    assert (keyed.statistics("c") or pytest.fail("c is held")).granted == 1


def test_keyed_shared_limits_hold_for_every_key_together():
    """A shared limit counts the calls of every key: the keys' own limits are not enough."""
    clock = FakeClock()
    account = SlidingWindow(3, 1.0, clock=clock)
    keyed: Keyed[str] = Keyed(lambda: TokenBucket("5/s", capacity=5, clock=clock), shared=[account])
    assert [bool(keyed.try_acquire(key)) for key in "abcd"] == [True, True, True, False]
    assert keyed.try_acquire("d").retry_after == 1.0  # the account's window, not d's bucket
    assert account.statistics().granted == 0  # granted through the keys, counted there


def test_keyed_checks_its_shared_limits():
    """Shared must be limiters on one clock, which the factory's limiters read too."""
    with pytest.raises(TypeError, match=r"shared\[1\] must be a limiter"):
        Keyed(lambda: TokenBucket(1, 1), shared=[TokenBucket(1, 1), "account"])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="shared must be a list of limiters"):
        Keyed(lambda: TokenBucket(1, 1), shared=TokenBucket(1, 1))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"shared\[1\] reads"):
        Keyed(
            lambda: TokenBucket(1, 1),
            shared=[TokenBucket(1, 1, clock=FakeClock()), TokenBucket(1, 1, clock=FakeClock())],
        )
    clock = FakeClock()
    other: Keyed[str] = Keyed(lambda: TokenBucket(1, 1), shared=[TokenBucket(1, 1, clock=clock)])
    with pytest.raises(ValueError, match="the shared limiters' clock"):
        other.try_acquire("a")
    assert "shared=[TokenBucket(" in repr(other)


def test_keyed_acquire_on_a_full_table_waits_for_a_key_to_rest():
    """A blocking acquire for a new key waits, within its timeout, for a key to rest."""
    clock = FakeClock()
    keyed: Keyed[str] = Keyed(lambda: SlidingWindow(1, 10.0, clock=clock), max_keys=1)
    assert keyed.try_acquire("a")  # a rests at t=10
    with pytest.raises(TooManyKeys) as full:
        keyed.acquire("b", timeout=9.5)  # refused at once: the wait would not fit
    assert full.value.retry_after == 10.0
    assert clock.sleeps == []
    stop = threading.Event()
    stop.set()
    with pytest.raises(AcquireCancelled):
        keyed.acquire("b", cancel=stop)
    assert clock.sleeps == []
    assert "b" not in keyed
    keyed.acquire("b", timeout=10.0)  # the table's wait and the limiter's fit in 10 s
    assert clock.sleeps == [10.0]
    assert clock.now() == 10.0
    assert "b" in keyed
    assert "a" not in keyed
    keyed.acquire("c")  # b rests at t=20, then c is granted at once
    assert clock.sleeps == [10.0, 10.0]


def test_keyed_acquire_async_waits_for_a_key_to_rest_too():
    """The same wait for asyncio, and the timeout covers the limiter's wait as well."""
    clock = FakeClock()
    keyed: Keyed[str] = Keyed(lambda: SlidingWindow(1, 10.0, clock=clock), max_keys=1)
    assert keyed.try_acquire("a")

    async def main() -> None:
        with pytest.raises(TooManyKeys):
            await keyed.acquire_async("b", timeout=5.0)
        await keyed.acquire_async("b", timeout=10.0)
        assert clock.now() == 10.0
        await keyed.acquire_async("b", timeout=100.0)  # b's own window: 10 s more
        assert clock.now() == 20.0

    asyncio.run(main())
    assert clock.sleeps == [10.0, 10.0]


def all_busy(parts):
    """Whether none of *parts* is at rest (a fresh one would answer differently)."""
    for part in parts:
        with part._lock:
            now = part.clock.now()
            if part._rest_at_locked(now) <= now:
                return False
    return True


shared_ops = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c", "d", None]), advances, st.floats(0.1, 1.0), st.booleans()
    ),
    max_size=40,
)


@pytest.mark.parametrize("spec", SPECS, ids=[spec.name for spec in SPECS])
@given(data=st.data(), ops=shared_ops, max_keys=st.integers(1, 3))
def test_keyed_with_shared_limits_answers_as_if_it_never_forgot_anything(spec, data, ops, max_keys):
    """With a shared limit used by the keys and directly, forgetting changes no answer.

    The model keeps every key forever, each composed with its own copy of the shared
    limit's state; the shared limit and every key keep their guarantees on the grants
    they made, and a key is refused (TooManyKeys) only when every key held has its own
    part busy.
    """
    builder = data.draw(spec.builders)
    shared_builder = data.draw(data.draw(st.sampled_from(SPECS)).builders)
    clock, model_clock = FakeClock(), FakeClock()
    shared = shared_builder(clock)
    keyed: Keyed[str] = Keyed(
        lambda: builder(clock).limiter, max_keys=max_keys, shared=[shared.limiter]
    )
    model_shared = shared_builder(model_clock)
    own = {key: builder(model_clock) for key in "abcd"}
    model = {key: all_of(own[key].limiter, model_shared.limiter) for key in "abcd"}
    grants: dict[str, list[tuple[float, float]]] = {key: [] for key in "abcd"}
    shared_grants: list[tuple[float, float]] = []
    for key, seconds, fraction, book in ops:
        clock.advance(seconds)
        model_clock.advance(seconds)
        if key is None:  # the shared limit used directly, as by another composition
            cost = fraction * shared.limiter.capacity
            decision = shared.limiter.try_acquire(cost)
            assert decision == model_shared.limiter.try_acquire(cost)
            if decision:
                shared_grants.append((clock.now(), cost))
            continue
        cost = fraction * model[key].capacity
        try:
            if book:
                reservation = keyed.reserve(key, cost)
            else:
                decision = keyed.try_acquire(key, cost)
        except TooManyKeys:
            assert key not in keyed
            assert len(keyed) == max_keys
            # every key held has its own part busy, however busy the shared limit is
            assert all_busy([own[held].limiter for held in "abcd" if held in keyed])
            continue
        assert len(keyed) <= max_keys
        if book:
            expected = model[key].reserve(cost)
            assert (reservation.ok, reservation.ready_at) == (expected.ok, expected.ready_at)
            if reservation.ok:
                grants[key].append((reservation.ready_at, cost))
                shared_grants.append((reservation.ready_at, cost))
        else:
            assert decision == model[key].try_acquire(cost)
            if decision:
                grants[key].append((clock.now(), cost))
                shared_grants.append((clock.now(), cost))
    for key, granted in grants.items():
        assert own[key].holds(granted)
    assert model_shared.holds(shared_grants)


def test_keyed_acquire_waiting_for_the_table_ends_when_cancelled():
    """A thread waiting a minute for the table: setting its event ends the wait at once."""
    keyed: Keyed[str] = Keyed(lambda: SlidingWindow(1, 60.0), max_keys=1)
    assert keyed.try_acquire("a")  # a rests in a minute
    stop = threading.Event()
    raised: list[BaseException] = []

    def wait() -> None:
        try:
            keyed.acquire("b", cancel=stop)
        except AcquireCancelled as error:
            raised.append(error)

    waiter = threading.Thread(target=wait)
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive()  # waiting for a to rest
    stop.set()
    waiter.join(10.0)
    assert not waiter.is_alive()
    assert len(raised) == 1
    assert "b" not in keyed
    assert keyed.statistics("a").granted == 1  # type: ignore[union-attr]


# -- a member shared by several compositions ------------------------------------------------


def start(target, *args, **kwargs):
    """Run *target* in a thread; return the thread and the list its outcome goes into."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(target(*args, **kwargs))
        except Exception as error:  # noqa: BLE001 - handed to the test, which checks it
            outcome.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def test_a_far_wait_on_one_composition_does_not_freeze_a_shared_member():
    """The issue's case: a's daily quota is spent; its waiter leaves per_second to others."""
    clock = SteppedClock()
    per_second = TokenBucket("10/s", capacity=10, clock=clock)
    a = all_of(per_second, SlidingWindow(5, 86_400, clock=clock))
    b = all_of(per_second, SlidingWindow(10_000, 86_400, clock=clock))
    for _ in range(5):
        assert a.try_acquire()  # a's quota: spent until t=86400
    waiter, outcome = start(a.acquire)
    clock.settle([waiter])
    assert clock.asleep(waiter)
    assert b.try_acquire()  # not frozen: b and per_second grant as before
    assert per_second.try_acquire()
    assert per_second.statistics().level == 3.0  # 10 - 5 - 1 - 1: nothing booked ahead
    assert a.statistics().waiting == 1
    clock.advance(86_399.8, [waiter])  # a slot (0.1 s) before a's quota frees
    assert per_second.statistics().level >= -1.0  # booked at most one slot ahead
    clock.advance(0.2, [waiter])
    waiter.join(5.0)
    assert outcome == [None]
    assert a.statistics().granted == 6
    assert per_second.statistics().level <= 10.0


def test_a_shared_member_is_booked_at_most_one_slot_ahead_of_its_own_need():
    """Just before the binding member frees, every member is booked for the common instant."""
    clock = SteppedClock()
    shared = TokenBucket("2/s", capacity=2, clock=clock)  # one slot: 0.5 s
    quota = SlidingWindow(1, 10.0, clock=clock)
    api = all_of(shared, quota)
    assert api.try_acquire()
    waiter, outcome = start(api.acquire)
    clock.advance(9.4, [waiter])
    decision = shared.try_acquire(2)  # the bucket is full, and not yet booked
    assert decision
    clock.advance(0.1, [waiter])  # t=9.5: within one slot of t=10, the waiter books
    refused = shared.try_acquire()
    assert not refused
    # The bucket alone would grant at t=9.9 (0.2 tokens + 0.4 s of refill); booked for
    # t=10, the waiter holds it one slot (0.5 s) longer at most.
    assert 0.4 < refused.retry_after <= 0.4 + 0.5 + 1e-9
    clock.advance(0.5, [waiter])
    waiter.join(5.0)
    assert outcome == [None]
    assert clock.now() == 10.0


def test_a_deferred_wait_keeps_its_timeout_and_is_cancellable():
    """Timeouts refuse at once as before; a cancelled deferred wait books nothing."""
    clock = SteppedClock()
    shared = TokenBucket("10/s", capacity=10, clock=clock)
    quota = SlidingWindow(1, 100.0, clock=clock)
    api = all_of(shared, quota)
    assert api.try_acquire()
    with pytest.raises(AcquireTimeout):
        api.acquire(timeout=50.0)
    stop = threading.Event()
    waiter, outcome = start(api.acquire, cancel=stop)
    clock.advance(10.0, [waiter])
    stop.set()
    waiter.join(5.0)
    assert len(outcome) == 1
    assert isinstance(outcome[0], AcquireCancelled)
    stats = api.statistics()
    assert (stats.cancelled, stats.waiting, stats.granted) == (1, 0, 1)
    assert shared.statistics().level == 10.0  # nothing booked on either member
    clock.advance(90.0)
    assert api.try_acquire()  # the slot at t=100 is free for whoever asks


def test_a_deferred_waiter_overtaken_waits_again_within_its_timeout():
    """Two waiters on one quota: the one that books first wins; the other times out."""
    clock = SteppedClock()
    shared = TokenBucket("10/s", capacity=10, clock=clock)
    api = all_of(shared, SlidingWindow(1, 100.0, clock=clock))
    assert api.try_acquire()
    first, got_first = start(api.acquire, timeout=150.0)
    clock.settle([first])
    second, got_second = start(api.acquire, timeout=150.0)
    clock.advance(100.0, [first, second])
    clock.advance(60.0, [first, second])
    for thread in (first, second):
        thread.join(5.0)
    outcomes = got_first + got_second
    assert outcomes.count(None) == 1  # one grant at t=100
    [error] = [outcome for outcome in outcomes if outcome is not None]
    assert isinstance(error, AcquireTimeout)  # the next slot, t=200, is past 150 s
    assert api.statistics().granted == 2


def test_keyed_with_a_shared_limit_and_a_spent_own_quota_does_not_freeze_the_others():
    """A key waiting a day for its own quota leaves the shared account to the other keys."""
    clock = SteppedClock()
    account = TokenBucket("10/s", capacity=10, clock=clock)
    keyed: Keyed[str] = Keyed(
        lambda: SlidingWindow(2, 86_400, clock=clock), max_keys=4, shared=[account]
    )
    assert keyed.try_acquire("alice", 2)  # alice's day is spent
    waiter, outcome = start(keyed.acquire, "alice")
    clock.settle([waiter])
    assert keyed.try_acquire("bob")
    assert account.statistics().level == 7.0
    clock.advance(86_400.0, [waiter])
    waiter.join(5.0)
    assert outcome == [None]
