"""ratekit.telemetry: every instrument, read through the SDK's in-memory reader.

Each test has a meter provider of its own with an `InMemoryMetricReader`; the global
provider is never set, except by the one test of the default, which restores it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import subprocess
import sys
import threading
import weakref
from typing import TYPE_CHECKING, Any

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st
from loopback import LoopbackServer, Reply, free_port, script
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    Gauge,
    Histogram,
    InMemoryMetricReader,
    Sum,
)
from pyrate_limiter import InMemoryBucket
from pyrate_limiter import Rate as PyrateRate
from redis_server import RedisServer, serve
from stepped_clock import SteppedClock

import ratekit
from ratekit import (
    AcquireCancelled,
    AcquireTimeout,
    AsyncScheduler,
    Keyed,
    Scheduler,
    TokenBucket,
    TooManyKeys,
    _hooks,
    all_of,
    telemetry,
)
from ratekit.http import AdaptiveLimiter, Client, OAuth2Token
from ratekit.integrations.requests import RateLimitedAdapter
from ratekit.stores import PyrateLimiter, RedisStore, StoreUnavailable
from ratekit.testing import FakeClock

if TYPE_CHECKING:
    from collections.abc import Iterator

SECRET = "s3cret-client-Pa55"  # noqa: S105 - a test value
TOKEN = "tok-SECRET-4f9a"  # noqa: S105 - a test value
KEY = "alice@example.com"


class Collected:
    """What one collection of the reader held: metrics by name."""

    def __init__(self, reader: InMemoryMetricReader) -> None:
        self.metrics: dict[str, Any] = {}
        data = reader.get_metrics_data()
        for resource in data.resource_metrics if data is not None else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    assert scope.scope.name == "ratekit"
                    self.metrics[metric.name] = metric

    def points(self, name: str) -> list[Any]:
        metric = self.metrics.get(name)
        return [] if metric is None else list(metric.data.data_points)

    def value(self, name: str, **attributes: object) -> float | None:
        """The sum of the points of *name* whose attributes include *attributes*."""
        matching = [
            point
            for point in self.points(name)
            if all(point.attributes.get(key) == value for key, value in attributes.items())
        ]
        if not matching:
            return None
        return sum(point.value for point in matching)

    def histogram(self, name: str, **attributes: object) -> tuple[int, float]:
        """(count, sum) of the histogram points of *name* with *attributes*."""
        count, total = 0, 0.0
        for point in self.points(name):
            if all(point.attributes.get(key) == value for key, value in attributes.items()):
                count += point.count
                total += point.sum
        return count, total

    def attribute_values(self) -> list[str]:
        """Every attribute value of every point, as text."""
        return [
            str(value)
            for metric in self.metrics.values()
            for point in metric.data.data_points
            for value in point.attributes.values()
        ]


@pytest.fixture
def reader() -> Iterator[InMemoryMetricReader]:
    """An in-memory reader on a meter provider of the test's own."""
    memory = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[memory])
    memory.provider = provider  # type: ignore[attr-defined]
    yield memory
    provider.shutdown()


def provider_of(reader: InMemoryMetricReader) -> MeterProvider:
    """The meter provider of the `reader` fixture."""
    return reader.provider  # type: ignore[attr-defined, no-any-return]


def limiter_values(collected: Collected, **attributes: object) -> dict[str, float | None]:
    """The limiter instruments' values, by a short name."""
    return {
        "grants": collected.value("ratekit.limiter.grants", **attributes),
        "denials": collected.value("ratekit.limiter.denials", **attributes),
        "timeouts": collected.value("ratekit.limiter.timeouts", **attributes),
        "cancellations": collected.value("ratekit.limiter.cancellations", **attributes),
        "level": collected.value("ratekit.limiter.level", **attributes),
        "waiters": collected.value("ratekit.limiter.waiters", **attributes),
    }


def expected_values(stats: ratekit.LimiterStatistics) -> dict[str, float | None]:
    """What `limiter_values` must be, from statistics()."""
    return {
        "grants": stats.granted + stats.withdrawn,
        "denials": stats.denied,
        "timeouts": stats.timed_out,
        "cancellations": stats.cancelled,
        "level": stats.level,
        "waiters": stats.waiting,
    }


# -- the module ---------------------------------------------------------------------------


def test_import_ratekit_does_not_import_opentelemetry():
    """Importing ratekit, its HTTP layer and its stores loads no OpenTelemetry module."""
    code = (
        "import sys, ratekit, ratekit.http, ratekit.stores, ratekit.retry\n"
        "loaded = [m for m in sys.modules if m.startswith('opentelemetry')]\n"
        "assert not loaded, loaded\n"
        "from ratekit import _hooks\n"
        "assert _hooks.created is None\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)  # noqa: S603 - our own code


def test_every_instrument_exists_with_its_unit_and_kind(reader, server: LoopbackServer):
    """One object of each kind makes every instrument appear, with its unit and kind."""
    server.route("GET", "/ok")(lambda _: Reply.json({}))
    provider = provider_of(reader)
    clock = FakeClock()
    bucket = TokenBucket(1, capacity=1, clock=clock)
    pyrate = PyrateLimiter(InMemoryBucket([PyrateRate(5, 1000)]), clock=clock)
    token = OAuth2Token(f"{server.url}/token", client_id="c", client_secret=SECRET)
    client = Client(base_url=server.url, retry=None)
    objects = [bucket, Keyed(TokenBucket), Scheduler(1), client, token, pyrate]
    handles = [telemetry.instrument(o, meter_provider=provider) for o in objects]
    client.get("/ok")
    bucket.acquire()
    bucket.acquire()  # waits: the histogram has a point
    collected = Collected(reader)
    kinds = {
        "counter": (Sum, True),
        "updown": (Sum, False),
        "gauge": (Gauge, None),
        "histogram": (Histogram, None),
    }
    names = list(telemetry._instrument_names())
    assert len(names) == 25
    for name, kind, unit in names:
        metric = collected.metrics.get(name)
        assert metric is not None, name
        assert metric.unit == unit, name
        data_type, monotonic = kinds[kind]
        assert isinstance(metric.data, data_type), name
        if monotonic is not None:
            assert metric.data.is_monotonic is monotonic, name
        assert metric.description, name
    assert set(collected.metrics) == {name for name, _, _ in names}
    for handle in handles:
        handle.close()


def test_the_module_docstring_lists_every_instrument():
    """The table in the module's docstring names each instrument once, with its unit."""
    doc = telemetry.__doc__ or ""
    for name, _, unit in telemetry._instrument_names():
        rows = [line for line in doc.splitlines() if line.startswith(f"| `{name}` |")]
        assert len(rows) == 1, name
        assert f"| `{unit}` |" in rows[0], name


# -- limiters -----------------------------------------------------------------------------


def test_limiter_counts_equal_statistics_after_a_scripted_run(reader):
    """Grants (withdrawn reservations included), denials, timeouts, cancellations, waits."""
    clock = FakeClock()
    bucket = TokenBucket(2.0, capacity=2, clock=clock)
    handle = telemetry.instrument(bucket, meter_provider=provider_of(reader), name="api")
    assert bucket.try_acquire()
    assert bucket.try_acquire()
    assert not bucket.try_acquire()  # denied
    bucket.acquire()  # waits 0.5 s
    bucket.acquire(2)  # waits 1 s
    with pytest.raises(AcquireTimeout):
        bucket.acquire(2, timeout=0.1)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(AcquireCancelled):
        bucket.acquire(cancel=cancel)
    reservation = bucket.reserve()
    assert reservation.cancel()  # withdrawn: granted drops by one
    kept = bucket.reserve()
    assert kept.ok
    stats = bucket.statistics()
    assert stats.withdrawn == 1
    collected = Collected(reader)
    assert limiter_values(collected, **{"ratekit.name": "api"}) == expected_values(stats)
    assert collected.value("ratekit.limiter.grants") == stats.granted + 1
    assert collected.histogram("ratekit.limiter.wait.duration") == (2, stats.waited)
    assert stats.waited == 1.5
    handle.close()


def test_the_grants_counter_never_decreases_when_a_reservation_is_withdrawn(reader):
    """A withdrawn reservation takes one off granted, not off the grants counter."""
    clock = FakeClock()
    bucket = TokenBucket(1.0, capacity=1, clock=clock)
    telemetry.instrument(bucket, meter_provider=provider_of(reader))
    reservation = bucket.reserve()
    before = Collected(reader).value("ratekit.limiter.grants")
    assert reservation.cancel()
    assert bucket.statistics().granted == 0
    assert Collected(reader).value("ratekit.limiter.grants") == before == 1


def test_waiters_and_level_while_threads_wait(reader):
    """A thread blocked on the limiter is a waiter; its wait is recorded when it ends."""
    clock = SteppedClock()
    bucket = TokenBucket(1.0, capacity=1, clock=clock)
    telemetry.instrument(bucket, meter_provider=provider_of(reader))
    assert bucket.try_acquire()
    threads = [threading.Thread(target=bucket.acquire) for _ in range(2)]
    for thread in threads:
        thread.start()
    clock.settle(threads)
    collected = Collected(reader)
    stats = bucket.statistics()
    assert stats.waiting == 2
    assert limiter_values(collected) == expected_values(stats)
    assert collected.value("ratekit.limiter.level") == -2
    assert collected.histogram("ratekit.limiter.wait.duration") == (0, 0.0)
    clock.advance(2.0, threads)
    for thread in threads:
        thread.join()
    collected = Collected(reader)
    stats = bucket.statistics()
    assert limiter_values(collected) == expected_values(stats)
    assert collected.value("ratekit.limiter.waiters") == 0
    assert collected.histogram("ratekit.limiter.wait.duration") == (2, 3.0)


def test_async_waits_are_recorded(reader):
    """acquire_async records its wait as acquire does, for a strategy and AdaptiveLimiter."""
    bucket = TokenBucket(4.0, capacity=1, clock=FakeClock())
    adaptive = AdaptiveLimiter(4.0, clock=FakeClock())
    provider = provider_of(reader)
    telemetry.instrument(bucket, meter_provider=provider, name="bucket")
    telemetry.instrument(adaptive, meter_provider=provider, name="adaptive")

    async def main() -> None:
        for _ in range(3):
            await bucket.acquire_async()
            await adaptive.acquire_async()

    asyncio.run(main())
    collected = Collected(reader)
    for name, limiter in (("bucket", bucket), ("adaptive", adaptive)):
        stats = limiter.statistics()
        count, total = collected.histogram(
            "ratekit.limiter.wait.duration", **{"ratekit.name": name}
        )
        assert count == 2
        assert total == pytest.approx(stats.waited)
        assert limiter_values(collected, **{"ratekit.name": name}) == expected_values(stats)


def test_a_prioritized_limiter_is_reported_with_its_whole_waits(reader):
    """`Prioritized` is a limiter: its counts, and one record per wait, queued and booked."""
    clock = FakeClock()
    lanes = ratekit.Prioritized(TokenBucket(2.0, capacity=1, clock=clock))
    with telemetry.instrument(meter_provider=provider_of(reader)):
        made = ratekit.Prioritized(TokenBucket(1.0, capacity=1, clock=clock))
        made.acquire()
        # Made while everything is watched: reported under its class name.
        assert (
            Collected(reader).value("ratekit.limiter.grants", **{"ratekit.name": "Prioritized"})
            == 1
        )
    telemetry.instrument(lanes, meter_provider=provider_of(reader), name="lanes")
    for level in (ratekit.Priority.BULK, ratekit.Priority.INTERACTIVE, ratekit.Priority.NORMAL):
        lanes.acquire(priority=level)
    assert not lanes.try_acquire()
    collected = Collected(reader)
    stats = lanes.statistics()
    assert limiter_values(collected, **{"ratekit.name": "lanes"}) == expected_values(stats)
    count, total = collected.histogram("ratekit.limiter.wait.duration", **{"ratekit.name": "lanes"})
    assert (count, total) == (2, pytest.approx(stats.waited))
    assert stats.waited == pytest.approx(1.0)


def test_a_composition_records_one_wait_per_call_however_it_sleeps(reader):
    """all_of reports its own counts, and one record per waiting call, deferrals included."""
    clock = FakeClock()
    fast = TokenBucket(10.0, capacity=1, clock=clock)
    slow = TokenBucket(1.0, capacity=1, clock=clock)
    both = all_of(fast, slow)
    telemetry.instrument(both, meter_provider=provider_of(reader))
    for _ in range(3):
        both.acquire()
    stats = both.statistics()
    collected = Collected(reader)
    assert limiter_values(collected, **{"ratekit.name": "AllOf"}) == expected_values(stats)
    count, total = collected.histogram("ratekit.limiter.wait.duration")
    # The first call is granted at once; the other two sleep until the slow member's
    # slot comes near (booking nothing), then wait for it: one wait each.
    assert clock.sleeps == pytest.approx([0.9, 0.1, 0.9, 0.1])
    assert count == 2
    assert total == stats.waited == pytest.approx(2.0)


operations = st.lists(
    st.one_of(
        st.tuples(st.just("try"), st.sampled_from([1, 2])),
        st.tuples(st.just("acquire"), st.sampled_from([1, 2])),
        st.tuples(st.just("timeout"), st.sampled_from([0.0, 0.3])),
        st.tuples(st.just("reserve"), st.booleans()),
        st.tuples(st.just("cancelled"), st.just(1)),
        st.tuples(st.just("advance"), st.sampled_from([0.1, 0.5, 2.0])),
        st.tuples(st.just("collect"), st.just(0)),
    ),
    max_size=25,
)


@given(operations)
def test_collected_counts_equal_statistics_for_any_run(steps):
    """For any run on a fake clock, what is collected equals statistics(), and grows."""
    memory = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[memory])
    clock = FakeClock()
    bucket = TokenBucket(2.0, capacity=2, clock=clock)
    telemetry.instrument(bucket, meter_provider=provider)
    cancel = threading.Event()
    cancel.set()
    last_grants = 0.0
    try:
        for op, arg in steps:
            if op == "try":
                bucket.try_acquire(arg)
            elif op == "acquire":
                bucket.acquire(arg)
            elif op == "timeout":
                with contextlib.suppress(AcquireTimeout):
                    bucket.acquire(2, timeout=arg)
            elif op == "reserve":
                reservation = bucket.reserve(max_wait=5.0)
                if arg:
                    reservation.cancel()
            elif op == "cancelled":
                with pytest.raises(AcquireCancelled):
                    bucket.acquire(cancel=cancel)
            elif op == "advance":
                clock.advance(arg)
            else:
                grants = Collected(memory).value("ratekit.limiter.grants") or 0.0
                assert grants >= last_grants
                last_grants = grants
        stats = bucket.statistics()
        collected = Collected(memory)
        assert limiter_values(collected) == expected_values(stats)
        assert collected.histogram("ratekit.limiter.wait.duration")[1] == pytest.approx(
            stats.waited
        )
    finally:
        provider.shutdown()


# -- Keyed --------------------------------------------------------------------------------


def test_keyed_reports_keys_evictions_and_refusals_never_a_key(reader):
    """Keys held, keys forgotten and TooManyKeys raised; no key in any attribute."""
    clock = FakeClock()
    keyed: Keyed[str] = Keyed(lambda: TokenBucket(1.0, capacity=1, clock=clock), max_keys=2)
    telemetry.instrument(keyed, meter_provider=provider_of(reader), attributes={"api": "x"})
    assert keyed.try_acquire(KEY)
    assert keyed.try_acquire("bob@example.com")
    with pytest.raises(TooManyKeys):
        keyed.try_acquire("carol@example.com")
    with pytest.raises(TooManyKeys):
        keyed.reserve("carol@example.com")
    with pytest.raises(TooManyKeys):
        keyed.acquire("carol@example.com", timeout=0.5)
    clock.advance(1.0)
    assert keyed.try_acquire("carol@example.com")  # one key forgotten, back at rest
    collected = Collected(reader)
    assert keyed.refused == 3
    assert keyed.evicted == 1
    assert collected.value("ratekit.keyed.keys", api="x") == 2
    assert collected.value("ratekit.keyed.evictions", api="x") == 1
    assert collected.value("ratekit.keyed.refusals", api="x") == 3
    assert collected.value("ratekit.keyed.keys", **{"ratekit.name": "Keyed"}) == 2
    assert not any("example.com" in value for value in collected.attribute_values())
    assert "ratekit.limiter.grants" not in collected.metrics  # no series per key


def test_a_wait_for_room_is_not_a_refusal(reader):
    """Keyed.acquire that waits for a key to come to rest counts no refusal."""
    clock = FakeClock()
    keyed: Keyed[str] = Keyed(lambda: TokenBucket(1.0, capacity=1, clock=clock), max_keys=1)
    telemetry.instrument(keyed, meter_provider=provider_of(reader))
    keyed.acquire("a")
    keyed.acquire("b")  # waits until "a" is at rest
    assert Collected(reader).value("ratekit.keyed.refusals") == 0
    assert Collected(reader).value("ratekit.keyed.evictions") == 1


# -- schedulers ---------------------------------------------------------------------------


def fail_on_odd(item: int) -> int:
    """Return *item*, or raise for an odd one."""
    if item % 2:
        raise ValueError(item)
    return item


def scheduler_values(collected: Collected) -> dict[str, float | None]:
    """The scheduler instruments' values, by a short name."""
    return {
        name: collected.value(f"ratekit.scheduler.calls.{name}")
        for name in ("started", "completed", "failed", "cancelled", "running", "waiting")
    }


def test_scheduler_counts_after_a_map_with_failures(reader):
    """Started, completed, failed, cancelled, running and waiting equal statistics()."""
    clock = FakeClock()
    scheduler = Scheduler(2, TokenBucket(100.0, capacity=1, clock=clock))
    telemetry.instrument(scheduler, meter_provider=provider_of(reader))
    with scheduler:
        results = list(scheduler.map(fail_on_odd, range(10), return_exceptions=True))
        assert len(results) == 10
        with pytest.raises(ValueError, match="1"):
            list(scheduler.map(fail_on_odd, range(1, 50)))
    stats = scheduler.statistics()
    assert stats.failed >= 6
    assert stats.started == stats.done + stats.failed
    assert scheduler_values(Collected(reader)) == {
        "started": stats.started,
        "completed": stats.done,
        "failed": stats.failed,
        "cancelled": stats.cancelled,
        "running": 0,
        "waiting": 0,
    }


def test_async_scheduler_counts(reader):
    """An AsyncScheduler's counts are reported the same way."""

    async def work(item: int) -> int:
        await asyncio.sleep(0)
        return fail_on_odd(item)

    scheduler = AsyncScheduler(3)
    telemetry.instrument(scheduler, meter_provider=provider_of(reader), name="async")

    async def main() -> None:
        async with scheduler:
            _ = [r async for r in scheduler.map(work, range(9), return_exceptions=True)]

    asyncio.run(main())
    collected = Collected(reader)
    assert scheduler_values(collected) == {
        "started": 9,
        "completed": 5,
        "failed": 4,
        "cancelled": 0,
        "running": 0,
        "waiting": 0,
    }
    assert collected.points("ratekit.scheduler.calls.started")[0].attributes == {
        "ratekit.name": "async"
    }


# -- HTTP clients -------------------------------------------------------------------------


def test_client_requests_by_method_and_status_class(reader, server: LoopbackServer):
    """Each attempt is counted by method and status class; a failed one by its error type."""
    server.route("GET", "/ok")(lambda _: Reply.json({}))
    server.route("GET", "/missing")(lambda _: Reply(404))
    server.route("POST", "/made")(lambda _: Reply(201))
    server.route("GET", "/busy")(script(Reply(429, {"Retry-After": "2"}), Reply.json({})))
    clock = FakeClock()
    client = Client(base_url=server.url, clock=clock)
    telemetry.instrument(client, meter_provider=provider_of(reader), attributes={"api": "x"})
    client.get("/ok", params={"api_key": SECRET})
    client.get("/ok")
    client.get("/missing")
    client.post("/made", json={})
    client.get("/busy")  # a 429, its cooldown, and a retry
    down = Client(base_url=f"http://127.0.0.1:{free_port()}", retry=None)
    telemetry.instrument(down, meter_provider=provider_of(reader), name="down")
    with pytest.raises(ratekit.http.ConnectionFailed):
        down.get("/nothing")
    collected = Collected(reader)
    requests_ = "ratekit.client.requests"
    get = {"http.request.method": "GET"}
    assert collected.value(requests_, **get, **{"ratekit.http.status_class": "2xx"}) == 3
    assert collected.value(requests_, **get, **{"ratekit.http.status_class": "4xx"}) == 2
    post = {"http.request.method": "POST", "ratekit.http.status_class": "2xx"}
    assert collected.value(requests_, **post, api="x") == 1
    stats = client.statistics()
    assert collected.value(requests_, api="x") == stats.requests == 6
    assert collected.value("ratekit.client.throttled", api="x") == stats.throttled == 1
    assert collected.value("ratekit.client.retries", api="x") == stats.retries == 1
    assert collected.value("ratekit.client.cooldown", api="x") == stats.cooled == 2.0
    failed = {"ratekit.name": "down", "error.type": "ConnectionFailed"}
    assert collected.value(requests_, **failed, **get) == 1
    assert not any(SECRET in value for value in collected.attribute_values())
    assert not any("/ok" in value for value in collected.attribute_values())


def test_an_unknown_method_is_reported_as_other(reader, server: LoopbackServer):
    """Methods outside RFC 9110 (and PATCH) are reported as _OTHER."""
    client = Client(base_url=server.url, retry=None)
    telemetry.instrument(client, meter_provider=provider_of(reader))
    client.request("BREW", "/pot")
    collected = Collected(reader)
    assert collected.value("ratekit.client.requests", **{"http.request.method": "_OTHER"}) == 1


def test_an_integration_adapter_is_reported_as_a_client(reader, server: LoopbackServer):
    """A requests adapter's attempts are counted as a Client's are."""
    server.route("GET", "/ok")(lambda _: Reply.json({}))
    adapter = RateLimitedAdapter(None, retry=None)
    telemetry.instrument(adapter, meter_provider=provider_of(reader))
    with requests.Session() as session:
        session.mount("http://", adapter)
        assert session.get(f"{server.url}/ok", timeout=10).status_code == 200
    collected = Collected(reader)
    attributes = {
        "ratekit.name": "RateLimitedAdapter",
        "http.request.method": "GET",
        "ratekit.http.status_class": "2xx",
    }
    assert collected.value("ratekit.client.requests", **attributes) == 1
    assert collected.value("ratekit.client.throttled") == 0


def token_route(server: LoopbackServer, *replies: Reply) -> None:
    """Answer the token endpoint with *replies*, in turn."""
    server.route("POST", "/token")(script(*replies))


def test_token_refreshes_directly_and_through_a_client(reader, server: LoopbackServer):
    """Token requests, and failed ones, are reported for the token and for its client."""
    granted = Reply.json({"access_token": TOKEN, "expires_in": 100})
    token_route(server, granted, Reply(500), granted)
    server.route("GET", "/ok")(lambda _: Reply.json({}))
    clock = FakeClock()
    oauth = OAuth2Token(
        f"{server.url}/token", client_id="c", client_secret=SECRET, margin=10.0, clock=clock
    )
    client = Client(base_url=server.url, auth=oauth, clock=clock, retry=None)
    provider = provider_of(reader)
    telemetry.instrument(oauth, meter_provider=provider)
    telemetry.instrument(client, meter_provider=provider, name="api")
    client.get("/ok")  # fetches the token
    clock.advance(95.0)  # due for an early refresh, which fails: the token is kept
    client.get("/ok")
    clock.advance(10.0)  # expired: fetched anew
    client.get("/ok")
    collected = Collected(reader)
    for name in ("OAuth2Token", "api"):
        attributes = {"ratekit.name": name}
        assert collected.value("ratekit.token.refreshes", **attributes) == 3
        assert collected.value("ratekit.token.refresh_failures", **attributes) == 1
    values = collected.attribute_values()
    assert not any(secret in value for value in values for secret in (SECRET, TOKEN))


def test_no_attribute_holds_a_secret_a_key_or_a_url(reader, server: LoopbackServer):
    """Whatever is watched, attributes hold names, methods and classes: nothing else."""
    token_route(server, Reply.json({"access_token": TOKEN, "expires_in": 100}))
    server.route("GET", "/users/alice")(lambda _: Reply(401))
    handle = telemetry.instrument(meter_provider=provider_of(reader))
    try:
        clock = FakeClock()
        keyed: Keyed[str] = Keyed(lambda: TokenBucket(1.0, capacity=1, clock=clock))
        keyed.try_acquire(KEY)
        oauth = OAuth2Token(
            f"{server.url}/token?tenant={SECRET}", client_id="c", client_secret=SECRET
        )
        client = Client(base_url=server.url, auth=oauth, retry=None)
        with pytest.raises(ratekit.http.AuthError):
            client.get("/users/alice", params={"key": SECRET})
        collected = Collected(reader)
    finally:
        handle.close()
    assert collected.value("ratekit.client.requests") == 2
    assert collected.value("ratekit.keyed.keys") == 1
    for value in collected.attribute_values():
        for forbidden in (SECRET, TOKEN, KEY, "alice", "/token", "127.0.0.1"):
            assert forbidden not in value


# -- stores -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server for the store tests of this module."""
    yield from serve()


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server the test may stop."""
    yield from serve()


def store_values(collected: Collected, **attributes: object) -> tuple[Any, ...]:
    """Round trips, unavailable and fail-open grants."""
    return tuple(
        collected.value(f"ratekit.store.{name}", **attributes)
        for name in ("round_trips", "unavailable", "fail_open_grants")
    )


def test_redis_limiter_counts_equal_statistics(reader, redis_server: RedisServer):
    """A RedisLimiter's counts, waits and withdrawn reservations, as statistics() says."""
    clock = FakeClock()
    with RedisStore(url=redis_server.url, clock=clock, prefix="tel:a:") as store:
        bucket = store.token_bucket("k", 1.0, 2)
        provider = provider_of(reader)
        telemetry.instrument(bucket, meter_provider=provider)
        telemetry.instrument(store, meter_provider=provider)
        assert bucket.try_acquire()
        assert bucket.try_acquire()
        assert not bucket.try_acquire()
        bucket.acquire()  # waits 1 s
        reservation = bucket.reserve()
        assert reservation.cancel()
        stats = bucket.statistics()
        collected = Collected(reader)
        assert stats.withdrawn == 1
        assert limiter_values(collected, **{"ratekit.name": "RedisLimiter"}) == expected_values(
            stats
        )
        assert collected.histogram("ratekit.limiter.wait.duration") == (1, 1.0)
        # try x3, book, reserve (a book) and its cancel; level reads are left out
        assert store_values(collected, **{"ratekit.name": "RedisStore"}) == (6, 0, 0)


def test_redis_store_unavailable_and_fail_open(reader, own_redis: RedisServer):
    """StoreUnavailable raised and grants by failing open are counted, per store."""
    provider = provider_of(reader)
    closed = RedisStore(url=own_redis.url, timeout=0.5, prefix="tel:b:")
    opened = RedisStore(url=own_redis.url, timeout=0.5, fail_open=True, prefix="tel:c:")
    try:
        telemetry.instrument(closed, meter_provider=provider, name="closed")
        telemetry.instrument(opened, meter_provider=provider, name="open")
        strict = closed.token_bucket("k", 100.0, 100)
        lenient = opened.token_bucket("k", 100.0, 100)
        assert strict.try_acquire()
        assert lenient.try_acquire()
        own_redis.stop()
        with pytest.raises(StoreUnavailable):
            strict.try_acquire()
        with pytest.raises(StoreUnavailable):
            strict.acquire()
        assert lenient.try_acquire()
        lenient.acquire()
        telemetry.instrument(strict, meter_provider=provider)
        collected = Collected(reader)  # the level read fails: no level, nothing counted
    finally:
        closed.close()
        opened.close()
    assert store_values(collected, **{"ratekit.name": "closed"}) == (3, 2, 0)
    assert store_values(collected, **{"ratekit.name": "open"}) == (3, 0, 2)
    assert collected.value("ratekit.limiter.level", **{"ratekit.name": "RedisLimiter"}) is None
    assert collected.value("ratekit.limiter.grants", **{"ratekit.name": "RedisLimiter"}) == 1


def test_pyrate_limiter_is_a_limiter_and_a_store(reader):
    """A PyrateLimiter reports its limiter counts, its round trips and its waits."""
    clock = FakeClock()
    limiter = PyrateLimiter(InMemoryBucket([PyrateRate(2, 1000)]), clock=clock)
    telemetry.instrument(limiter, meter_provider=provider_of(reader), name="pyrate")
    assert limiter.try_acquire()
    assert limiter.try_acquire()
    assert not limiter.try_acquire()
    limiter.acquire()
    stats = limiter.statistics()
    collected = Collected(reader)
    named = {"ratekit.name": "pyrate"}
    assert limiter_values(collected, **named) == expected_values(stats)
    assert store_values(collected, **named) == (5, 0, 0)
    count, total = collected.histogram("ratekit.limiter.wait.duration", **named)
    assert (count, total) == (1, pytest.approx(stats.waited))


# -- the handle, weak references, watching ---------------------------------------------


def test_close_stops_reporting_and_unhooks(reader, server: LoopbackServer):
    """After close, the object's series are gone and its hooks are back to None."""
    clock = FakeClock()
    bucket = TokenBucket(1.0, capacity=1, clock=clock)
    client = Client(base_url=server.url, retry=None)
    provider = provider_of(reader)
    with telemetry.instrument(bucket, meter_provider=provider) as handle:
        telemetry.instrument(client, meter_provider=provider).close()
        assert bucket._on_wait is not None
        bucket.try_acquire()
        assert Collected(reader).value("ratekit.limiter.grants") == 1
    assert handle.closed
    handle.close()  # again: nothing
    assert bucket._on_wait is None
    assert client._gate.counts.hook is None
    bucket.try_acquire()
    collected = Collected(reader)
    assert collected.points("ratekit.limiter.grants") == []
    assert collected.points("ratekit.client.throttled") == []


def test_an_object_instrumented_twice_is_reported_once(reader):
    """Two handles on one object and attributes share one series until both are closed."""
    bucket = TokenBucket(1.0, capacity=1, clock=FakeClock())
    provider = provider_of(reader)
    first = telemetry.instrument(bucket, meter_provider=provider)
    second = telemetry.instrument(bucket, meter_provider=provider)
    bucket.try_acquire()
    assert Collected(reader).value("ratekit.limiter.grants") == 1
    first.close()
    assert Collected(reader).value("ratekit.limiter.grants") == 1
    second.close()
    assert Collected(reader).value("ratekit.limiter.grants") is None


def test_a_collected_object_disappears_and_is_not_kept_alive(reader):
    """Instrumenting holds no strong reference; a collected object's series ends."""
    bucket = TokenBucket(1.0, capacity=1, clock=FakeClock())
    telemetry.instrument(bucket, meter_provider=provider_of(reader))
    bucket.try_acquire()
    assert Collected(reader).value("ratekit.limiter.grants") == 1
    ref = weakref.ref(bucket)
    del bucket
    gc.collect()
    assert ref() is None
    assert Collected(reader).points("ratekit.limiter.grants") == []


def test_objects_with_equal_attributes_are_summed_and_never_decrease(reader):
    """Two limiters of one name add up; one that is gone leaves its counts in the sum."""
    clock = FakeClock()
    provider = provider_of(reader)
    first = TokenBucket(1.0, capacity=3, clock=clock)
    second = TokenBucket(1.0, capacity=1, clock=clock)
    telemetry.instrument(first, meter_provider=provider, name="shared")
    telemetry.instrument(second, meter_provider=provider, name="shared")
    first.try_acquire(3)
    second.try_acquire()
    collected = Collected(reader)
    assert collected.value("ratekit.limiter.grants") == 2
    assert collected.value("ratekit.limiter.level") == 0  # the lowest
    del first
    gc.collect()
    second.try_acquire()  # denied
    collected = Collected(reader)
    assert collected.value("ratekit.limiter.grants") == 2
    assert collected.value("ratekit.limiter.denials") == 1
    del second
    gc.collect()
    assert Collected(reader).points("ratekit.limiter.grants") == []


def test_instrument_with_no_object_picks_up_objects_made_afterwards(reader, server):
    """Everything made while watching is reported, except a Keyed's per-key limiters."""
    clock = FakeClock()
    before = TokenBucket(1.0, capacity=1, clock=clock)
    handle = telemetry.instrument(meter_provider=provider_of(reader), attributes={"app": "t"})
    assert _hooks.created is not None
    bucket = TokenBucket(1.0, capacity=1, clock=clock)
    keyed: Keyed[str] = Keyed(lambda: TokenBucket(1.0, capacity=1, clock=clock))
    shared: Keyed[str] = Keyed(
        lambda: TokenBucket(1.0, capacity=1, clock=clock), shared=[TokenBucket(9.0, 9, clock=clock)]
    )
    scheduler = Scheduler(1)
    client = Client(base_url=server.url, retry=None)
    bucket.try_acquire()
    before.try_acquire()
    for index in range(5):
        keyed.try_acquire(f"k{index}")
        shared.try_acquire(f"k{index}")
    collected = Collected(reader)
    names = {
        point.attributes["ratekit.name"]
        for metric in collected.metrics.values()
        for point in metric.data.data_points
    }
    assert names == {"TokenBucket", "Keyed", "Scheduler", "Client"}
    # The bucket's grant: not the keys' limiters' (ten), nor the shared limiter's, which
    # the keys' compositions take from directly.
    assert collected.value("ratekit.limiter.grants", app="t") == 1
    assert collected.value("ratekit.keyed.keys", app="t") == 10
    handle.close()
    assert _hooks.created is None
    later = TokenBucket(1.0, capacity=1, clock=clock)
    later.try_acquire()
    assert Collected(reader).metrics == {}
    assert scheduler.statistics().started == 0
    client.close()


def test_watched_objects_are_not_kept_alive(reader):
    """Objects made while watching are held weakly, and leave when collected."""
    with telemetry.instrument(meter_provider=provider_of(reader)):
        refs = [weakref.ref(TokenBucket(1.0, capacity=1)) for _ in range(100)]
        gc.collect()
        assert all(ref() is None for ref in refs)
        assert Collected(reader).points("ratekit.limiter.grants") == []
        state = telemetry._state_for(provider_of(reader))
        assert state.entries["limiter"] == {}


def test_unknown_objects_and_bad_arguments_raise_type_error(reader):
    """An object of no reported kind, a bad name or bad attributes raise TypeError."""
    provider = provider_of(reader)
    with pytest.raises(TypeError, match="obj must be a ratekit limiter"):
        telemetry.instrument(object(), meter_provider=provider)
    with pytest.raises(TypeError, match="name must be a str"):
        telemetry.instrument(TokenBucket(1.0, 1), meter_provider=provider, name=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="attributes"):
        telemetry.instrument(
            TokenBucket(1.0, 1), meter_provider=provider, attributes={"a": object()}
        )  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="attributes must be a mapping"):
        telemetry.instrument(TokenBucket(1.0, 1), meter_provider=provider, attributes=[1])  # type: ignore[arg-type]


class OwnLimiter:
    """A limiter of the user's own, with statistics() as ratekit's."""

    def statistics(self) -> ratekit.LimiterStatistics:
        return ratekit.LimiterStatistics(4, 1, 0, 0, 0, 0.0, 2.0, 5.0)


def test_any_object_with_limiter_statistics_is_a_limiter(reader):
    """An object whose statistics() returns LimiterStatistics is reported as a limiter."""
    telemetry.instrument(OwnLimiter(), meter_provider=provider_of(reader))
    own = OwnLimiter()
    telemetry.instrument(own, meter_provider=provider_of(reader))
    collected = Collected(reader)
    assert collected.value("ratekit.limiter.grants", **{"ratekit.name": "OwnLimiter"}) == 4
    assert collected.value("ratekit.limiter.level") == 2


@pytest.fixture
def fresh_global(monkeypatch):
    """OpenTelemetry's global provider as in a new process, for this test alone.

    The provider, its set-once guard and its stand-in (which forwards to the first
    provider set), and telemetry's state on that stand-in, are restored afterwards.
    """
    from opentelemetry.metrics import _internal as internal

    monkeypatch.setattr(internal, "_METER_PROVIDER", None)
    monkeypatch.setattr(
        internal, "_METER_PROVIDER_SET_ONCE", type(internal._METER_PROVIDER_SET_ONCE)()
    )
    monkeypatch.setattr(internal, "_PROXY_METER_PROVIDER", internal._ProxyMeterProvider())
    monkeypatch.setattr(telemetry, "_PROXY_STATE", [])
    return internal.set_meter_provider


def test_the_global_provider_is_the_default(fresh_global):
    """Without meter_provider, the global one (read at the call) is used."""
    memory = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[memory])
    fresh_global(provider)
    try:
        bucket = TokenBucket(1.0, capacity=1, clock=FakeClock())
        with telemetry.instrument(bucket):
            bucket.try_acquire()
            collected = Collected(memory)
        assert collected.value("ratekit.limiter.grants") == 1
        assert collected.metrics["ratekit.limiter.grants"] is not None
    finally:
        provider.shutdown()


def test_objects_instrumented_before_and_after_the_global_provider_is_set(fresh_global):
    """Instrumented before the SDK is set up (a library at import) and after: both count."""
    early = TokenBucket(1.0, capacity=1, clock=FakeClock())
    late = TokenBucket(1.0, capacity=1, clock=FakeClock())
    with telemetry.instrument(early, name="early"):
        memory = InMemoryMetricReader()
        provider = MeterProvider(metric_readers=[memory])
        fresh_global(provider)
        try:
            with telemetry.instrument(late, name="late"):
                early.try_acquire()
                late.try_acquire()
                late.try_acquire()
                collected = Collected(memory)
        finally:
            provider.shutdown()
    assert collected.value("ratekit.limiter.grants", **{"ratekit.name": "early"}) == 1
    assert collected.value("ratekit.limiter.grants", **{"ratekit.name": "late"}) == 1
    assert collected.value("ratekit.limiter.denials", **{"ratekit.name": "late"}) == 1


def test_instrumenting_costs_nothing_until_instrumented():
    """Uninstrumented objects have empty hooks: hot paths check one None, nothing more."""
    bucket = TokenBucket(1.0, capacity=1)
    assert bucket._on_wait is None
    assert Client(retry=None)._gate.counts.hook is None
    assert _hooks.created is None
