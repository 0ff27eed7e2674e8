"""`all_of` and `Keyed` over limiters that are not ratekit strategies.

A limiter that only has the methods of `ratekit.typing.Limiter` (a user's own class, a
`Prioritized`, a store's limiter) composes: the strategies are taken first and given
back when such a member refuses or raises, no member ever grants beyond its own limit,
and with one such member the call is all or nothing.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import TYPE_CHECKING

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st
from redis_server import serve
from specs import sliding_window_holds, token_bucket_holds

from ratekit import (
    AcquireCancelled,
    AcquireTimeout,
    AllOf,
    Keyed,
    Prioritized,
    SlidingWindow,
    TokenBucket,
    TooManyKeys,
    all_of,
)
from ratekit.stores import RedisStore
from ratekit.testing import FakeClock

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from ratekit import Decision, LimiterBase, LimiterStatistics, Reservation
    from ratekit.typing import CancelEvent, Limiter


class Own:
    """A user's own limiter: the protocol's methods, by delegation, and a log of grants."""

    def __init__(self, inner: LimiterBase, *, fail: BaseException | None = None) -> None:
        self.inner = inner
        self.clock = inner.clock
        self.fail = fail
        self.asked = 0
        self.grants: list[tuple[float, float]] = []

    def try_acquire(self, cost: float = 1) -> Decision:
        self.asked += 1
        if self.fail is not None:
            raise self.fail
        decision = self.inner.try_acquire(cost)
        if decision:
            self.grants.append((self.clock.now(), cost))
        return decision

    def acquire(
        self, cost: float = 1, *, timeout: float | None = None, cancel: CancelEvent | None = None
    ) -> None:
        self.inner.acquire(cost, timeout=timeout, cancel=cancel)

    async def acquire_async(self, cost: float = 1, *, timeout: float | None = None) -> None:
        await self.inner.acquire_async(cost, timeout=timeout)

    def reserve(self, cost: float = 1, *, max_wait: float | None = None) -> Reservation:
        return self.inner.reserve(cost, max_wait=max_wait)

    def statistics(self) -> LimiterStatistics:
        return self.inner.statistics()


class HookClock(FakeClock):
    """A `FakeClock` that runs *hook* at the start of every sleep."""

    __slots__ = ("hook",)

    def __init__(self) -> None:
        super().__init__()
        self.hook: Callable[[], None] | None = None

    def sleep(self, seconds: float, cancel: CancelEvent | None = None) -> bool:
        if self.hook is not None:
            self.hook()
        return super().sleep(seconds, cancel)


def test_any_limiter_composes_and_a_refusal_takes_nothing():
    """A user's own limiter composes; its refusal gives the strategy's part back."""
    clock = FakeClock()
    local = TokenBucket(1, 2, clock=clock)
    own = Own(TokenBucket(1, 1, clock=clock))
    composed = all_of(local, own)
    assert not isinstance(composed, AllOf)
    assert repr(composed) == f"all_of({local!r}, {own!r})"
    assert composed.try_acquire()
    assert local.statistics().level == 1.0
    assert own.statistics().level == 0.0
    refused = composed.try_acquire()
    assert not refused
    assert refused.retry_after == 1.0  # what the member that refused reported
    assert local.statistics().level == 1.0  # the local part was given back
    assert composed.statistics().granted == 1
    assert composed.statistics().denied == 1
    assert composed.statistics().level == 0.0  # the lowest of the members'


def test_a_local_refusal_asks_no_other_member():
    """The strategies answer first: when they refuse, the others are not asked."""
    clock = FakeClock()
    local = TokenBucket(2, 1, clock=clock)
    own = Own(TokenBucket(1, 5, clock=clock))
    composed = all_of(local, own)
    assert composed.try_acquire()
    assert own.asked == 1
    refused = composed.try_acquire()
    assert not refused
    assert refused.retry_after == 0.5  # the local bucket's exact wait
    assert own.asked == 1


def test_a_member_that_raises_gives_the_local_part_back():
    """An error from another member propagates, and the strategies keep nothing."""
    clock = FakeClock()
    local = TokenBucket(1, 1, clock=clock)
    composed = all_of(local, Own(TokenBucket(1, 1, clock=clock), fail=ConnectionError("down")))
    with pytest.raises(ConnectionError, match="down"):
        composed.try_acquire()
    assert local.statistics().level == 1.0
    with pytest.raises(ConnectionError, match="down"):
        composed.acquire(timeout=5)
    assert local.statistics().level == 1.0


def test_with_several_members_a_later_refusal_spends_the_earlier_grant():
    """The documented cost: the protocol cannot give a grant back."""
    clock = FakeClock()
    first = Own(TokenBucket(1, 2, clock=clock))
    second = Own(TokenBucket(1, 1, clock=clock))
    composed = all_of(first, second)
    assert composed.try_acquire()
    assert not composed.try_acquire()
    assert first.statistics().level == 0.0
    assert len(first.grants) == 2
    assert len(second.grants) == 1


def test_acquire_sleeps_what_the_refusal_reported_within_timeout_and_cancel():
    """A blocking call sleeps each reported wait, within its timeout and cancellably."""
    clock = FakeClock()
    local = TokenBucket(10, 1, clock=clock)
    own = Own(TokenBucket(1, 1, clock=clock))
    composed = all_of(local, own)
    composed.acquire()
    composed.acquire()
    # The local bucket refused first (0.1 s), then the other member (0.9 s more).
    assert clock.sleeps == [0.1, 0.9]
    assert [at for at, _ in own.grants] == [0.0, 1.0]
    # Known too long once asked: refused at once, nothing slept, nothing taken.
    clock.advance(0.1)
    with pytest.raises(AcquireTimeout):
        composed.acquire(timeout=0.5)
    assert clock.sleeps == [0.1, 0.9]
    assert local.statistics().level == 1.0
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(AcquireCancelled):
        composed.acquire(cancel=cancel)
    assert local.statistics().level == 1.0
    stats = composed.statistics()
    assert (stats.granted, stats.timed_out, stats.cancelled, stats.waiting) == (2, 1, 1, 0)
    assert stats.waited == pytest.approx(1.0)


def test_acquire_async_waits_on_the_clock():
    """`acquire_async` and `async with` wait on the members' clock."""
    clock = FakeClock()
    own = Own(TokenBucket(2, 1, clock=clock))
    composed = all_of(TokenBucket(10, 10, clock=clock), own)

    async def main() -> None:
        for _ in range(3):
            await composed.acquire_async()
        async with composed:
            pass

    asyncio.run(main())
    assert [at for at, _ in own.grants] == [0.0, 0.5, 1.0, 1.5]


def test_reserve_grants_now_or_books_nothing():
    """`reserve` grants at once or books nothing, as documented."""
    clock = FakeClock()
    local = TokenBucket(1, 1, clock=clock)
    composed = all_of(local, Own(TokenBucket(1, 1, clock=clock)))
    granted = composed.reserve(max_wait=10)
    assert (granted.ok, granted.delay, granted.ready_at) == (True, 0.0, 0.0)
    assert not granted.cancel()  # its time has come
    refused = composed.reserve(max_wait=10)
    assert (refused.ok, refused.delay) == (False, 1.0)
    assert local.statistics().level == 0.0


def test_compositions_flatten_and_count_a_member_once():
    """Nested compositions flatten, and a member given twice is asked once."""
    clock = FakeClock()
    a, b = TokenBucket(1, 1, clock=clock), TokenBucket(1, 3, clock=clock)
    own = Own(TokenBucket(1, 2, clock=clock))
    nested = all_of(all_of(a, own), b, own, a)
    assert nested.members == (a, b, own)  # type: ignore[attr-defined]
    assert nested.capacity == 1  # type: ignore[attr-defined]
    assert nested.try_acquire()
    assert len(own.grants) == 1


def test_members_must_read_one_clock_and_be_limiters():
    """Members stating different clocks, and non-limiters, are refused."""
    own = Own(TokenBucket(1, 1, clock=FakeClock()))
    with pytest.raises(ValueError, match="must share one clock"):
        all_of(TokenBucket(1, 1, clock=FakeClock()), own)
    with pytest.raises(TypeError, match="argument 2 must be a limiter"):
        all_of(own, object())  # type: ignore[arg-type]


def test_a_prioritized_limiter_composes():
    """`Prioritized`, which is not a strategy, composes with one."""
    clock = FakeClock()
    lanes = Prioritized(TokenBucket(1, 1, clock=clock))
    composed = all_of(TokenBucket(5, 5, clock=clock), lanes)
    composed.acquire()
    composed.acquire()
    assert clock.now() == 1.0
    assert lanes.statistics().granted == 2


@settings(max_examples=60)
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(["all", "local", "own", "other"]),
            st.sampled_from([0.0, 0.05, 0.25, 1.0]),
        ),
        max_size=60,
    ),
    second=st.booleans(),
)
def test_no_member_ever_grants_beyond_its_limit(steps, second):
    """Random calls on the composition and on its members directly, on a stepped clock.

    Each member's own guarantee holds on every grant it made; with one member outside
    ratekit, each grant of the composition took from both members and each refusal
    from neither.
    """
    clock = FakeClock()
    local = TokenBucket(2, 3, clock=clock)
    own = Own(SlidingWindow(3, 1.0, clock=clock))
    other = Own(TokenBucket(1, 2, clock=clock))
    composed = all_of(local, own, other) if second else all_of(local, own)
    local_grants: list[tuple[float, float]] = []
    for target, step in steps:
        clock.advance(step)
        if target == "local":
            if local.try_acquire():
                local_grants.append((clock.now(), 1))
        elif target == "own":
            own.try_acquire()
        elif target == "other":
            other.try_acquire()
        else:
            before = (len(own.grants), local.statistics().level)
            if composed.try_acquire():
                local_grants.append((clock.now(), 1))
                assert own.grants[-1] == (clock.now(), 1)
            elif not second:
                assert (len(own.grants), local.statistics().level) == before
    assert token_bucket_holds(local_grants, 2, 3)
    assert sliding_window_holds(own.grants, 3, 1.0)
    assert token_bucket_holds(other.grants, 1, 2)


# -- Keyed ----------------------------------------------------------------------------------


def test_keyed_shares_a_limiter_of_any_kind_and_forgets_keys_at_rest():
    """A shared limiter of any kind; keys still come to rest and are forgotten."""
    clock = FakeClock()
    account = Own(TokenBucket(1, 3, clock=clock))
    keyed = Keyed(lambda: TokenBucket(1, 1, clock=clock), max_keys=1, shared=[account])
    assert keyed.try_acquire("a")
    assert not keyed.try_acquire("a")  # a's own bucket
    clock.advance(1)
    assert keyed.try_acquire("b")  # a is at rest again: forgotten for b
    assert keyed.evicted == 1
    with pytest.raises(TooManyKeys):  # b is not at rest
        keyed.try_acquire("c")
    keyed.acquire("c")  # waits for b to come to rest
    assert clock.now() == 2.0
    assert keyed.evicted == 2
    assert [at for at, _ in account.grants] == [0.0, 1.0, 2.0]
    assert token_bucket_holds(account.grants, 1, 3)


def test_keyed_never_forgets_a_key_whose_limiter_says_nothing_about_rest():
    """A key whose own limiter is not a strategy is kept: the table refuses at once."""
    clock = FakeClock()
    keyed = Keyed(lambda: Own(TokenBucket(1, 1, clock=clock)), max_keys=1)
    assert keyed.try_acquire("a")
    clock.advance(100)
    with pytest.raises(TooManyKeys):
        keyed.try_acquire("b")
    with pytest.raises(TooManyKeys):  # at once, rather than waiting for ever
        keyed.acquire("b")
    assert keyed.refused == 2
    keyed.acquire("a")
    assert keyed.statistics("a") is not None


def test_keyed_does_not_forget_a_key_while_a_call_uses_it():
    """A key is pinned while a call waits on it outside the lock."""
    clock = HookClock()
    account = Own(TokenBucket(1, 1, clock=clock))
    keyed = Keyed(lambda: TokenBucket(5, 5, clock=clock), max_keys=1, shared=[account])
    keyed.acquire("a")
    seen: list[BaseException] = []

    def newcomer() -> None:
        clock.hook = None
        try:
            keyed.try_acquire("b")
        except TooManyKeys as error:
            seen.append(error)

    # a's own bucket is back at rest by the time a waits for the account again, yet a
    # is in use, so b must not take its place.
    clock.advance(10)
    assert account.try_acquire()  # the account is spent: a will wait for it
    clock.hook = newcomer
    keyed.acquire("a")
    assert len(seen) == 1
    assert "a" in keyed
    assert "b" not in keyed
    stats = keyed.statistics("a")
    assert stats is not None
    assert stats.granted == 2


def test_keyed_acquire_async_on_a_shared_limiter_of_any_kind():
    """`Keyed.acquire_async` with a shared limiter of any kind."""
    clock = FakeClock()
    account = Own(TokenBucket(2, 1, clock=clock))
    keyed = Keyed(lambda: TokenBucket(10, 10, clock=clock), shared=[account])

    async def main() -> None:
        for key in "abc":
            await keyed.acquire_async(key)

    asyncio.run(main())
    assert [at for at, _ in account.grants] == [0.0, 0.5, 1.0]


# -- a store's limiter ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_client() -> Iterator[redis.Redis]:
    """One real redis-server for the module."""
    for server in serve():
        client = redis.Redis.from_url(server.url, socket_timeout=5, socket_connect_timeout=5)
        yield client
        client.close()


@pytest.fixture
def store(redis_client: redis.Redis) -> Iterator[RedisStore]:
    """A store on that server, under a prefix of the test's own, on a FakeClock."""
    made = RedisStore(redis_client, prefix=f"t{uuid.uuid4().hex[:12]}:", clock=FakeClock())
    yield made
    made.close()


def test_a_local_burst_limit_beside_a_redis_quota(store: RedisStore):
    """A local burst limit and a Redis quota: exact answers, nothing kept on refusal."""
    clock = store.clock
    local = TokenBucket(100, 2, clock=clock)
    quota = store.token_bucket("quota", 5, 5)
    composed: Limiter = all_of(local, quota)
    assert composed.try_acquire()
    assert composed.try_acquire()
    refused = composed.try_acquire()
    assert (bool(refused), refused.retry_after) == (False, pytest.approx(0.01))
    clock.advance(0.05)  # type: ignore[attr-defined]
    assert composed.try_acquire()
    assert quota.statistics().level == pytest.approx(2.25)  # 5 - 3 + 0.05 s at 5/s
    # The quota refuses now: the local part is given back.
    quota_only = store.token_bucket("quota", 5, 5)
    assert quota_only.try_acquire(2)
    before = local.statistics().level
    refused = composed.try_acquire()
    assert not refused
    assert refused.retry_after == pytest.approx(0.15)  # 0.75 short at 5/s
    assert local.statistics().level == before
    composed.acquire(timeout=1)
    assert quota.statistics().level == pytest.approx(0.0)


def test_keyed_with_a_shared_redis_limit(store: RedisStore):
    """Per-key buckets in memory beside an account's window in Redis."""
    clock = store.clock
    account = store.sliding_window("account", 3, 1.0)
    keyed = Keyed(lambda: TokenBucket(1, 1, clock=clock), shared=[account])
    assert all(keyed.try_acquire(key) for key in "abc")
    assert not keyed.try_acquire("d")
    assert "d" in keyed
    assert TokenBucket(1, 1).try_acquire()  # d's own bucket was given back: see below
    assert keyed.try_acquire("d").retry_after == pytest.approx(1.0)  # the account's window
    clock.advance(1.0)  # type: ignore[attr-defined]
    assert keyed.try_acquire("d")


def test_prioritized_over_a_composition_that_books_nothing_ahead():
    """`Prioritized` asks again when the reported wait is over, rather than spinning."""
    clock = FakeClock()
    own = Own(TokenBucket(1, 1, clock=clock))
    lanes = Prioritized(all_of(TokenBucket(10, 10, clock=clock), own), horizon=0.1)
    for _ in range(3):
        lanes.acquire()
    assert clock.now() == pytest.approx(2.0)
    assert len(clock.sleeps) == 4  # to a horizon before the grant, then the rest of it
    assert [round(at, 9) for at, _ in own.grants] == [0.0, 1.0, 2.0]
