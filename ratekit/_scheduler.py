"""`Scheduler`: a bounded pool of threads whose calls are paced by a limiter."""

from __future__ import annotations

import math
import threading
from collections import deque
from typing import TYPE_CHECKING, Any, Generic, TypeVar, final

import attrs

from . import _hooks
from ._cancel import _CURRENT, Cancellation, linked, resolve, wants_cancel
from ._clock import MONOTONIC
from ._errors import (
    AcquireCancelled,
    AcquireTimeout,
    Cancelled,
    MapTimeout,
    QueueFull,
    SchedulerClosed,
)
from ._priority import _PRIORITY, map_priority
from ._validate import attribute, callable_or_none, optional_wait, positive, whole_number

if TYPE_CHECKING:
    from collections.abc import Callable, Generator, Iterable

    from .typing import CancelEvent, Clock, Limiter

T = TypeVar("T")
R = TypeVar("R")

#: Results held ahead of the consumer, per worker, on top of the calls in flight: what
#: keeps memory bounded while letting workers run ahead of a slow consumer, or of one
#: call that waits (a page retried after a 429), without idling: eight per worker is
#: a couple of seconds of pages at the pace of a rate-limited API.
_AHEAD_PER_WORKER = 8


@attrs.frozen
class SchedulerStatistics:
    """A snapshot of a scheduler's counters, for logging, metrics and progress bars.

    Attributes:
        done: Calls that returned.
        failed: Calls that raised.
        running: Calls running right now.
        waiting: Calls waiting on the limiter right now.
        cancelled: Items taken but never called, because the map stopped first.
        started: Calls started: those running, and those that returned or raised.
    """

    done: int
    failed: int
    running: int
    waiting: int
    cancelled: int
    started: int = 0


@attrs.define(eq=False)
class _Counts:
    """The counters behind `SchedulerStatistics`, changed under the scheduler's lock."""

    done: int = 0
    failed: int = 0
    running: int = 0
    waiting: int = 0
    cancelled: int = 0
    started: int = 0

    def snapshot(self) -> SchedulerStatistics:
        return SchedulerStatistics(**attrs.asdict(self))


class SchedulerBase:
    """What `Scheduler` and `AsyncScheduler` share: settings and counters."""

    __slots__ = (
        "__weakref__",  # for ratekit.telemetry, which must not keep a scheduler alive
        "_clock",
        "_closed",
        "_counts",
        "_limiter",
        "_lock",
        "_max_workers",
        "_runs",
    )

    def __init__(
        self, max_workers: int, limiter: Limiter | None = None, *, clock: Clock | None = None
    ) -> None:
        self._max_workers = whole_number("max_workers", max_workers, 1)
        self._limiter = limiter
        if clock is None:
            clock = getattr(limiter, "clock", None) or MONOTONIC
        self._clock: Clock = clock
        # Reentrant, as `shutdown` may run in a signal handler on a thread that holds it.
        self._lock = threading.RLock()
        self._closed = False
        self._runs: set[Any] = set()
        self._counts = _Counts()
        _hooks.made(self)

    @property
    def max_workers(self) -> int:
        """The most calls running at once in each map."""
        return self._max_workers

    @property
    def limiter(self) -> Limiter | None:
        """The limiter that paces the calls, if any."""
        return self._limiter

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"{name}(max_workers={self._max_workers!r}, limiter={self._limiter!r})"

    def statistics(self) -> SchedulerStatistics:
        """Return a snapshot of the counters, over every map of this scheduler."""
        with self._lock:
            return self._counts.snapshot()

    def _count(self, name: str, change: int) -> None:
        with self._lock:
            setattr(self._counts, name, getattr(self._counts, name) + change)

    def _start(self) -> None:
        """Count a call as started and running."""
        with self._lock:
            self._counts.running += 1
            self._counts.started += 1


@final
class Scheduler(SchedulerBase):
    """Run calls on at most *max_workers* threads, each call gated by *limiter*.

    `map` streams results as calls finish.  Each call first acquires its cost from the
    limiter, so the limiter, not the number of threads, sets the pace; the threads only
    bound how many calls run at once.  By default a map fails fast, like Go's errgroup:
    the first exception stops new calls from starting, sets the map's cancel event,
    which wakes every wait of the calls still running, and is raised from the iterator
    as soon as they have returned.

    **Cancellation.**  Each map has a cancel event, set when the map stops early: it
    fails fast, times out, is closed, its scheduler is shut down, or the *cancel* given
    to `map` is set.  The calls receive it as their `ratekit.current_cancel`, so that
    everything ratekit does inside them (limiter waits, a `ratekit.http.Client`'s
    cooldown, retries and requests in flight, paginators and their fan-outs, other
    maps) stops at once, with nothing passed by hand; a function with a ``cancel``
    parameter is given it there too.

    Use it as a context manager: leaving the block stops what is still pending and waits
    for the worker threads to end, so no thread outlives it.

    Args:
        max_workers: The most calls running at once in each map (at least 1); each map
            has its own threads, so that a call may itself map without deadlock.
        limiter: Paces the calls (any `ratekit.typing.Limiter`); ``None`` for no pacing.
        clock: Where the map's deadline is read (default: the limiter's clock if it has
            one, else the real clock).

    Raises:
        ValueError: If *max_workers* is less than 1.
    """

    __slots__ = ()

    def __enter__(self) -> Scheduler:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    def shutdown(self) -> None:
        """Stop every map still running; no call starts after.

        It may be called from any thread, a signal handler included: every map still
        running stops as if it had failed, and its consumer's iteration raises
        `SchedulerClosed` at once (or at its next step).  Then it waits for the maps'
        worker threads to end (from a signal handler that interrupted a map's consumer,
        that map's iterator waits for them instead, as it raises).
        """
        with self._lock:
            self._closed = True
            runs = list(self._runs)
        for run in runs:
            run.close(SchedulerClosed("the scheduler was shut down while this map ran"))

    def map(  # noqa: PLR0913 - the options of a map, all keyword-only
        self,
        fn: Callable[..., R],
        items: Iterable[T],
        *,
        ordered: bool = True,
        cost: float | Callable[[T], float] = 1,
        return_exceptions: bool = False,
        timeout: float | None = None,
        on_progress: Callable[[SchedulerStatistics], object] | None = None,
        cancel: CancelEvent | None = None,
        priority: int | None = None,
    ) -> Generator[R, None, None]:
        """Call ``fn(item)`` for each item on the workers; yield results as they come.

        Items are taken from *items* lazily, a few ahead of the results consumed, so an
        endless generator works and memory stays bounded (the calls in flight plus two
        results per worker).  Each call runs with the map's cancel event as its
        `ratekit.current_cancel`; if *fn* has a ``cancel`` parameter, it is passed the
        event too (a `threading.Event`).

        Args:
            fn: The function to call with each item.
            items: The items, consumed once, lazily.
            ordered: Yield results in the order of *items* (default); else as they finish.
            cost: What each call acquires from the limiter: a number, or a function of
                the item.
            return_exceptions: Yield what a call raises in place of its result, and go
                on, instead of failing fast.
            timeout: Seconds for the whole map; past it, the map stops and raises
                `MapTimeout` (waits on the limiter that would end past it are refused
                at once).
            on_progress: Called with the scheduler's statistics after each call ends,
                from the worker thread that ran it (keep it quick and thread-safe).
            cancel: An event that stops the map when set, as a failure would: the
                iterator raises `ratekit.Cancelled`.  ``None``: the
                `ratekit.current_cancel` of the code that calls `map` (a map inside a
                mapped call stops with the outer map).  A ratekit event (the one a map
                hands its calls) stops it at once; any other is watched by a helper
                thread while the map runs, which also sees it at once.
            priority: The priority each call runs at (its `ratekit.current_priority`),
                which its own acquire from the limiter uses too: what a
                `ratekit.Prioritized` limiter serves first.  ``None``: the
                `ratekit.current_priority` of the code that calls `map`, if any.
                Other limiters ignore it.

        Returns:
            A generator of results (and of exceptions, with *return_exceptions*).
            Closing it early (``close()``, `contextlib.closing`), or leaving the
            scheduler's block, stops the map at once; merely breaking out of a loop
            over it leaves its workers parked, holding up to two results each,
            until then.

        Raises:
            SchedulerClosed: If the scheduler was shut down (from the iterator, if
                that happens while the map runs).
            ValueError: If *timeout* or *priority* is negative, or a number *cost* is
                not a positive finite number.
            TypeError: If *timeout* or *cost* is neither a number nor what else it
                may be, *on_progress* is not callable, or *priority* is not an integer.
            MapTimeout: From the iterator, when *timeout* passes.
            ratekit.Cancelled: From the iterator, when *cancel* is set.
            BaseException: From the iterator, the first exception of a call (unless
                *return_exceptions*), or of *items* itself, as soon as the calls still
                running have returned (which calls through ratekit do at once).
        """
        options = _Options(
            ordered, cost, return_exceptions, timeout, on_progress, map_priority(priority)
        )
        with self._lock:
            if self._closed:
                raise SchedulerClosed("the scheduler was shut down; no call starts after that")
        run: _Run[T, R] = _Run(self, fn, items, options, resolve(cancel))
        return run.results()


def _owned(lock: object) -> bool:
    """Whether the current thread holds *lock*, a reentrant lock or a condition on one.

    CPython's `threading.RLock` and `threading.Condition` tell it (``_is_owned``, what
    `threading.Condition` itself relies on); a lock that cannot tell is taken as held,
    which only makes a caller skip a join that the map's own iterator does later.
    """
    is_owned = getattr(lock, "_is_owned", None)
    return not callable(is_owned) or bool(is_owned())


class _Outcomes:
    """Finished calls waiting for the consumer: by index when ordered, else in a queue."""

    __slots__ = ("_by_index", "_finished", "_ordered")

    def __init__(self, *, ordered: bool) -> None:
        self._ordered = ordered
        self._by_index: dict[int, tuple[bool, object]] = {}
        self._finished: deque[tuple[bool, object]] = deque()

    def put(self, index: int, ok: bool, value: object) -> None:
        if self._ordered:
            self._by_index[index] = (ok, value)
        else:
            self._finished.append((ok, value))

    def take(self, index: int) -> tuple[bool, object] | None:
        """The outcome to yield as number *index*, if it has finished."""
        if self._ordered:
            return self._by_index.pop(index, None)
        return self._finished.popleft() if self._finished else None


def _check_cost(name: str, cost: object) -> object:
    return cost if callable(cost) else positive(name, cost)


@attrs.frozen
class _Options(Generic[T]):
    """The options of one map, checked as `Scheduler.map` documents them."""

    ordered: bool
    cost: float | Callable[[T], float] = attrs.field(validator=attribute(_check_cost))
    return_exceptions: bool
    timeout: float | None = attrs.field(validator=attribute(optional_wait))
    on_progress: Callable[[SchedulerStatistics], object] | None = attrs.field(
        validator=attribute(callable_or_none)
    )
    priority: int | None = None  # the calls' `ratekit.current_priority`, if any


class _Run(Generic[T, R]):
    """One `Scheduler.map`: its workers, its window of results, and how it stops.

    Everything that ends the map early goes through `_fail`: it records the first
    failure, wakes the consumer and the idle workers (under ``_cond``), and then, out of
    the lock, sets ``cancel``, whose callbacks wake the rest (sockets, nested maps).
    """

    def __init__(
        self,
        scheduler: Scheduler,
        fn: Callable[..., R],
        items: Iterable[T],
        options: _Options[T],
        parent: CancelEvent | None,
    ) -> None:
        self._scheduler = scheduler
        self._fn = fn
        self._pass_cancel = wants_cancel(fn, first_is_item=True)
        self._items = iter(items)
        self._cost = options.cost
        self._return_exceptions = options.return_exceptions
        self._on_progress = options.on_progress
        self._priority = options.priority
        clock = scheduler._clock
        self._clock = clock
        timeout = options.timeout
        self._deadline = math.inf if timeout is None else clock.now() + timeout
        self._timeout = timeout
        self._parent = parent
        self.cancel = Cancellation()
        # Reentrant (the default), for `Scheduler.shutdown` from a signal handler.
        self._cond = threading.Condition()
        self._input = threading.Lock()
        self._window = scheduler._max_workers * (1 + _AHEAD_PER_WORKER)
        # Under _cond: items claimed (taken or being taken) and results yielded so far;
        # finished results by index (ordered) or in finishing order; the first failure.
        self._claimed = 0
        self._yielded = 0
        self._outcomes = _Outcomes(ordered=options.ordered)
        self._next_index = 0  # under _input
        self._exhausted = False
        self._failure: BaseException | None = None
        self._stopping = False
        self._threads: list[threading.Thread] = []

    # -- the consumer's side ----------------------------------------------------------

    def results(self) -> Generator[R, None, None]:
        scheduler = self._scheduler
        with scheduler._lock:
            if scheduler._closed:  # made before shutdown, iterated after it
                raise SchedulerClosed("the scheduler was shut down; no call starts after that")
            scheduler._runs.add(self)
        # Set by a call itself (it was handed the event), or by the parent: the map stops
        # with Cancelled, recorded before the event wakes the calls (which could
        # otherwise report something else first).
        stop_on_cancel = self.cancel.on_set(self._cancelled)
        try:
            with linked(self._parent, self._cancelled):
                for _ in range(scheduler._max_workers):
                    thread = threading.Thread(
                        target=self._work, name="ratekit-scheduler", daemon=True
                    )
                    # Listed before it starts, so that an interrupt between the two
                    # (Ctrl-C can land anywhere) cannot leave a thread that stop() does
                    # not join.
                    self._threads.append(thread)
                    thread.start()
                while True:
                    ok, value = self._next()
                    if ok is None:
                        return
                    yield value  # type: ignore[misc]
        finally:
            stop_on_cancel()
            self.stop()
            with scheduler._lock:
                scheduler._runs.discard(self)

    def _next(self) -> tuple[bool | None, object]:
        """Wait for the next result; ``(None, None)`` when there are no more."""
        with self._cond:
            while True:
                if self._failure is not None:
                    raise self._failure
                outcome = self._outcomes.take(self._yielded)
                if outcome is not None:
                    break
                if self._exhausted and self._claimed == self._yielded:
                    return None, None
                remaining = self._deadline - self._clock.now()
                if remaining <= 0:
                    self._fail(MapTimeout(self._timeout or 0.0))
                    continue
                self._cond.wait(None if remaining == math.inf else remaining)
            self._yielded += 1
            self._cond.notify_all()  # the window moved on
        return outcome

    def stop(self) -> None:
        """Stop taking items, wake the workers, and wait for them to end."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self.cancel.set()
        self._join()

    def close(self, error: BaseException) -> None:
        """Stop the map with *error* (from `Scheduler.shutdown`), from any thread.

        Then wait for the workers, unless this thread holds a lock they may need: a
        signal handler runs on a thread between any two of its steps, and the consumer
        of the map may be that thread, in the middle of `_next` or of `statistics`.
        Its own iterator joins them then, as it raises.
        """
        self._fail(error)
        if not (_owned(self._cond) or _owned(self._scheduler._lock)):
            self._join()

    def _join(self) -> None:
        current = threading.current_thread()
        for thread in self._threads:
            if thread is not current and thread.ident is not None:  # started
                thread.join()

    def _cancelled(self) -> None:
        """The map's event was set: by its own stop, or from outside (its parent)."""
        self._fail(Cancelled("the map"))

    # -- the workers' side ------------------------------------------------------------

    def _fail(self, error: BaseException) -> None:
        """Stop the map; *error* is raised to the consumer unless a failure came first."""
        with self._cond:
            if self._failure is None and not (self._stopping and isinstance(error, Cancelled)):
                self._failure = error
            self._stopping = True
            self._cond.notify_all()
        self.cancel.set()

    def _work(self) -> None:
        # This thread's calls stop with the map: ratekit's waits read the event here.
        _CURRENT.set(self.cancel)
        if self._priority is not None:  # and a Prioritized limiter reads the priority
            _PRIORITY.set(self._priority)
        try:
            while True:
                with self._cond:
                    while not self._stopping and self._claimed - self._yielded >= self._window:
                        self._cond.wait()
                    if self._stopping or self._exhausted:
                        return
                    self._claimed += 1
                taken = self._take()
                if taken is None:
                    return
                index, item = taken
                if not self._acquire(item):
                    return
                self._call(index, item)
        finally:
            with self._cond:  # a consumer woken by nothing else sees the map end
                self._cond.notify_all()

    def _take(self) -> tuple[int, T] | None:
        """Take the next item, or release the claimed slot and return ``None``."""
        with self._input:
            item: T | None = None
            failure: BaseException | None = None
            if not (self._exhausted or self._stopping):
                try:
                    item = next(self._items)
                except StopIteration:
                    pass
                except BaseException as error:  # noqa: BLE001 - raised from the iterator
                    failure = error
                else:
                    index = self._next_index
                    self._next_index += 1
                    return index, item
        with self._cond:
            self._claimed -= 1
            if failure is None and not self._stopping:
                self._exhausted = True
            self._cond.notify_all()
        if failure is not None:
            self._fail(failure)
        return None

    def _acquire(self, item: T) -> bool:
        """Acquire the item's cost; ``False`` if the map stopped meanwhile."""
        limiter = self._scheduler._limiter
        if limiter is None:
            return True
        scheduler = self._scheduler
        scheduler._count("waiting", 1)
        failure: BaseException | None = None
        try:
            cost = self._cost(item) if callable(self._cost) else self._cost
            remaining = self._deadline - self._clock.now()
            limiter.acquire(
                cost,
                timeout=None if remaining == math.inf else max(remaining, 0.0),
                cancel=self.cancel,
            )
        except AcquireCancelled:
            scheduler._count("cancelled", 1)
            return False
        except AcquireTimeout as error:
            scheduler._count("cancelled", 1)
            # The deadline refused the wait, unless a queue did (QueueFull).
            if self._deadline < math.inf and not isinstance(error, QueueFull):
                failure = MapTimeout(self._timeout or 0.0)
            else:
                failure = error
        except BaseException as error:  # noqa: BLE001 - a bad cost, or the limiter's own
            scheduler._count("cancelled", 1)
            failure = error
        finally:
            scheduler._count("waiting", -1)
        if failure is not None:
            self._fail(failure)
            return False
        return True

    def _call(self, index: int, item: T) -> None:
        scheduler = self._scheduler
        if self.cancel.is_set():
            scheduler._count("cancelled", 1)
            return
        scheduler._start()
        try:
            if self._pass_cancel:
                result: object = self._fn(item, cancel=self.cancel)
            else:
                result = self._fn(item)
        except BaseException as error:  # noqa: BLE001 - handed to the consumer
            failure: BaseException | None = error
            value: object = error
        else:
            failure, value = None, result
        finally:
            scheduler._count("running", -1)
        ok = failure is None
        scheduler._count("done" if ok else "failed", 1)
        if failure is not None and not self._return_exceptions:
            self._fail(failure)
        else:
            with self._cond:
                self._outcomes.put(index, ok, value)
                self._cond.notify_all()
        if self._on_progress is not None:
            try:
                self._on_progress(scheduler.statistics())
            except BaseException as error:  # noqa: BLE001 - a broken callback fails the map
                self._fail(error)
