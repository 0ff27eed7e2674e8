"""`Prioritized`: waiters served by priority then arrival, with aging, over any limiter.

A stateful machine drives threads on a stepped clock through arrivals at every level,
cancellations, timeouts, non-blocking calls and time steps, and checks after each step
that the wrapped limiter's guarantee holds, that bookings are never reordered, that a
caller of higher priority goes before the unbooked callers of lower priority it found
waiting, and that no caller waits longer than the documented starvation bound.  Plain
tests cover asyncio (with threads on the same limiter), cancellation and timeouts,
the non-blocking calls, validation, the context priority, and the pass-through of
``priority=`` by `Scheduler.map`, `AsyncScheduler.map`, `ratekit.http.Client`,
`CXoneClient` and the ``ratekit-cxone export`` command.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import math
import os
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from loopback import LoopbackServer, Reply
from specs import token_bucket_holds
from stepped_clock import SteppedClock

import ratekit
from ratekit import (
    AcquireCancelled,
    AcquireTimeout,
    AsyncScheduler,
    CostTooLarge,
    Decision,
    LimiterStatistics,
    Prioritized,
    Priority,
    Reservation,
    Scheduler,
    TokenBucket,
    current_priority,
)
from ratekit._cancel import Cancellation, cancelled_by
from ratekit.http import Client
from ratekit.testing import FakeClock
from ratekit.typing import Limiter

BULK, NORMAL, INTERACTIVE = Priority.BULK, Priority.NORMAL, Priority.INTERACTIVE
EPS = 1e-6


# -- helpers ---------------------------------------------------------------------------


class WakingClock(SteppedClock):
    """A `SteppedClock` on which a sleeper whose event was set is not settled yet.

    `Prioritized` wakes a queued thread by setting its event; until that thread has
    looked (it polls its event), the test must not move the time on.
    """

    def __init__(self) -> None:
        super().__init__()
        self._events: dict[int, object] = {}

    def sleep(self, seconds, cancel=None):
        """Sleep as `SteppedClock` does, remembering the event that wakes the sleeper."""
        me = threading.get_ident()
        with self._condition:
            self._events[me] = cancel
        try:
            return super().sleep(seconds, cancel)
        finally:
            with self._condition:
                self._events.pop(me, None)

    def _waiting(self, thread):
        if not super()._waiting(thread):
            return False
        event = self._events.get(thread.ident or 0)
        return event is None or not event.is_set()  # type: ignore[attr-defined]


class LoopClock:
    """Virtual time for one asyncio loop: sleepers wait until the test advances it.

    `advance` lets every task run until it blocks, then wakes the sleepers due next,
    one instant at a time (as `SteppedClock` does for threads).
    """

    def __init__(self) -> None:
        self._now = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._count = 0

    def now(self) -> float:
        """The virtual time."""
        return self._now

    def sleep(self, seconds, cancel=None):
        """Not for threads."""
        raise NotImplementedError("LoopClock is for asyncio")

    async def sleep_async(self, seconds: float) -> None:
        """Wait until the test has moved the time by *seconds*."""
        future = asyncio.get_running_loop().create_future()
        self._count += 1
        heapq.heappush(self._sleepers, (self._now + max(seconds, 0.0), self._count, future))
        await future

    async def settle(self) -> None:
        """Let every task run until it blocks."""
        for _ in range(50):
            await asyncio.sleep(0)

    async def advance(self, seconds: float) -> None:
        """Move the time by *seconds*, waking each sleeper at its instant, in order."""
        target = self._now + seconds
        while True:
            await self.settle()
            while self._sleepers and self._sleepers[0][2].done():  # cancelled sleepers
                heapq.heappop(self._sleepers)
            if not self._sleepers or self._sleepers[0][0] > target:
                break
            until, _, future = heapq.heappop(self._sleepers)
            self._now = max(self._now, until)
            future.set_result(None)
        self._now = target
        await self.settle()


class Recorder:
    """A `TokenBucket` seen through its `reserve`: every booking, in the order made.

    Grants of `try_acquire` count as bookings for the instant they are made.
    """

    def __init__(self, bucket: TokenBucket) -> None:
        self.bucket = bucket
        self.booked: list[tuple[float, Reservation]] = []  # (when booked, booking)
        self.lock = threading.Lock()

    @property
    def clock(self):
        return self.bucket.clock

    @property
    def capacity(self) -> float:
        return self.bucket.capacity

    def _slot(self, cost: float) -> float:
        return self.bucket._slot(cost)

    def try_acquire(self, cost: float = 1) -> Decision:
        decision = self.bucket.try_acquire(cost)
        if decision:  # a grant now: a booking for now, as far as the order goes
            now = self.clock.now()
            with self.lock:
                self.booked.append((now, Reservation(True, 0.0, cost, now)))
        return decision

    def acquire(self, cost=1, *, timeout=None, cancel=None):
        raise AssertionError("Prioritized books; it never blocks on the wrapped limiter")

    async def acquire_async(self, cost=1, *, timeout=None):
        raise AssertionError("Prioritized books; it never blocks on the wrapped limiter")

    def reserve(self, cost: float = 1, *, max_wait: float | None = None) -> Reservation:
        reservation = self.bucket.reserve(cost, max_wait=max_wait)
        if reservation.ok:
            with self.lock:
                self.booked.append((self.clock.now(), reservation))
        return reservation

    def statistics(self) -> LimiterStatistics:
        return self.bucket.statistics()


class Seen:
    """A limiter that grants everything at once and records the priority of each call."""

    def __init__(self, inner=None) -> None:
        self.inner = inner
        self.levels: list[int | None] = []
        self.lock = threading.Lock()

    def _saw(self) -> None:
        with self.lock:
            self.levels.append(current_priority())

    def try_acquire(self, cost: float = 1) -> Decision:
        self._saw()
        return Decision(True, 0.0)

    def acquire(self, cost=1, *, timeout=None, cancel=None):
        self._saw()
        if self.inner is not None:
            self.inner.acquire(cost, timeout=timeout, cancel=cancel)

    async def acquire_async(self, cost=1, *, timeout=None):
        self._saw()

    def reserve(self, cost=1, *, max_wait=None):
        self._saw()
        return Reservation(True, 0.0, cost, 0.0)

    def statistics(self) -> LimiterStatistics:
        return LimiterStatistics(0, 0, 0, 0, 0, 0.0, 0.0, math.inf)


class Caller:
    """A thread blocked in `Prioritized.acquire`, and how that ended."""

    def __init__(  # noqa: PLR0913
        self, limiter, clock, *, level, cost, timeout, seq, plain_event=False
    ) -> None:
        self.level, self.cost, self.timeout, self.seq = level, cost, timeout, seq
        self.arrived = clock.now()
        self.cancel = threading.Event() if plain_event else Cancellation()
        self.outcome: str | None = None
        self.ended: float | None = None
        self._clock = clock

        def run() -> None:
            try:
                limiter.acquire(cost, timeout=timeout, cancel=self.cancel, priority=level)
            except AcquireTimeout:
                self.outcome = "timeout"
            except AcquireCancelled:
                self.outcome = "cancelled"
            else:
                self.outcome = "granted"
            self.ended = clock.now()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    @property
    def granted(self) -> bool:
        return self.outcome == "granted"


def rank(caller: Caller, at: float, aging: float, levels: int = 3) -> int:
    """The effective priority of *caller* at *at*, as the class docstring defines it."""
    return min(levels - 1, caller.level + math.floor(max(at - caller.arrived, 0.0) / aging))


# -- the stateful machine --------------------------------------------------------------

RATE, CAPACITY, AGING = 2.0, 2.0, 4.0  # a slot of cost 1 is 0.5 s; a level per 4 s
HORIZON_MAX = CAPACITY / RATE  # the horizon of the largest cost


class PriorityMachine(RuleBasedStateMachine):
    """Threads at random levels and costs on one `Prioritized` token bucket."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = WakingClock()
        self.bucket = TokenBucket(RATE, CAPACITY, clock=self.clock)
        self.recorder = Recorder(self.bucket)
        self.limiter = Prioritized(self.recorder, aging=AGING)
        self.callers: list[Caller] = []
        self.direct: list[tuple[float, float]] = []  # try_acquire grants
        # (caller of higher priority, the unbooked callers of lower levels it found)
        self.overtakes: list[tuple[Caller, list[Caller]]] = []

    def teardown(self) -> None:
        for caller in self.callers:
            caller.cancel.set()
        for caller in self.callers:
            caller.thread.join(30.0)

    def _alive(self) -> list[Caller]:
        return [c for c in self.callers if c.thread.is_alive()]

    def _threads(self) -> list[threading.Thread]:
        return [c.thread for c in self._alive()]

    def _queued(self) -> list[Caller]:
        """The callers not booked yet: the last ones of each level still blocked."""
        counts = self.limiter.waiting_by_level()
        queued: list[Caller] = []
        for level, count in enumerate(counts):
            blocked = [c for c in self._alive() if c.level == level]
            assert len(blocked) >= count
            queued += blocked[len(blocked) - count :] if count else []
        return queued

    @precondition(lambda self: len(self._alive()) < 7)
    @rule(
        level=st.sampled_from(list(Priority)),
        cost=st.sampled_from([1.0, 1.0, 2.0]),
        timeout=st.sampled_from([None, None, 0.0, 1.0, 6.0]),
        plain_event=st.booleans(),
    )
    def arrive(self, level: int, cost: float, timeout: float | None, plain_event: bool) -> None:
        queued = self._queued()
        caller = Caller(
            self.limiter,
            self.clock,
            level=level,
            cost=cost,
            timeout=timeout,
            seq=len(self.callers),
            plain_event=plain_event,
        )
        self.callers.append(caller)
        self.overtakes.append((caller, [c for c in queued if c.level < level]))
        self.clock.settle(self._threads())

    @rule(seconds=st.one_of(st.just(0.0), st.floats(0.01, 1.0), st.floats(1.0, 10.0)))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds, self._threads())

    @precondition(lambda self: self._alive())
    @rule(index=st.integers(0, 10))
    def cancel(self, index: int) -> None:
        alive = self._alive()
        caller = alive[index % len(alive)]
        caller.cancel.set()
        caller.thread.join(30.0)
        assert not caller.thread.is_alive()
        self.clock.settle(self._threads())

    @rule(level=st.sampled_from(list(Priority)), cost=st.sampled_from([1.0, 2.0]))
    def try_acquire(self, level: int, cost: float) -> None:
        now = self.clock.now()
        ahead = any(rank(c, now, AGING) >= level for c in self._queued())
        decision = self.limiter.try_acquire(cost, priority=level)
        if ahead:
            assert not decision, "a non-blocking call jumped the queue"
        if decision:
            self.direct.append((now, cost))
        self.clock.settle(self._threads())

    # -- invariants ----------------------------------------------------------------

    def _grants(self) -> list[tuple[float, float]]:
        waited = [(c.ended, c.cost) for c in self.callers if c.granted and c.ended is not None]
        return waited + self.direct  # type: ignore[return-value]

    @invariant()
    def the_bucket_guarantee_holds_on_what_callers_got(self) -> None:
        assert token_bucket_holds(self._grants(), RATE, CAPACITY)

    @invariant()
    def bookings_are_granted_in_the_order_they_were_made(self) -> None:
        with self.recorder.lock:
            booked = [r for _, r in self.recorder.booked if not r.cancelled]
        times = [r.ready_at for r in booked]
        assert times == sorted(times)
        # A sleeper wakes at ``now + (ready - now)``, which may round an ulp either side
        # of ``ready``: compare what is due by a margin, and the rest loosely.
        now = self.clock.now()
        due = sorted((r.ready_at, r.cost) for r in booked if r.ready_at <= now - EPS)
        got = sorted([(c.ended, c.cost) for c in self.callers if c.granted] + self.direct)
        late = [at for at in times if at > now + EPS]
        assert len(due) <= len(got) <= len(times) - len(late)
        for (ready, cost), (ended, paid) in zip(due, got, strict=False):
            assert cost == paid
            assert ended == pytest.approx(ready, abs=EPS)

    @invariant()
    def higher_priority_goes_before_the_lower_it_found_unbooked(self) -> None:
        for high, lower in self.overtakes:
            for low in lower:
                if not low.granted or low.ended is None:
                    continue
                if rank(low, low.ended, AGING) >= high.level:
                    continue  # aged to its rank by then: arrival order decides
                # ``low`` was booked no later than its grant, while ranked below ``high``:
                # ``high`` had left the queue by then (granted, or gave up).
                assert high.ended is not None, (high.seq, low.seq)
                assert high.ended <= low.ended + EPS, (high.seq, low.seq)

    @invariant()
    def nobody_waits_past_the_starvation_bound(self) -> None:
        now = self.clock.now()
        with self.recorder.lock:
            booked = list(self.recorder.booked)  # withdrawn ones too: their cost may stay spent
        for caller in self.callers:
            if caller.outcome in {"timeout", "cancelled"}:
                continue
            top = caller.arrived + (2 - caller.level) * AGING
            if top > now:
                continue
            # What the bucket may serve before it: bookings outstanding at ``top``, and
            # the callers that arrived before it and were still there then.
            outstanding = sum(r.cost for at, r in booked if at <= top + EPS < r.ready_at)
            earlier = sum(
                c.cost for c in self.callers[: caller.seq] if c.ended is None or c.ended > top
            )
            bound = top + (outstanding + earlier + caller.cost) / RATE + EPS
            if caller.granted:
                assert caller.ended is not None
                assert caller.ended <= bound, (caller.seq, caller.ended, bound)
            else:
                assert now <= bound, (caller.seq, now, bound)

    @invariant()
    def timeouts_are_kept_and_counts_add_up(self) -> None:
        for caller in self.callers:
            if caller.outcome == "timeout":
                assert caller.timeout is not None
                assert caller.ended is not None
                assert caller.ended - caller.arrived <= caller.timeout + EPS
        stats = self.limiter.statistics()
        assert stats.waiting == len(self._alive())
        assert sum(self.limiter.waiting_by_level()) <= stats.waiting


PriorityMachine.TestCase.settings = settings(
    max_examples=max(8, settings().max_examples // 4),
    stateful_step_count=min(30, settings().stateful_step_count),
)
TestPriorityMachine = PriorityMachine.TestCase


# -- plain tests on a stepped clock ----------------------------------------------------


@pytest.fixture
def stepped():
    """A `WakingClock`, a 1/s bucket of capacity 1 on it, and a `Prioritized` over it."""
    clock = WakingClock()
    bucket = TokenBucket(1.0, 1, clock=clock)
    return clock, bucket, Prioritized(bucket, aging=10.0)


def start(limiter, clock, level, *, cost=1.0, timeout=None, seq=0, plain_event=False):  # noqa: PLR0913
    """A caller at *level*, settled (asleep or done) before returning."""
    caller = Caller(
        limiter, clock, level=level, cost=cost, timeout=timeout, seq=seq, plain_event=plain_event
    )
    clock.settle([caller.thread])
    return caller


def test_an_interactive_caller_goes_before_every_unbooked_bulk_caller(stepped):
    """Six bulk callers wait; an interactive one arrives and is granted right after one slot."""
    clock, _, limiter = stepped
    bulk = [start(limiter, clock, BULK, seq=i) for i in range(6)]
    threads = [c.thread for c in bulk]
    # One granted at once, one booked a slot ahead, four queued unbooked.
    assert limiter.waiting_by_level() == (4, 0, 0)
    clock.advance(0.5, threads)
    urgent = start(limiter, clock, INTERACTIVE, seq=6)
    assert limiter.waiting_by_level() == (4, 0, 1)
    clock.advance(10.0, [*threads, urgent.thread])
    assert [c.ended for c in bulk[:2]] == [0.0, 1.0]
    assert urgent.ended == 2.0  # after the one slot booked before it arrived
    assert [c.ended for c in bulk[2:]] == [3.0, 4.0, 5.0, 6.0]
    assert limiter.statistics().waiting == 0


def test_aging_lifts_a_bulk_caller_above_a_stream_of_interactive_ones():
    """A bulk caller ranks at the top after 2 * aging seconds and goes before later ones."""
    clock = WakingClock()
    limiter = Prioritized(TokenBucket(1.0, 1, clock=clock), aging=3.0)
    callers = [start(limiter, clock, INTERACTIVE, seq=i) for i in range(4)]
    bulk = start(limiter, clock, BULK, seq=4)
    callers.append(bulk)
    for _ in range(10):  # a new interactive caller every second: as many as are served
        clock.advance(1.0, [c.thread for c in callers])
        callers.append(start(limiter, clock, INTERACTIVE, seq=len(callers)))
    clock.advance(30.0, [c.thread for c in callers])
    assert all(c.granted for c in callers)
    # At the top from 6 s on, and ahead of every interactive caller still unbooked then
    # (they all arrived after it): booked at 6 s for the next slot.
    assert bulk.ended == 7.0
    later = [c for c in callers[5:] if c.ended is not None and c.ended > 6.0]
    assert later
    assert all(c.ended is not None and c.ended > bulk.ended for c in later)


def test_a_head_whose_wait_exceeds_its_timeout_fails_at_once(stepped):
    """The head learns its wait from the limiter: a timeout it cannot meet fails at once."""
    clock, bucket, limiter = stepped
    start(limiter, clock, NORMAL)
    start(limiter, clock, NORMAL, seq=1)  # booked for 1 s
    level = bucket.statistics().level
    late = start(limiter, clock, NORMAL, timeout=1.5, seq=2)  # would be granted at 2 s
    assert late.outcome == "timeout"
    assert late.ended == 0.0
    assert bucket.statistics().level == level  # nothing was booked


def test_a_queued_caller_times_out_at_its_deadline_having_booked_nothing(stepped):
    """A bulk caller queued behind an interactive head times out at its deadline exactly."""
    clock, bucket, limiter = stepped
    callers = [start(limiter, clock, INTERACTIVE, seq=i) for i in range(3)]  # 0 s, 1 s, queued
    bulk = start(limiter, clock, BULK, timeout=0.75, seq=3)
    assert bulk.outcome is None
    clock.advance(0.75, [c.thread for c in [*callers, bulk]])
    assert bulk.outcome == "timeout"
    assert bulk.ended == 0.75
    clock.advance(5.0, [c.thread for c in callers])
    assert [c.ended for c in callers] == [0.0, 1.0, 2.0]
    assert limiter.statistics().timed_out == 1
    assert bucket.statistics().granted == 3


@pytest.mark.parametrize("plain_event", [False, True])
def test_cancelling_a_booked_caller_gives_its_slot_to_the_next(stepped, plain_event):
    """A booked caller cancelled before its slot withdraws it; the head books it instead."""
    clock, _, limiter = stepped
    first = start(limiter, clock, NORMAL)
    booked = start(limiter, clock, NORMAL, seq=1, plain_event=plain_event)  # for 1 s
    queued = start(limiter, clock, NORMAL, seq=2)  # head of the queue
    assert limiter.waiting_by_level() == (0, 1, 0)
    booked.cancel.set()
    booked.thread.join(10.0)
    assert booked.outcome == "cancelled"
    clock.advance(5.0, [queued.thread])
    assert (first.ended, queued.ended) == (0.0, 1.0)
    assert limiter.statistics().cancelled == 1


@pytest.mark.parametrize("plain_event", [False, True])
def test_cancelling_a_queued_caller_releases_its_place(stepped, plain_event):
    """A queued caller cancelled leaves the queue at once; the next one becomes the head."""
    clock, _, limiter = stepped
    callers = [start(limiter, clock, NORMAL, seq=i) for i in range(2)]
    head = start(limiter, clock, INTERACTIVE, seq=2, plain_event=plain_event)
    behind = start(limiter, clock, NORMAL, seq=3)
    assert limiter.waiting_by_level() == (0, 1, 1)
    head.cancel.set()
    head.thread.join(10.0)
    assert head.outcome == "cancelled"
    assert limiter.waiting_by_level() == (0, 1, 0)
    clock.advance(5.0, [c.thread for c in [*callers, behind]])
    assert behind.ended == 2.0
    assert limiter.statistics().cancelled == 1


def test_a_cancel_set_before_the_call_raises_at_once(stepped):
    """An event already set: AcquireCancelled, nothing booked, nothing queued."""
    _, bucket, limiter = stepped
    event = threading.Event()
    event.set()
    with pytest.raises(AcquireCancelled):
        limiter.acquire(cancel=event)
    assert bucket.statistics().granted == 0
    with cancelled_by(event), pytest.raises(AcquireCancelled):
        limiter.acquire()


def test_try_acquire_and_reserve_do_not_jump_the_queue():
    """While a caller ranked at or above their priority is queued, both are refused."""
    clock = WakingClock()
    bucket = TokenBucket(1.0, 2, clock=clock)
    limiter = Prioritized(bucket, horizon=0.5)
    first = start(limiter, clock, NORMAL)  # one token left
    big = start(limiter, clock, NORMAL, cost=2.0, seq=1)  # queued: needs two
    assert limiter.waiting_by_level() == (0, 1, 0)
    assert not limiter.try_acquire(priority=BULK)
    assert not limiter.try_acquire()  # NORMAL, by default
    assert not limiter.reserve(priority=NORMAL).ok
    with ratekit.priority(BULK):
        assert not limiter.try_acquire()
    assert limiter.try_acquire(priority=INTERACTIVE)  # ranks above the queue
    booked = limiter.reserve(priority=INTERACTIVE)
    assert booked.ok
    assert booked.cancel()
    clock.advance(10.0, [first.thread, big.thread])
    assert big.granted
    assert limiter.try_acquire(priority=BULK)  # nobody queued now
    stats = limiter.statistics()
    assert stats.denied == 4  # the head's early tries are not denials


def test_statistics_count_the_waits_by_level(stepped):
    """statistics().waiting counts every blocked caller; waiting_by_level the unbooked."""
    clock, _, limiter = stepped
    callers = [start(limiter, clock, level, seq=i) for i, level in enumerate([2, 0, 0, 1, 2])]
    assert limiter.waiting_by_level() == (1, 1, 1)
    assert limiter.statistics().waiting == 4
    clock.advance(10.0, [c.thread for c in callers])
    assert limiter.statistics().waiting == 0
    assert limiter.statistics().waited == pytest.approx(1 + 2 + 3 + 4)


# -- a single thread and asyncio on a FakeClock ------------------------------------------


def test_an_uncontended_caller_sleeps_once_like_the_plain_limiter():
    """Alone, Prioritized books exactly what the wrapped limiter would, and sleeps once."""
    clock, plain_clock = FakeClock(), FakeClock()
    limiter = Prioritized(TokenBucket(10.0, 2, clock=clock))
    plain = TokenBucket(10.0, 2, clock=plain_clock)
    for cost in [1, 2, 1, 1, 2]:
        limiter.acquire(cost)
        plain.acquire(cost)
        assert clock.now() == plain_clock.now()
    assert clock.sleeps == plain_clock.sleeps
    with limiter:
        pass
    assert limiter.statistics().granted == 6


def test_asyncio_tasks_are_served_by_priority():
    """Tasks queued on one loop: the interactive ones first, each level in arrival order."""
    clock = LoopClock()
    limiter = Prioritized(TokenBucket(10.0, 1, clock=clock))
    order: list[tuple[int, int]] = []

    async def call(level: int, index: int) -> None:
        await limiter.acquire_async(priority=level)
        order.append((level, index))

    async def block() -> None:
        async with limiter:  # the default priority, NORMAL
            order.append((NORMAL, -1))

    async def main() -> None:
        tasks = [asyncio.create_task(call(BULK, i)) for i in range(4)]
        await clock.settle()
        assert limiter.waiting_by_level() == (2, 0, 0)
        tasks += [asyncio.create_task(call(INTERACTIVE, i)) for i in range(2)]
        tasks.append(asyncio.create_task(block()))
        await clock.advance(10.0)
        await asyncio.gather(*tasks)

    asyncio.run(main())
    # The first two bulk tasks were booked before the others arrived.
    assert order == [
        (BULK, 0),
        (BULK, 1),
        (INTERACTIVE, 0),
        (INTERACTIVE, 1),
        (NORMAL, -1),
        (BULK, 2),
        (BULK, 3),
    ]
    assert limiter.statistics().waiting == 0


def test_cancelling_a_task_releases_its_place_and_refunds_its_booking():
    """A cancelled task leaves the queue, or withdraws its booking; the next one moves up."""
    clock = LoopClock()
    bucket = TokenBucket(1.0, 1, clock=clock)
    limiter = Prioritized(bucket)
    granted: list[float] = []

    async def later() -> None:
        await limiter.acquire_async(timeout=1.0)
        granted.append(clock.now())

    async def main() -> None:
        await limiter.acquire_async()  # the token
        booked = asyncio.create_task(limiter.acquire_async())  # for 1 s
        queued = asyncio.create_task(limiter.acquire_async(priority=BULK))
        await clock.settle()
        assert limiter.waiting_by_level() == (1, 0, 0)
        queued.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await queued
        assert limiter.waiting_by_level() == (0, 0, 0)
        booked.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await booked
        assert bucket.statistics().granted == 1  # the booking was withdrawn
        task = asyncio.create_task(later())
        await clock.advance(5.0)
        await task

    asyncio.run(main())
    assert granted == [1.0]
    assert limiter.statistics().cancelled == 2


def test_an_async_timeout_fails_as_soon_as_it_is_known():
    """A task whose wait exceeds its timeout fails without sleeping."""
    clock = FakeClock()
    limiter = Prioritized(TokenBucket(1.0, 1, clock=clock))

    async def main() -> None:
        await limiter.acquire_async()
        with pytest.raises(AcquireTimeout):
            await limiter.acquire_async(timeout=0.5)

    asyncio.run(main())
    assert clock.now() == 0.0


def test_threads_and_tasks_share_one_limiter():
    """An interactive thread goes before the bulk tasks it found queued on another loop."""
    limiter = Prioritized(TokenBucket(200.0, 1))
    finished: list[str] = []
    lock = threading.Lock()

    async def bulk() -> None:
        await limiter.acquire_async(priority=BULK)
        with lock:
            finished.append("bulk")

    async def main() -> int:
        tasks = [asyncio.create_task(bulk()) for _ in range(20)]
        await asyncio.sleep(0)  # each task queues (or books) before its first await
        queued = limiter.waiting_by_level()[BULK]

        def interactive() -> None:
            limiter.acquire(priority=INTERACTIVE)
            with lock:
                finished.append("interactive")

        thread = threading.Thread(target=interactive)
        thread.start()
        await asyncio.gather(*tasks)
        thread.join()
        return queued

    queued = asyncio.run(main())
    after = len(finished) - 1 - finished.index("interactive")
    assert after >= queued - 2


# -- validation and the context priority -------------------------------------------------


def test_bad_settings_and_priorities_are_refused_naming_the_argument():
    """levels, aging, horizon, default, priority and cost are checked, each by name."""
    bucket = TokenBucket(1.0, 2, clock=FakeClock())
    for kwargs, error, name in [
        ({"levels": 0}, ValueError, "levels"),
        ({"levels": "3"}, TypeError, "levels"),
        ({"aging": 0}, ValueError, "aging"),
        ({"aging": math.nan}, ValueError, "aging"),
        ({"horizon": -1.0}, ValueError, "horizon"),
        ({"default": 3}, ValueError, "default"),
    ]:
        with pytest.raises(error, match=name):
            Prioritized(bucket, **kwargs)
    with pytest.raises(TypeError, match="horizon must be given"):
        Prioritized(Seen())
    assert Prioritized(Seen(), horizon=0.1).horizon == 0.1
    limiter = Prioritized(bucket, aging=math.inf)
    for level, error in [(3, ValueError), (-1, ValueError), ("high", TypeError), (True, TypeError)]:
        with pytest.raises(error, match="priority"):
            limiter.acquire(priority=level)
        with pytest.raises(error, match="priority"):
            limiter.try_acquire(priority=level)
    with pytest.raises(ValueError, match="from 0 to 2"):
        limiter.reserve(priority=5)
    with ratekit.priority(7), pytest.raises(ValueError, match=r"\(from ratekit\.priority\)"):
        limiter.acquire()
    with pytest.raises(ValueError, match="priority"), ratekit.priority(-1):
        pass
    with pytest.raises(CostTooLarge):
        limiter.acquire(3)
    with pytest.raises(ValueError, match="cost"):
        limiter.try_acquire(0)
    with pytest.raises(ValueError, match="timeout"):
        limiter.acquire(timeout=-1)
    assert limiter.statistics().granted == 0
    assert "Prioritized(" in repr(limiter)


def test_the_context_priority_applies_unless_a_call_names_its_own():
    """ratekit.priority sets current_priority for its block; an explicit argument wins."""
    clock = FakeClock()
    limiter = Prioritized(TokenBucket(1.0, 1, clock=clock), default=BULK)
    assert current_priority() is None
    assert limiter._level(None) == BULK
    with ratekit.priority(INTERACTIVE):
        assert current_priority() == INTERACTIVE
        assert limiter._level(None) == INTERACTIVE
        assert limiter._level(NORMAL) == NORMAL
        with ratekit.priority(NORMAL):
            assert current_priority() == NORMAL
        assert current_priority() == INTERACTIVE
    assert current_priority() is None
    assert isinstance(limiter, Limiter)
    assert (limiter.levels, limiter.aging, limiter.horizon) == (3, 30.0, None)
    assert limiter.clock is clock
    assert limiter.capacity == 1


def test_a_wider_limiter_takes_any_level_below_its_count():
    """levels=5 accepts 0..4; an aged caller still ranks no higher than the top."""
    clock = FakeClock()
    limiter = Prioritized(TokenBucket(1.0, 1, clock=clock), levels=5, aging=1.0)
    limiter.acquire(priority=4)
    limiter.acquire(priority=0)
    assert clock.now() == 1.0
    assert limiter.waiting_by_level() == (0, 0, 0, 0, 0)


def test_an_error_of_the_wrapped_limiter_reaches_the_caller():
    """A limiter whose reserve raises (a store down): the caller gets the error, the queue moves."""

    class Down(Seen):
        def try_acquire(self, cost=1):
            return Decision(False, 1.0)

        def reserve(self, cost=1, *, max_wait=None):
            raise ConnectionError("store down")

    limiter = Prioritized(Down(), horizon=1.0)
    with pytest.raises(ConnectionError, match="store down"):
        limiter.acquire()
    assert limiter.waiting_by_level() == (0, 0, 0)


# -- pass-through: schedulers, the HTTP client, CXone ------------------------------------


def test_scheduler_map_runs_each_call_and_its_acquire_at_its_priority():
    """map(priority=) sets each call's priority and its own acquire's; None inherits."""
    seen = Seen()
    with Scheduler(3, seen) as scheduler:
        levels = list(scheduler.map(lambda _: current_priority(), range(6), priority=BULK))
        assert levels == [BULK] * 6
        assert seen.levels == [BULK] * 6
        with ratekit.priority(INTERACTIVE):
            inherited = list(scheduler.map(lambda _: current_priority(), range(3)))
        assert inherited == [INTERACTIVE] * 3
        assert list(scheduler.map(lambda _: current_priority(), range(2))) == [None, None]
        with pytest.raises(ValueError, match="priority"):
            scheduler.map(str, [], priority=-1)
    assert current_priority() is None


def test_async_scheduler_map_runs_each_call_and_its_acquire_at_its_priority():
    """AsyncScheduler.map(priority=) as Scheduler.map; the calls' tasks keep it to themselves."""
    seen = Seen()

    async def level(_: object) -> int | None:
        return current_priority()

    async def main() -> None:
        async with AsyncScheduler(3, seen) as scheduler:
            got = [x async for x in scheduler.map(level, range(5), priority=NORMAL)]
            assert got == [NORMAL] * 5
            assert current_priority() is None
            with ratekit.priority(BULK):
                got = [x async for x in scheduler.map(level, range(2))]
            assert got == [BULK] * 2

    asyncio.run(main())
    assert seen.levels == [NORMAL] * 5 + [BULK] * 2


def test_client_requests_acquire_at_their_priority(server: LoopbackServer):
    """Client.request(priority=) and its helpers acquire at it; the context's otherwise."""
    server.route("GET", "/x")(lambda _: Reply.json(1))
    seen = Seen()
    with Client(seen, base_url=server.url) as client:
        client.get_json("/x", priority=INTERACTIVE)
        client.get("/x", priority=BULK)
        client.request("GET", "/x")
        with ratekit.priority(NORMAL):
            client.get_json("/x")
        with pytest.raises(TypeError, match="priority"):
            client.get("/x", priority="urgent")
    assert seen.levels == [INTERACTIVE, BULK, None, NORMAL]
    assert current_priority() is None


def test_an_interactive_request_overtakes_queued_bulk_ones(server: LoopbackServer):
    """8 workers map bulk requests through one Prioritized limit; an interactive one cuts in."""
    server.route("GET", "/bulk")(lambda _: Reply.json(1))
    server.route("GET", "/interactive")(lambda _: Reply.json(2))
    limiter = Prioritized(TokenBucket(100.0, 1))
    started: dict[int, float] = {}

    with Client(limiter, base_url=server.url, retry=None) as client, Scheduler(8) as scheduler:

        def fetch(index: int) -> object:
            started[index] = time.monotonic()
            return client.get_json("/bulk", params={"i": index})

        results: list[object] = []
        thread = threading.Thread(
            target=lambda: results.extend(scheduler.map(fetch, range(40), priority=BULK))
        )
        thread.start()
        deadline = time.monotonic() + 10.0
        while limiter.waiting_by_level()[BULK] < 6 and time.monotonic() < deadline:
            time.sleep(0.001)
        queued = limiter.waiting_by_level()[BULK]
        asked = time.monotonic()
        assert client.get_json("/interactive", priority=INTERACTIVE) == 2
        thread.join(30.0)
    assert results == [1] * 40
    arrived = {int(r.query["i"][0]): r.at for r in server.hits("/bulk")}
    answered = server.hits("/interactive")[0].at
    waiting = [i for i, at in started.items() if at < asked]
    overtaken = [i for i in waiting if arrived[i] > answered]
    assert queued >= 6
    assert len(overtaken) >= queued - 2


def test_cxone_walks_pass_their_priority_to_every_request():
    """completed_contacts(priority=) reaches the requests of the fan-out threads too."""
    from ratekit_cxone import CXoneClient, CXoneConfig
    from ratekit_cxone.simulator import Simulator

    seen = Seen()
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    with Simulator(records=300, seed=3, first_date=start, span=timedelta(days=30)) as simulator:
        config = CXoneConfig.from_env("contacts", simulator.env("contacts"))
        with CXoneClient(config, limiter=seen, concurrency=3) as cxone:
            records = list(
                cxone.completed_contacts(
                    start, start + timedelta(days=3650), page_size=50, priority=INTERACTIVE
                )
            )
            assert len(records) == 300
            total = cxone.completed_contacts_total(
                start, start + timedelta(days=3650), priority=BULK
            )
            assert total == 300
    assert len(seen.levels) >= 7
    assert seen.levels[-1] == BULK
    assert set(seen.levels[:-1]) == {INTERACTIVE}
    with pytest.raises(TypeError, match="priority"):
        cxone.completed_contacts(start, start + timedelta(days=1), priority="bulk")


def test_the_export_command_runs_at_bulk(tmp_path, monkeypatch):
    """ratekit-cxone export acquires every request of the export at Priority.BULK."""
    from ratekit_cxone import _cli
    from ratekit_cxone.simulator import Simulator

    made: list[Seen] = []
    real = _cli.make_limiter

    def recording(*args, **kwargs):
        made.append(Seen(real(*args, **kwargs)))
        return made[-1]

    monkeypatch.setattr(_cli, "make_limiter", recording)
    for name in list(os.environ):
        if name.startswith("CXONE_"):
            monkeypatch.delenv(name)
    first = datetime(2026, 1, 1, tzinfo=timezone.utc)
    with Simulator(records=120, first_date=first, span=timedelta(days=30)) as simulator:
        for name, value in simulator.env("contacts").items():
            monkeypatch.setenv(name, value)
        out = tmp_path / "contacts.jsonl"
        window = ["--start", "2026-01-01T00:00:00Z", "--end", "2026-02-01T00:00:00Z"]
        args = ["export", "--out", str(out), *window, "--page-size", "20", "--quiet"]
        assert _cli.main([*args, "--rate", "1000/second"]) == 0
    assert len(out.read_text().splitlines()) == 120
    (limiter,) = made
    assert len(limiter.levels) >= 6
    assert set(limiter.levels) == {BULK}
    assert current_priority() is None
