"""The pyrate-limiter adapter: any bucket or Limiter as a ratekit Limiter."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import multiprocessing
import pickle
import threading
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pyrate_limiter import (
    BucketAsyncWrapper,
    InMemoryBucket,
    Limiter,
    MultiprocessBucket,
    Rate,
    RateItem,
    SQLiteBucket,
)

from ratekit import AcquireCancelled, AcquireTimeout, CostTooLarge
from ratekit._clock import MONOTONIC
from ratekit.stores import StoreUnavailable
from ratekit.stores._pyrate import PyrateLimiter, multiprocess_limiter
from ratekit.testing import FakeClock
from ratekit.typing import Limiter as LimiterProtocol

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

# Multiprocessing locks are made here: their finalizers run between tests (conftest).
pytestmark = pytest.mark.usefixtures("collect_garbage")

#: Half a millisecond: well inside the millisecond that pyrate-limiter stamps in.
HALF_MS = 0.0005


def adapter(*rates: Rate, clock: FakeClock | None = None) -> tuple[PyrateLimiter, FakeClock]:
    """An adapter over a fresh InMemoryBucket, stamping on a fake clock."""
    clock = FakeClock(start=1000.0) if clock is None else clock
    return PyrateLimiter(InMemoryBucket(list(rates)), clock=clock), clock


def exceeds(grants: list[tuple[float, int]], limit: int, window: float) -> bool:
    """Whether some half-open window ``[t, t + window)`` holds more than *limit* units."""
    ordered = sorted(grants)
    for index, (start, _) in enumerate(ordered):
        total = sum(cost for at, cost in ordered[index:] if at < start + window)
        if total > limit:
            return True
    return False


@st.composite
def rate_lists(draw: st.DrawFn) -> list[Rate]:
    """One to three pyrate rates that pyrate accepts together (tighter over longer)."""
    limit = draw(st.integers(min_value=1, max_value=6))
    interval = draw(st.integers(min_value=1, max_value=400))
    rates = [Rate(limit, interval)]
    for _ in range(draw(st.integers(min_value=0, max_value=2))):
        factor = draw(st.integers(min_value=2, max_value=4))
        bigger = draw(st.integers(min_value=limit + 1, max_value=limit * factor))
        limit, interval = bigger, interval * factor
        rates.append(Rate(limit, interval))
    return rates


steps = st.lists(
    st.tuples(
        st.one_of(
            st.just(0.0),
            st.floats(min_value=1e-6, max_value=2e-3),
            st.floats(min_value=2e-3, max_value=1.0),
        ),
        st.integers(min_value=1, max_value=6),
        st.booleans(),
    ),
    max_size=60,
)


def sqlite_adapter(*rates: Rate) -> tuple[PyrateLimiter, FakeClock]:
    """An adapter over a fresh SQLiteBucket (in memory), stamping on a fake clock."""
    clock = FakeClock(start=1000.0)
    bucket = SQLiteBucket.init_from_file(list(rates), table="limits", db_path=":memory:")
    return PyrateLimiter(bucket, clock=clock), clock


@pytest.mark.parametrize("make", [adapter, sqlite_adapter], ids=["memory", "sqlite"])
@given(rates=rate_lists(), workload=steps)
def test_grants_keep_the_sliding_log_guarantee_and_retry_after_is_exact(
    make: Callable[..., tuple[PyrateLimiter, FakeClock]],
    rates: list[Rate],
    workload: list[tuple[float, int, bool]],
) -> None:
    """No rate ever has more than its limit in a window; waiting retry_after is enough, exactly.

    On pyrate-limiter's in-memory bucket and on its SQLite bucket, which shared limits use.
    """
    limiter, clock = make(*rates)
    with contextlib.closing(limiter):
        check_workload(limiter, clock, rates, workload)


def check_workload(
    limiter: PyrateLimiter,
    clock: FakeClock,
    rates: list[Rate],
    workload: list[tuple[float, int, bool]],
) -> None:
    """Run *workload*; check the guarantee of every rate and the exactness of retry_after."""
    grants: list[tuple[float, int]] = []
    for advance, wanted, wait in workload:
        clock.advance(advance)
        cost = min(wanted, int(limiter.capacity))
        decision = limiter.try_acquire(cost)
        if decision:
            grants.append((clock.now(), cost))
            continue
        assert decision.retry_after > 0
        if not wait:
            continue
        ready = clock.now() + decision.retry_after
        if decision.retry_after > HALF_MS:  # half a millisecond early is still refused
            clock.advance_to(ready - HALF_MS)
            assert not limiter.try_acquire(cost)
        clock.advance_to(ready)
        assert limiter.try_acquire(cost), "refused after waiting its retry_after"
        grants.append((clock.now(), cost))
    for rate in rates:
        assert not exceeds(grants, rate.limit, rate.interval / 1000)


def test_retry_after_covers_every_rate_not_only_the_first_that_refused() -> None:
    """With several rates, retry_after is the wait for all of them together."""
    limiter, clock = adapter(Rate(1, 1000), Rate(2, 10_000))
    assert limiter.try_acquire()
    clock.advance(1.001)
    assert limiter.try_acquire()
    clock.advance(0.001)
    # The per-second rate frees up in 1 s; the ten-second one only at t=10.001.
    decision = limiter.try_acquire()
    assert decision.retry_after == pytest.approx(10.001 - 1.002)
    clock.advance(decision.retry_after)
    assert limiter.try_acquire()


def test_is_a_ratekit_limiter_with_the_bucket_capacity() -> None:
    """The adapter passes the runtime Limiter check; capacity is the smallest limit."""
    limiter, _ = adapter(Rate(3, 1000), Rate(10, 60_000))
    assert isinstance(limiter, LimiterProtocol)
    assert limiter.capacity == 3
    assert [str(rate) for rate in limiter.rates] == ["3/1s", "10/60s"]
    assert "InMemoryBucket" in repr(limiter)


@pytest.mark.parametrize(
    ("call", "name", "kind"),
    [
        (lambda lim: lim.try_acquire(1.5), "cost", ValueError),
        (lambda lim: lim.try_acquire(0), "cost", ValueError),
        (lambda lim: lim.try_acquire(math.nan), "cost", ValueError),
        (lambda lim: lim.try_acquire("1"), "cost", TypeError),
        (lambda lim: lim.acquire(2.5), "cost", ValueError),
        (lambda lim: lim.acquire(timeout=-1), "timeout", ValueError),
        (lambda lim: lim.reserve(max_wait=-1), "max_wait", ValueError),
        (lambda lim: PyrateLimiter(object()), "source", TypeError),  # type: ignore[arg-type]
        (lambda lim: PyrateLimiter(lim.bucket, name=1), "name", TypeError),  # type: ignore[arg-type]
        (lambda lim: PyrateLimiter(lim.bucket, timeout=-2), "timeout", ValueError),
    ],
)
def test_errors_name_the_argument_at_fault(call, name, kind) -> None:  # type: ignore[no-untyped-def]
    """A bad argument raises at once, naming it."""
    limiter, _ = adapter(Rate(3, 1000))
    with pytest.raises(kind, match=name):
        call(limiter)


def test_a_cost_above_the_smallest_limit_raises_cost_too_large_everywhere() -> None:
    """CostTooLarge, with the capacity, from every method and without waiting."""
    limiter, clock = adapter(Rate(3, 1000), Rate(5, 10_000))
    for call in (
        limiter.try_acquire,
        limiter.acquire,
        limiter.reserve,
        lambda cost: asyncio.run(limiter.acquire_async(cost)),
    ):
        with pytest.raises(CostTooLarge) as caught:
            call(4)
        assert caught.value.capacity == 3
    assert clock.sleeps == []
    assert limiter.try_acquire(3)


def test_acquire_sleeps_exactly_the_reported_wait() -> None:
    """A blocked acquire sleeps once for exactly retry_after, then is granted."""
    limiter, clock = adapter(Rate(2, 1000))
    limiter.acquire(2)
    retry_after = limiter.try_acquire().retry_after
    assert retry_after == pytest.approx(1.001)
    limiter.acquire()
    assert clock.sleeps == [retry_after]
    stats = limiter.statistics()
    assert (stats.granted, stats.denied, stats.waiting) == (2, 1, 0)
    assert stats.waited == pytest.approx(retry_after)


def test_acquire_times_out_at_once_without_sleeping_or_consuming() -> None:
    """A wait beyond the timeout raises AcquireTimeout at once; nothing is stored."""
    limiter, clock = adapter(Rate(1, 2000))
    assert limiter.try_acquire()
    with pytest.raises(AcquireTimeout) as caught:
        limiter.acquire(timeout=1.0)
    assert caught.value.retry_after == pytest.approx(2.001)
    assert caught.value.timeout == 1.0
    assert clock.sleeps == []
    assert limiter.statistics().timed_out == 1
    clock.advance(2.001)
    assert limiter.try_acquire()


def test_a_set_cancel_event_stops_acquire_before_it_tries() -> None:
    """An already-set cancel event raises AcquireCancelled and takes nothing."""
    limiter, _ = adapter(Rate(1, 1000))
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(AcquireCancelled):
        limiter.acquire(cancel=cancel)
    assert limiter.try_acquire()
    assert limiter.statistics().cancelled == 1


def test_cancelling_a_real_wait_wakes_it_at_once_and_takes_nothing() -> None:
    """A waiter on the real clock is woken by its cancel event and consumes nothing."""
    bucket = InMemoryBucket([Rate(1, 60_000)])
    limiter = PyrateLimiter(bucket)
    assert limiter.try_acquire()
    cancel = threading.Event()
    outcome: list[BaseException] = []

    def wait() -> None:
        try:
            limiter.acquire(cancel=cancel)
        except AcquireCancelled as error:
            outcome.append(error)

    waiter = threading.Thread(target=wait)
    waiter.start()
    deadline = MONOTONIC.now() + 30
    while limiter.statistics().waiting == 0:
        assert MONOTONIC.now() < deadline, "the waiter never started waiting"
        MONOTONIC.sleep(0.001)
    cancel.set()
    waiter.join(timeout=30)
    assert not waiter.is_alive()
    assert len(outcome) == 1
    assert bucket.count() == 1


def test_acquire_async_waits_exactly_and_times_out_at_once() -> None:
    """The asyncio twin sleeps the exact wait and refuses a wait beyond its timeout."""
    limiter, clock = adapter(Rate(1, 500))

    async def main() -> None:
        await limiter.acquire_async()
        await limiter.acquire_async()
        assert clock.sleeps == [pytest.approx(0.501)]
        with pytest.raises(AcquireTimeout):
            await limiter.acquire_async(timeout=0.1)

    asyncio.run(main())
    assert len(clock.sleeps) == 1


def test_reserve_is_granted_only_when_usable_now() -> None:
    """A reservation is granted now or refuses with the delay; it never books the future."""
    limiter, clock = adapter(Rate(1, 1000))
    now = clock.now()
    granted = limiter.reserve()
    assert (granted.ok, granted.delay, granted.ready_at) == (True, 0.0, now)
    assert not granted.cancel()  # used at once: nothing to give back
    refused = limiter.reserve(max_wait=10.0)
    assert not refused.ok
    assert refused.delay == pytest.approx(1.001)
    assert refused.ready_at == pytest.approx(now + 1.001)
    clock.advance(refused.delay)
    assert limiter.try_acquire()


def test_statistics_count_each_outcome_and_read_the_level() -> None:
    """statistics() counts grants, denials and timeouts, and reads the level."""
    limiter, _ = adapter(Rate(3, 1000), Rate(4, 10_000))
    assert limiter.try_acquire(2)
    assert not limiter.try_acquire(2)
    with pytest.raises(AcquireTimeout):
        limiter.acquire(2, timeout=0)
    stats = limiter.statistics()
    assert (stats.granted, stats.denied, stats.timed_out) == (1, 1, 1)
    assert (stats.level, stats.capacity) == (1.0, 3.0)


def test_wraps_a_pyrate_limiter_on_real_time() -> None:
    """A pyrate Limiter works through the adapter; its rate holds on real time."""
    with Limiter(InMemoryBucket([Rate(3, 200)])) as pyrate:
        limiter = PyrateLimiter(pyrate, name="shared")
        assert all(limiter.try_acquire() for _ in range(3))
        refused = limiter.try_acquire()
        assert not refused
        assert 0 < refused.retry_after <= 0.201
        started = MONOTONIC.now()
        limiter.acquire()
        assert MONOTONIC.now() - started >= refused.retry_after - 0.002
        assert limiter.statistics().granted == 4
        with pytest.raises(ValueError, match="clock"):
            PyrateLimiter(pyrate, clock=FakeClock())


def test_refuses_an_asynchronous_bucket() -> None:
    """An async bucket is refused with a clear TypeError."""
    with pytest.raises(TypeError, match="synchronous"):
        PyrateLimiter(BucketAsyncWrapper(InMemoryBucket([Rate(1, 1000)])))


class _BrokenBucket(InMemoryBucket):
    """A bucket whose store is down; its client's error text holds a password."""

    def put(self, item: RateItem) -> bool:
        raise ConnectionRefusedError("redis://app:hunter2@cache:6379 refused; password=hunter2")


def test_a_store_error_fails_closed_without_showing_secrets() -> None:
    """A store error raises StoreUnavailable by default; the message masks secrets."""
    limiter = PyrateLimiter(_BrokenBucket([Rate(1, 1000)]), store="the cache")
    with pytest.raises(StoreUnavailable) as caught:
        limiter.try_acquire()
    assert caught.value.store == "the cache"
    assert "hunter2" not in str(caught.value)
    assert "ConnectionRefusedError" in caught.value.reason
    with pytest.raises(StoreUnavailable):
        limiter.acquire()


def test_fail_open_grants_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    """With fail_open, a store error grants and warns on the ratekit.stores logger."""
    limiter = PyrateLimiter(_BrokenBucket([Rate(1, 1000)]), fail_open=True)
    with caplog.at_level(logging.WARNING, logger="ratekit.stores"):
        assert limiter.try_acquire()
        limiter.acquire()
        assert limiter.reserve().ok
    assert len(caplog.records) == 3
    assert all(record.name == "ratekit.stores" for record in caplog.records)
    assert "hunter2" not in caplog.text


# -- the multiprocess bucket ------------------------------------------------------------

#: Run in each child process: acquire until the deadline, recording when each grant
#: happened on the system-wide monotonic clock (before and after the successful call).
_WORKER = """
import time
ready.wait()
start.wait()
grants = []
while True:
    before = time.monotonic()
    if before >= deadline.value:
        break
    decision = limiter.try_acquire()
    if decision:
        grants.append((before, time.monotonic()))
    else:
        time.sleep(decision.retry_after)
results.put(grants)
"""


@pytest.fixture
def manager() -> Iterator[multiprocessing.managers.SyncManager]:
    """A running multiprocessing manager, shut down afterwards."""
    with multiprocessing.get_context("spawn").Manager() as started:
        yield started


def test_processes_sharing_a_multiprocess_limiter_never_exceed_it() -> None:
    """Three processes on one multiprocess_limiter stay within its window together."""
    context = multiprocessing.get_context("spawn")
    limiter = multiprocess_limiter("20/300ms", context=context)
    assert isinstance(limiter.bucket, MultiprocessBucket)
    ready = context.Barrier(4)
    start = context.Event()
    deadline = context.Value("d", 0.0)
    results = context.Queue()
    shared = {"ready": ready, "start": start, "deadline": deadline, "results": results}
    workers = [
        context.Process(target=exec, args=(_WORKER, {**shared, "limiter": limiter}))
        for _ in range(3)
    ]
    for worker in workers:
        worker.start()
    ready.wait(timeout=60)
    deadline.value = MONOTONIC.now() + 1.2
    start.set()
    grants = [grant for _ in workers for grant in results.get(timeout=60)]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    stamps = sorted(item.timestamp for item in limiter.bucket.items)
    assert len(stamps) == len(grants)
    # Exactly: at most 20 stamps in any 300 ms (the 21st is at least 301 ms later).
    assert all(later - first > 300 for first, later in zip(stamps, stamps[20:], strict=False))
    # As the processes saw it: at most 20 grants certainly inside any 300 ms.
    for start_at, _ in grants:
        inside = [1 for before, after in grants if before >= start_at and after < start_at + 0.3]
        assert len(inside) <= 20
    assert len(grants) >= 60  # the limit was reached, not merely respected


def test_a_multiprocess_limiter_whose_manager_is_gone_is_unavailable(
    manager: multiprocessing.managers.SyncManager,
) -> None:
    """When the manager process stops, calls raise StoreUnavailable (or grant if open)."""
    context = multiprocessing.get_context("spawn")
    items: Any = manager.list()
    bucket = MultiprocessBucket([Rate(5, 1000)], items, context.RLock())
    closed = PyrateLimiter(bucket, store="the manager")
    opened = PyrateLimiter(bucket, fail_open=True)
    assert closed.try_acquire()
    manager.shutdown()
    with pytest.raises(StoreUnavailable, match="the manager"):
        closed.try_acquire()
    assert opened.try_acquire()


def test_a_limiter_pickles_to_a_copy_with_its_own_counters() -> None:
    """Pickling (as when starting a process) keeps the settings and resets the counters."""
    bucket = InMemoryBucket([Rate(2, 1000)])
    limiter = PyrateLimiter(bucket, name="job")
    assert limiter.try_acquire()
    copy = pickle.loads(pickle.dumps(limiter))  # noqa: S301 - our own bytes
    assert isinstance(copy, PyrateLimiter)
    assert copy.statistics().granted == 0
    assert copy.capacity == 2
    assert repr(copy) == repr(limiter)


@pytest.mark.parametrize("limits", [(), ("1.5/s",), ("10/0.5ms",), ("100/s, 50/min",), ("",), (3,)])
def test_multiprocess_limiter_names_bad_limits(limits: tuple[object, ...]) -> None:
    """Limits pyrate-limiter cannot hold are refused, naming limits."""
    with pytest.raises((ValueError, TypeError), match="limits"):
        multiprocess_limiter(*limits)  # type: ignore[arg-type]
