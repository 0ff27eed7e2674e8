"""The asyncio Redis store on a real Redis Cluster of three primaries on loopback.

As `RedisStore` there (test_store_redis_cluster.py, whose cluster and helpers this
module uses): each limit's keys carry one hash tag, compositions across groups are
refused, every call is one ``FCALL`` on the primary of the slot, which loads the
function library when it lacks it, and with a `FakeClock` the answers are the in-memory
ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import re
import threading
import uuid
import warnings
from typing import TYPE_CHECKING

import pytest
import redis.asyncio
from redis.asyncio.cluster import RedisCluster as AsyncClusterClient
from specs import sliding_window_holds
from test_store_redis import _ulps_apart, drive
from test_store_redis_async import GateClock, drive_async, run, two_hundred_tasks
from test_store_redis_cluster import (
    _calls,
    _flush_functions,
    _has_library,
    _loaded_once_on,
    _reset_stats,
    admin,
    cluster,
    one_slot_limiters,
    refused_functions,
    spread_limits,
)

import ratekit
from ratekit import SlidingWindow, TokenBucket, all_of
from ratekit.stores import AsyncRedisStore, RedisStore, StoreUnavailable
from ratekit.testing import FakeClock

if TYPE_CHECKING:
    from collections.abc import Iterator

    from redis_cluster import RedisCluster

__all__ = ["admin", "cluster"]  # the cluster fixtures, used below


def fresh_store(cluster: RedisCluster, clock: object = None) -> AsyncRedisStore:
    """A store of its own cluster client (made in the running loop), under a fresh prefix."""
    prefix = f"c{uuid.uuid4().hex[:12]}:"
    return AsyncRedisStore(url=cluster.url, cluster=True, timeout=5.0, prefix=prefix, clock=clock)  # type: ignore[arg-type]


# -- the same answers as memory -------------------------------------------------------------

#: Scripted workloads (as `test_store_redis.steps` draws them): bursts, waits, refusals,
#: reservations withdrawn, blocking calls that time out or wait, and time passing.
WORKLOADS = [
    [
        ("try", 0.5),
        ("try", 0.5),
        ("try", 0.3),
        ("advance", 0.25),
        ("try", 0.3),
        ("reserve", 0.6, None),
        ("reserve", 0.2, 0.1),
        ("statistics",),
        ("cancel", 0),
        ("acquire", 0.4, None),
        ("advance", 3.0),
        ("try", 1.0),
    ],
    [
        ("acquire", 1.0, None),
        ("acquire", 0.5, 0.05),
        ("acquire", 0.5, 10.0),
        ("reserve", 0.3, None),
        ("reserve", 0.3, None),
        ("cancel", 1),
        ("cancel", 1),
        ("advance", 0.7),
        ("try", 0.1),
        ("statistics",),
    ],
    [
        *(("try", 0.1) for _ in range(12)),
        ("advance", 0.5),
        *(("try", 0.1) for _ in range(6)),
        ("advance", 1.0),
        ("reserve", 0.9, 2.0),
        ("acquire", 0.1, None),
        ("advance", 3600.0),
        ("try", 1.0),
    ],
]

#: Each twin: the in-memory limiter and the store's, on the same clock.
TWINS = {
    "TokenBucket": lambda clock, store: (
        TokenBucket(4.0, 10, clock=clock),
        store.token_bucket("tb", 4.0, 10),
    ),
    "SlidingWindow": lambda clock, store: (
        SlidingWindow(10, 1.0, clock=clock),
        store.sliding_window("sw", 10, 1.0),
    ),
    "limiter(10/second, 1000/hour)": lambda clock, store: (
        ratekit.limiter("10/second, 1000/hour", clock=clock),
        store.limiter("api", "10/second, 1000/hour"),
    ),
}


@pytest.mark.parametrize("workload", range(len(WORKLOADS)))
@pytest.mark.parametrize("name", list(TWINS))
def test_async_limiters_on_the_cluster_answer_exactly_as_memory(cluster, name, workload):
    """Every answer and clock reading is the in-memory one (a composition's to 4 ulps)."""
    steps = WORKLOADS[workload]
    clocks = FakeClock(), FakeClock()
    with RedisStore(url=cluster.url, cluster=True) as unused:
        memory, _ = TWINS[name](clocks[0], unused)
    composite = name.startswith("limiter")
    expected = drive(memory, clocks[0], steps, sleeps=not composite)

    async def main() -> None:
        async with fresh_store(cluster, clocks[1]) as store:
            _, shared = TWINS[name](clocks[1], store)
            got = await drive_async(shared, clocks[1], steps)
            if composite:  # how a wait is cut into sleeps differs; when it ends does not
                got[-1] = clocks[1].now()
                assert _ulps_apart(got, expected, 4), (got, expected)
            else:
                assert got == expected
            assert shared.statistics().granted > 0  # the workload did reach the store

    run(main)


# -- keys and slots -------------------------------------------------------------------------


def test_keys_of_a_limiter_and_a_group_share_a_slot_and_limits_spread(cluster, admin):
    """The sync store's key names; one slot per limiter or group; every primary used."""
    sync = RedisStore(url=cluster.url, cluster=True)

    async def main() -> None:
        async with fresh_store(cluster) as store:
            assert store.cluster
            limiters = one_slot_limiters(store, admin)
            twin = RedisStore(sync._client, prefix=store.prefix)  # the sync store's names
            assert twin.limiter("api", "10/second, 1000/hour").keys == limiters[0].keys
            for limiter in limiters:
                assert await limiter.try_acquire()
                assert admin.exists(limiter.keys[0])  # written where the slot lives
            spread_limits(store, cluster, admin)
            tenant = store.token_bucket("tenant-42", 100.0, 100, group="tenant-42")
            with pytest.raises(ValueError, match="different groups"):
                store.all_of(store.token_bucket("user-7", 1.0, 1), tenant)
            assert store.all_of(
                store.limiter("a", "1/s", group="g"), store.token_bucket("b", 1.0, 1, group="g")
            )

    try:
        run(main)
    finally:
        sync.close()


# -- the function library -------------------------------------------------------------------


def test_the_library_is_reloaded_on_the_flushed_node_only(cluster, admin):
    """FUNCTION FLUSH on the slot's primary: the next call loads it there, once, and answers.

    With a given `redis.asyncio.cluster.RedisCluster` client, which stays open.
    """
    clock = FakeClock()

    async def main() -> None:
        client = AsyncClusterClient.from_url(cluster.url, socket_timeout=5)
        try:
            store = AsyncRedisStore(client, prefix=f"c{uuid.uuid4().hex[:12]}:", clock=clock)
            bucket = store.token_bucket("flushed", "1/hour", 3)
            assert await bucket.try_acquire(2)
            owner = cluster.owner(admin.keyslot(bucket.keys[0]))
            assert _has_library(cluster, owner)
            _flush_functions(cluster, owner)
            assert not await bucket.try_acquire(2)  # the state is kept: only the code was lost
            assert await bucket.try_acquire(1)
            _loaded_once_on(cluster, owner, fcalls=2)
            assert _has_library(cluster, owner)
            await store.aclose()
            assert await client.ping()  # a given client is left open
        finally:
            await client.aclose()

    run(main)


# -- many tasks on one limiter --------------------------------------------------------------


def test_200_tasks_on_the_cluster_never_over_admit_and_cancelled_ones_give_back(cluster):
    """200 tasks on 10/s, more than the store's connections: in order, ten per second.

    50 of them cancelled while they wait free their slots for a later caller; no thread
    is started.
    """
    before = set(threading.enumerate())
    clock = GateClock()

    async def main() -> None:
        async with fresh_store(cluster, clock) as store:
            # More round trips at once than the store's connections to the node.
            await two_hundred_tasks(store, clock)

    run(main)
    assert set(threading.enumerate()) - before == set()


def test_200_concurrent_reservations_on_the_cluster_hold_the_limit(cluster):
    """Their instants: at most ten in any second, and none lost (the last at 19 s)."""
    clock = FakeClock()  # still: every decision is at time 0

    async def main() -> None:
        async with fresh_store(cluster, clock) as store:
            limiter = store.limiter("shared", "10/second, 1000/hour")
            await limiter.statistics_async()  # connected first, as above
            reservations = await asyncio.gather(*(limiter.reserve() for _ in range(200)))
            assert all(r.ok for r in reservations)
            grants = [(r.ready_at, r.cost) for r in reservations]
            assert sliding_window_holds(grants, 10, 1.0)
            assert max(at for at, _ in grants) == 19.0
            assert (await limiter.reserve()).ready_at == 20.0

    run(main)


# -- errors ---------------------------------------------------------------------------------


def test_the_store_checks_its_cluster_arguments_and_keeps_secrets(cluster):
    """A braced prefix, a contradicting cluster=, an unreachable cluster, a password."""
    secret = "s3cret-Pa55"  # noqa: S105 - a test value

    async def main() -> None:
        with pytest.raises(ValueError, match="prefix must not contain"):
            AsyncRedisStore(url=cluster.url, cluster=True, prefix="{app}:")
        plain = redis.asyncio.Redis(port=cluster.ports[0])
        clustered = AsyncClusterClient.from_url(cluster.url)
        try:
            with pytest.raises(ValueError, match="cluster=True does not match"):
                AsyncRedisStore(plain, cluster=True)
            with pytest.raises(ValueError, match="cluster=False does not match"):
                AsyncRedisStore(clustered, cluster=False)
            with pytest.raises(ValueError, match="prefix must not contain"):
                AsyncRedisStore(clustered, prefix="a{b}:")
            assert AsyncRedisStore(clustered).cluster
            assert not AsyncRedisStore(plain).cluster
        finally:
            await plain.aclose()
            await clustered.aclose()
        with pytest.raises(ValueError, match="url must be a Redis URL") as bad:
            AsyncRedisStore(url=f"http://user:{secret}@example.com/", cluster=True)
        assert secret not in str(bad.value)
        unreachable = f"redis://:{secret}@127.0.0.1:1/0"
        async with AsyncRedisStore(url=unreachable, cluster=True, timeout=0.5) as down:
            assert secret not in repr(down)
            assert down.description == "Redis Cluster at 127.0.0.1:1"
            with pytest.raises(StoreUnavailable, match=re.escape(down.description)) as error:
                await down.token_bucket("k", 1.0, 1).try_acquire()
            assert secret not in str(error.value)
            assert secret not in repr(error.value)
        async with fresh_store(cluster) as store:
            assert store.description.startswith("Redis Cluster at 127.0.0.1:")
            assert repr(store).startswith("AsyncRedisStore('Redis Cluster at 127.0.0.1:")

    run(main)


# -- restart, resharding, a user refused functions ------------------------------------------


@contextlib.contextmanager
def _replaced_nodes_collected() -> Iterator[None]:
    """Around a test whose cluster changes shape: collect the nodes redis-py replaced.

    After a restart or a moved slot, redis-py 8.1 (the last release for Python 3.10)
    can leave the connections of node objects it replaced unclosed; they warn when the
    garbage collector finds them, in whatever test is running then.  They are collected
    at the end of the test that made them, with that warning (redis-py's, not the
    store's: the store's own connections are closed, as the other tests check) silenced.
    """
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()


async def _in_step(pairs: list, clocks: tuple[FakeClock, FakeClock], count: int) -> None:
    """*count* steps of both clocks, each limiter of *pairs* answering as its twin in memory.

    Each pair is (in memory, the store's); every step tries a cost of 0.7 on both, and
    every seventh also reserves it, with the same instant.
    """
    for index in range(count):
        for each in clocks:
            each.advance(0.013 * (1 + index % 3))
        for memory, shared in pairs:
            assert memory.try_acquire(0.7) == await shared.try_acquire(0.7)
            if index % 7 == 0:
                assert memory.reserve(0.7).ready_at == (await shared.reserve(0.7)).ready_at


async def _answers_as_memory(store: AsyncRedisStore, clock: FakeClock) -> None:
    """`test_store_redis._answers_as_memory`, awaited: a window and a bucket, 150 steps."""
    mine = FakeClock(start=clock.now())
    pairs = [
        (SlidingWindow(5, 0.5, clock=mine), store.sliding_window("w", 5, 0.5)),
        (TokenBucket(7.0, 3, clock=mine), store.token_bucket("b", 7.0, 3)),
    ]
    await _in_step(pairs, (mine, clock), 150)
    for memory, shared in pairs:
        assert memory.statistics() == await shared.statistics_async()


def test_a_restarted_primary_is_served_again_with_the_library_reloaded(cluster, admin):
    """A primary restarted mid-run (data and functions lost): calls recover, reloading.

    While it is down a call fails closed, or is granted by a store that fails open;
    once it is back, the next call reconnects, loads the library on that node only,
    once, and the limit answers as a fresh one in memory.
    """
    clock = FakeClock()
    owner = cluster.owner(admin.keyslot("{restarted}"))  # the slot of the key "restarted"

    async def main() -> None:
        lenient_store = AsyncRedisStore(
            url=cluster.url,
            cluster=True,
            timeout=5.0,
            prefix=f"c{uuid.uuid4().hex[:12]}:",
            clock=clock,
            fail_open=True,
        )
        async with fresh_store(cluster, clock) as store, lenient_store:
            bucket = store.token_bucket("restarted", "1/hour", 3)
            assert await bucket.try_acquire(3)
            assert not await bucket.try_acquire()
            assert cluster.owner(admin.keyslot(bucket.keys[0])) == owner
            lenient = lenient_store.token_bucket("restarted", "1/hour", 3)
            assert await lenient.try_acquire(3)
            assert not await lenient.try_acquire()  # so a grant below is by failing open
            cluster.stop_node(owner)
            with pytest.raises(StoreUnavailable, match=r"Redis Cluster at .* is unavailable"):
                await bucket.try_acquire()  # fails closed while its primary is down
            assert await lenient.try_acquire()  # or opens
            assert lenient_store._counts.fail_open == 1
            cluster.start_node(owner)
            cluster.wait_ok()
            assert not _has_library(cluster, owner)
            _reset_stats(cluster)
            # The old connections are gone: the client reconnects (reading the layout
            # again), finds the library missing, loads it there and sends the call again.
            assert await bucket.try_acquire(3)  # a server without persistence forgot the limit
            _loaded_once_on(cluster, owner, fcalls=1)
            assert _has_library(cluster, owner)
            mine = FakeClock(start=clock.now())
            memory = TokenBucket("1/hour", 3, clock=mine)
            assert memory.try_acquire(3)
            for step in (1.0, 1199.0, 1.0, 3600.0):
                clock.advance(step)
                mine.advance(step)
                assert await bucket.try_acquire() == memory.try_acquire()

    try:
        with _replaced_nodes_collected():
            run(main)
    finally:
        if owner not in cluster.processes:  # stopped by a run that failed meanwhile
            cluster.start_node(owner)
            cluster.wait_ok()


def _settle_slot(cluster: RedisCluster, slot: int, owner: int) -> None:
    """Give *slot* back to the primary of port *owner*, with no move left under way."""
    if cluster.owner(slot) != owner:
        cluster.move_slot(slot, owner)
    for port in cluster.ports:  # ends a move that stopped midway (else: nothing to end)
        client = cluster.node(port)
        try:
            client.execute_command("CLUSTER", "SETSLOT", slot, "STABLE")
        finally:
            client.close()
    cluster.wait_ok()


def test_calls_follow_a_moved_slot_and_stay_exact(cluster, admin):
    """A slot moved (ASK while its keys move, MOVED after): the same answers as memory.

    While the slot moves, a call whose keys all exist is served by the importing node
    after ``ASK`` (which loads the library there, once, as the node that answered); one
    with a key that does not exist (a bucket's unused log) is refused with ``TRYAGAIN``
    by Redis, and fails closed.  The keys move in a thread, as a resharding runs beside
    the application, while the calls are awaited on the event loop.
    """
    clock, mine = FakeClock(), FakeClock()
    name = f"moved-{uuid.uuid4().hex[:8]}"
    slot = admin.keyslot(f"{{{name}}}")
    source = cluster.owner(slot)
    target = next(port for port in cluster.ports if port != source)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with fresh_store(cluster, clock) as store:
            twins = [
                (
                    all_of(SlidingWindow(50, 5.0, clock=mine), SlidingWindow(80, 10.0, clock=mine)),
                    store.all_of(
                        store.sliding_window(f"{name}:a", 50, 5.0, group=name),
                        store.sliding_window(f"{name}:b", 80, 10.0, group=name),
                    ),
                ),
                (
                    TokenBucket(7.0, 3, clock=mine),
                    store.token_bucket(f"{name}:c", 7.0, 3, group=name),
                ),
            ]
            assert {admin.keyslot(key) for _, shared in twins for key in shared.keys} == {slot}

            async def midway() -> None:
                await _in_step(twins[:1], (mine, clock), 20)  # every key exists: after ASK
                with pytest.raises(StoreUnavailable):
                    await twins[1][1].try_acquire(0.7)

            await _in_step(twins, (mine, clock), 40)
            _flush_functions(cluster, target)  # the call that reaches it must load the library
            await asyncio.to_thread(
                cluster.move_slot,
                slot,
                target,
                midway=lambda: asyncio.run_coroutine_threadsafe(midway(), loop).result(60),
            )
            # Loaded where the calls went, and only there: 20 tries and 3 reservations.
            _loaded_once_on(cluster, target, fcalls=23)
            assert cluster.owner(slot) == target
            await _in_step(twins, (mine, clock), 40)  # answered after MOVED
            for memory, shared in twins:
                assert memory.statistics().granted == shared.statistics().granted

    try:
        with _replaced_nodes_collected():
            run(main)
    finally:
        _settle_slot(cluster, slot, source)


def test_a_user_refused_functions_runs_the_script_on_the_cluster(cluster):
    """Where ACLs refuse FCALL on every node, calls go by EVALSHA and answer the same.

    The first call finds out; no later one tries FCALL, or loads the library.
    """
    clock = FakeClock()

    async def main(url: str) -> None:
        prefix = f"c{uuid.uuid4().hex[:12]}:"
        store = AsyncRedisStore(url=url, cluster=True, timeout=5.0, prefix=prefix, clock=clock)
        async with store:
            assert "pw-limited" not in store.description
            assert await store.token_bucket("first", 1.0, 1).try_acquire()  # finds out, once
            _reset_stats(cluster)
            await _answers_as_memory(store, clock)
            calls = [_calls(cluster, port) for port in cluster.ports]
            assert sum(each.get("evalsha", 0) for each in calls) > 300
            # Not even refused: a command refused by an ACL is listed, with no calls.
            assert not any({"fcall", "function|load"} & set(each) for each in calls)

    with refused_functions(cluster) as url:
        run(lambda: main(url))
