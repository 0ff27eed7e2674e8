"""AsyncScheduler: the Scheduler's behaviour on asyncio."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from typing import TYPE_CHECKING

import pytest

from ratekit import (
    AsyncScheduler,
    CostTooLarge,
    LeakyBucket,
    MapTimeout,
    QueueFull,
    SchedulerClosed,
    SchedulerStatistics,
    TokenBucket,
)
from ratekit.testing import FakeClock

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable


def run(main: Callable[[], Awaitable[object]]) -> object:
    """Run *main* and check that it leaves no task behind."""

    async def checked() -> object:
        result = await main()
        assert asyncio.all_tasks() == {asyncio.current_task()}
        return result

    return asyncio.run(checked())


async def square(x: int) -> int:
    """A call that yields to the loop once."""
    await asyncio.sleep(0)
    return x * x


def test_results_are_complete_and_ordered_for_ten_thousand_items():
    """10,000 items give 10,000 results in input order, and no task is left behind."""

    async def main() -> None:
        async with AsyncScheduler(8) as scheduler:
            results = [r async for r in scheduler.map(square, range(10_000))]
            assert results == [x * x for x in range(10_000)]
            assert scheduler.statistics() == SchedulerStatistics(10_000, 0, 0, 0, 0, started=10_000)

    run(main)


def test_unordered_results_and_async_iterables():
    """ordered=False yields every result once; items may be an async iterable."""

    async def numbers() -> AsyncIterator[int]:
        for i in range(500):
            yield i

    async def main() -> list[int]:
        async with AsyncScheduler(4) as scheduler:
            return [r async for r in scheduler.map(square, numbers(), ordered=False)]

    assert sorted(run(main)) == [x * x for x in range(500)]  # type: ignore[call-overload]


def test_one_worker_on_a_fake_clock_starts_exactly_on_the_limiter_schedule():
    """Each call starts at the instant the limiter grants it."""
    clock = FakeClock()
    bucket = TokenBucket(4.0, 2, clock=clock)
    starts: list[float] = []

    async def record(_: int) -> None:
        starts.append(clock.now())

    async def main() -> None:
        async with AsyncScheduler(1, bucket) as scheduler:
            [r async for r in scheduler.map(record, range(10))]

    run(main)
    assert starts == [0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0]


def test_fail_fast_cancels_running_calls_and_raises_the_first_error():
    """The first error cancels the other calls and comes out of the iterator."""
    cancelled: list[int] = []

    async def work(x: int) -> int:
        if x == 3:
            await asyncio.sleep(0.01)
            raise ValueError("item 3")
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(x)
            raise
        return x

    async def main() -> SchedulerStatistics:
        async with AsyncScheduler(4) as scheduler:
            with pytest.raises(ValueError, match="item 3"):
                [r async for r in scheduler.map(work, range(100))]
            return scheduler.statistics()

    began = time.monotonic()
    stats = run(main)
    assert time.monotonic() - began < 5.0
    assert sorted(cancelled) == [0, 1, 2]
    assert isinstance(stats, SchedulerStatistics)
    assert (stats.failed, stats.running) == (1, 0)


def test_fail_fast_wakes_waits_on_the_limiter():
    """Tasks waiting seconds on the limiter are cancelled at once by the first error."""
    bucket = TokenBucket(0.5, 1)

    async def work(x: int) -> int:
        if x == 0:
            await asyncio.sleep(0.05)
            raise RuntimeError("first call failed")
        return x

    async def main() -> None:
        async with AsyncScheduler(4, bucket) as scheduler:
            with pytest.raises(RuntimeError, match="first call failed"):
                [r async for r in scheduler.map(work, range(8))]
            assert scheduler.statistics().waiting == 0

    began = time.monotonic()
    run(main)
    # The bucket's next grant is 2 s away: the map stopped without waiting for it.
    assert time.monotonic() - began < 1.9
    assert bucket.statistics().waiting == 0


def test_return_exceptions_yields_them_in_place():
    """With return_exceptions, every item gets its result or its exception."""

    async def work(x: int) -> int:
        if x % 10 == 3:
            raise KeyError(x)
        return x

    async def main() -> list[object]:
        async with AsyncScheduler(4) as scheduler:
            return [r async for r in scheduler.map(work, range(100), return_exceptions=True)]

    results = run(main)
    assert isinstance(results, list)
    assert sum(isinstance(r, KeyError) for r in results) == 10


def test_an_endless_generator_with_an_early_break_leaves_no_task():
    """Leaving an endless map early, then the block, stops every task."""
    taken: list[int] = []

    def endless() -> itertools.count[int]:
        return itertools.count()

    async def work(x: int) -> int:
        taken.append(x)
        await asyncio.sleep(0)
        return x

    async def main() -> None:
        async with AsyncScheduler(4) as scheduler:
            async with contextlib.aclosing(scheduler.map(work, endless())) as results:
                async for result in results:
                    if result == 50:
                        break
            assert asyncio.all_tasks() == {asyncio.current_task()}
        assert len(taken) <= 51 + 4 * 9

    run(main)


def test_leaving_the_block_stops_an_unfinished_map_and_refuses_new_ones():
    """Shutdown cancels what is pending; map is refused afterwards."""

    async def main() -> None:
        scheduler = AsyncScheduler(2)
        results = scheduler.map(square, range(1_000_000))
        assert await results.__anext__() == 0
        await scheduler.shutdown()
        with pytest.raises(SchedulerClosed):
            scheduler.map(square, range(3))
        await results.aclose()

    run(main)


def test_timeout_stops_the_map():
    """A map that cannot finish in time raises MapTimeout, on a fake and the real clock."""
    clock = FakeClock()

    async def slow(x: int) -> int:
        await asyncio.sleep(10)
        return x

    async def main() -> None:
        async with AsyncScheduler(2, TokenBucket(1.0, 2, clock=clock)) as scheduler:
            with pytest.raises(MapTimeout):
                [r async for r in scheduler.map(square, range(10), timeout=3.0)]
        async with AsyncScheduler(2) as scheduler:
            with pytest.raises(MapTimeout):
                [r async for r in scheduler.map(slow, range(4), timeout=0.1)]

    began = time.monotonic()
    run(main)
    assert clock.now() <= 3.0
    assert time.monotonic() - began < 5.0


def test_progress_and_item_errors():
    """on_progress sees every call; an error from the items fails the map."""
    seen: list[SchedulerStatistics] = []

    def broken() -> itertools.chain[int]:
        def fail() -> list[int]:
            raise OSError("cannot read more items")

        return itertools.chain([1, 2], (x for x in fail()))

    async def main() -> None:
        async with AsyncScheduler(3) as scheduler:
            [r async for r in scheduler.map(square, range(20), on_progress=seen.append)]
            with pytest.raises(OSError, match="cannot read more"):
                [r async for r in scheduler.map(square, broken())]
            with pytest.raises(ValueError, match="timeout"):
                scheduler.map(square, [], timeout=-1)

    run(main)
    assert len(seen) == 20
    assert max(s.done for s in seen) == 20


def test_item_errors_from_async_iterables_bad_costs_and_settings():
    """An async iterable that fails, or a cost above capacity, fails the map."""

    async def pages() -> AsyncIterator[int]:
        for page in range(3):
            await asyncio.sleep(0)
            yield page
        raise OSError("the listing broke")

    async def main() -> None:
        bucket = TokenBucket(100.0, 2)
        async with AsyncScheduler(4, bucket) as scheduler:
            assert scheduler.max_workers == 4
            assert repr(scheduler).startswith("AsyncScheduler(max_workers=4, limiter=")
            with pytest.raises(OSError, match="the listing broke"):
                [r async for r in scheduler.map(square, pages())]
            with pytest.raises(CostTooLarge):
                [r async for r in scheduler.map(square, [1, 2, 3], cost=float)]
            results = [r async for r in scheduler.map(square, pages(), return_exceptions=True)]
            assert results  # the pages read before the failure ...

    with pytest.raises(OSError, match="the listing broke"):  # ... and then the failure
        run(main)


def test_queue_full_callbacks_and_maps_made_before_shutdown():
    """QueueFull stays QueueFull, a broken callback fails the map, a stale map is refused."""
    seen: list[SchedulerStatistics] = []

    async def fail(x: int) -> int:
        raise ValueError(x)

    def broken(stats: SchedulerStatistics) -> None:
        raise RuntimeError("progress bar broke")

    async def main() -> None:
        async with AsyncScheduler(4, LeakyBucket("100/s", capacity=2)) as scheduler:
            assert isinstance(scheduler.limiter, LeakyBucket)
            with pytest.raises(QueueFull):
                [r async for r in scheduler.map(square, range(8), timeout=60)]
        async with AsyncScheduler(1) as scheduler:
            with pytest.raises(ValueError, match="0"):
                [r async for r in scheduler.map(fail, range(3), on_progress=seen.append)]
            with pytest.raises(RuntimeError, match="progress bar broke"):
                [r async for r in scheduler.map(square, range(6), on_progress=broken)]
            stale = scheduler.map(square, range(3))
        with pytest.raises(SchedulerClosed):
            await stale.__anext__()

    run(main)
    assert [s.failed for s in seen] == [1]  # progress is reported for a failing call too


def test_a_cancelled_error_raised_by_a_call_is_its_outcome_and_hangs_nothing():
    """A coroutine that raises CancelledError itself fails the map, or is yielded in place."""

    async def call(x: int) -> int:
        if x == 2:
            inner = asyncio.get_running_loop().create_future()
            inner.cancel()  # as a pool would cancel a future this call awaits
            await inner
        await asyncio.sleep(0)
        return x

    async def main() -> None:
        async with AsyncScheduler(2) as scheduler:
            outcomes = [r async for r in scheduler.map(call, range(5), return_exceptions=True)]
            assert outcomes[:2] == [0, 1]
            assert isinstance(outcomes[2], asyncio.CancelledError)
            assert outcomes[3:] == [3, 4]
            with pytest.raises(asyncio.CancelledError):
                async for _ in scheduler.map(call, range(5)):
                    pass
            assert scheduler.statistics().failed == 2
            assert scheduler.statistics().running == 0

    asyncio.run(asyncio.wait_for(main(), 10))


def test_shutdown_from_another_task_ends_the_consumers_iteration():
    """A consumer blocked on a slow map raises SchedulerClosed once another task shuts down."""

    async def slow(x: int) -> int:
        await asyncio.sleep(30)
        return x

    async def main() -> None:
        scheduler = AsyncScheduler(2)

        async def consume() -> list[int]:
            return [r async for r in scheduler.map(slow, range(4))]

        consumer = asyncio.create_task(consume())
        await asyncio.sleep(0.05)
        started = time.monotonic()
        await scheduler.shutdown()
        with pytest.raises(SchedulerClosed, match="shut down while this map ran"):
            await asyncio.wait_for(consumer, 1.0)
        assert time.monotonic() - started < 1.0

    run(main)
