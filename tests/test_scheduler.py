"""Scheduler: bounded workers paced by a limiter, with errgroup semantics."""

from __future__ import annotations

import _thread
import itertools
import math
import re
import signal
import threading
import time
from typing import TYPE_CHECKING

import pytest

from ratekit import (
    AcquireTimeout,
    CostTooLarge,
    LeakyBucket,
    MapTimeout,
    QueueFull,
    Reservation,
    Scheduler,
    SchedulerClosed,
    SchedulerStatistics,
    TokenBucket,
)
from ratekit.testing import FakeClock

if TYPE_CHECKING:
    from collections.abc import Iterator


def no_new_threads(before: set[threading.Thread]) -> bool:
    """Whether every thread alive now was alive before (daemon helpers included)."""
    return set(threading.enumerate()) <= before


def test_results_are_complete_and_ordered_for_ten_thousand_items():
    """10,000 items give 10,000 results in input order, and no thread is left behind."""
    before = set(threading.enumerate())
    with Scheduler(8) as scheduler:
        results = list(scheduler.map(lambda x: x * x, range(10_000)))
        assert results == [x * x for x in range(10_000)]
        assert scheduler.statistics() == SchedulerStatistics(10_000, 0, 0, 0, 0, started=10_000)
    assert no_new_threads(before)


def test_unordered_results_come_as_they_finish_and_are_all_there():
    """ordered=False yields every result once, in finishing order."""
    with Scheduler(4) as scheduler:
        results = list(scheduler.map(lambda x: x, range(1_000), ordered=False))
    assert sorted(results) == list(range(1_000))


def test_one_worker_on_a_fake_clock_starts_exactly_on_the_limiter_schedule():
    """Each call starts at the instant the limiter grants it, neither earlier nor later."""
    clock = FakeClock()
    bucket = TokenBucket(4.0, 2, clock=clock)
    model = TokenBucket(4.0, 2, clock=FakeClock())
    starts: list[float] = []
    with Scheduler(1, bucket) as scheduler:
        list(scheduler.map(lambda _: starts.append(clock.now()), range(10)))
    assert starts == [model.reserve().ready_at for _ in range(10)]
    assert starts == [0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0]


class RecordingLimiter:
    """A limiter that records the slot each acquire is granted (via reserve), and its cost."""

    def __init__(self, bucket: TokenBucket) -> None:
        self.bucket = bucket
        self.clock = bucket.clock
        self.slots: list[tuple[float, float]] = []
        self.lock = threading.Lock()

    def acquire(
        self, cost: float = 1, *, timeout: float | None = None, cancel: object = None
    ) -> None:
        reservation: Reservation = self.bucket.reserve(cost, max_wait=timeout)
        if not reservation.ok:
            raise AcquireTimeout(cost, timeout or 0.0, reservation.delay)
        with self.lock:
            self.slots.append((reservation.ready_at, cost))
        self.clock.sleep(reservation.delay)


def test_many_workers_are_granted_exactly_the_limiter_schedule():
    """With 4 workers, the slots granted are exactly the sequential schedule."""
    clock = FakeClock()
    limiter = RecordingLimiter(TokenBucket(10.0, 5, clock=clock))
    model = TokenBucket(10.0, 5, clock=FakeClock())
    with Scheduler(4, limiter) as scheduler:  # type: ignore[arg-type]
        assert list(scheduler.map(str, range(40))) == [str(i) for i in range(40)]
    assert sorted(limiter.slots) == [(model.reserve().ready_at, 1) for _ in range(40)]


def test_each_item_acquires_its_own_cost():
    """The cost may be a function of the item: each call acquires exactly that."""
    limiter = RecordingLimiter(TokenBucket(1000.0, 10, clock=FakeClock()))
    costs = [1, 2, 1, 3, 1, 1, 2, 1] * 5
    with Scheduler(4, limiter) as scheduler:  # type: ignore[arg-type]
        list(scheduler.map(str, costs, cost=float))
    assert sorted(cost for _, cost in limiter.slots) == sorted(map(float, costs))


def test_the_limiter_sets_the_pace_on_the_real_clock():
    """8 workers under 50/s with a burst of 5: 30 calls take about (30 - 5) / 50 s."""
    bucket = TokenBucket(50.0, 5)
    starts: list[float] = []
    lock = threading.Lock()

    def record(_: object) -> None:
        with lock:
            starts.append(time.monotonic())

    began = time.monotonic()
    with Scheduler(8, bucket) as scheduler:
        list(scheduler.map(record, range(30)))
    elapsed = time.monotonic() - began
    assert 0.45 <= elapsed < 5.0  # 0.5 s of refill; a generous margin above
    # Never faster than the bucket: any interval t holds at most 5 + 50 t starts, with
    # 0.1 s of slack for the time between a grant and the call's first line, which a
    # busy machine stretches (an exact check of the grants runs on the fake clock).
    starts.sort()
    for i, first in enumerate(starts):
        for j in range(i, len(starts)):
            assert j - i + 1 <= 5 + 50 * (starts[j] - first + 0.1)


def test_fail_fast_raises_the_first_error_and_starts_at_most_max_workers_more():
    """After the first error, at most max_workers calls are running or start."""
    started_after: list[int] = []
    failed = threading.Event()
    lock = threading.Lock()

    def work(x: int) -> int:
        if failed.is_set():
            with lock:
                started_after.append(x)
        if x == 20:
            failed.set()
            raise ValueError("item 20")
        time.sleep(0.001)
        return x

    with Scheduler(4) as scheduler:
        with pytest.raises(ValueError, match="item 20"):
            list(scheduler.map(work, range(10_000)))
        stats = scheduler.statistics()
    assert len(started_after) <= 4
    assert stats.failed == 1
    assert stats.running == 0
    assert stats.done < 100


def test_fail_fast_wakes_blocked_acquires_at_once():
    """Workers blocked for seconds on the limiter wake within a fraction of a second."""
    bucket = TokenBucket(0.5, 1)  # one call, then one every 2 seconds

    def work(x: int) -> int:
        if x == 0:
            time.sleep(0.05)  # let the other workers block on the limiter
            raise RuntimeError("first call failed")
        return x

    began = time.monotonic()
    scheduler = Scheduler(4, bucket)
    with scheduler, pytest.raises(RuntimeError, match="first call failed"):
        list(scheduler.map(work, range(8)))
    assert time.monotonic() - began < 1.0
    stats = scheduler.statistics()
    assert stats.waiting == 0
    assert stats.cancelled >= 3


def test_running_calls_see_the_cancel_event():
    """A call with a cancel parameter sees it set when another call fails."""
    seen: list[bool] = []
    go = threading.Event()

    def work(x: int, cancel: threading.Event) -> int:
        if x == 0:
            go.wait(5)
            raise RuntimeError("stop")
        go.set()
        seen.append(cancel.wait(5))
        return x

    with Scheduler(2) as scheduler, pytest.raises(RuntimeError, match="stop"):
        list(scheduler.map(work, range(2)))
    assert seen == [True]


def test_return_exceptions_yields_them_in_place_and_goes_on():
    """With return_exceptions, every item gets its result or its exception."""

    def work(x: int) -> int:
        if x % 10 == 3:
            raise KeyError(x)
        return x

    with Scheduler(4) as scheduler:
        results = list(scheduler.map(work, range(100), return_exceptions=True))
    assert [type(r) for r in results[:5]] == [int, int, int, KeyError, int]
    assert sum(isinstance(r, KeyError) for r in results) == 10
    assert scheduler.statistics().failed == 10


def test_an_endless_generator_with_an_early_break_leaves_no_thread():
    """Breaking out of a map over an endless generator stops it, and its threads end."""
    before = set(threading.enumerate())
    taken = []

    def endless() -> Iterator[int]:
        for i in itertools.count():
            taken.append(i)
            yield i

    with Scheduler(4) as scheduler:
        for result in scheduler.map(lambda x: x, endless()):
            if result == 50:
                break
        assert no_new_threads(before)  # closing the iterator joined its workers
        assert len(taken) <= 51 + 4 * 9  # memory stayed bounded: a window ahead
    assert no_new_threads(before)


def test_leaving_the_block_stops_a_map_that_was_not_finished():
    """Shutting down stops pending work; no call starts after, and map is refused."""
    before = set(threading.enumerate())
    scheduler = Scheduler(2)
    results = scheduler.map(lambda x: x, range(1_000_000))
    assert next(results) == 0
    scheduler.shutdown()
    assert no_new_threads(before)
    with pytest.raises(SchedulerClosed, match="shut down"):
        scheduler.map(lambda x: x, range(3))
    results.close()


def test_timeout_stops_the_map_and_refuses_waits_past_it():
    """A map that cannot finish within its timeout raises MapTimeout at once."""
    clock = FakeClock()
    bucket = TokenBucket(1.0, 2, clock=clock)
    with Scheduler(2, bucket) as scheduler, pytest.raises(MapTimeout, match=r"timeout=3\.0"):
        list(scheduler.map(lambda x: x, range(10), timeout=3.0))
    assert clock.now() <= 3.0


def test_timeout_on_the_real_clock_stops_slow_calls():
    """Slow calls past the timeout: the iterator raises MapTimeout in time."""
    began = time.monotonic()
    with Scheduler(2) as scheduler, pytest.raises(MapTimeout):
        list(scheduler.map(lambda x, cancel: cancel.wait(10), range(4), timeout=0.2))
    assert time.monotonic() - began < 5.0


def test_progress_is_reported_after_each_call():
    """on_progress sees the counters after every call."""
    seen: list[SchedulerStatistics] = []
    lock = threading.Lock()

    def progress(stats: SchedulerStatistics) -> None:
        with lock:
            seen.append(stats)

    with Scheduler(3) as scheduler:
        list(scheduler.map(lambda x: x, range(20), on_progress=progress))
    assert len(seen) == 20
    assert max(s.done for s in seen) == 20


def test_errors_from_the_items_themselves_are_raised():
    """An exception raised by the items iterator fails the map."""

    def broken() -> Iterator[int]:
        yield 1
        raise OSError("cannot read more items")

    with Scheduler(2) as scheduler, pytest.raises(OSError, match="cannot read more"):
        list(scheduler.map(lambda x: x, broken()))


@pytest.mark.parametrize(("bad", "error"), [(0, ValueError), (2.5, TypeError), (True, TypeError)])
def test_max_workers_must_be_a_positive_integer(bad, error):
    """A bad max_workers raises an error that names it."""
    with pytest.raises(error, match="max_workers"):
        Scheduler(bad)
    with Scheduler(1) as scheduler, pytest.raises(ValueError, match="timeout"):
        scheduler.map(lambda x: x, [], timeout=-1)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"timeout": "5"}, TypeError, "timeout must be a number of seconds or None, got str '5'"),
        ({"timeout": math.nan}, ValueError, "timeout must be a non-negative number of seconds"),
        ({"cost": "2"}, TypeError, "cost must be a number, got str '2'"),
        ({"cost": 0}, ValueError, "cost must be a positive finite number, got 0"),
        ({"on_progress": 5}, TypeError, "on_progress must be a callable or None, got 5"),
        ({"priority": -1}, ValueError, "priority must be a level of at least 0"),
    ],
)
def test_a_bad_map_argument_is_named_before_any_call(options, error, message):
    """Every option of map is checked when map is called, and the error names it."""
    calls = []
    with Scheduler(1) as scheduler, pytest.raises(error, match=f"^{re.escape(message)}"):
        scheduler.map(calls.append, [1], **options)
    assert calls == []


def test_keyboard_interrupt_stops_everything_promptly():
    """Ctrl-C while the consumer waits, or raised by a call, stops the map at once."""
    before = set(threading.enumerate())

    def interrupt_main(x: int, cancel: threading.Event) -> int:
        if x == 2:
            _thread.interrupt_main()  # what Ctrl-C does: KeyboardInterrupt in the main thread
        cancel.wait(10)  # the others run until the map stops them
        return x

    began = time.monotonic()
    with Scheduler(4) as scheduler, pytest.raises(KeyboardInterrupt):
        list(scheduler.map(interrupt_main, range(100)))
    assert time.monotonic() - began < 5.0
    assert no_new_threads(before)

    def interrupted(x: int) -> int:
        if x == 7:
            raise KeyboardInterrupt
        return x

    with Scheduler(4) as scheduler, pytest.raises(KeyboardInterrupt):
        list(scheduler.map(interrupted, range(100)))
    assert no_new_threads(before)


def test_a_limiter_refusal_or_a_bad_cost_fails_the_map():
    """QueueFull from a leaky bucket, or a cost above capacity, is raised from the map."""
    with Scheduler(8, LeakyBucket(1.0, 1)) as scheduler, pytest.raises(QueueFull):
        list(scheduler.map(lambda x: x, range(20)))
    with Scheduler(2, TokenBucket(1.0, 2)) as scheduler, pytest.raises(CostTooLarge):
        list(scheduler.map(lambda x: x, [1, 2, 3], cost=lambda x: x))
    assert scheduler.statistics().cancelled >= 1


class DeafLimiter:
    """A limiter that grants a waiting call when the map stops, instead of raising.

    The first acquire waits until the second has begun, so that both workers hold an
    item; the second returns (granted) once the map's cancel event is set.
    """

    def __init__(self) -> None:
        self.calls = 0
        self.lock = threading.Lock()
        self.second = threading.Event()

    def acquire(
        self, cost: float = 1, *, timeout: float | None = None, cancel: threading.Event
    ) -> None:
        with self.lock:
            self.calls += 1
            call = self.calls
        if call == 1:
            self.second.wait(10)
        else:
            self.second.set()
            cancel.wait(10)


def test_no_call_starts_once_the_map_has_stopped_even_if_the_limiter_grants():
    """A grant that comes after the map stopped does not start its call."""
    limiter = DeafLimiter()
    started: list[int] = []

    def work(x: int) -> int:
        started.append(x)
        raise RuntimeError("stop")

    scheduler = Scheduler(2, limiter)  # type: ignore[arg-type]
    with scheduler, pytest.raises(RuntimeError, match="stop"):
        list(scheduler.map(work, range(2)))
    assert started == [0]
    assert scheduler.statistics().cancelled == 1


def test_properties_repr_and_a_keyword_only_cancel():
    """The scheduler shows its settings; fn may take cancel as a keyword-only argument."""
    bucket = TokenBucket(5.0, 5)
    with Scheduler(3, bucket) as scheduler:
        assert (scheduler.max_workers, scheduler.limiter) == (3, bucket)
        assert repr(scheduler).startswith("Scheduler(max_workers=3, limiter=TokenBucket(")

        def work(x: int, *, cancel: threading.Event) -> bool:
            return cancel.is_set()

        assert list(scheduler.map(work, range(3))) == [False, False, False]
        assert list(scheduler.map(len, ["ab"])) == [2]  # a builtin without a signature


def test_a_full_leaky_queue_is_reported_as_such_even_with_a_timeout():
    """QueueFull is raised as QueueFull, not mistaken for the map's timeout."""
    bucket = LeakyBucket("100/s", capacity=2)
    with Scheduler(4, bucket) as scheduler, pytest.raises(QueueFull):
        list(scheduler.map(lambda x: x, range(8), timeout=60))


def test_a_failing_progress_callback_fails_the_map_instead_of_hanging():
    """What on_progress raises comes out of the iterator."""

    def broken(stats: SchedulerStatistics) -> None:
        raise RuntimeError("progress bar broke")

    with Scheduler(2) as scheduler, pytest.raises(RuntimeError, match="progress bar broke"):
        list(scheduler.map(lambda x: x, range(6), on_progress=broken))


def test_a_map_made_before_shutdown_does_not_run_after_it():
    """Iterating a map after its scheduler was shut down raises, and calls nothing."""
    calls: list[int] = []
    scheduler = Scheduler(2)
    results = scheduler.map(calls.append, range(5))
    scheduler.shutdown()
    with pytest.raises(SchedulerClosed):
        next(results)
    assert calls == []


def test_shutdown_from_another_thread_ends_a_blocked_consumer_with_scheduler_closed():
    """A consumer waiting on calls that wait on the map's event raises within a second."""
    before = set(threading.enumerate())
    scheduler = Scheduler(3)
    woken = []

    def call(_item: int, cancel: threading.Event) -> None:
        woken.append(cancel.wait(10))

    threading.Timer(0.2, scheduler.shutdown).start()
    started = time.monotonic()
    with pytest.raises(SchedulerClosed, match="shut down while this map ran"):
        list(scheduler.map(call, range(10)))
    assert time.monotonic() - started < 1.2
    assert woken == [True] * 3
    assert scheduler.statistics().running == 0
    deadline = time.monotonic() + 5
    while not no_new_threads(before) and time.monotonic() < deadline:
        time.sleep(0.01)  # the Timer thread itself
    assert no_new_threads(before)


def test_shutdown_from_a_signal_handler_on_the_consumers_thread():
    """SIGALRM's handler shuts down the map that the main thread is consuming: it raises."""
    scheduler = Scheduler(2)

    def call(_item: int, cancel: threading.Event) -> None:
        cancel.wait(10)

    previous = signal.signal(signal.SIGALRM, lambda *_: scheduler.shutdown())
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        started = time.monotonic()
        with pytest.raises(SchedulerClosed):
            list(scheduler.map(call, range(10)))
        assert time.monotonic() - started < 1.2
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert scheduler.statistics().running == 0
