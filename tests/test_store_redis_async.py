"""`AsyncRedisStore` against a real ``redis-server`` on loopback.

It runs the Lua code of `RedisStore` through ``redis.asyncio``, so with a `FakeClock`
injected it must answer exactly as the sync store does on the same workload; with many
tasks on one limit it must never over-admit, and cancelled tasks must give back what
they booked, also while their booking is in flight.  No thread may be started.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import threading
import time
import uuid
from typing import TYPE_CHECKING

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st
from redis_server import RedisServer, serve
from specs import sliding_window_holds, token_bucket_holds
from test_store_redis import TWINS, drive, steps
from test_telemetry import Collected, expected_values, limiter_values, provider_of, reader

import ratekit
from ratekit import AcquireTimeout, CostTooLarge, QueueFull, telemetry
from ratekit.stores import (
    AsyncRedisLimiter,
    AsyncRedisStore,
    AsyncReservation,
    RedisStore,
    StoreUnavailable,
)
from ratekit.testing import FakeClock

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator

__all__ = ["reader"]  # the telemetry fixture, used below

_client: redis.Redis | None = None


@pytest.fixture(scope="module", autouse=True)
def redis_url() -> Iterator[str]:
    """One real redis-server for the module (each test uses fresh keys)."""
    global _client  # noqa: PLW0603 - the properties below cannot take function fixtures
    for server in serve():
        _client = redis.Redis.from_url(server.url, socket_timeout=5, socket_connect_timeout=5)
        yield server.url
        _client.close()
        _client = None


@pytest.fixture
def own_server() -> Iterator[RedisServer]:
    """A server of the test's own, which it may stop, pause and restart."""
    yield from serve()


def prefix() -> str:
    """A prefix no other test uses."""
    return f"a{uuid.uuid4().hex[:12]}:"


def run(main: Callable[[], Awaitable[None]]) -> None:
    """Run *main* in a new event loop."""

    async def wrapped() -> None:
        await main()

    asyncio.run(wrapped())


# -- the same answers as the sync store -----------------------------------------------------


async def drive_async(limiter: AsyncRedisLimiter, clock: FakeClock, workload) -> list[object]:
    """`test_store_redis.drive`, awaited: every answer, with the clock readings."""
    answers: list[object] = []
    reservations: list[AsyncReservation] = []
    capacity = limiter.capacity
    for step in workload:
        kind = step[0]
        if kind == "advance":
            clock.advance(step[1])
        elif kind == "try":
            answers.append(await limiter.try_acquire(step[1] * capacity))
        elif kind == "reserve":
            reservation = await limiter.reserve(step[1] * capacity, max_wait=step[2])
            reservations.append(reservation)
            answers.append((reservation.ok, reservation.delay, reservation.ready_at))
        elif kind == "cancel":
            if reservations:
                answers.append(await reservations[step[1] % len(reservations)].cancel())
        elif kind == "acquire":
            try:
                await limiter.acquire(step[1] * capacity, timeout=step[2])
                answers.append(("granted", clock.now()))
            except AcquireTimeout as error:
                answers.append((type(error).__name__, error.retry_after, clock.now()))
        else:
            answers.append(await limiter.statistics_async())
    answers.append(await limiter.statistics_async())
    answers.append(clock.sleeps)
    return answers


@pytest.mark.parametrize("name", list(TWINS))
@given(data=st.data(), workload=steps)
@settings(max_examples=max(5, settings().max_examples // 6))
def test_async_answers_exactly_as_the_sync_store(name, redis_url, data, workload):
    """The same workload gets the same answers, to the last bit, from both stores."""
    make = data.draw(TWINS[name])
    clocks = FakeClock(), FakeClock()
    assert _client is not None
    _, sync_limiter = make(clocks[0], RedisStore(_client, prefix=prefix(), clock=clocks[0]))
    expected = drive(sync_limiter, clocks[0], workload)

    async def main() -> None:
        async with AsyncRedisStore(url=redis_url, prefix=prefix(), clock=clocks[1]) as store:
            _, limiter = make(clocks[1], store)
            assert await drive_async(limiter, clocks[1], workload) == expected

    run(main)


def test_a_group_names_the_same_limit_for_sync_and_async_processes(redis_url):
    """A limit made with group= in either store is one limit; another group is another."""
    assert _client is not None
    name = prefix()
    sync_store = RedisStore(_client, prefix=name)
    sync_limit = sync_store.token_bucket("user-1", 1.0, 1, group="tenant-7")
    assert sync_limit.try_acquire()

    async def main() -> None:
        async with AsyncRedisStore(url=redis_url, prefix=name) as store:
            same = store.limiter("user-1", "1/second", strategy="token", group="tenant-7")
            assert all("{tenant-7}" in key for key in same.keys)  # one slot, tagged
            shared = store.token_bucket("user-1", 1.0, 1, group="tenant-7")
            assert shared.keys == sync_limit.keys
            assert not await shared.try_acquire()  # the sync process took it
            other = store.token_bucket("user-1", 1.0, 1, group="tenant-8")
            assert await other.try_acquire()
            with pytest.raises(ValueError, match="group must not be empty"):
                store.token_bucket("user-1", 1.0, 1, group="")

    run(main)


# -- many tasks on one limit -----------------------------------------------------------------


class GateClock:
    """A `FakeClock` whose asyncio sleeps end when the test opens the gate."""

    def __init__(self) -> None:
        self.fake = FakeClock()
        self.gate = asyncio.Event()

    def now(self) -> float:
        return self.fake.now()

    def sleep(self, seconds: float, cancel: threading.Event | None = None) -> bool:
        return self.fake.sleep(seconds, cancel)

    async def sleep_async(self, seconds: float) -> None:
        await self.gate.wait()


async def until(done: Callable[[], bool]) -> None:
    """Let the loop run until *done()* holds (at most 10 s)."""
    deadline = time.monotonic() + 10
    while not done():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.001)


def test_200_tasks_never_over_admit_and_cancelled_tasks_give_back(redis_url):
    """200 tasks on 10/s: slots 10 per second in order; 50 cancelled ones free theirs."""
    clock = GateClock()

    async def main() -> None:
        async with AsyncRedisStore(url=redis_url, prefix=prefix(), clock=clock) as store:
            await two_hundred_tasks(store, clock)

    run(main)


async def two_hundred_tasks(store: AsyncRedisStore, clock: GateClock) -> None:
    """200 tasks on one 10/s limit of *store*: booked ten per second, in order.

    150 are kept and 50 cancelled while they wait; a later caller gets the first slot
    the cancelled ones gave back (so exactly 150 were booked before it, ten per second,
    none over), and the kept ones are all granted once the clock reaches it.
    """
    limiter = store.sliding_window("k", 10, 1.0)
    # Connected first, so that the tasks' round trips all start at once.
    await limiter.statistics_async()
    done: list[int] = []

    async def one(index: int) -> None:
        await limiter.acquire(timeout=100)
        done.append(index)

    def booked() -> int:
        stats = limiter.statistics()
        return stats.granted + stats.waiting

    kept = [asyncio.create_task(one(index)) for index in range(150)]
    await until(lambda: booked() == 150)  # instants 0 to 14, ten each
    dropped = [asyncio.create_task(one(index)) for index in range(150, 200)]
    await until(lambda: booked() == 200)  # instants 15 to 19: the latest
    stats = limiter.statistics()
    assert (stats.granted, stats.waiting) == (10, 190)  # only ten at time 0
    assert not await limiter.try_acquire()
    for task in dropped:
        task.cancel()
    ends = await asyncio.gather(*dropped, return_exceptions=True)
    assert all(isinstance(end, asyncio.CancelledError) for end in ends)
    stats = limiter.statistics()
    assert (stats.cancelled, stats.waiting) == (50, 140)
    # A later caller gets the first slot they freed: exactly 150 were booked
    # before it, ten per window, none over.
    later = await limiter.reserve()
    assert later.ready_at == 15.0
    clock.fake.advance_to(15.0)
    clock.gate.set()
    await asyncio.gather(*kept)
    assert sorted(done) == list(range(150))
    stats = limiter.statistics()
    assert (stats.granted, stats.cancelled, stats.waiting) == (151, 50, 0)


@pytest.mark.parametrize("kind", ["sliding", "token"])
def test_200_tasks_reserving_at_once_hold_the_guarantee(redis_url, kind):
    """200 concurrent reservations: their instants hold the limit, and leave no gap."""
    clock = FakeClock()  # still: every decision is at time 0

    async def main() -> None:
        async with AsyncRedisStore(url=redis_url, prefix=prefix(), clock=clock) as store:
            if kind == "sliding":
                limiter = store.sliding_window("k", 10, 1.0)
            else:
                limiter = store.token_bucket("k", 10.0, 10)
            reservations = await asyncio.gather(*(limiter.reserve() for _ in range(200)))
            grants = [(r.ready_at, r.cost) for r in reservations]
            assert all(r.ok for r in reservations)
            if kind == "sliding":
                assert sliding_window_holds(grants, 10, 1.0)
            else:
                assert token_bucket_holds(grants, 10.0, 10)
            assert max(at for at, _ in grants) == 19.0  # ten per second, none lost
            # The next: a new window, or one more tenth of a second of refill.
            assert (await limiter.reserve()).ready_at == (20.0 if kind == "sliding" else 19.1)

    run(main)


def test_tasks_cancelled_during_the_round_trip_leave_nothing_booked(own_server):
    """Tasks cancelled while their bookings are in flight give them back once known."""

    async def main() -> None:
        async with AsyncRedisStore(url=own_server.url, timeout=5.0) as store:
            bucket = store.token_bucket("k", 0.05, 1)  # one per 20 s
            assert await bucket.try_acquire()
            own_server.pause()  # the bookings hang
            tasks = [asyncio.create_task(bucket.acquire()) for _ in range(6)]
            await asyncio.sleep(0.05)  # each has sent its booking
            for task in tasks:
                task.cancel()
            await asyncio.sleep(0.05)  # each has taken its cancellation in
            assert not any(task.done() for task in tasks)  # waiting for the answer
            own_server.resume()
            ends = await asyncio.gather(*tasks, return_exceptions=True)
            assert all(isinstance(end, asyncio.CancelledError) for end in ends)
            stats = await bucket.statistics_async()
            assert (stats.granted, stats.cancelled, stats.waiting) == (1, 6, 0)
            assert stats.level > -0.5  # no booking (-1 each) was kept

    run(main)


def test_a_task_cancelled_twice_still_gives_back_and_aclose_waits_for_it(redis_url):
    """Cancelled asleep, then again while giving back: the give-back still completes."""
    clock = GateClock()
    shared = prefix()

    async def main() -> None:
        store = AsyncRedisStore(url=redis_url, prefix=shared, clock=clock)
        bucket = store.token_bucket("k", 1.0, 1)
        assert await bucket.try_acquire()
        task = asyncio.create_task(bucket.acquire())
        await until(lambda: bucket.statistics().waiting == 1)
        await asyncio.sleep(0)  # asleep on the gate
        task.cancel()
        await asyncio.sleep(0)  # it has sent its give-back
        assert task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await store.aclose()  # waits for the give-back still under way
        stats = bucket.statistics()
        assert (stats.granted, stats.cancelled, stats.waiting) == (1, 1, 0)

    run(main)
    clock.fake.advance(1.0)
    assert _client is not None
    # The slot booked for 1.0 was given back; a sync store shares the same keys.
    assert (
        RedisStore(_client, prefix=shared, clock=clock.fake).token_bucket("k", 1.0, 1).try_acquire()
    )


def test_reservations_are_withdrawn_by_awaiting_cancel(redis_url):
    """`await reservation.cancel()` withdraws once; the slot goes to the next caller."""
    clock = FakeClock()

    async def main() -> None:
        async with AsyncRedisStore(url=redis_url, prefix=prefix(), clock=clock) as store:
            bucket = store.token_bucket("k", 1.0, 1)
            assert (await bucket.reserve()).delay == 0.0
            reservation = await bucket.reserve()
            assert (reservation.ok, reservation.delay, reservation.ready_at) == (True, 1.0, 1.0)
            assert await reservation.cancel()
            assert reservation.cancelled
            assert not await reservation.cancel()
            assert (await bucket.reserve()).ready_at == 1.0
            refused = await bucket.reserve(max_wait=0.5)
            assert not refused.ok
            assert not await refused.cancel()
            stats = bucket.statistics()
            assert (stats.granted, stats.denied, stats.withdrawn) == (2, 1, 1)
            assert math.isnan(stats.level)

    run(main)


def test_limits_text_composition_blocks_and_decorators(redis_url):
    """`limiter()` text, `all_of`, `async with`, `ratekit.limited` and argument errors."""
    clock = FakeClock()

    async def main() -> None:
        async with AsyncRedisStore(url=redis_url, prefix=prefix(), clock=clock) as store:
            api = store.limiter("api", "2/second, 5/hour")
            names = ("api@1s", "api@3600s")
            assert api.keys == tuple(f"{store.prefix}{n}:sliding_window" for n in names)
            async with api:
                pass

            @ratekit.limited(api)
            async def call() -> int:
                return 1

            assert await call() == 1
            await api.acquire()  # the second in this second: waits 1 s
            assert clock.now() == 1.0
            async with ratekit.AsyncScheduler(max_workers=2, limiter=api) as scheduler:  # type: ignore[arg-type]
                results = [result async for result in scheduler.map(asyncio.sleep, [0, 0])]
            assert results == [None, None]  # the hourly limit now used, 5 of 5
            with pytest.raises(AcquireTimeout):
                await api.acquire(timeout=10)  # the hourly limit
            drip = store.leaky_bucket("drip", "1/s", 1)
            assert (await drip.reserve()).ok
            assert (await drip.reserve()).delay == 1.0  # the queue holds one second
            with pytest.raises(QueueFull):
                await drip.acquire()
            for cost in (0, -1, math.nan, math.inf):
                with pytest.raises(ValueError, match="cost"):
                    await drip.try_acquire(cost)
            with pytest.raises(CostTooLarge):
                await drip.try_acquire(2)
            with (
                RedisStore(url=redis_url) as other,
                pytest.raises(TypeError, match="limiter of this store"),
            ):
                store.all_of(api, other.token_bucket("x", 1.0, 1))  # type: ignore[arg-type]
            both = store.all_of(api, store.fixed_window("f", 5, 10.0))
            assert "all_of(" in repr(both)

    run(main)


# -- outages -----------------------------------------------------------------------------------


def test_an_unreachable_store_fails_closed_within_the_timeout_and_recovers(own_server):
    """Paused or stopped: StoreUnavailable within the timeout; back: it works again."""
    timeout = 0.5
    name = f"Redis at 127.0.0.1:{own_server.port}/0"

    async def main() -> None:
        async with AsyncRedisStore(url=own_server.url, timeout=timeout) as store:
            bucket = store.token_bucket("k", 1000.0, 1000)
            assert await bucket.try_acquire()
            own_server.pause()  # accepts connections, never answers
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match=re.escape(f"within {timeout}")) as error:
                await bucket.try_acquire()
            assert time.monotonic() - started < timeout + 2.0
            assert error.value.store == name
            own_server.resume()
            assert await bucket.try_acquire()
            own_server.stop()
            calls = (bucket.try_acquire, bucket.acquire, bucket.reserve)
            for call in calls:
                started = time.monotonic()
                with pytest.raises(StoreUnavailable, match=re.escape(name)):
                    await call()
                assert time.monotonic() - started < timeout + 2.0
            assert math.isnan((await bucket.statistics_async()).level)
            assert store._counts.as_tuple() == (6, 4, 0)  # level reads left out
            own_server.start()  # the same port, an empty server
            assert await bucket.try_acquire()
            assert 999.0 <= (await bucket.statistics_async()).level <= 1000.0

    run(main)


def test_fail_open_grants_while_down_and_warns_once(own_server, caplog):
    """With fail_open, calls are granted while the store is down, with one warning."""

    async def main() -> None:
        async with AsyncRedisStore(url=own_server.url, timeout=0.5, fail_open=True) as store:
            bucket = store.token_bucket("k", 1.0, 1)
            assert await bucket.try_acquire()
            assert not await bucket.try_acquire()
            own_server.stop()
            with caplog.at_level(logging.WARNING, logger="ratekit.stores"):
                assert await bucket.try_acquire()
                await bucket.acquire()
                reservation = await bucket.reserve()
                assert reservation.ok
                assert not await reservation.cancel()  # nothing was booked
            warnings = [r for r in caplog.records if "unavailable" in r.getMessage()]
            assert len(warnings) == 1
            assert store._counts.fail_open == 3
            own_server.start()
            caplog.clear()
            with caplog.at_level(logging.WARNING, logger="ratekit.stores"):
                assert await bucket.try_acquire()  # an empty server: the bucket is full
                assert not await bucket.try_acquire()  # limits apply again
            assert any("available again" in r.getMessage() for r in caplog.records)

    run(main)


def test_secrets_stay_out_of_reprs_and_errors():
    """The URL's password is never shown: not in reprs, not in StoreUnavailable."""
    secret = "s3cret-Pa55"  # noqa: S105 - a test value
    for locked in serve("--requirepass", secret):

        async def main(server: RedisServer = locked) -> None:
            url = f"redis://:{secret}@127.0.0.1:{server.port}/0"
            async with AsyncRedisStore(url=url, timeout=0.5) as store:
                bucket = store.token_bucket("k", 1.0, 1)
                assert await bucket.try_acquire()
                assert secret not in repr(store)
                assert secret not in repr(bucket)
                wrong_url = f"redis://:{secret}x@127.0.0.1:{server.port}/0"
                async with AsyncRedisStore(url=wrong_url, timeout=0.5) as wrong:
                    with pytest.raises(StoreUnavailable) as refused:
                        await wrong.token_bucket("k", 1.0, 1).try_acquire()
                    assert secret not in str(refused.value)
                server.stop()
                with pytest.raises(StoreUnavailable) as down:
                    await bucket.try_acquire()
                assert secret not in str(down.value)
                assert secret not in repr(down.value)

        run(main)
    with pytest.raises(ValueError, match="url must be a Redis URL") as bad:
        AsyncRedisStore(url=f"http://user:{secret}@example.com/")
    assert secret not in str(bad.value)
    with pytest.raises(ValueError, match="exactly one"):
        AsyncRedisStore()


# -- no threads, telemetry ---------------------------------------------------------------------


def test_no_thread_is_started(redis_url, own_server):
    """Waits, cancellations, reservations, an outage and aclose start no thread."""
    before = set(threading.enumerate())

    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with AsyncRedisStore(url=redis_url, prefix=prefix()) as store:
            bucket = store.token_bucket("k", 50.0, 1)
            await asyncio.gather(*(bucket.acquire() for _ in range(5)))
            task = asyncio.create_task(bucket.acquire())
            await asyncio.sleep(0)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            reservation = await bucket.reserve()
            await reservation.cancel()
        async with AsyncRedisStore(url=own_server.url, timeout=0.3, fail_open=True) as down:
            own_server.stop()
            assert await down.token_bucket("k", 1.0, 1).try_acquire()
        assert getattr(loop, "_default_executor", None) is None

    run(main)
    assert set(threading.enumerate()) - before == set()


def test_telemetry_reports_the_async_limiter_and_store(reader, redis_url):
    """Counts and waits as statistics() says; round trips per store; no level."""
    clock = FakeClock()
    provider = provider_of(reader)

    async def main() -> None:
        async with AsyncRedisStore(url=redis_url, prefix=prefix(), clock=clock) as store:
            bucket = store.token_bucket("k", 1.0, 2)
            telemetry.instrument(bucket, meter_provider=provider)
            telemetry.instrument(store, meter_provider=provider)
            assert await bucket.try_acquire()
            assert await bucket.try_acquire()
            assert not await bucket.try_acquire()
            await bucket.acquire()  # waits 1 s
            reservation = await bucket.reserve()
            assert await reservation.cancel()
            stats = bucket.statistics()
            collected = Collected(reader)
            values = limiter_values(collected, **{"ratekit.name": "AsyncRedisLimiter"})
            assert values == {**expected_values(stats), "level": None}  # NaN: not reported
            assert collected.histogram("ratekit.limiter.wait.duration") == (1, 1.0)
            # try x3, book, reserve (a book) and its cancel
            trips = collected.value(
                "ratekit.store.round_trips", **{"ratekit.name": "AsyncRedisStore"}
            )
            assert trips == 6

    run(main)
