"""The Redis store against a real ``redis-server`` on loopback.

With a `FakeClock` injected, every Redis-backed limiter must answer exactly as the
in-memory strategy of the same parameters does (the script ports them operation for
operation), so the differential properties compare the two on the same workloads, and
the invariant machines of test_invariants.py run again on Redis.  With the server's
time, real processes share one limit, also when their clocks are seconds apart.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import math
import multiprocessing
import re
import struct
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import attrs
import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st
from redis._parsers.base import BaseParser
from redis_server import (
    PASSWORD,
    REFUSALS,
    FailedSave,
    NotEnoughReplicas,
    OutOfMemory,
    ReadOnlyReplica,
    RedisServer,
    Refusal,
    WritesDenied,
    serve,
    share_worker,
)
from specs import (
    Built,
    Spec,
    fixed_window_holds,
    leaky_bucket_holds,
    sliding_window_holds,
    token_bucket_holds,
    windows,
)
from strategies import advances, capacities, rates
from test_invariants import LimiterMachine

import ratekit
from ratekit import (
    AcquireCancelled,
    AcquireTimeout,
    AllOf,
    CostTooLarge,
    FixedWindow,
    LeakyBucket,
    LimiterStatistics,
    QueueFull,
    SlidingWindow,
    TokenBucket,
    all_of,
)
from ratekit.stores import StoreUnavailable
from ratekit.stores import _redis as redis_store_module
from ratekit.stores._redis import EXPIRY_MARGIN, RedisLimiter, RedisStore, _refusal
from ratekit.stores._redis_script import forms
from ratekit.testing import FakeClock
from ratekit.typing import Limiter

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

# Multiprocessing locks are made here: their finalizers run between tests (conftest).
pytestmark = pytest.mark.usefixtures("collect_garbage")

_server: RedisServer | None = None
_client: redis.Redis | None = None
_made: list[RedisStore] = []


@pytest.fixture(scope="module", autouse=True)
def redis_url() -> Iterator[str]:
    """One real redis-server for the module (each test uses fresh keys)."""
    global _server, _client  # noqa: PLW0603 - the machines below cannot take fixtures
    for server in serve():
        _server = server
        _client = redis.Redis.from_url(server.url, socket_timeout=5, socket_connect_timeout=5)
        yield server.url
        _client.close()
        _server = _client = None


@pytest.fixture
def own_server() -> Iterator[RedisServer]:
    """A server of the test's own, which it may stop, pause and restart."""
    yield from serve()


@pytest.fixture
def open_store() -> Iterator[Callable[..., RedisStore]]:
    """Open stores from URLs, and close them (and their sockets) after the test."""
    stores: list[RedisStore] = []

    def make(**options: object) -> RedisStore:
        stores.append(RedisStore(**options))  # type: ignore[arg-type]
        return stores[-1]

    yield make
    for store in stores:
        store.close()


@pytest.fixture(autouse=True)
def close_fresh_stores() -> Iterator[None]:
    """Close the test's `fresh_store` stores after it, so that none leaves a thread behind."""
    yield
    while _made:
        _made.pop().close()


def fresh_store(clock: object = None, **options: object) -> RedisStore:
    """A store on the module's server, under a prefix no other test uses."""
    assert _client is not None
    _made.append(RedisStore(_client, prefix=f"t{uuid.uuid4().hex[:12]}:", clock=clock, **options))  # type: ignore[arg-type]
    return _made[-1]


def scaled(divisor: int) -> settings:
    """The loaded profile with fewer examples: each step is a round trip."""
    return settings(max_examples=max(5, settings().max_examples // divisor))


# -- twins: the same limit in memory and in Redis ------------------------------------------


def _token(rate, capacity):
    return lambda clock, store: (
        TokenBucket(rate, capacity, clock=clock),
        store.token_bucket("k", rate, capacity),
    )


def _leaky(rate, capacity):
    return lambda clock, store: (
        LeakyBucket(rate, capacity, clock=clock),
        store.leaky_bucket("k", rate, capacity),
    )


def _sliding(limit, window):
    return lambda clock, store: (
        SlidingWindow(limit, window, clock=clock),
        store.sliding_window("k", limit, window),
    )


def _fixed(limit, window):
    return lambda clock, store: (
        FixedWindow(limit, window, clock=clock),
        store.fixed_window("k", limit, window),
    )


def _pair(first, second):
    def build(clock, store):
        a, b = first(clock, store), second(clock, store)
        return all_of(a[0], b[0]), store.all_of(a[1], b[1])

    return build


def _text(strategy):
    def make(per_second, per_window, window):
        text = f"{per_second}/second, {per_window}/{window}s"
        return lambda clock, store: (
            ratekit.limiter(text, strategy=strategy, clock=clock),
            store.limiter("k", text, strategy=strategy),
        )

    return st.builds(make, st.integers(1, 20), st.integers(1, 200), st.integers(2, 120))


token_twins = st.builds(_token, rates, capacities)
leaky_twins = st.builds(_leaky, rates, capacities)
sliding_twins = st.builds(_sliding, capacities, windows)
fixed_twins = st.builds(_fixed, capacities, windows)

TWINS = {
    "TokenBucket": token_twins,
    "LeakyBucket": leaky_twins,
    "SlidingWindow": sliding_twins,
    "FixedWindow": fixed_twins,
    "all_of(TokenBucket, SlidingWindow)": st.builds(_pair, token_twins, sliding_twins),
    "all_of(LeakyBucket, FixedWindow)": st.builds(_pair, leaky_twins, fixed_twins),
    "limiter(sliding)": _text("sliding"),
    "limiter(fixed)": _text("fixed"),
    "limiter(token)": _text("token"),
}

fractions = st.floats(min_value=0.01, max_value=1.0)
waits = st.none() | advances
steps = st.lists(
    st.one_of(
        st.tuples(st.just("advance"), advances),
        st.tuples(st.just("try"), fractions),
        st.tuples(st.just("reserve"), fractions, waits),
        st.tuples(st.just("cancel"), st.integers(0, 20)),
        st.tuples(st.just("acquire"), fractions, waits),
        st.tuples(st.just("statistics")),
    ),
    max_size=40,
)


def drive(limiter, clock: FakeClock, workload, *, sleeps: bool = True, after=None) -> list[object]:
    """Run *workload* on *limiter*; return every answer, with the clock readings.

    With *sleeps* false the answers leave out how each wait was cut into sleeps (not
    when it ended): an in-memory composition sleeps in two steps where a wait would
    book a member far ahead of its own need, which the Redis script does not do.
    *after*, if given, is called after each step.
    """
    answers: list[object] = []
    reservations = []
    capacity = limiter.capacity
    for step in workload:
        kind = step[0]
        if kind == "advance":
            clock.advance(step[1])
        elif kind == "try":
            answers.append(limiter.try_acquire(step[1] * capacity))
        elif kind == "reserve":
            reservation = limiter.reserve(step[1] * capacity, max_wait=step[2])
            reservations.append(reservation)
            answers.append((reservation.ok, reservation.delay, reservation.ready_at))
        elif kind == "cancel":
            if reservations:
                answers.append(reservations[step[1] % len(reservations)].cancel())
        elif kind == "acquire":
            try:
                limiter.acquire(step[1] * capacity, timeout=step[2])
                answers.append(("granted", clock.now()))
            except AcquireTimeout as error:
                answers.append((type(error).__name__, error.retry_after, clock.now()))
        else:
            answers.append(limiter.statistics())
        if after is not None:
            after()
    answers.append(limiter.statistics())
    answers.append(clock.sleeps if sleeps else clock.now())
    return answers


def _draw_twins(data, name: str):
    """The twins *name* draws, in memory and in Redis, and their FakeClocks."""
    make = data.draw(TWINS[name])
    clocks = FakeClock(), FakeClock()
    memory, _ = make(clocks[0], fresh_store(clocks[0]))
    _, shared = make(clocks[1], fresh_store(clocks[1]))
    return memory, shared, clocks


@pytest.mark.parametrize("name", list(TWINS))
@given(data=st.data(), workload=steps)
@scaled(3)
def test_redis_answers_exactly_as_memory(name, data, workload):
    """The same workload gets the same answers, to the last bit, in memory and in Redis.

    To the last bit but for the clock a composition's wait leaves: see below.
    """
    memory, shared, clocks = _draw_twins(data, name)
    whole = not isinstance(memory, AllOf)
    expected = drive(memory, clocks[0], workload, sleeps=whole)
    got = drive(shared, clocks[1], workload, sleeps=whole)
    if whole:
        assert got == expected
    else:
        # A composition that sleeps in two steps where Redis sleeps once ends its wait
        # at the same instant, reached by a different sum of floats: the clock may read
        # one or two units in the last place apart, and so may what is measured from it.
        # And while it sleeps unbooked, a sliding window member may empty and restart
        # its running totals, where Redis, which booked at once, adds to them: a level
        # read later is the same difference of other totals (see `_ulps_apart`).
        assert _ulps_apart(got, expected, 4), (got, expected)


def test_a_deferred_wait_decides_as_in_memory_and_reads_levels_within_rounding():
    """A composition's deferred wait: the same grants at the same instants, close levels.

    In memory the composition sleeps before it books (the 1/second member would be held
    a whole slot ahead), so that member's window is empty when it books and its running
    totals restart at zero; Redis books at once, while the first grant still counts, and
    adds to them.  The level read afterwards is then 1 - 0.99999 in one and
    (1 + 0.99999) - 1 in the other: 9.99999999995449e-06 and 1.0000000000065512e-05,
    one unit in the last place of the totals apart.
    """
    text = "1/second, 1/2s"
    workload = [("try", 1.0), ("acquire", 0.99999, None), ("statistics",)]
    clocks = FakeClock(), FakeClock()
    memory = ratekit.limiter(text, strategy="sliding", clock=clocks[0])
    shared = fresh_store(clocks[1]).limiter("k", text, strategy="sliding")
    expected = drive(memory, clocks[0], workload, sleeps=False)
    got = drive(shared, clocks[1], workload, sleeps=False)
    assert got[:2] == expected[:2]  # the same decisions, at the same instants
    assert clocks[0].now() == clocks[1].now() == 2.0
    assert got[2] != expected[2]  # the levels differ in the last bits ...
    assert _ulps_apart(got, expected, 4), (got, expected)  # ... of the totals, no more
    assert clocks[0].sleeps != clocks[1].sleeps  # the deferred wait, in memory only


def _memory_log(window: SlidingWindow) -> tuple[object, ...]:
    """An in-memory sliding window's state: head, base, total, epoch, version, log."""
    head = window._head
    entries = list(zip(window._times[head:], window._cums[head:], strict=True))
    return (head, window._base, window._total, window._epoch, window._version, entries)


def _redis_log(limiter: RedisLimiter) -> tuple[object, ...] | None:
    """The same of a sliding window in Redis, read from its state and its log (None: gone)."""
    assert _client is not None
    state = _client.get(limiter.keys[0])
    if state is None:
        return None
    head, base, total, epoch, version, n, dead = struct.unpack("<7d", state[:56])
    items = _client.lrange(f"{limiter.keys[0]}:log", 0, -1)
    assert len(items) == dead + n
    assert dead < 32
    entries = [struct.unpack("<2d", item) for item in items[int(dead) :]]
    return (int(head), base, total, int(epoch), int(version), entries)


#: Many small calls, a little apart: logs that grow, expire, are booked ahead and cancelled.
busy_steps = st.lists(
    st.one_of(
        st.tuples(st.just("advance"), st.floats(min_value=0.0, max_value=0.6)),
        st.tuples(st.just("try"), st.floats(min_value=0.01, max_value=0.35)),
        st.tuples(st.just("try"), st.floats(min_value=0.01, max_value=0.35)),
        st.tuples(st.just("reserve"), st.floats(min_value=0.01, max_value=0.35), waits),
        st.tuples(st.just("cancel"), st.integers(0, 20)),
    ),
    min_size=10,
    max_size=80,
)


@given(
    workload=busy_steps,
    limit=st.sampled_from([1, 3, 5]),
    window=st.sampled_from([0.5, 1.0, 7.0]),
)
@scaled(2)
def test_a_sliding_windows_state_in_redis_is_the_one_in_memory(workload, limit, window):
    """After every call, Redis holds the numbers and the log that memory holds, to the bit.

    Or, once back at rest, nothing: a key may expire then (the log in memory is empty).
    """
    clocks = FakeClock(), FakeClock()
    memory = SlidingWindow(limit, window, clock=clocks[0])
    shared = fresh_store(clocks[1]).sliding_window("w", limit, window)
    states: list[tuple[object, ...]] = []
    drive(memory, clocks[0], workload, after=lambda: states.append(_memory_log(memory)))
    redis_states: list[tuple[object, ...] | None] = []
    drive(shared, clocks[1], workload, after=lambda: redis_states.append(_redis_log(shared)))
    assert len(states) == len(redis_states)
    for expected, got in zip(states, redis_states, strict=True):
        if got is None:
            assert expected[-1] == []
        else:
            assert got == expected


#: The Lua code as the previous version shipped it, which kept states in hashes as text.
_PREVIOUS = forms((Path(__file__).parent / "ratekit_previous.lua").read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", list(TWINS))
@given(data=st.data(), before=steps, after=steps)
@scaled(6)
def test_the_states_the_previous_script_wrote_answer_exactly_as_memory(name, data, before, after):
    """An upgrade in use: calls by the previous script, then by this one, on one limit.

    Every answer is the in-memory one: the state the previous script left (hashes of
    numbers as text, withdrawals, logs) is read, and then written in the current form.
    """
    memory, shared, clocks = _draw_twins(data, name)
    whole = not isinstance(memory, AllOf)
    expected = drive(memory, clocks[0], before, sleeps=whole)
    expected += drive(memory, clocks[0], after, sleeps=whole)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(redis_store_module, "FUNCTION", _PREVIOUS[0])
        patch.setattr(redis_store_module, "LIBRARY", _PREVIOUS[1])
        got = drive(shared, clocks[1], before, sleeps=whole)
    assert _client is not None
    assert {_client.type(key) for key in shared.keys} <= {b"hash", b"none"}  # as it wrote
    got += drive(shared, clocks[1], after, sleeps=whole)
    if whole:
        assert got == expected
    else:  # as in test_redis_answers_exactly_as_memory
        assert _ulps_apart(got, expected, 4), (got, expected)


def _ulps_apart(first: object, second: object, ulps: int, scale: float = 1.0) -> bool:
    """Whether two answers are equal, but for floats at most *ulps* units apart.

    Units in the last place of the larger float, or of *scale* if both are smaller: a
    value near zero is often the difference of two larger values (a level, as the limit
    less the running totals), and carries their rounding, not its own.  Within
    statistics the scale is the capacity, of the order of those totals.
    """
    if isinstance(first, float) and isinstance(second, float):
        if math.isinf(first) or math.isinf(second) or first == second:
            return first == second
        return abs(first - second) <= ulps * math.ulp(max(abs(first), abs(second), scale))
    if isinstance(first, LimiterStatistics) and isinstance(second, LimiterStatistics):
        scale = max([scale] + [c for c in (first.capacity, second.capacity) if math.isfinite(c)])
    if attrs.has(type(first)) and type(first) is type(second):
        first, second = attrs.astuple(first, recurse=False), attrs.astuple(second, recurse=False)
    if isinstance(first, (list, tuple)) and isinstance(second, (list, tuple)):
        return len(first) == len(second) and all(
            _ulps_apart(a, b, ulps, scale) for a, b in zip(first, second, strict=True)
        )
    return first == second


@pytest.mark.parametrize(
    ("limit", "window", "cost", "step"),
    [(100, 1.0, 1.0, 0.013), (50, 0.5, 0.7, 0.0031), (3, 10.0, 0.1, 0.05)],
)
def test_a_long_sliding_log_is_compacted_exactly_as_in_memory(limit, window, cost, step):
    """Hundreds of grants (the log expires, compacts and rebases) answer as in memory.

    And the log in Redis holds the entries in the window, and fewer than 32 that have
    left it: those are removed 32 at a time.
    """
    assert _client is not None
    clocks = FakeClock(), FakeClock()
    memory = SlidingWindow(limit, window, clock=clocks[0])
    shared = fresh_store(clocks[1]).sliding_window("log", limit, window)
    instants: set[float] = set()  # of the grants and bookings: the log's entries
    left = []  # after each step: how many entries that left the window the log holds
    for index in range(600):
        for clock in clocks:
            clock.advance(step * (1 + index % 3))
        decision = shared.try_acquire(cost)
        assert memory.try_acquire(cost) == decision
        if decision.granted:
            instants.add(clocks[1].now())
        if index % 7 == 0:
            reservation = shared.reserve(cost)
            assert memory.reserve(cost).ready_at == reservation.ready_at
            instants.add(reservation.ready_at)
        in_window = sum(1 for instant in instants if instant > clocks[1].now() - window)
        left.append(_client.llen(f"{shared.keys[0]}:log") - in_window)
        assert _redis_log(shared) == _memory_log(memory)
    assert memory.statistics() == shared.statistics()
    assert min(left) >= 0
    assert max(left) == 31


def test_a_log_of_thousands_expires_and_compacts_in_one_call_exactly_as_in_memory():
    """2,600 entries, then 1,400 leaving at once: one call rebases the 1,200 left."""
    assert _client is not None
    clocks = FakeClock(), FakeClock()
    memory = SlidingWindow(5000, 1.0, clock=clocks[0])
    shared = fresh_store(clocks[1]).sliding_window("big", 5000, 1.0)
    for _ in range(2600):
        for clock in clocks:
            clock.advance(0.0003)
        assert memory.try_acquire(1) == shared.try_acquire(1)
    for clock in clocks:
        clock.advance(1.0 - 0.0003 * 1200 + 0.00015)  # the first 1,400 leave the window
    assert memory.try_acquire(1) == shared.try_acquire(1)
    assert memory._head == 0  # rebased, in memory ...
    assert _redis_log(shared) == _memory_log(memory)  # ... and in Redis, the same
    assert _client.llen(f"{shared.keys[0]}:log") == 1201


# -- the invariant machines of the strategies, on Redis ------------------------------------


def _redis_spec(name: str, twins: st.SearchStrategy, holds: Callable) -> Spec:
    """A `Spec` whose builder makes the Redis twin, checked by the guarantee *holds*."""

    def builder(make, check):
        def build(clock: FakeClock) -> Built:
            memory, shared = make(clock, fresh_store(clock))
            bound = getattr(memory, "_max_delay", math.inf)
            return Built(shared, check(memory), queue_bound=bound)  # type: ignore[arg-type]

        return build

    return Spec(f"Redis {name}", st.builds(builder, twins, st.just(holds)))


def _guarantee(memory) -> Callable[[list[tuple[float, float]]], bool]:
    """The guarantee of an in-memory limiter's parameters, as specs.py states it."""
    members = getattr(memory, "members", (memory,))
    checks = []
    for member in members:
        if isinstance(member, TokenBucket):
            checks.append(lambda g, m=member: token_bucket_holds(g, m.rate.per_second, m.capacity))
        elif isinstance(member, LeakyBucket):
            checks.append(lambda g, m=member: leaky_bucket_holds(g, m.rate.per_second))
        elif isinstance(member, SlidingWindow):
            checks.append(lambda g, m=member: sliding_window_holds(g, m.limit, m.window))
        else:
            checks.append(lambda g, m=member: fixed_window_holds(g, m.limit, m.window))
    return lambda grants: all(check(grants) for check in checks)


for _name, _twins in TWINS.items():
    _spec = _redis_spec(_name, _twins, _guarantee)
    _class = re.sub(r"[^A-Za-z]", "", _name.title())
    _machine = type(f"Redis{_class}Machine", (LimiterMachine,), {"spec": _spec})
    _case = _machine.TestCase
    _case.settings = settings(
        max_examples=max(5, settings().max_examples // 6),
        stateful_step_count=min(30, settings().stateful_step_count),
    )
    _case.__name__ = _case.__qualname__ = f"TestRedis{_class}"
    globals()[_case.__name__] = _case
del _name, _twins, _spec, _class, _machine, _case


# -- the Limiter protocol, blocking, cancelling, statistics ----------------------------------


def test_a_redis_limiter_is_a_limiter_with_the_same_argument_errors():
    """It satisfies the protocol, and refuses bad arguments as the strategies do."""
    store = fresh_store(FakeClock())
    bucket = store.token_bucket("k", 2.0, 3)
    assert isinstance(bucket, Limiter)
    memory = TokenBucket(2.0, 3)
    for cost in (0, -1, math.nan, math.inf, 4):
        with pytest.raises((ValueError, TypeError)) as expected:
            memory.try_acquire(cost)
        with pytest.raises(type(expected.value), match=re.escape(str(expected.value))):
            bucket.try_acquire(cost)
    with pytest.raises(CostTooLarge):
        bucket.reserve(4)
    with pytest.raises(ValueError, match="capacity must be a positive"):
        store.token_bucket("k", 2.0, 0)
    with pytest.raises(ValueError, match="window must be a positive"):
        store.sliding_window("k", 3, -1)
    with pytest.raises(ValueError, match="rate"):
        store.leaky_bucket("k", "fast", 1)
    with pytest.raises(ValueError, match="key must not be empty"):
        store.fixed_window("", 1, 1)
    with pytest.raises(ValueError, match="timeout must be a non-negative"):
        bucket.acquire(timeout=-1)
    with pytest.raises(ValueError, match="strategy must be one of"):
        store.limiter("k", "1/s", strategy="leaky")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be a limiter of this store"):
        store.all_of(bucket, TokenBucket(1, 1))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="different parameters"):
        store.all_of(bucket, store.token_bucket("k", 1.0, 3))
    with pytest.raises(ValueError, match="exactly one of client or url"):
        RedisStore()


def test_acquire_sleeps_once_for_exactly_the_delay_and_times_out_at_once():
    """A blocking acquire sleeps the returned delay once; a too-long wait raises at once."""
    clock = FakeClock()
    bucket = fresh_store(clock).token_bucket("k", "90/minute", 3)
    for _ in range(4):
        bucket.acquire()
    assert clock.sleeps == [2 / 3]
    assert clock.now() == 2 / 3
    with pytest.raises(AcquireTimeout) as error:
        bucket.acquire(cost=3, timeout=1.0)
    assert error.value.retry_after == 2.0
    assert clock.sleeps == [2 / 3]  # nothing slept
    assert bucket.statistics().level == 0.0  # nothing consumed
    drip = fresh_store(FakeClock(start=60.0)).leaky_bucket("k", "2/s", 2)
    assert [drip.reserve().delay for _ in range(3)] == [0.0, 0.5, 1.0]
    with pytest.raises(QueueFull):
        drip.acquire()


class _LateCancel:
    """A cancel event that is set once the wait has been booked (after the first check)."""

    def __init__(self) -> None:
        self.checks = 0

    def is_set(self) -> bool:
        self.checks += 1
        return self.checks > 1

    def wait(self, timeout: float | None = None) -> bool:
        return self.is_set()


def test_a_cancelled_wait_gives_its_booking_back():
    """Cancelled before or during its wait, an acquire raises and leaves no trace."""
    clock = FakeClock()
    window = fresh_store(clock).sliding_window("k", 2, 10.0)
    window.acquire(2)
    before = window.try_acquire().retry_after
    with pytest.raises(AcquireCancelled):
        window.acquire(cancel=_LateCancel())
    assert clock.sleeps == []
    assert window.try_acquire().retry_after == before  # the booking was withdrawn
    done = threading.Event()
    done.set()
    with pytest.raises(AcquireCancelled):
        window.acquire(cancel=done)
    stats = window.statistics()
    assert (stats.granted, stats.cancelled, stats.waiting) == (1, 2, 0)


def test_a_real_wait_is_woken_by_its_cancel_event_and_gives_back():
    """On the real clock, a thread blocked for seconds is woken at once by its event."""
    store = fresh_store()
    window = store.sliding_window("k", 1, 30.0)
    assert window.try_acquire()
    cancel = threading.Event()
    errors: list[BaseException] = []

    def wait() -> None:
        try:
            window.acquire(cancel=cancel, timeout=60)
        except AcquireCancelled as error:
            errors.append(error)

    thread = threading.Thread(target=wait)
    thread.start()
    deadline = time.monotonic() + 10
    while window.statistics().waiting == 0:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    cancel.set()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert len(errors) == 1
    assert window.statistics().cancelled == 1
    assert window.statistics().level == 0.0  # only the first grant counts


def test_reserve_and_cancel_withdraw_from_every_member():
    """A reservation on a composition books every member; cancelling restores them all."""
    clocks = FakeClock(), FakeClock()
    store = fresh_store(clocks[1])
    shared = store.all_of(store.token_bucket("a", 1.0, 2), store.sliding_window("b", 5, 60.0))
    memory = all_of(TokenBucket(1.0, 2, clock=clocks[0]), SlidingWindow(5, 60.0, clock=clocks[0]))
    answers = []
    for both in (memory, shared):
        assert both.try_acquire(2)
        first, second = both.reserve(), both.reserve()
        assert (first.delay, second.delay) == (1.0, 2.0)
        assert first.cancel()  # withdrawn, given back once the later booking goes too
        assert second.cancel()
        assert not second.cancel()
        answers.append((both.reserve().delay, both.statistics()))
    assert answers[0] == answers[1]
    assert answers[1][0] == 1.0  # both bookings were given back
    assert answers[1][1].cancelled == 2


def test_acquire_async_waits_and_is_cancelled_by_cancelling_the_task():
    """The asyncio twin sleeps the delay; a cancelled task gives its booking back."""
    clock = FakeClock()
    bucket = fresh_store(clock).token_bucket("k", 2.0, 1)

    async def main() -> None:
        await bucket.acquire_async()
        await bucket.acquire_async()
        assert clock.sleeps == [0.5]
        with pytest.raises(AcquireTimeout):
            await bucket.acquire_async(timeout=0.1)

    asyncio.run(main())
    real = fresh_store().token_bucket("k", 0.05, 1)  # one per 20 s

    async def cancelled() -> None:
        assert real.try_acquire()
        task = asyncio.create_task(real.acquire_async())
        while real.statistics().waiting == 0:  # noqa: ASYNC110 - booked in a worker thread
            await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(asyncio.wait_for(cancelled(), 20))
    stats = real.statistics()
    assert (stats.cancelled, stats.waiting, stats.granted) == (1, 0, 1)
    assert stats.level > -0.5  # the booking (level -1) was given back


class _HeldClock:
    """A `FakeClock` whose asyncio sleeps end only when cancelled, and that notes its readers.

    `asleep` is set once a task sleeps on it, and `readers` names every thread that read
    the time (the store reads it for each round trip).
    """

    def __init__(self) -> None:
        self.fake = FakeClock()
        self.readers: set[str] = set()
        self.asleep = asyncio.Event()

    def now(self) -> float:
        self.readers.add(threading.current_thread().name)
        return self.fake.now()

    def sleep(self, seconds: float, cancel: threading.Event | None = None) -> bool:
        return self.fake.sleep(seconds, cancel)

    async def sleep_async(self, seconds: float) -> None:
        self.asleep.set()
        await asyncio.get_running_loop().create_future()  # until the task is cancelled


class _RefusingExecutor(ThreadPoolExecutor):
    """An executor that notes every job handed to it, and refuses it."""

    def __init__(self) -> None:
        super().__init__(max_workers=1)
        self.jobs: list[object] = []

    def submit(self, fn: Callable[..., object], /, *args: object, **kwargs: object) -> NoReturn:
        self.jobs.append(fn)
        raise AssertionError(f"the event loop's default executor was handed {fn!r}")


def _store_threads(before: set[threading.Thread]) -> list[threading.Thread]:
    """The live threads named as the store names its own, other than *before*."""
    return [
        thread
        for thread in threading.enumerate()
        if thread.name.startswith("ratekit-redis") and thread not in before
    ]


def test_acquire_async_runs_its_round_trips_on_the_stores_own_threads():
    """Booking and give-back run on "ratekit-redis" threads, not the loop's default executor."""
    clock = _HeldClock()
    bucket = fresh_store(clock).token_bucket("k", 1.0, 1)
    refusing = _RefusingExecutor()

    async def main() -> None:
        asyncio.get_running_loop().set_default_executor(refusing)
        await bucket.acquire_async()  # granted at once: one round trip
        task = asyncio.create_task(bucket.acquire_async())  # booked, then asleep
        await clock.asleep.wait()
        task.cancel()  # given back: a second round trip
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert refusing.jobs == []
    elsewhere = clock.readers - {threading.current_thread().name}
    assert elsewhere  # the round trips read the time in other threads...
    assert all(name.startswith("ratekit-redis_") for name in elsewhere)  # ...the store's
    stats = bucket.statistics()
    assert (stats.granted, stats.cancelled, stats.waiting) == (1, 1, 0)


def test_a_task_cancelled_twice_leaves_nothing_waiting_and_gives_its_booking_back():
    """Cancelled asleep, then again while it gives back: nothing waits, the slot is free."""
    clock = _HeldClock()
    store = fresh_store(clock)
    bucket = store.token_bucket("k", 1.0, 1)

    async def main() -> None:
        assert bucket.try_acquire()
        task = asyncio.create_task(bucket.acquire_async())  # booked for 1.0, asleep
        await clock.asleep.wait()
        task.cancel()  # it wakes, hands the give-back to a thread and awaits the answer...
        await asyncio.sleep(0)
        assert task.cancel()  # ...which cannot reach the loop before this: still running
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    store.close()  # waits for the give-back still under way
    stats = bucket.statistics()
    assert (stats.granted, stats.cancelled, stats.waiting) == (1, 1, 0)
    clock.fake.advance(1.0)
    assert bucket.try_acquire()  # the slot booked for 1.0 was given back


def test_a_task_cancelled_as_its_booking_arrives_ends_with_it_given_back():
    """Cancelled once booked but before it has seen it: it ends with the booking given back."""
    clock = _HeldClock()
    bucket = fresh_store(clock).token_bucket("k", 1.0, 1)

    async def main() -> None:
        assert bucket.try_acquire()
        task = asyncio.create_task(bucket.acquire_async())
        await asyncio.sleep(0)  # it hands its booking to a store thread
        deadline = time.monotonic() + 10
        while bucket.statistics().waiting == 0:  # blocks the loop: the task cannot see it
            assert time.monotonic() < deadline
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    stats = bucket.statistics()
    assert (stats.granted, stats.cancelled, stats.waiting) == (1, 1, 0)
    assert not clock.asleep.is_set()  # it never slept
    clock.fake.advance(1.0)
    assert bucket.try_acquire()  # the slot booked for 1.0 was given back


def test_tasks_cancelled_while_booking_leave_nothing_booked(own_server, open_store):
    """Tasks cancelled with their bookings queued or in flight end with nothing booked."""
    store = open_store(url=own_server.url, timeout=5.0)
    bucket = store.token_bucket("k", 0.05, 1)  # one per 20 s
    assert bucket.try_acquire()
    own_server.pause()  # the first bookings hang in the store's threads, the others queue

    async def main() -> None:
        tasks = [asyncio.create_task(bucket.acquire_async()) for _ in range(6)]
        await asyncio.sleep(0)  # each has handed its booking over
        for task in tasks:
            task.cancel()
        await asyncio.sleep(0)  # each has taken its cancellation in
        own_server.resume()
        ends = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(end, asyncio.CancelledError) for end in ends)

    asyncio.run(main())
    stats = bucket.statistics()
    assert (stats.granted, stats.cancelled, stats.waiting) == (1, 6, 0)
    assert stats.level > -0.5  # no booking (-1 each) was kept


def test_close_stops_the_stores_threads():
    """After close(), no thread the store started is alive; a later wait starts them again."""
    before = set(threading.enumerate())
    store = fresh_store(FakeClock())
    bucket = store.token_bucket("k", 10.0, 1)

    async def main() -> None:
        await bucket.acquire_async()
        await bucket.acquire_async()  # waits 0.1 on the fake clock

    asyncio.run(main())
    started = _store_threads(before)
    assert started
    store.close()
    assert not any(thread.is_alive() for thread in started)
    assert _store_threads(before) == []
    asyncio.run(main())
    assert _store_threads(before)
    store.close()
    assert _store_threads(before) == []
    assert bucket.statistics().granted == 4


def test_statistics_count_this_process_and_read_the_level_from_the_store():
    """Counters are local; the level is the store's, so it shows other processes' use."""
    clock = FakeClock()
    store = fresh_store(clock)
    mine, theirs = store.token_bucket("k", 1.0, 5), store.token_bucket("k", 1.0, 5)
    assert mine.try_acquire(2)
    assert theirs.try_acquire(3)
    assert not mine.try_acquire()
    stats = mine.statistics()
    assert (stats.granted, stats.denied, stats.level, stats.capacity) == (1, 1, 0.0, 5.0)


def test_one_round_trip_per_call():
    """Every call is one FCALL: nothing else crosses the network."""
    assert _client is not None
    store = fresh_store()
    limit = store.limiter("k", "1000/second, 100000/hour")
    limit.statistics()  # loads the function library
    _client.config_resetstat()
    for _ in range(10):
        limit.try_acquire()
    limit.acquire()
    limit.reserve().cancel()
    commands = _client.info("commandstats")
    assert commands["cmdstat_fcall"]["calls"] == 13
    assert not {
        "cmdstat_evalsha",
        "cmdstat_eval",
        "cmdstat_script|load",
        "cmdstat_function|load",
        "cmdstat_ping",
    } & set(commands)


# -- the function library, and the script where functions are refused -----------------------


def _libraries(client: redis.Redis) -> list[bytes]:
    """The names of the function libraries loaded in *client*'s server."""
    return [
        dict(zip(lib[::2], lib[1::2], strict=True))[b"library_name"]
        for lib in client.function_list()
    ]


def _calls(client: redis.Redis) -> dict[str, int]:
    """Each command's successful calls since the last CONFIG RESETSTAT."""
    stats = client.info("commandstats")
    return {
        name.removeprefix("cmdstat_"): int(entry["calls"]) - int(entry.get("failed_calls", 0))
        for name, entry in stats.items()
        if name != "cmdstat_info"
    }


def _answers_as_memory(store: RedisStore, clock: FakeClock) -> None:
    """A sliding window and a token bucket of *store* answer as in memory, for many steps."""
    mine = FakeClock()
    pairs = [
        (SlidingWindow(5, 0.5, clock=mine), store.sliding_window("w", 5, 0.5)),
        (TokenBucket(7.0, 3, clock=mine), store.token_bucket("b", 7.0, 3)),
    ]
    for index in range(150):
        for each in (mine, clock):
            each.advance(0.013 * (1 + index % 3))
        for memory, shared in pairs:
            assert memory.try_acquire(0.7) == shared.try_acquire(0.7)
            if index % 7 == 0:
                assert memory.reserve(0.7).ready_at == shared.reserve(0.7).ready_at
    for memory, shared in pairs:
        assert memory.statistics() == shared.statistics()


def test_the_function_library_is_loaded_again_when_the_server_forgot_it(own_server, open_store):
    """After FUNCTION FLUSH, the next call loads the library again, once, and goes on."""
    clock = FakeClock()
    store = open_store(url=own_server.url, timeout=5.0, clock=clock)
    bucket = store.token_bucket("k", "1/hour", 3)
    admin = redis.Redis.from_url(own_server.url, socket_timeout=5, socket_connect_timeout=5)
    try:
        assert _libraries(admin) == []
        assert bucket.try_acquire(2)
        (name,) = _libraries(admin)
        assert name.startswith(b"ratekit_")
        admin.function_flush()
        assert _libraries(admin) == []
        admin.config_resetstat()
        assert not bucket.try_acquire(2)  # the state is kept: only the code was lost
        assert bucket.try_acquire(1)
        assert _libraries(admin) == [name]
        calls = _calls(admin)
        assert calls["function|load"] == 1
        assert calls["fcall"] == 2
        assert "evalsha" not in calls
    finally:
        admin.close()


@pytest.mark.parametrize("refused", ["-function", "-fcall"])
def test_a_user_refused_functions_runs_the_same_code_as_a_script(refused, own_server, open_store):
    """Where an ACL refuses FUNCTION or FCALL, every call is one EVALSHA, answering the same."""
    admin = redis.Redis.from_url(own_server.url, socket_timeout=5, socket_connect_timeout=5)
    try:
        admin.acl_setuser(
            "limited",
            enabled=True,
            passwords=["+pw-limited"],
            keys=["*"],
            categories=["+@all"],
            commands=[refused],
        )
        clock = FakeClock()
        url = f"redis://limited:pw-limited@127.0.0.1:{own_server.port}/0"
        store = open_store(url=url, timeout=5.0, clock=clock)
        assert store.token_bucket("first", 1.0, 1).try_acquire()  # finds out, once
        assert _libraries(admin) == []
        admin.config_resetstat()
        _answers_as_memory(store, clock)
        calls = _calls(admin)
        assert calls["evalsha"] > 300
        assert not {"fcall", "function|load"} & {name for name, n in calls.items() if n}
    finally:
        admin.close()


# -- keys expire when idle ------------------------------------------------------------------


def test_keys_expire_once_back_at_rest():
    """Every key gets a TTL to its rest instant plus the margin, and then disappears."""
    assert _client is not None
    store = fresh_store()
    window = store.sliding_window("w", 2, 0.2)
    bucket = store.token_bucket("b", 10.0, 1)
    assert window.try_acquire()
    assert bucket.try_acquire()
    keys = [*window.keys, f"{window.keys[0]}:log", *bucket.keys]
    for key in keys:
        assert 0 < _client.pttl(key) <= 200 + EXPIRY_MARGIN * 1000 + 1
    deadline = time.monotonic() + 30
    while _client.exists(*keys):
        assert time.monotonic() < deadline, "idle keys did not expire"
        time.sleep(0.05)
    assert window.try_acquire(2)  # and a fresh state answers as a fresh limiter
    hourly = fresh_store(FakeClock()).sliding_window("h", 2, 3600.0)
    assert hourly.try_acquire()
    assert _client.pttl(hourly.keys[0]) > 3600 * 1000  # still limiting: kept


def test_a_log_left_without_its_state_goes_and_the_window_starts_fresh():
    """A sliding window's state evicted (allkeys-lru, say) but not its log: a fresh window.

    As a bucket whose state is evicted is full again, the window starts at rest: its
    stale log is deleted, not counted against running totals that started again at zero.
    """
    assert _client is not None
    clock = FakeClock()
    window = fresh_store(clock).sliding_window("w", 3, 10.0)
    assert window.try_acquire(2)
    clock.advance(1.0)
    assert window.try_acquire(1)
    assert _client.llen(f"{window.keys[0]}:log") == 2
    _client.delete(window.keys[0])
    clock.advance(1.0)
    assert window.try_acquire(3)  # the whole limit, as a fresh window grants
    assert _client.llen(f"{window.keys[0]}:log") == 1
    assert not window.try_acquire(0.5)


# -- many processes, skewed clocks ----------------------------------------------------------


def _share(url: str, limit: float, window: float, duration: float, offsets, modes):  # noqa: PLR0913, PLR0917
    """Run one child per offset on one sliding window; return their reports."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(len(offsets))
    results = context.Queue()
    key = f"share-{uuid.uuid4().hex}"
    children = [
        context.Process(
            target=share_worker,
            args=(url, key, limit, window, duration, offset, mode, barrier, results),
        )
        for offset, mode in zip(offsets, modes, strict=True)
    ]
    for child in children:
        child.start()
    reports = [results.get(timeout=90) for _ in children]
    for child in children:
        child.join(timeout=30)
        assert child.exitcode == 0
    return reports


def _worst_window(grants: list[tuple[float, float]], window: float) -> tuple[int, float]:
    """The most grants in any window, counted soundly despite the round trips.

    Each grant's reported instant is at most its uncertainty after the server's
    decision, so windows shortened by the largest uncertainty hold only grants that
    the server placed within one full window.
    """
    margin = max(uncertainty for _, uncertainty in grants)
    stamps = sorted(instant for instant, _ in grants)
    span = window - margin
    worst = max(bisect.bisect_left(stamps, start + span) - i for i, start in enumerate(stamps))
    return worst, margin


def test_four_processes_share_one_limit_exactly(redis_url):
    """Four real processes on one 100/s sliding window: never over, at least 98% of ideal."""
    limit, window, duration = 100, 1.0, 3.0
    reports = _share(redis_url, limit, window, duration, [0, 0, 0, 0], ["reserve", "try"] * 2)
    grants = [grant for _, _, granted in reports for grant in granted]
    worst, margin = _worst_window(grants, window)
    assert margin < window / 2  # the check below means something
    assert worst <= limit
    first = min(instant for instant, _ in grants)
    achieved = sum(1 for instant, _ in grants if instant < first + duration)
    assert achieved >= 0.98 * limit * duration


def test_clients_with_skewed_clocks_never_exceed_the_limit(redis_url):
    """Clocks 5 s apart make no difference: every decision is on the server's time."""
    offsets = [-5.0, 0.0, 5.0]
    limit, window = 30, 0.5
    reports = _share(redis_url, limit, window, 2.0, offsets, ["reserve", "try", "reserve"])
    for offset, shown, _ in reports:
        assert abs(shown - offset) < 0.5  # each child's clock really was off
    grants = [grant for _, _, granted in reports for grant in granted]
    worst, margin = _worst_window(grants, window)
    assert margin < window / 2
    assert worst <= limit
    assert len(grants) >= 0.9 * limit * 2.0 / window


# -- failure --------------------------------------------------------------------------------


def test_an_unreachable_store_fails_closed_within_the_timeout_and_recovers(own_server, open_store):
    """Paused or stopped: StoreUnavailable within the timeout; back: it works again."""
    timeout = 0.5
    store = open_store(url=own_server.url, timeout=timeout)
    bucket = store.token_bucket("k", 1000.0, 1000)
    assert bucket.try_acquire()
    name = f"Redis at 127.0.0.1:{own_server.port}/0"
    own_server.pause()  # accepts connections, never answers
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as error:
        bucket.try_acquire()
    assert time.monotonic() - started < timeout + 2.0  # bounded by the timeout: no hang
    assert error.value.store == name
    assert isinstance(error.value, ConnectionError)
    own_server.resume()
    assert bucket.try_acquire()
    own_server.stop()
    for call in (bucket.try_acquire, bucket.acquire, bucket.reserve):
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match=re.escape(name)):
            call()
        assert time.monotonic() - started < timeout + 2.0
    assert math.isnan(bucket.statistics().level)
    own_server.start()  # the same port, an empty server
    assert bucket.try_acquire()
    assert 999.0 <= bucket.statistics().level <= 1000.0  # refilling since the grant


def test_fail_open_grants_while_down_and_warns_once(own_server, caplog, open_store):
    """With fail_open, calls are granted while the store is down, with one warning."""
    store = open_store(url=own_server.url, timeout=0.5, fail_open=True)
    bucket = store.token_bucket("k", 1.0, 1)
    assert bucket.try_acquire()
    assert not bucket.try_acquire()
    own_server.stop()
    with caplog.at_level(logging.WARNING, logger="ratekit.stores"):
        assert bucket.try_acquire()
        assert bucket.try_acquire()
        bucket.acquire()
        assert bucket.reserve().ok
    warnings = [record for record in caplog.records if "unavailable" in record.getMessage()]
    assert len(warnings) == 1
    own_server.start()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ratekit.stores"):
        assert bucket.try_acquire()  # an empty server: the bucket is full
        assert not bucket.try_acquire()  # limits apply again
    assert any("available again" in record.getMessage() for record in caplog.records)


@pytest.fixture
def locked_server() -> Iterator[RedisServer]:
    """A server that requires a password."""
    yield from serve("--requirepass", "s3cret-Pa55")


def test_secrets_stay_out_of_reprs_and_errors(locked_server, open_store):
    """The URL's password is never shown: not in reprs, not in StoreUnavailable."""
    secret = "s3cret-Pa55"  # noqa: S105 - a test value
    store = open_store(url=f"redis://:{secret}@127.0.0.1:{locked_server.port}/0", timeout=0.5)
    bucket = store.token_bucket("k", 1.0, 1)
    assert bucket.try_acquire()
    assert secret not in repr(store)
    assert secret not in repr(bucket)
    wrong = open_store(url=f"redis://:{secret}x@127.0.0.1:{locked_server.port}/0", timeout=0.5)
    with pytest.raises(StoreUnavailable) as refused:
        wrong.token_bucket("k", 1.0, 1).try_acquire()
    assert secret not in str(refused.value)
    locked_server.stop()
    with pytest.raises(StoreUnavailable) as down:
        bucket.try_acquire()
    assert secret not in str(down.value)
    assert secret not in repr(down.value)
    with pytest.raises(ValueError, match="url must be a Redis URL") as bad:
        RedisStore(url=f"http://user:{secret}@example.com/")
    assert secret not in str(bad.value)


# -- a server that is up but refuses calls --------------------------------------------------

#: The refusals of writes; the others refuse every call.
_WRITES_ONLY = (OutOfMemory, FailedSave, ReadOnlyReplica, NotEnoughReplicas)


def _name(kind: type[Refusal]) -> str:
    return kind.__name__


def _reason(kind: type[Refusal]) -> str:
    """What `StoreUnavailable.reason` says for *kind*, as a regular expression."""
    refused = "writes" if issubclass(kind, _WRITES_ONLY) else "the call"
    return f"refused {refused}: {kind.said}"


@pytest.fixture
def admin(own_server: RedisServer) -> Iterator[redis.Redis]:
    """A client with every right on the test's own server, to which it adds `Refusal`'s user."""
    client = redis.Redis.from_url(own_server.url, socket_timeout=5, socket_connect_timeout=5)
    Refusal.prepare(client)
    yield client
    client.close()


def _every_call(limiter: RedisLimiter) -> dict[str, Callable[[], object]]:
    """Each way to ask *limiter* for one unit, by name; none of them waits."""
    return {
        "try_acquire": limiter.try_acquire,
        "acquire": lambda: limiter.acquire(timeout=0),
        "reserve": lambda: limiter.reserve(max_wait=0),
        "acquire_async": lambda: asyncio.run(limiter.acquire_async(timeout=0)),
    }


@pytest.mark.parametrize("kind", REFUSALS, ids=_name)
def test_a_server_that_refuses_calls_fails_closed_saying_what_it_refused(
    kind, own_server, admin, open_store
):
    """Up but refusing: every call raises StoreUnavailable quoting the server; then it works."""
    store = open_store(url=Refusal.url(own_server), timeout=5.0)
    bucket = store.token_bucket("k", 0.001, 10)  # no refill to speak of
    assert bucket.try_acquire()  # and the library is loaded
    refusal = kind(own_server, admin)
    refusal.refuse()
    name = f"Redis at 127.0.0.1:{own_server.port}/0"
    for call, ask in _every_call(bucket).items():
        with pytest.raises(StoreUnavailable) as error:
            ask()
        assert re.fullmatch(_reason(kind), error.value.reason), (call, error.value.reason)
        assert str(error.value) == f"{name} is unavailable: {error.value.reason}"
        assert isinstance(error.value.__cause__, redis.ResponseError)  # what the server said
        assert PASSWORD not in str(error.value)
    refusal.allow()
    assert bucket.try_acquire()
    assert bucket.statistics().granted == 2


@pytest.mark.parametrize("kind", REFUSALS, ids=_name)
def test_fail_open_grants_while_the_server_refuses_with_one_warning(
    kind, own_server, admin, open_store, caplog
):
    """With fail_open, refused calls are granted with one warning; once allowed, limits apply."""
    store = open_store(url=Refusal.url(own_server), timeout=5.0, fail_open=True)
    bucket = store.token_bucket("k", 0.001, 3)  # no refill to speak of
    assert bucket.try_acquire(2)
    refusal = kind(own_server, admin)
    refusal.refuse()
    name = f"Redis at 127.0.0.1:{own_server.port}/0"
    with caplog.at_level(logging.WARNING, logger="ratekit.stores"):
        for _ in range(2):
            calls = _every_call(bucket)
            assert calls["try_acquire"]()
            calls["acquire"]()
            assert calls["reserve"]().ok
            calls["acquire_async"]()
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 1
    expected = f"{re.escape(name)} is unavailable: {_reason(kind)}; granting every call .*"
    assert re.fullmatch(expected, warnings[0]), warnings[0]
    refusal.allow()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ratekit.stores"):
        assert bucket.try_acquire()  # the last unit: the grants while refused took nothing
        assert not bucket.try_acquire()  # the limit applies again
    assert [record.getMessage() for record in caplog.records] == [
        f"{name} is available again; limits apply again"
    ]
    assert bucket.statistics().granted == 10


@pytest.mark.parametrize(
    "kind",
    # Not WritesDenied: its user may not load functions, so it runs the script for good.
    [kind for kind in REFUSALS if kind is not WritesDenied],
    ids=_name,
)
def test_a_refusal_while_the_library_is_missing_leaves_functions_in_use(
    kind, own_server, admin, open_store
):
    """Refused while it would load the library: unavailable; once allowed, FCALL as before."""
    store = open_store(url=Refusal.url(own_server), timeout=5.0)
    bucket = store.token_bucket("k", 0.001, 10)
    assert bucket.try_acquire()
    admin.function_flush()
    refusal = kind(own_server, admin)
    refusal.refuse()
    with pytest.raises(StoreUnavailable, match=kind.said):
        bucket.try_acquire()
    refusal.allow()
    admin.config_resetstat()
    assert bucket.try_acquire()
    assert bucket.try_acquire()
    calls = _calls(admin)
    assert calls["fcall"] == 2
    assert "evalsha" not in calls
    assert len(_libraries(admin)) == 1


@pytest.mark.parametrize(
    ("kind", "legacy"),
    [
        # As an earlier version wrote the state after the first call (at 1000.0), in a hash.
        ("token_bucket", {"l": "1", "s": "1000"}),  # level 3 - 2, at 1000.0
        ("leaky_bucket", {"t": "1000.5"}),  # the next grant's earliest instant
        ("fixed_window", {"e": "1010", "u": "2", "x": "1000"}),  # window end, used, last
    ],
)
def test_a_state_an_earlier_version_wrote_is_read_and_written_anew(kind, legacy):
    """A bucket's or fixed window's hash (numbers as text) answers as in memory, then is a string.

    So an upgrade does not reset a limit that is in use; the state is written back in
    the current form at once (SET replaces the hash).
    """
    assert _client is not None
    params = {"token_bucket": (1.0, 3), "leaky_bucket": (2.0, 3), "fixed_window": (3, 10.0)}
    clocks = FakeClock(), FakeClock()
    for clock in clocks:
        clock.advance(1000.0)
    strategy = {"token_bucket": TokenBucket, "leaky_bucket": LeakyBucket}.get(kind, FixedWindow)
    memory = strategy(*params[kind], clock=clocks[0])
    shared = getattr(fresh_store(clocks[1]), kind)("b", *params[kind])
    assert memory.try_acquire(2 if kind != "leaky_bucket" else 1)
    _client.hset(shared.keys[0], mapping=legacy)
    answers = []
    for twin, clock in zip((memory, shared), clocks, strict=True):
        clock.advance(0.75)
        answers.append([twin.try_acquire(1), twin.try_acquire(1), twin.try_acquire(1)])
    assert answers[0] == answers[1]
    assert [decision.granted for decision in answers[0]] == [True, False, False]  # it counted
    assert _client.type(shared.keys[0]) == b"string"


def test_errors_that_are_bugs_propagate_even_when_failing_open(caplog):
    """A key of another type, or state the script cannot read: redis's error, never a grant."""
    assert _client is not None
    store = fresh_store(fail_open=True)
    other, corrupt = store.token_bucket("other", 1.0, 1), store.token_bucket("corrupt", 1.0, 3)
    _client.rpush(other.keys[0], "a list")
    assert corrupt.try_acquire()
    _client.set(corrupt.keys[0], "garbage")  # too short for a bucket's packed state
    with caplog.at_level(logging.WARNING, logger="ratekit.stores"):
        with pytest.raises(redis.ResponseError, match=r"^WRONGTYPE "):
            other.try_acquire()
        with pytest.raises(redis.ResponseError, match=r"^user_function:\d+: "):
            corrupt.try_acquire()
    assert caplog.records == []


#: Error replies, and what StoreUnavailable's reason says for each (None: a bug, raised).
_REPLIES = [
    (
        "OOM command not allowed when used memory > 'maxmemory'. script: 289f, on @user_script:5.",
        "refused writes: OOM command not allowed when used memory > 'maxmemory'",
    ),
    (  # before Redis 7, wrapped by the script
        (
            "ERR Error running script (call to f_289f): @user_script:5: @user_script: 5: -READONLY "
            "You can't write against a read only replica."
        ),
        "refused writes: READONLY You can't write against a read only replica",
    ),
    (
        (
            "MISCONF Redis is configured to save RDB snapshots, but it's currently unable to "
            "persist to disk. Commands that may modify the data set are disabled."
        ),
        (
            "refused writes: MISCONF Redis is configured to save RDB snapshots, but it's currently "
            "unable to persist to disk"
        ),
    ),
    (
        "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
        (
            "refused the call: MASTERDOWN Link with MASTER is down and replica-serve-stale-data is "
            "set to 'no'"
        ),
    ),
    ("CLUSTERDOWN The cluster is down", "refused the call: CLUSTERDOWN The cluster is down"),
    (
        "LOADING Redis is loading the dataset in memory",
        "refused the call: LOADING Redis is loading the dataset in memory",
    ),
    (
        "TRYAGAIN Multiple keys request during rehashing of slot",
        "refused the call: TRYAGAIN Multiple keys request during rehashing of slot",
    ),
    ("NOAUTH Authentication required.", "refused the call: NOAUTH Authentication required"),
    ("BUSY " + "x" * 300, "refused the call: BUSY " + "x" * 152 + "..."),
    ("WRONGTYPE Operation against a key holding the wrong kind of value", None),
    ("ERR user_function:17: attempt to compare nil with number", None),
    ("ERR Error running script (call to f_289f): @user_script:5: attempt to call", None),
    ("CROSSSLOT Keys in request don't hash to the same slot", None),
    ("MOVED 3999 127.0.0.1:6381", None),
    ("BUSYKEY Target key name already exists.", None),
    ("NOSCRIPT No matching script. Please use EVAL.", None),
    ("ratekit: unknown operation 'x'", None),
]


@pytest.mark.parametrize(
    ("reply", "reason"),
    _REPLIES,
    ids=[f"{index}-{reply.split()[0]}" for index, (reply, _) in enumerate(_REPLIES)],
)
def test_error_replies_are_refusals_quoted_in_short_or_bugs(reply, reason):
    """Each error reply, as redis-py raises it, is a refusal (quoted in short) or a bug."""
    assert _refusal(BaseParser.parse_error(reply)) == reason
