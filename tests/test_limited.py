"""`with limiter:`, `async with limiter:` and `@ratekit.limited`, on every kind of limiter."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import threading

import pytest
from pyrate_limiter import Duration, InMemoryBucket
from pyrate_limiter import Rate as PyrateRate

import ratekit
from ratekit import AcquireCancelled, AcquireTimeout, LeakyBucket, TokenBucket, all_of, limited
from ratekit.http import AdaptiveLimiter
from ratekit.stores import PyrateLimiter
from ratekit.testing import FakeClock


def every_kind(clock: FakeClock) -> list[object]:
    """One limiter of each kind ratekit offers, at 2 per second with no burst."""
    return [
        TokenBucket(2, 1, clock=clock),
        LeakyBucket(2, 10, clock=clock),
        ratekit.SlidingWindow(2, 1, clock=clock),
        ratekit.FixedWindow(2, 1, clock=clock),
        all_of(TokenBucket(2, 1, clock=clock), ratekit.SlidingWindow(10, 60, clock=clock)),
        AdaptiveLimiter(2.0, clock=clock),
    ]


@pytest.mark.parametrize("index", range(6))
def test_a_with_block_acquires_one_and_gives_nothing_back(index):
    """Each block takes one of the limit; an exception in the block does not refund it."""
    clock = FakeClock()
    limiter = every_kind(clock)[index]
    with limiter:  # type: ignore[attr-defined]
        pass
    assert limiter.statistics().granted == 1  # type: ignore[attr-defined]
    with pytest.raises(KeyError), limiter:  # type: ignore[attr-defined]
        raise KeyError
    assert limiter.statistics().granted == 2  # type: ignore[attr-defined]
    with limiter:  # type: ignore[attr-defined]
        pass
    # Both earlier blocks counted: the limit of 2 per second made the third one wait.
    assert clock.now() > 0
    assert limiter.statistics().granted == 3  # type: ignore[attr-defined]


def test_with_blocks_wait_their_turn():
    """Blocks in a row start at the limiter's pace."""
    clock = FakeClock()
    bucket = TokenBucket(2, 1, clock=clock)
    instants = []
    for _ in range(4):
        with bucket:
            instants.append(clock.now())
    assert instants == pytest.approx([0.0, 0.5, 1.0, 1.5])


def test_async_with_blocks_wait_their_turn():
    """`async with` sleeps on the clock without blocking the loop (a real clock here)."""
    bucket = TokenBucket(20, 1)

    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        instants = []
        for _ in range(4):
            async with bucket:
                instants.append(loop.time())
        return instants

    instants = asyncio.run(main())
    gaps = [b - a for a, b in itertools.pairwise(instants)]
    assert all(gap >= 0.05 - 0.005 for gap in gaps)
    assert bucket.statistics().granted == 4


def test_a_with_block_is_cancelled_by_the_current_event():
    """Inside a ratekit call given an event, a block waiting for its turn ends when it is set."""
    bucket = TokenBucket(1 / 60, 1)
    bucket.acquire()
    stop = threading.Event()
    threading.Timer(0.1, stop.set).start()

    def guarded() -> None:
        with bucket:
            pass

    with pytest.raises(AcquireCancelled):
        ratekit.retry.RetryPolicy(attempts=1).call(guarded, cancel=stop)
    assert bucket.statistics().granted == 1


def test_the_pyrate_adapter_acquires_too_and_closes_with_closing():
    """PyrateLimiter acquires in a block as every limiter does; closing is contextlib.closing."""
    limiter = PyrateLimiter(InMemoryBucket([PyrateRate(5, Duration.SECOND)]))
    with contextlib.closing(limiter):
        for _ in range(3):
            with limiter:
                pass
        assert limiter.statistics().granted == 3


def test_limited_paces_a_plain_function_and_keeps_its_identity():
    """Each call acquires first; name, docstring and signature are kept."""
    clock = FakeClock()
    bucket = TokenBucket(2, 1, clock=clock)

    @limited(bucket)
    def fetch(n: int, *, scale: int = 1) -> int:
        """Fetch n."""
        return n * scale

    assert fetch.__name__ == "fetch"
    assert fetch.__doc__ == "Fetch n."
    assert str(inspect.signature(fetch)) == "(n: 'int', *, scale: 'int' = 1) -> 'int'"
    assert [fetch(n, scale=2) for n in range(3)] == [0, 2, 4]
    assert clock.now() == pytest.approx(1.0)
    assert bucket.statistics().granted == 3


def test_limited_passes_cost_and_timeout():
    """Cost and timeout reach acquire: a call that cannot start in time raises at once."""
    clock = FakeClock()
    bucket = TokenBucket(2, 4, clock=clock)

    @limited(bucket, cost=3, timeout=0.1)
    def heavy() -> str:
        return "done"

    assert heavy() == "done"
    with pytest.raises(AcquireTimeout):  # 3 more need 1 s; only 0.1 s is allowed
        heavy()
    assert bucket.statistics().timed_out == 1


def test_limited_passes_an_explicit_cancel_event():
    """A set event ends the wait and the function is not called."""
    bucket = TokenBucket(1 / 60, 1)
    bucket.acquire()
    stop = threading.Event()
    stop.set()

    @limited(bucket, cancel=stop)
    def never() -> None:
        raise AssertionError("called")

    with pytest.raises(AcquireCancelled):
        never()


def test_limited_paces_a_coroutine_function():
    """A coroutine function stays one, and awaits its turn."""
    bucket = TokenBucket(20, 1)

    @limited(bucket, cost=1)
    async def fetch(n: int) -> int:
        return n

    assert inspect.iscoroutinefunction(fetch)

    async def main() -> tuple[list[int], float]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        results = await asyncio.gather(*(fetch(n) for n in range(5)))
        return results, loop.time() - started

    results, took = asyncio.run(main())
    assert results == [0, 1, 2, 3, 4]
    assert took >= 4 * 0.05 - 0.01


def test_cancelling_the_task_of_a_limited_coroutine_gives_its_turn_back():
    """A task cancelled while it waits for its turn books nothing."""
    bucket = TokenBucket(1, 1)

    @limited(bucket)
    async def call() -> None:
        raise AssertionError("called")

    async def main() -> None:
        await bucket.acquire_async()
        task = asyncio.ensure_future(call())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert bucket.statistics().granted == 1
    assert bucket.statistics().cancelled == 1


@pytest.mark.parametrize(
    ("args", "options", "error", "name"),
    [
        ((object(),), {}, TypeError, "limiter"),
        ((TokenBucket(1, 1),), {"cost": 0}, ValueError, "cost"),
        ((TokenBucket(1, 1),), {"cost": "2"}, TypeError, "cost"),
        ((TokenBucket(1, 1),), {"timeout": -1}, ValueError, "timeout"),
    ],
)
def test_bad_arguments_are_refused_by_name(args, options, error, name):
    """Each bad argument is named in the error."""
    with pytest.raises(error, match=name):
        limited(*args, **options)


def test_cancel_for_a_coroutine_function_is_refused():
    """An async call is cancelled through its task, not an event."""
    with pytest.raises(TypeError, match="cancel"):

        @limited(TokenBucket(1, 1), cancel=threading.Event())
        async def call() -> None: ...


def test_every_strategy_that_acquires_its_own_way_blocks_its_own_way():
    """A LimiterBase subclass that overrides acquire also routes `with` through it.

    LimiterBase writes its blocks out for speed; a subclass with its own `acquire` or
    `acquire_async` (AllOf defers bookings, AdaptiveLimiter follows its rate) must not
    inherit them.
    """

    def subclasses(cls: type) -> set[type]:
        found = set(cls.__subclasses__())
        for sub in list(found):
            found |= subclasses(sub)
        return found

    base = ratekit.LimiterBase
    checked = 0
    for cls in subclasses(base):
        if cls.acquire is not base.acquire:
            assert cls.__enter__ is not base.__enter__, cls
            checked += 1
        if cls.acquire_async is not base.acquire_async:
            assert cls.__aenter__ is not base.__aenter__, cls
    assert checked >= 2  # AllOf and AdaptiveLimiter at least


def test_async_with_on_a_composition_defers_as_its_acquire_does():
    """`async with` on all_of waits for the binding member without freezing the other."""
    shared = TokenBucket(10, 10)  # the real clock: the blocked block waits a day
    daily = ratekit.SlidingWindow(1, 86_400)
    both = all_of(shared, daily)

    async def main() -> None:
        async with both:
            pass
        waiter = asyncio.ensure_future(both.__aenter__())
        await asyncio.sleep(0.05)
        assert not waiter.done()
        assert shared.statistics().level > 8  # nothing booked on it for tomorrow
        # The shared bucket is not booked a day ahead for the blocked block.
        assert shared.try_acquire()
        waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiter

    asyncio.run(main())
