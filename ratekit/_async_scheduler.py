"""`AsyncScheduler`: the `Scheduler` on asyncio, with tasks instead of threads."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterable
from typing import TYPE_CHECKING, Any, Generic, TypeVar, final

from ._errors import AcquireTimeout, MapTimeout, QueueFull, SchedulerClosed
from ._priority import _PRIORITY, map_priority
from ._scheduler import SchedulerBase, SchedulerStatistics, _Options, _Outcomes

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable


T = TypeVar("T")
R = TypeVar("R")

#: Results held ahead of the consumer, per worker (see `Scheduler`).
_AHEAD_PER_WORKER = 8


@final
class AsyncScheduler(SchedulerBase):
    """Run coroutine calls on at most *max_workers* tasks, each gated by *limiter*.

    The asyncio twin of `Scheduler`: `map` is an async iterator, the workers are tasks,
    calls wait on the limiter with `acquire_async`, and cancellation is task
    cancellation.  By default the first exception cancels every other call (running
    ones get `asyncio.CancelledError`, waits on the limiter give back what they booked)
    and is raised from the iterator.  Use it as an async context manager: leaving the
    block cancels what is still pending and waits for every task, so none outlives it.

    An `asyncio.CancelledError` that a call raises itself (it awaited something that
    was cancelled), rather than because the map cancelled it, is that call's outcome
    like any other exception: it fails the map, or is yielded with
    *return_exceptions*.

    Args:
        max_workers: The most calls running at once in each map (at least 1).
        limiter: Paces the calls (any `ratekit.typing.Limiter`); ``None`` for no pacing.
        clock: Where the map's deadline is read (default: the limiter's clock if it has
            one, else the real clock).

    Raises:
        ValueError: If *max_workers* is less than 1.
    """

    __slots__ = ()

    async def __aenter__(self) -> AsyncScheduler:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.shutdown()

    async def shutdown(self) -> None:
        """Cancel every map still running and wait for its tasks; no call starts after.

        It may be awaited from any task (from another thread, through
        `asyncio.run_coroutine_threadsafe`): the consumer of each map still running is
        woken at once, and its iteration raises `SchedulerClosed`.
        """
        self._closed = True
        for run in list(self._runs):
            run._fail(SchedulerClosed("the scheduler was shut down while this map ran"))
            await run.stop()

    def map(  # noqa: PLR0913 - the options of a map, all keyword-only
        self,
        fn: Callable[[T], Awaitable[R]],
        items: Iterable[T] | AsyncIterable[T],
        *,
        ordered: bool = True,
        cost: float | Callable[[T], float] = 1,
        return_exceptions: bool = False,
        timeout: float | None = None,
        on_progress: Callable[[SchedulerStatistics], object] | None = None,
        priority: int | None = None,
    ) -> AsyncGenerator[R, None]:
        """Await ``fn(item)`` for each item on the worker tasks; yield results as they come.

        The same as `Scheduler.map`, with *items* a plain or an async iterable.  Running
        calls are cancelled (`asyncio.CancelledError`) when the map stops early.  Close
        the iterator when leaving it early (`contextlib.aclosing`), or leave the
        scheduler's block, to stop its tasks at once.  With *priority*, each call runs
        at that `ratekit.current_priority`, as with `Scheduler.map`; ``None``: the one
        of the code that calls `map`, if any.

        Raises:
            SchedulerClosed: If the scheduler was shut down (from the iterator, if that
                happens while the map runs).
            ValueError: For the arguments, as `Scheduler.map`.
            TypeError: For the arguments, as `Scheduler.map`.
            MapTimeout: From the iterator, when *timeout* passes.
            BaseException: From the iterator, the first exception of a call (unless
                *return_exceptions*), or of *items* itself, `asyncio.CancelledError`
                included when the call raised it itself.
        """
        options = _Options(
            ordered, cost, return_exceptions, timeout, on_progress, map_priority(priority)
        )
        if self._closed:
            raise SchedulerClosed("the scheduler was shut down; no call starts after that")
        run: _AsyncRun[T, R] = _AsyncRun(self, fn, items, options)
        return run.results()


class _AsyncRun(Generic[T, R]):
    """One `AsyncScheduler.map`."""

    def __init__(
        self,
        scheduler: AsyncScheduler,
        fn: Callable[[T], Awaitable[R]],
        items: Iterable[T] | AsyncIterable[T],
        options: _Options[T],
    ) -> None:
        self._scheduler = scheduler
        self._fn = fn
        self._items = items
        self._options = options
        self._clock = scheduler._clock
        timeout = options.timeout
        self._deadline = math.inf if timeout is None else self._clock.now() + timeout
        self._window = scheduler._max_workers * (1 + _AHEAD_PER_WORKER)
        self._changed = asyncio.Event()
        self._claimed = 0
        self._yielded = 0
        self._outcomes = _Outcomes(ordered=options.ordered)
        self._next_index = 0
        self._exhausted = False
        self._failure: BaseException | None = None
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._input = asyncio.Lock()
        self._iterator: Any = None

    def _notify(self) -> None:
        self._changed.set()

    async def _changes(self, timeout: float | None = None) -> None:
        """Wait until something changes (or *timeout* real seconds pass)."""
        self._changed.clear()
        if timeout is None:
            await self._changed.wait()
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)

    async def results(self) -> AsyncGenerator[R, None]:
        scheduler = self._scheduler
        if scheduler._closed:  # made before shutdown, iterated after it
            raise SchedulerClosed("the scheduler was shut down; no call starts after that")
        scheduler._runs.add(self)
        items = self._items
        self._iterator = items.__aiter__() if isinstance(items, AsyncIterable) else iter(items)
        try:
            self._tasks = [asyncio.create_task(self._work()) for _ in range(scheduler._max_workers)]
            while True:
                ok, value = await self._next()
                if ok is None:
                    return
                yield value  # type: ignore[misc]
        finally:
            await self.stop()
            scheduler._runs.discard(self)

    async def _next(self) -> tuple[bool | None, object]:
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
                self._fail(MapTimeout(self._options.timeout or 0.0))
                continue
            await self._changes(None if remaining == math.inf else remaining)
        self._yielded += 1
        self._notify()
        return outcome

    async def stop(self) -> None:
        """Cancel the worker tasks and wait for them to end."""
        self._stopping = True
        current = asyncio.current_task()
        tasks = [task for task in self._tasks if task is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _fail(self, error: BaseException) -> None:
        if self._failure is None:
            self._failure = error
        self._stopping = True
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        self._notify()

    async def _take(self) -> tuple[int, T] | None:
        async with self._input:
            if self._exhausted or self._stopping:
                return None
            iterator = self._iterator
            try:
                if isinstance(self._items, AsyncIterable):
                    item: T = await iterator.__anext__()
                else:
                    item = next(iterator)
            except (StopIteration, StopAsyncIteration):
                self._exhausted = True
                return None
            index = self._next_index
            self._next_index += 1
            return index, item

    async def _work(self) -> None:
        if self._options.priority is not None:  # in this task's own copy of the context
            _PRIORITY.set(self._options.priority)
        while True:
            while not self._stopping and self._claimed - self._yielded >= self._window:
                await self._changes()
            if self._stopping or self._exhausted:
                return
            self._claimed += 1
            try:
                taken = await self._take()
            except BaseException as error:
                self._claimed -= 1
                if self._ours(error):
                    raise
                self._fail(error)
                return
            if taken is None:
                self._claimed -= 1
                self._notify()
                return
            index, item = taken
            if not await self._acquire(item) or not await self._call(index, item):
                return

    async def _acquire(self, item: T) -> bool:
        """Acquire the item's cost; ``False`` if the map fails instead."""
        limiter = self._scheduler._limiter
        if limiter is None:
            return True
        counts, options = self._scheduler._counts, self._options
        counts.waiting += 1
        try:
            cost = options.cost(item) if callable(options.cost) else options.cost
            remaining = self._deadline - self._clock.now()
            await limiter.acquire_async(
                cost, timeout=None if remaining == math.inf else max(remaining, 0.0)
            )
        except asyncio.CancelledError as error:
            counts.cancelled += 1
            if self._ours(error):
                raise
            self._fail(error)
            return False
        except AcquireTimeout as error:
            counts.cancelled += 1
            # The deadline refused the wait, unless a queue did (QueueFull).
            timed_out = self._deadline < math.inf and not isinstance(error, QueueFull)
            self._fail(MapTimeout(options.timeout or 0.0) if timed_out else error)
            return False
        except BaseException as error:  # noqa: BLE001 - a bad cost, or the limiter's own
            counts.cancelled += 1
            self._fail(error)
            return False
        finally:
            counts.waiting -= 1
        return True

    async def _call(self, index: int, item: T) -> bool:
        """Await the call and keep its outcome; ``False`` if the map fails instead."""
        counts, options = self._scheduler._counts, self._options
        counts.running += 1
        counts.started += 1
        try:
            result: object = await self._fn(item)
        except BaseException as error:
            if self._ours(error):
                raise
            failure: BaseException | None = error
            value: object = error
        else:
            failure, value = None, result
        finally:
            counts.running -= 1
        if failure is None:
            counts.done += 1
        else:
            counts.failed += 1
        if failure is not None and not options.return_exceptions:
            self._fail(failure)
        else:
            self._outcomes.put(index, failure is None, value)
        self._notify()
        if options.on_progress is not None:
            try:
                options.on_progress(self._scheduler.statistics())
            except BaseException as error:  # noqa: BLE001 - a broken callback fails the map
                self._fail(error)
        return not self._stopping

    def _ours(self, error: BaseException) -> bool:
        """Whether *error* is the cancellation of this task (by the map, or its owner).

        Any other `asyncio.CancelledError` was raised by the awaited code itself.  The
        map cancels its tasks only once it is stopping; Python 3.11+ also tells whether
        this task was asked to cancel by anyone else.
        """
        if not isinstance(error, asyncio.CancelledError):
            return False
        if self._stopping:
            return True
        task = asyncio.current_task()
        cancelling = getattr(task, "cancelling", None)
        return callable(cancelling) and cancelling() > 0
