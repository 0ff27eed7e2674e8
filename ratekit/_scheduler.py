"""`Scheduler`: a bounded pool of threads whose calls are paced by a limiter."""

from __future__ import annotations

import inspect
import math
import threading
from collections import deque
from typing import TYPE_CHECKING, Any, Generic, TypeVar, final

import attrs

from ._clock import MONOTONIC
from ._errors import AcquireCancelled, AcquireTimeout, MapTimeout, QueueFull, SchedulerClosed

if TYPE_CHECKING:
    from collections.abc import Callable, Generator, Iterable

    from .typing import Clock, Limiter

T = TypeVar("T")
R = TypeVar("R")

#: Results held ahead of the consumer, per worker, on top of the calls in flight: what
#: keeps memory bounded while letting workers run ahead of a slow consumer a little.
_AHEAD_PER_WORKER = 2


@attrs.frozen
class SchedulerStatistics:
    """A snapshot of a scheduler's counters, for logging, metrics and progress bars.

    Attributes:
        done: Calls that returned.
        failed: Calls that raised.
        running: Calls running right now.
        waiting: Calls waiting on the limiter right now.
        cancelled: Items taken but never called, because the map stopped first.
    """

    done: int
    failed: int
    running: int
    waiting: int
    cancelled: int


def _wants_cancel(fn: Callable[..., object]) -> bool:
    """Whether *fn* takes a ``cancel`` keyword argument (it is then given the run's event)."""
    try:
        parameters = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # some builtins have no signature
        return False
    parameter = parameters.get("cancel")
    if parameter is None:
        return False
    if parameter.kind is inspect.Parameter.KEYWORD_ONLY:
        return True
    # A positional one, but not the first: that one receives the item.
    first = next(iter(parameters))
    return parameter.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD and first != "cancel"


def _check_workers(max_workers: object) -> int:
    if isinstance(max_workers, bool) or not isinstance(max_workers, int):
        raise TypeError(f"max_workers must be an integer, got {max_workers!r}")
    if max_workers < 1:
        raise ValueError(f"max_workers must be at least 1, got {max_workers!r}")
    return max_workers


class SchedulerBase:
    """What `Scheduler` and `AsyncScheduler` share: settings and counters."""

    __slots__ = ("_clock", "_closed", "_counts", "_limiter", "_lock", "_max_workers", "_runs")

    def __init__(
        self, max_workers: int, limiter: Limiter | None = None, *, clock: Clock | None = None
    ) -> None:
        self._max_workers = _check_workers(max_workers)
        self._limiter = limiter
        if clock is None:
            clock = getattr(limiter, "clock", None) or MONOTONIC
        self._clock: Clock = clock
        self._lock = threading.Lock()
        self._closed = False
        self._runs: set[Any] = set()
        # done, failed, running, waiting, cancelled
        self._counts = [0, 0, 0, 0, 0]

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
            return SchedulerStatistics(*self._counts)

    def _count(self, index: int, change: int) -> None:
        with self._lock:
            self._counts[index] += change


@final
class Scheduler(SchedulerBase):
    """Run calls on at most *max_workers* threads, each call gated by *limiter*.

    `map` streams results as calls finish.  Each call first acquires its cost from the
    limiter, so the limiter, not the number of threads, sets the pace; the threads only
    bound how many calls run at once.  By default a map fails fast, like Go's errgroup:
    the first exception stops new calls from starting, wakes every worker blocked on the
    limiter, sets the cancel event that running calls can watch, and is raised from the
    iterator.

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
        """Stop every map still running and wait for its threads; no call starts after."""
        with self._lock:
            self._closed = True
            runs = list(self._runs)
        for run in runs:
            run.stop()

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
    ) -> Generator[R, None, None]:
        """Call ``fn(item)`` for each item on the workers; yield results as they come.

        Items are taken from *items* lazily, a few ahead of the results consumed, so an
        endless generator works and memory stays bounded (the calls in flight plus two
        results per worker).  If *fn* has a ``cancel`` parameter, it is passed the
        run's cancel event (a `threading.Event`), set when the map stops early.

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

        Returns:
            A generator of results (and of exceptions, with *return_exceptions*).
            Closing it early (``close()``, `contextlib.closing`), or leaving the
            scheduler's block, stops the map at once; merely breaking out of a loop
            over it leaves its workers parked, holding up to two results each,
            until then.

        Raises:
            SchedulerClosed: If the scheduler was shut down.
            MapTimeout: From the iterator, when *timeout* passes.
            BaseException: From the iterator, the first exception of a call (unless
                *return_exceptions*), or of *items* itself.
        """
        if timeout is not None and not (timeout >= 0):
            raise ValueError(f"timeout must be a non-negative number of seconds, got {timeout!r}")
        with self._lock:
            if self._closed:
                raise SchedulerClosed("the scheduler was shut down; no call starts after that")
        options = _Options(ordered, cost, return_exceptions, timeout, on_progress)
        run: _Run[T, R] = _Run(self, fn, items, options)
        return run.results()


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


@attrs.frozen
class _Options(Generic[T]):
    """The options of one map."""

    ordered: bool
    cost: float | Callable[[T], float]
    return_exceptions: bool
    timeout: float | None
    on_progress: Callable[[SchedulerStatistics], object] | None


class _Run(Generic[T, R]):
    """One `Scheduler.map`: its workers, its window of results, and how it stops."""

    def __init__(
        self, scheduler: Scheduler, fn: Callable[..., R], items: Iterable[T], options: _Options[T]
    ) -> None:
        self._scheduler = scheduler
        self._fn = fn
        self._pass_cancel = _wants_cancel(fn)
        self._items = iter(items)
        self._cost = options.cost
        self._return_exceptions = options.return_exceptions
        self._on_progress = options.on_progress
        clock = scheduler._clock
        self._clock = clock
        timeout = options.timeout
        self._deadline = math.inf if timeout is None else clock.now() + timeout
        self._timeout = timeout
        self.cancel = threading.Event()
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
        with self._scheduler._lock:
            if self._scheduler._closed:  # made before shutdown, iterated after it
                raise SchedulerClosed("the scheduler was shut down; no call starts after that")
            self._scheduler._runs.add(self)
        try:
            for _ in range(self._scheduler._max_workers):
                thread = threading.Thread(target=self._work, name="ratekit-scheduler", daemon=True)
                # Listed before it starts, so that an interrupt between the two (Ctrl-C
                # can land anywhere) cannot leave a thread that stop() does not join.
                self._threads.append(thread)
                thread.start()
            while True:
                ok, value = self._next()
                if ok is None:
                    return
                yield value  # type: ignore[misc]
        finally:
            self.stop()
            with self._scheduler._lock:
                self._scheduler._runs.discard(self)

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
                    self._fail_locked(MapTimeout(self._timeout or 0.0))
                    continue
                self._cond.wait(None if remaining == math.inf else remaining)
            self._yielded += 1
            self._cond.notify_all()  # the window moved on
        return outcome

    def stop(self) -> None:
        """Stop taking items, wake the workers, and wait for them to end."""
        with self._cond:
            self._stopping = True
            self.cancel.set()
            self._cond.notify_all()
        current = threading.current_thread()
        for thread in self._threads:
            if thread is not current and thread.ident is not None:  # started
                thread.join()

    # -- the workers' side ------------------------------------------------------------

    def _fail_locked(self, error: BaseException) -> None:
        if self._failure is None:
            self._failure = error
        self._stopping = True
        self.cancel.set()
        self._cond.notify_all()

    def _work(self) -> None:
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
            if failure is not None:
                self._fail_locked(failure)
            elif not self._stopping:
                self._exhausted = True
            self._cond.notify_all()
        return None

    def _acquire(self, item: T) -> bool:
        """Acquire the item's cost; ``False`` if the map stopped meanwhile."""
        limiter = self._scheduler._limiter
        if limiter is None:
            return True
        scheduler = self._scheduler
        scheduler._count(3, 1)
        try:
            cost = self._cost(item) if callable(self._cost) else self._cost
            remaining = self._deadline - self._clock.now()
            limiter.acquire(
                cost,
                timeout=None if remaining == math.inf else max(remaining, 0.0),
                cancel=self.cancel,
            )
        except AcquireCancelled:
            scheduler._count(4, 1)
            return False
        except AcquireTimeout as error:
            scheduler._count(4, 1)
            with self._cond:
                # The deadline refused the wait, unless a queue did (QueueFull).
                if self._deadline < math.inf and not isinstance(error, QueueFull):
                    self._fail_locked(MapTimeout(self._timeout or 0.0))
                else:
                    self._fail_locked(error)
            return False
        except BaseException as error:  # noqa: BLE001 - a bad cost, or the limiter's own
            scheduler._count(4, 1)
            with self._cond:
                self._fail_locked(error)
            return False
        finally:
            scheduler._count(3, -1)
        return True

    def _call(self, index: int, item: T) -> None:
        scheduler = self._scheduler
        if self.cancel.is_set():
            scheduler._count(4, 1)
            return
        scheduler._count(2, 1)
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
            scheduler._count(2, -1)
        ok = failure is None
        scheduler._count(0 if ok else 1, 1)
        with self._cond:
            if failure is not None and not self._return_exceptions:
                self._fail_locked(failure)
            else:
                self._outcomes.put(index, ok, value)
            self._cond.notify_all()
        if self._on_progress is not None:
            try:
                self._on_progress(scheduler.statistics())
            except BaseException as error:  # noqa: BLE001 - a broken callback fails the map
                with self._cond:
                    self._fail_locked(error)
