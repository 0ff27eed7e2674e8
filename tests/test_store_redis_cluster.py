"""The Redis store on a real Redis Cluster of three primaries on loopback.

The store places each limit's keys in one slot by their hash tag and refuses
compositions that would span slots; every call is one ``FCALL`` on the primary of that
slot, which loads the function library when it lacks it (a new node, a restart, a slot
moved to a node that never saw a call).  With a `FakeClock`, every strategy and
composition answers exactly as in memory, as on one server (test_store_redis.py).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import re
import uuid
from typing import TYPE_CHECKING, Any

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.cluster import RedisCluster as ClusterClient
from redis_cluster import RedisCluster, composition_worker, serve_cluster
from test_store_redis import (
    TWINS,
    _answers_as_memory,
    _ulps_apart,
    _worst_window,
    drive,
    steps,
)

from ratekit import AllOf, SlidingWindow, TokenBucket, all_of
from ratekit.stores import AsyncRedisStore, StoreUnavailable
from ratekit.stores._redis import RedisStore, _member
from ratekit.testing import FakeClock

if TYPE_CHECKING:
    from collections.abc import Iterator

_made: list[RedisStore] = []


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisCluster]:
    """One real cluster of three primaries for the module (each test uses fresh keys)."""
    yield from serve_cluster()


@pytest.fixture(scope="module")
def admin(cluster: RedisCluster) -> Iterator[ClusterClient]:
    """A cluster client of the test's own, for slots and keys."""
    client = ClusterClient.from_url(cluster.url, socket_timeout=5, socket_connect_timeout=5)
    yield client
    client.close()


@pytest.fixture(autouse=True)
def close_stores() -> Iterator[None]:
    """Close the stores that the test made, and their clients."""
    yield
    while _made:
        _made.pop().close()


def fresh_store(cluster: RedisCluster, clock: object = None, **options: object) -> RedisStore:
    """A store of its own client on the cluster, under a prefix no other test uses."""
    prefix = f"t{uuid.uuid4().hex[:12]}:"
    store = RedisStore(
        url=cluster.url, cluster=True, timeout=5.0, prefix=prefix, clock=clock, **options
    )  # type: ignore[arg-type]
    _made.append(store)
    return store


def shared_store(client: ClusterClient, clock: object = None) -> RedisStore:
    """A store on the module's cluster client, under a prefix no other test uses."""
    store = RedisStore(client, prefix=f"t{uuid.uuid4().hex[:12]}:", clock=clock)  # type: ignore[arg-type]
    _made.append(store)
    return store


def _calls(cluster: RedisCluster, port: int) -> dict[str, int]:
    """Each command's successful calls on one node since its last CONFIG RESETSTAT."""
    client = cluster.node(port)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return {
        name.removeprefix("cmdstat_"): int(entry["calls"]) - int(entry.get("failed_calls", 0))
        for name, entry in stats.items()
        if name != "cmdstat_info"
    }


def _reset_stats(cluster: RedisCluster) -> None:
    for port in cluster.ports:
        client = cluster.node(port)
        try:
            client.config_resetstat()
        finally:
            client.close()


def _has_library(cluster: RedisCluster, port: int) -> bool:
    client = cluster.node(port)
    try:
        return bool(client.function_list())
    finally:
        client.close()


# -- the same answers as memory -------------------------------------------------------------


@pytest.mark.parametrize("name", list(TWINS))
@given(data=st.data(), workload=steps)
@settings(max_examples=max(5, settings().max_examples // 5))
def test_the_cluster_answers_exactly_as_memory(admin, name, data, workload):
    """Every strategy and composition gets the in-memory answers, as on one server."""
    make = data.draw(TWINS[name])
    clocks = FakeClock(), FakeClock()
    memory, _ = make(clocks[0], shared_store(admin, clocks[0]))
    _, shared = make(clocks[1], shared_store(admin, clocks[1]))
    whole = not isinstance(memory, AllOf)
    expected = drive(memory, clocks[0], workload, sleeps=whole)
    got = drive(shared, clocks[1], workload, sleeps=whole)
    if whole:
        assert got == expected
    else:  # a composition's wait may end a few units in the last place apart, as there
        assert _ulps_apart(got, expected, 4), (got, expected)


# -- keys and slots -------------------------------------------------------------------------


def one_slot_limiters(store: RedisStore | AsyncRedisStore, admin: ClusterClient) -> list[Any]:
    """A limiter of two limits and a composition of one group, their keys checked.

    Each one's keys (with their logs) are in one slot.  Returns the two limiters.
    """
    prefix = store.prefix
    api = store.limiter("api", "10/second, 1000/hour")
    assert api.keys == (
        f"{prefix}{{api}}:api@1s:sliding_window",
        f"{prefix}{{api}}:api@3600s:sliding_window",
    )
    tenant = store.token_bucket("tenant-42", 100.0, 100, group="tenant-42")
    user = store.sliding_window("user-7", 10, 1.0, group="tenant-42")
    both = store.all_of(tenant, user)  # type: ignore[arg-type]
    assert both.keys == (
        f"{prefix}{{tenant-42}}:token_bucket",
        f"{prefix}{{tenant-42}}:user-7:sliding_window",
    )
    for limiter in (api, both):
        keys = [*limiter.keys, *(f"{key}:log" for key in limiter.keys)]
        assert len({admin.keyslot(key) for key in keys}) == 1
    return [api, both]


def spread_limits(
    store: RedisStore | AsyncRedisStore, cluster: RedisCluster, admin: ClusterClient
) -> None:
    """Check that the keys of different limits have their slots on every primary."""
    owners = {
        cluster.owner(admin.keyslot(store.token_bucket(f"k{i}", 1.0, 1).keys[0])) for i in range(40)
    }
    assert owners == set(cluster.ports)


def test_a_compositions_keys_share_a_slot_and_limits_spread_over_the_primaries(cluster, admin):
    """One limiter's (or group's) keys are in one slot; different limits use every primary."""
    store = fresh_store(cluster)
    for limiter in one_slot_limiters(store, admin):
        assert limiter.try_acquire()
    spread_limits(store, cluster, admin)


def test_a_composition_across_groups_is_refused_naming_its_members(cluster):
    """all_of() over two groups says which members and what to do, before any call."""
    store = fresh_store(cluster)
    user = store.token_bucket("user-7", 1.0, 1)
    tenant = store.token_bucket("tenant-42", 1.0, 1)
    with pytest.raises(ValueError, match="different groups") as refused:
        store.all_of(user, tenant)
    message = str(refused.value)
    assert "key='user-7'" in message
    assert "key='tenant-42'" in message
    assert "group=" in message
    with pytest.raises(ValueError, match="different groups"):
        store.all_of(store.limiter("api", "1/s, 2/minute"), user)
    assert store.all_of(
        store.limiter("a", "1/s", group="g"), store.token_bucket("b", 1.0, 1, group="g")
    )


def test_a_group_names_the_limit_and_single_server_keys_are_unchanged():
    """Without a group, one server's keys are as ever; with one, the key is in its tag."""
    plain = _member("ratekit:", "tb", "api", (1.0, 1.0), "")
    assert (plain.state_key, plain.log_key) == (
        "ratekit:api:token_bucket",
        "ratekit:api:token_bucket:log",
    )
    assert (
        _member("p:", "sw", "api", (1.0, 1.0), "", tag="api").state_key == "p:{api}:sliding_window"
    )
    grouped = _member("p:", "fw", "user}7", (1.0, 1.0), "", tag="t}%")
    assert grouped.state_key == "p:{t%7D%25}:user}7:fixed_window"
    assert "group='t}%'" in repr(grouped)


def test_the_store_checks_its_cluster_arguments(cluster):
    """cluster= must match the client, a cluster's prefix has no brace, nodes must answer."""
    plain = redis.Redis(port=cluster.ports[0])
    try:
        with pytest.raises(ValueError, match="cluster=True does not match"):
            RedisStore(plain, cluster=True)
    finally:
        plain.close()
    with pytest.raises(ValueError, match="prefix must not contain"):
        RedisStore(url=cluster.url, cluster=True, prefix="{app}:")
    with pytest.raises(StoreUnavailable, match=re.escape("Redis Cluster at redis://127.0.0.1:1/0")):
        RedisStore(url="redis://127.0.0.1:1/0", cluster=True, timeout=0.5)
    store = fresh_store(cluster)
    assert store.cluster
    assert store.description.startswith("Redis Cluster at 127.0.0.1:")


# -- one round trip, on the slot's primary --------------------------------------------------


def test_one_fcall_per_call_on_the_primary_of_the_slot(cluster, admin):
    """Each call is one FCALL, on the node that serves its slot, counted by the store."""
    store = fresh_store(cluster)
    limit = store.limiter("k", "1000/second, 100000/hour")
    limit.statistics()  # loads the function library on that primary
    owner = cluster.owner(admin.keyslot(limit.keys[0]))
    counted = store._counts.round_trips
    _reset_stats(cluster)
    for _ in range(10):
        limit.try_acquire()
    limit.acquire()
    limit.reserve().cancel()
    calls = {port: _calls(cluster, port) for port in cluster.ports}
    assert calls[owner]["fcall"] == 13
    assert store._counts.round_trips - counted == 13
    for port in cluster.ports:
        assert not {"evalsha", "function|load", "ping"} & {n for n, c in calls[port].items() if c}
        if port != owner:
            assert calls[port].get("fcall", 0) == 0


# -- failover, restart, resharding ----------------------------------------------------------


def test_a_forgetful_primary_gets_the_library_again_and_only_it(cluster, admin):
    """FUNCTION FLUSH on one primary: the next call reloads there, once, and goes on."""
    clock = FakeClock()
    store = fresh_store(cluster, clock)
    bucket = store.token_bucket("flushed", "1/hour", 3)
    assert bucket.try_acquire(2)
    owner = cluster.owner(admin.keyslot(bucket.keys[0]))
    _flush_functions(cluster, owner)
    assert not bucket.try_acquire(2)  # the state is kept: only the code was lost
    assert bucket.try_acquire(1)
    _loaded_once_on(cluster, owner, fcalls=2)


def _flush_functions(cluster: RedisCluster, port: int) -> None:
    """FUNCTION FLUSH on the node of *port*, then reset every node's command counts."""
    client = cluster.node(port)
    try:
        client.function_flush()
    finally:
        client.close()
    _reset_stats(cluster)


def _loaded_once_on(cluster: RedisCluster, owner: int, *, fcalls: int) -> None:
    """Check that only *owner* loaded the library since the counts were reset, once."""
    calls = {port: _calls(cluster, port) for port in cluster.ports}
    assert calls[owner]["function|load"] == 1
    assert calls[owner]["fcall"] == fcalls
    assert all(calls[port].get("function|load", 0) == 0 for port in cluster.ports if port != owner)


def test_a_restarted_primary_is_served_again_with_the_library_reloaded(cluster, admin):
    """A primary restarted mid-run (data and functions lost): calls recover, reloading."""
    clock = FakeClock()
    store = fresh_store(cluster, clock)
    bucket = store.token_bucket("restarted", "1/hour", 3)
    assert bucket.try_acquire(3)
    assert not bucket.try_acquire()
    owner = cluster.owner(admin.keyslot(bucket.keys[0]))
    lenient = fresh_store(cluster, clock, fail_open=True).token_bucket("restarted", "1/hour", 3)
    cluster.stop_node(owner)
    with pytest.raises(StoreUnavailable, match=r"Redis Cluster at .* is unavailable"):
        bucket.try_acquire()  # fails closed while its primary is down
    assert lenient.try_acquire()  # or opens
    cluster.start_node(owner)
    cluster.wait_ok()
    assert not _has_library(cluster, owner)
    _reset_stats(cluster)
    # The old connection is gone: redis-py reconnects (and reads the layout again) within
    # the call, which then finds the library missing, loads it and is sent again.
    assert bucket.try_acquire(3)  # a server without persistence forgot the limit
    assert _has_library(cluster, owner)
    assert _calls(cluster, owner)["function|load"] == 1
    mine = FakeClock(start=clock.now())
    memory = TokenBucket("1/hour", 3, clock=mine)
    assert memory.try_acquire(3)
    for step in (1.0, 1199.0, 1.0, 3600.0):
        clock.advance(step)
        mine.advance(step)
        assert bucket.try_acquire() == memory.try_acquire()


def test_calls_follow_a_moved_slot_and_stay_exact(cluster, admin):
    """A slot moved (ASK while its keys move, MOVED after): the same answers as memory.

    While the slot moves, a call whose keys all exist is served by the importing node
    after ``ASK`` (which loads the library, as the node that answered); one with a key
    that does not exist (a bucket's unused log) is refused with ``TRYAGAIN`` by Redis,
    and fails closed.
    """
    clock, mine = FakeClock(), FakeClock()
    store = fresh_store(cluster, clock)
    name = f"moved-{uuid.uuid4().hex[:8]}"
    twins = [
        (
            all_of(SlidingWindow(50, 5.0, clock=mine), SlidingWindow(80, 10.0, clock=mine)),
            store.all_of(
                store.sliding_window(f"{name}:a", 50, 5.0, group=name),
                store.sliding_window(f"{name}:b", 80, 10.0, group=name),
            ),
        ),
        (TokenBucket(7.0, 3, clock=mine), store.token_bucket(f"{name}:c", 7.0, 3, group=name)),
    ]
    slot = admin.keyslot(twins[0][1].keys[0])
    source = cluster.owner(slot)
    target = next(port for port in cluster.ports if port != source)

    def steps_of(count: int, pairs: list) -> None:
        for index in range(count):
            for each in (mine, clock):
                each.advance(0.013 * (1 + index % 3))
            for memory, shared in pairs:
                assert memory.try_acquire(0.7) == shared.try_acquire(0.7)
                if index % 7 == 0:
                    assert memory.reserve(0.7).ready_at == shared.reserve(0.7).ready_at

    def midway() -> None:
        steps_of(20, twins[:1])  # every key of the windows exists: served after ASK
        with pytest.raises(StoreUnavailable):
            twins[1][1].try_acquire(0.7)

    steps_of(40, twins)
    client = cluster.node(target)
    try:
        client.function_flush()  # so that the call that reaches it must load the library
    finally:
        client.close()
    _reset_stats(cluster)
    cluster.move_slot(slot, target, midway=midway)
    assert _calls(cluster, target)["function|load"] == 1  # loaded where the call went
    assert cluster.owner(slot) == target
    steps_of(40, twins)  # answered after MOVED
    for memory, shared in twins:
        assert memory.statistics().granted == shared.statistics().granted


@contextlib.contextmanager
def refused_functions(cluster: RedisCluster) -> Iterator[str]:
    """A user whom ACLs refuse FCALL on every node (password ``pw-limited``): its URL.

    The user is deleted afterwards, from every node.
    """
    for port in cluster.ports:
        client = cluster.node(port)
        try:
            client.acl_setuser(
                "limited",
                enabled=True,
                passwords=["+pw-limited"],
                keys=["*"],
                categories=["+@all"],
                commands=["-fcall"],
            )
        finally:
            client.close()
    try:
        yield f"redis://limited:pw-limited@127.0.0.1:{cluster.ports[0]}/0"
    finally:
        for port in cluster.ports:
            client = cluster.node(port)
            try:
                client.acl_deluser("limited")
            finally:
                client.close()


def test_a_user_refused_functions_runs_the_script_on_the_cluster(cluster):
    """Where ACLs refuse FCALL on every node, calls go by EVALSHA and answer the same."""
    clock = FakeClock()
    with refused_functions(cluster) as url:
        store = RedisStore(
            url=url, cluster=True, timeout=5.0, prefix=f"t{uuid.uuid4().hex[:8]}:", clock=clock
        )
        _made.append(store)
        assert "pw-limited" not in store.description
        assert store.token_bucket("first", 1.0, 1).try_acquire()  # finds out, once
        _reset_stats(cluster)
        _answers_as_memory(store, clock)
        calls = [_calls(cluster, port) for port in cluster.ports]
        store.close()
    assert sum(c.get("evalsha", 0) for c in calls) > 300
    # Absent, not only at zero: INFO counts an FCALL that the ACL refused as rejected.
    assert not any("fcall" in c or "function|load" in c for c in calls)


# -- many processes -------------------------------------------------------------------------


def test_four_processes_share_a_composition_exactly(cluster, collect_garbage):
    """Four processes on one composition (100/s and 120/2s): never over, every grant made."""
    limits = [(100.0, 1.0), (120.0, 2.0)]
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(4)
    results = context.Queue()
    group = f"share-{uuid.uuid4().hex}"
    children = [
        context.Process(
            target=composition_worker,
            args=(cluster.url, group, limits, 2.5, mode, barrier, results),
        )
        for mode in ["reserve", "try"] * 2
    ]
    for child in children:
        child.start()
    reports = [results.get(timeout=90) for _ in children]
    for child in children:
        child.join(timeout=30)
        assert child.exitcode == 0
    grants = [grant for granted in reports for grant in granted]
    for limit, window in limits:
        worst, margin = _worst_window(grants, window)
        assert margin < 0.5
        assert worst <= limit
    first = min(instant for instant, _ in grants)
    assert sum(1 for instant, _ in grants if instant < first + 2.0) >= 0.98 * 120
