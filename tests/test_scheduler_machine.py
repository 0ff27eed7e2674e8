"""A state machine over `Scheduler` maps that stop in every way, on real threads.

Cancellation must reach every wait: whatever stops a map (its end, a failure, closing
the generator, `Scheduler.shutdown` from another thread, or its own cancel event set
from another thread), every call that started ends, the calls blocked on the map's
event are woken, no call starts after the stop, the consumer returns or raises the
right exception, and no thread outlives the map.
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import TYPE_CHECKING, Literal

import attrs
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from ratekit import Cancelled, Scheduler, SchedulerClosed, TokenBucket, current_cancel

if TYPE_CHECKING:
    from collections.abc import Callable, Generator, Iterator

    from ratekit import SchedulerStatistics

#: Seconds a call blocked on its map's event waits at most: far beyond any stop, which
#: wakes it at once, so that a stop that does not reach it fails the test instead of
#: hanging it.
WAKE_BOUND = 10.0

#: Seconds the consumer and the thread that stops the map are given to end: above
#: WAKE_BOUND, so that a call that was never woken is reported as such, not as a hang.
JOIN_BOUND = 20.0

#: Seconds between two looks of the stopping thread at the consumer: whether it waits
#: yet, and whether it still does.
POLL = 0.0002


class Boom(Exception):
    """An ordinary failure of a mapped call."""


class Halt(BaseException):
    """A failure that is no `Exception`, as KeyboardInterrupt and SystemExit are not."""


StepKind = Literal["ok", "fail", "block"]


@attrs.frozen
class Step:
    """What the call for one item does.

    ``ok`` returns ``("ok", item)``; ``fail`` raises *error*; ``block`` waits until its
    map's event is set, then raises *error*, or returns ``("woken", item)`` without one.
    """

    kind: StepKind
    error: type[BaseException] | None = None


@attrs.frozen
class Stop:
    """How the consumer ends the map.

    ``end`` consumes every result; ``close`` consumes *after* results, then closes the
    generator; ``shutdown`` and ``cancel`` shut the scheduler down or set the map's own
    event from another thread, *when*: ``before`` the first step of the iteration,
    ``soon`` after the consumer began, once it is ``blocked`` waiting for a result, or
    while it is ``busy`` with its first result (it goes on once the stop returned).
    """

    kind: Literal["end", "close", "shutdown", "cancel"]
    after: int = 0
    when: Literal["before", "soon", "blocked", "busy"] = "blocked"


LimiterKind = Literal["none", "fast", "scarce", "deaf"]


@attrs.frozen
class Plan:
    """One map: its scheduler, its options, its items' steps, and how it stops.

    The calls are paced by no limiter, a `TokenBucket` that never makes them wait
    (``fast``), one that grants *burst* calls and then holds the others for 1000 s
    (``scarce``), or a `DeafLimiter` of *burst*.  With *watch*, the map is given a
    cancel event of the test's own that nothing sets.
    """

    workers: int
    limiter: LimiterKind
    burst: int
    ordered: bool
    return_exceptions: bool
    progress: bool
    watch: bool
    steps: tuple[Step, ...]
    stop: Stop


@attrs.define(eq=False)
class DeafLimiter:
    """A limiter that grants *burst* calls, then grants the others once the map stops.

    Instead of raising `ratekit.AcquireCancelled`, a wait that the map's event ends is
    granted, as a limiter may do when the grant falls due just then: the map must still
    start no call after it.  It records, per thread, whether its last grant came after
    the stop, and whether every wait was woken.
    """

    burst: int
    woken: list[bool] = attrs.field(init=False, factory=list)
    late: threading.local = attrs.field(init=False, factory=threading.local)
    _lock: threading.Lock = attrs.field(init=False, factory=threading.Lock)
    _granted: int = attrs.field(init=False, default=0)

    def acquire(
        self, cost: float = 1, *, timeout: float | None = None, cancel: threading.Event
    ) -> None:
        """Grant at once while the burst lasts; after it, when *cancel* is set."""
        with self._lock:
            self._granted += 1
            wait = self._granted > self.burst
        self.late.granted = wait
        if wait:
            woken = cancel.wait(WAKE_BOUND)
            with self._lock:
                self.woken.append(woken)


def make_limiter(plan: Plan) -> TokenBucket | DeafLimiter | None:
    """The limiter that *plan* asks for."""
    if plan.limiter == "fast":
        return TokenBucket(1_000_000.0, 1_000_000)
    if plan.limiter == "scarce":
        return TokenBucket(0.001, plan.burst)
    if plan.limiter == "deaf":
        return DeafLimiter(plan.burst)
    return None


step_strategy = st.one_of(
    st.just(Step("ok")),
    st.sampled_from([ValueError, Boom, Halt, KeyboardInterrupt]).map(lambda e: Step("fail", e)),
    st.sampled_from([None, Cancelled, RuntimeError]).map(lambda e: Step("block", e)),
)


def first_fail(steps: tuple[Step, ...]) -> int | None:
    """The index of the first failing step, if any."""
    return next((i for i, step in enumerate(steps) if step.kind == "fail"), None)


def can_end(steps: tuple[Step, ...], stop: Stop, *, workers: int, return_exceptions: bool) -> bool:
    """Whether a map gets as far as *stop* asks though its blocked calls wait forever.

    The consumer of a map closed after *k* results gets them if no call among the first
    *k* items blocks (those are taken first).  Otherwise only a failure that fails fast
    can end the map, if a worker always reaches it: fewer calls block ahead of it than
    there are workers, and it is less than one worker's share of the window (at least
    one item per worker) past the first blocked call, at which an ordered consumer waits.
    """
    blocks = [i for i, step in enumerate(steps) if step.kind == "block"]
    if not blocks or (stop.kind == "close" and blocks[0] >= stop.after):
        return True
    fail = first_fail(steps)
    if return_exceptions or fail is None:
        return False
    ahead = sum(1 for i in blocks if i < fail)
    return ahead < workers and fail - blocks[0] < workers


def repair(
    steps: tuple[Step, ...], stop: Stop, *, workers: int, return_exceptions: bool
) -> tuple[Step, ...]:
    """Adjust *steps* so that the map always ends, in the way *stop* expects it to.

    A map that its consumer ends itself gets plain calls for blocked ones unless it
    can end anyway (see `can_end`).  A map stopped from outside gets one blocked call
    at least, so that it cannot end before the stop does.
    """
    if stop.kind in {"end", "close"}:
        if can_end(steps, stop, workers=workers, return_exceptions=return_exceptions):
            return steps
        return tuple(Step("ok") if step.kind == "block" else step for step in steps)
    if not any(step.kind == "block" for step in steps):
        return (*steps, Step("block"))
    return steps


@st.composite
def plans(draw: st.DrawFn, stops: st.SearchStrategy[Stop]) -> Plan:
    """Maps of up to 12 items, stopped as *stops* says, with every option drawn."""
    stop = draw(stops)
    workers = draw(st.integers(min_value=1, max_value=4))
    return_exceptions = draw(st.booleans())
    steps = tuple(draw(st.lists(step_strategy, max_size=12)))
    if stop.kind == "close":  # closed before the end, when there is one
        stop = attrs.evolve(stop, after=min(stop.after, max(len(steps) - 1, 0)))
    steps = repair(steps, stop, workers=workers, return_exceptions=return_exceptions)
    # Scarce and deaf limiters hold calls until a stop wakes them: only a stop from
    # outside is sure to come.
    limiters: list[LimiterKind] = ["none", "fast"]
    if stop.kind in {"shutdown", "cancel"}:
        limiters += ["scarce", "deaf"]
    limiter = draw(st.sampled_from(limiters))
    return Plan(
        workers=workers,
        limiter=limiter,
        burst=draw(st.integers(min_value=1, max_value=3)),
        ordered=draw(st.booleans()),
        return_exceptions=return_exceptions,
        progress=draw(st.booleans()),
        # Rarely: the thread that watches such an event ends up to 50 ms after the map.
        watch=stop.kind != "cancel" and draw(st.integers(min_value=0, max_value=7)) == 7,
        steps=steps,
        stop=stop,
    )


@attrs.define(eq=False)
class Trace:
    """What one map's calls did, recorded from the worker threads on one logical clock.

    Every record takes an instant from the same counter under one lock, so that "this
    call started before that stop" is exact, not a matter of clock resolution.
    """

    steps: tuple[Step, ...]
    limiter: object = None
    _lock: threading.Lock = attrs.field(init=False, factory=threading.Lock)
    _instants: Iterator[int] = attrs.field(init=False, factory=itertools.count)
    taken: int = attrs.field(init=False, default=0)
    starts: dict[int, int] = attrs.field(init=False, factory=dict)
    ends: dict[int, int] = attrs.field(init=False, factory=dict)
    outcomes: dict[int, object] = attrs.field(init=False, factory=dict)
    raised: set[int] = attrs.field(init=False, factory=set)
    woken: dict[int, bool] = attrs.field(init=False, factory=dict)
    events: list[threading.Event] = attrs.field(init=False, factory=list)
    current_is_given: list[bool] = attrs.field(init=False, factory=list)
    after_late_grant: list[int] = attrs.field(init=False, factory=list)
    stops: list[int] = attrs.field(init=False, factory=list)
    progress: list[SchedulerStatistics] = attrs.field(init=False, factory=list)

    def items(self) -> Generator[int, None, None]:
        """The items, 0 to n - 1, counting those taken."""
        for index in range(len(self.steps)):
            with self._lock:
                self.taken += 1
            yield index

    def call(self, index: int, cancel: threading.Event) -> object:
        """The mapped function: record the start, do the step, record the outcome."""
        with self._lock:
            self.starts[index] = next(self._instants)
            self.events.append(cancel)
            self.current_is_given.append(current_cancel() is cancel)
            if isinstance(self.limiter, DeafLimiter) and getattr(
                self.limiter.late, "granted", False
            ):
                self.after_late_grant.append(index)
        try:
            outcome = self._do(index, cancel)
        except BaseException as error:
            self._end(index, error, raised=True)
            raise
        self._end(index, outcome, raised=False)
        return outcome

    def _do(self, index: int, cancel: threading.Event) -> object:
        step = self.steps[index]
        if step.kind == "fail":
            raise (step.error or Boom)(f"item {index}")
        if step.kind == "ok":
            return ("ok", index)
        woken = cancel.wait(WAKE_BOUND)
        with self._lock:
            self.woken[index] = woken
        if step.error is not None:
            raise step.error(f"item {index}, woken")
        return ("woken", index)

    def _end(self, index: int, outcome: object, *, raised: bool) -> None:
        with self._lock:
            self.ends[index] = next(self._instants)
            self.outcomes[index] = outcome
            if raised:
                self.raised.add(index)

    def blocked_now(self) -> bool:
        """Whether a call is blocked on its map's event right now."""
        with self._lock:
            return any(self.steps[i].kind == "block" and i not in self.ends for i in self.starts)

    def mark_stop(self) -> None:
        """Record that the map counts as stopped from now on: no call may start after."""
        with self._lock:
            self.stops.append(next(self._instants))

    def on_progress(self, statistics: SchedulerStatistics) -> None:
        """The map's progress callback."""
        with self._lock:
            self.progress.append(statistics)

    def failures(self) -> dict[int, BaseException]:
        """What the failing steps that ran raised, by index."""
        return {
            index: outcome
            for index, outcome in self.outcomes.items()
            if self.steps[index].kind == "fail" and isinstance(outcome, BaseException)
        }


@attrs.define(eq=False)
class Consumer:
    """The thread that iterates a map, as its user would, and what it got."""

    results: Generator[object, None, None]
    limit: int | None
    trace: Trace
    pause: bool = False
    paused: threading.Event = attrs.field(init=False, factory=threading.Event)
    resume: threading.Event = attrs.field(init=False, factory=threading.Event)
    values: list[object] = attrs.field(init=False, factory=list)
    waiting: bool = attrs.field(init=False, default=False)
    error: BaseException | None = attrs.field(init=False, default=None)
    closed: bool = attrs.field(init=False, default=False)
    done: threading.Event = attrs.field(init=False, factory=threading.Event)
    thread: threading.Thread = attrs.field(init=False)

    @thread.default
    def _thread(self) -> threading.Thread:
        return threading.Thread(target=self._consume, name="test-consumer", daemon=True)

    def _consume(self) -> None:
        try:
            while self.limit is None or len(self.values) < self.limit:
                self.waiting = True
                try:
                    value = next(self.results)
                except StopIteration:
                    break
                finally:
                    self.waiting = False
                self.values.append(value)
                if self.pause and len(self.values) == 1:
                    self.paused.set()
                    self.resume.wait(JOIN_BOUND)
            if self.limit is not None:
                self.results.close()
                self.closed = True
        except BaseException as error:  # noqa: BLE001 - what the map raised is checked
            self.error = error
        finally:
            self.trace.mark_stop()
            self.done.set()

    def blocked(self) -> bool:
        """Whether the consumer waits for a result, and still does a moment later."""
        # (Not by reading its frame with sys._current_frames: on CPython 3.11 that can
        # deadlock with a thread starting, python/cpython#106883.)
        seen = len(self.values)
        if not self.waiting:
            return False
        time.sleep(POLL)
        return self.waiting and len(self.values) == seen


def wait_until(predicate: Callable[[], bool]) -> bool:
    """Poll *predicate* until it holds (``True``) or JOIN_BOUND passes (``False``)."""
    deadline = time.monotonic() + JOIN_BOUND
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL)
    return True


ends = st.just(Stop("end"))
closes = st.builds(Stop, kind=st.just("close"), after=st.integers(min_value=0, max_value=12))
whens = st.sampled_from(["before", "soon", "blocked", "busy"])
shutdowns = st.builds(Stop, kind=st.just("shutdown"), when=whens)
cancels = st.builds(Stop, kind=st.just("cancel"), when=whens)


# Each step runs a whole map on real threads: fewer steps per example keep the run short.
@settings(stateful_step_count=10)
class SchedulerMachine(RuleBasedStateMachine):
    """Runs one map per rule on a fresh `Scheduler`, with real threads, and checks it.

    The rules differ by how the map stops: consumed to the end, closed after some
    results, shut down from another thread, or cancelled through its own event from
    another thread; each draws the workers (1-4), the limiter, the options and the
    items, some of which fail (with an Exception or a BaseException) and some of which
    block on the map's event.  Each scheduler is shut down after its map, and a last
    rule checks that a shut-down scheduler refuses a new map.
    """

    def __init__(self) -> None:
        super().__init__()
        # The threads alive before the last map, and its scheduler, shut down, with
        # its statistics as they were when the map ended.
        self.before = set(threading.enumerate())
        self.closed: Scheduler | None = None
        self.at_rest: SchedulerStatistics | None = None

    # -- the rules ------------------------------------------------------------------

    @rule(plan=plans(ends))
    def consume_to_the_end(self, plan: Plan) -> None:
        """Consumed to the end: all results in order, or the first failure, fail-fast."""
        self.run(plan)

    @rule(plan=plans(closes))
    def close_early(self, plan: Plan) -> None:
        """Closed after k results: its calls end and none starts after the close."""
        self.run(plan)

    @rule(plan=plans(shutdowns))
    def shut_down(self, plan: Plan) -> None:
        """Shut down from another thread: the consumer raises SchedulerClosed at once."""
        self.run(plan)

    @rule(plan=plans(cancels))
    def cancel(self, plan: Plan) -> None:
        """Its cancel event set from another thread: the consumer raises Cancelled."""
        self.run(plan)

    @precondition(lambda self: self.closed is not None)
    @rule()
    def map_after_shutdown(self) -> None:
        """A shut-down scheduler refuses a new map at once, and takes no item."""
        trace = Trace((Step("ok"),))
        refused = None
        try:
            self.closed.map(trace.call, trace.items())  # type: ignore[union-attr]
        except SchedulerClosed as error:
            refused = error
        assert refused is not None
        assert trace.taken == 0

    @invariant()
    def no_thread_outlives_a_map_and_its_shutdown(self) -> None:
        """Only the threads that were alive before the last map still are."""
        assert set(threading.enumerate()) <= self.before

    @invariant()
    def the_last_scheduler_stays_at_rest(self) -> None:
        """Shutting a scheduler down, or mapping on it after, changes none of its counters."""
        if self.closed is not None:
            assert self.closed.statistics() == self.at_rest

    # -- one map --------------------------------------------------------------------

    def run(self, plan: Plan) -> None:
        self.before = before = set(threading.enumerate())
        limiter = make_limiter(plan)
        trace = Trace(plan.steps, limiter)
        scheduler = Scheduler(plan.workers, limiter)  # type: ignore[arg-type]
        stop = plan.stop
        event = threading.Event() if stop.kind == "cancel" or plan.watch else None
        results = scheduler.map(
            trace.call,
            trace.items(),
            ordered=plan.ordered,
            return_exceptions=plan.return_exceptions,
            on_progress=trace.on_progress if plan.progress else None,
            cancel=event,
        )
        limit = stop.after if stop.kind == "close" else None
        consumer = Consumer(results, limit, trace, pause=stop.when == "busy")
        stopper = None
        try:
            if stop.kind in {"shutdown", "cancel"}:
                stop_event = event if stop.kind == "cancel" else None
                if stop.when == "before":
                    self.stop(scheduler, stop_event, trace)
                else:
                    stopper = threading.Thread(
                        target=self.stop_later,
                        args=(scheduler, stop_event, trace, consumer, stop.when),
                        name="test-stopper",
                        daemon=True,
                    )
            consumer.thread.start()
            if stopper is not None:
                stopper.start()
            consumer.thread.join(JOIN_BOUND)
            if stopper is not None:
                stopper.join(JOIN_BOUND)
            assert not consumer.thread.is_alive(), "the consumer hangs"
            assert stopper is None or not stopper.is_alive(), "shutdown hangs"
            assert set(threading.enumerate()) <= before, "the map left a thread behind"
            self.at_rest = scheduler.statistics()
        finally:
            # Also what frees the threads of a map that hangs, if it can.
            closer = threading.Thread(target=scheduler.shutdown, name="test-closer", daemon=True)
            closer.start()
            closer.join(JOIN_BOUND)
            consumer.resume.set()
            self.closed = scheduler
        assert not closer.is_alive(), "shutdown hangs after the map"
        check_calls(plan, trace, consumer)
        check_outcome(plan, trace, consumer)
        check_values(plan, trace, consumer)
        check_statistics(trace, self.at_rest)
        if event is not None and stop.kind != "cancel":
            assert not event.is_set()  # the map never sets an event of its user's

    @staticmethod
    def stop(scheduler: Scheduler, event: threading.Event | None, trace: Trace) -> None:
        """Set *event*, the map's own cancel event, if given; else shut *scheduler* down."""
        if event is None:
            scheduler.shutdown()
            # shutdown() returned: the map's workers ended, so no call can start after.
            # Setting the event promises less: calls may start until the map sees it.
            trace.mark_stop()
        else:
            event.set()

    def stop_later(
        self,
        scheduler: Scheduler,
        event: threading.Event | None,
        trace: Trace,
        consumer: Consumer,
        when: str,
    ) -> None:
        try:
            if when == "blocked":
                # Once calls wait, on the map's event or on the limiter, and so does the
                # consumer; or once a failure ended the map.
                wait_until(
                    lambda: (
                        consumer.done.is_set()
                        or (
                            consumer.blocked()
                            and (trace.blocked_now() or scheduler.statistics().waiting > 0)
                        )
                    )
                )
            elif when == "busy":
                # While the consumer holds its first result, or waits for it.
                wait_until(
                    lambda: consumer.done.is_set() or consumer.paused.is_set() or consumer.blocked()
                )
            self.stop(scheduler, event, trace)
        finally:
            # A busy consumer goes on only now: shutdown() returned without its help.
            consumer.resume.set()


# -- the checks after each map ------------------------------------------------------------


def stopped_early(consumer: Consumer) -> bool:
    """Whether the map stopped before its end, as far as its consumer knows."""
    return consumer.closed or consumer.error is not None


def check_calls(plan: Plan, trace: Trace, consumer: Consumer) -> None:
    """Every call that started ended, was woken if it blocked, and started before the stop."""
    assert trace.ends.keys() == trace.starts.keys()
    blocked = {i for i in trace.starts if plan.steps[i].kind == "block"}
    assert trace.woken == dict.fromkeys(blocked, True)
    assert all(trace.current_is_given)
    if isinstance(trace.limiter, DeafLimiter):
        assert all(trace.limiter.woken)  # the stop reached the limiter's waits
        assert trace.after_late_grant == []  # no call starts on a grant after the stop
    assert len({id(event) for event in trace.events}) <= 1  # one event per map
    if trace.events and stopped_early(consumer):
        assert trace.events[0].is_set()
    if trace.starts:  # the consumer, and a thread that shut it down, marked the stop
        assert max(trace.starts.values()) < min(trace.stops)
    if plan.progress:
        assert len(trace.progress) == len(trace.ends)


def check_outcome(plan: Plan, trace: Trace, consumer: Consumer) -> None:
    """The consumer returned, or raised what the stop and the calls make right."""
    stop, error = plan.stop, consumer.error
    fail = first_fail(plan.steps)
    fails_fast = not plan.return_exceptions and fail is not None
    failures = trace.failures()
    raised_by_a_call = error is not None and any(error is e for e in failures.values())
    if stop.kind == "end":
        assert raised_by_a_call if fails_fast else error is None
    elif stop.kind == "close":
        assert error is None or (fails_fast and raised_by_a_call)
        # The consumer cannot get k results without the failure: there are fewer
        # plain items, or, in order, the failure comes first.
        plain = sum(step.kind == "ok" for step in plan.steps)
        first = plan.ordered and fail is not None and fail < stop.after
        if fails_fast and (plain < stop.after or first):
            assert error is not None
    else:
        expected = SchedulerClosed if stop.kind == "shutdown" else Cancelled
        assert isinstance(error, expected) or (fails_fast and raised_by_a_call)
        if stop.when == "before":
            assert isinstance(error, expected)
            assert trace.taken == 0
            assert not trace.starts
    if plan.workers == 1 and fail is not None and raised_by_a_call:
        # One worker runs the calls one after the other: the first failure is the one
        # raised, and nothing starts after it.
        assert error is failures.get(fail)
        assert trace.starts.keys() == set(range(fail + 1))


def check_values(plan: Plan, trace: Trace, consumer: Consumer) -> None:
    """What was yielded is what the calls returned (or raised, with return_exceptions)."""
    by_identity = {id(outcome): i for i, outcome in trace.outcomes.items()}
    calls = [by_identity.get(id(value), -1) for value in consumer.values]
    assert -1 not in calls  # each value is the very object a call returned or raised
    assert len(set(calls)) == len(calls)  # once each
    assert plan.return_exceptions or not trace.raised.intersection(calls)
    if plan.ordered:
        assert calls == list(range(len(calls)))
    if stopped_early(consumer):
        return
    # Consumed to the end: every item was called once, and every result yielded.
    expected = [
        ("ok", i) if step.kind == "ok" else trace.outcomes.get(i)
        for i, step in enumerate(plan.steps)
    ]
    in_item_order = [value for _, value in sorted(zip(calls, consumer.values, strict=True))]
    assert in_item_order == expected


def check_statistics(trace: Trace, statistics: SchedulerStatistics) -> None:
    """The counters agree with the calls: nothing runs or waits, every item is counted."""
    assert (statistics.running, statistics.waiting) == (0, 0)
    assert statistics.failed == len(trace.raised)
    assert statistics.done == len(trace.ends) - len(trace.raised)
    # Every item taken was either called or counted as cancelled.
    assert statistics.cancelled == trace.taken - len(trace.starts)


TestSchedulerMachine = SchedulerMachine.TestCase
