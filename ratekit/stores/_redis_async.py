"""`AsyncRedisStore`: the limits of `RedisStore`, for asyncio, on redis-py's asyncio client.

The same Lua library, the same keys and the same answers as `RedisStore` (the argument
encoding, the reply parsing, the key naming and the classification of errors are
imported from ``_redis.py``, and what differs on a Redis Cluster from
``_redis_cluster.py``); only the round trip differs: it is awaited on the event loop,
through ``redis.asyncio``, and no thread takes part.

A round trip that books something runs in a task of its own, which the caller awaits
through `asyncio.shield`: a caller cancelled while it is under way still learns what was
booked, and gives it back, as the sync limiter does when its wait is cancelled.
"""

from __future__ import annotations

import asyncio
import math
import threading
from typing import TYPE_CHECKING, Literal, cast, final

import attrs

from ratekit import _hooks
from ratekit._clock import MONOTONIC
from ratekit._decision import GRANTED, Decision, LimiterStatistics
from ratekit._errors import AcquireTimeout, QueueFull, StoreUnavailable
from ratekit._limited import DONE
from ratekit._limiter import _QUEUE_SLACK
from ratekit._redact import mask_secrets, redact_url
from ratekit._tally import StoreTally, Tally, check_cost, sleep_until_async
from ratekit._validate import optional_wait, positive

from ._redis import (
    _booked,
    _Booking,
    _bucket_params,
    _decoded,
    _describe,
    _explain,
    _fcall_failure,
    _fmt,
    _hash_tag,
    _load_refused,
    _Member,
    _member,
    _merged,
    _named_limits,
    _one_slot,
    _script_args,
    _unreachable,
    _window_params,
    log,
)
from ._redis_cluster import check as check_cluster
from ._redis_cluster import connect as connect_cluster
from ._redis_cluster import load_targets
from ._redis_script import FUNCTION, LIBRARY, SCRIPT

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine, Sequence
    from types import TracebackType

    import redis.asyncio
    from redis.asyncio.cluster import RedisCluster

    from ratekit._limited import _Done
    from ratekit._rate import Rate
    from ratekit.typing import Clock

__all__ = ["AsyncRedisLimiter", "AsyncRedisStore", "AsyncReservation"]

#: How many connections a store made from a URL opens at most.  Each round trip holds
#: one; more calls at once wait for a free one (at most the store's timeout), so that
#: thousands of tasks do not open thousands of connections to one (single-threaded)
#: server, which would not answer them sooner.  On a cluster: at most this many to
#: each node, and this many round trips under way at once.
MAX_CONNECTIONS = 50

#: What a ``book`` call answers: (booked, instant, delay, booking to give back or None).
_Booked = tuple[bool, float, float, _Booking | None]


@final
class AsyncRedisStore:
    """`RedisStore` for asyncio: the same shared limits, awaited on the event loop.

    Limiters made here hold their state under the same keys as `RedisStore`'s, run the
    same Lua code and answer exactly as they do, so sync and asyncio processes can share
    one limit.  Every call is one awaited round trip on ``redis.asyncio``; no thread is
    started (a host name in the URL is resolved by asyncio, which uses the event loop's
    default executor for it: give an IP address or a ``unix://`` path to avoid that).
    Unavailability, ``fail_open``, refusals and the ``ratekit.stores`` logger behave as
    in `RedisStore`.  Use a store from one event loop, as its client requires.

    The factories take the same ``group`` as `RedisStore`'s, with the same key names,
    so a group is shared by sync and asyncio processes too.

    On a Redis Cluster (a `redis.asyncio.cluster.RedisCluster` client, or
    ``cluster=True`` with a URL) it works as `RedisStore` does there: each call goes
    to the primary that serves its keys' slot, every limit's keys carry a hash tag of
    their own (its group; by default its key), `all_of` refuses members of different
    groups, and the function library is loaded on each primary by the first call it
    gets, and again on the node that answers "function not found" (a restart, a
    failover, ``FUNCTION FLUSH``, a moved slot), after which the call is sent once
    more.  The asyncio client reads the cluster's layout on its first call, so an
    unreachable cluster raises `StoreUnavailable` there, not here.

    Args:
        client: A `redis.asyncio.Redis` or `redis.asyncio.cluster.RedisCluster`
            client to use as it is (its own timeouts, retries and connection limits
            apply); it is left open by `aclose`.
        url: Or a URL such as ``"redis://:password@127.0.0.1:6379/0"``, for a client
            made here with *timeout* and one immediate retry of a dropped connection.
        cluster: With *url*: the server is one node of a Redis Cluster, whose other
            nodes the client discovers from it (a URL alone cannot tell).  With a
            client, its class tells.
        prefix: Put before every key (on a cluster, without ``{``: the store places the
            hash tags).
        timeout: Seconds to wait for a connection, for a free one of the store's
            `MAX_CONNECTIONS` (on a cluster: for one of as many round trips under
            way at once), and for each answer (URL only).
        fail_open: Grant calls while Redis is unreachable, instead of raising.
        clock: ``None`` (production): the Redis server's ``TIME`` decides.  A clock
            (such as `ratekit.testing.FakeClock`) supplies the time of every decision
            instead, for deterministic tests.  Waits sleep on its ``sleep_async`` (or
            on `ratekit.MonotonicClock`'s).

    Raises:
        ValueError: If neither or both of *client* and *url* are given, *url* is not a
            Redis URL, *timeout* is not a positive number, *cluster* is given with a
            client that is not a cluster's, or a cluster's *prefix* holds a ``{``.
        ModuleNotFoundError: If redis-py is not installed (the ``redis`` extra).
    """

    __slots__ = (
        "__weakref__",
        "_client",
        "_clock",
        "_cluster",
        "_counts",
        "_description",
        "_down",
        "_errors",
        "_fail_open",
        "_functions",
        "_gate",
        "_inject",
        "_owned",
        "_prefix",
        "_script",
        "_secrets",
        "_tasks",
        "_timeout",
    )

    def __init__(  # noqa: PLR0913 - a client or a URL (of a cluster?), and four options
        self,
        client: redis.asyncio.Redis | RedisCluster | None = None,
        *,
        url: str | None = None,
        cluster: bool | None = None,
        prefix: str = "ratekit:",
        timeout: float = 1.0,
        fail_open: bool = False,
        clock: Clock | None = None,
    ) -> None:
        import redis as redis_module
        import redis.asyncio as redis_asyncio
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, got {type(prefix).__name__} {prefix!r}")
        self._timeout = positive("timeout", timeout)
        self._cluster = check_cluster("AsyncRedisStore", client, url, cluster, prefix, asyncio=True)
        #: With a cluster client made here: bounds the round trips under way, as the
        #: blocking pool does on one server (see `_invoke`); else ``None``.
        self._gate: asyncio.Semaphore | None = None
        if url is not None and self._cluster:
            made = connect_cluster(
                url, self._timeout, asyncio=True, max_connections=MAX_CONNECTIONS
            )
            client = cast("RedisCluster", made)
            self._gate = asyncio.Semaphore(MAX_CONNECTIONS)
        elif url is not None:
            try:
                pool = redis_asyncio.BlockingConnectionPool.from_url(
                    url,
                    max_connections=MAX_CONNECTIONS,
                    timeout=self._timeout,  # the longest wait for a free connection
                    socket_timeout=self._timeout,
                    socket_connect_timeout=self._timeout,
                    # As RedisStore: a dropped connection is retried once, a timeout never.
                    retry=Retry(NoBackoff(), 1, (redis_module.ConnectionError,)),
                )
            except ValueError:
                raise ValueError(
                    f"url must be a Redis URL (redis://, rediss:// or unix://), got "
                    f"{redact_url(url)!r}"
                ) from None
            client = redis_asyncio.Redis(connection_pool=pool)
        assert client is not None  # noqa: S101 - for the type checker: exactly one was given
        self._client = client
        self._owned = url is not None
        self._prefix = prefix
        self._fail_open = bool(fail_open)
        self._inject = clock
        self._clock: Clock = MONOTONIC if clock is None else clock
        self._down = False
        self._description, self._secrets = _describe(client, cluster=self._cluster)
        #: The failures to reach the server (asyncio's own timeout is one before 3.11).
        self._errors: tuple[type[BaseException], ...] = (
            *_unreachable(cluster=self._cluster),
            asyncio.TimeoutError,
        )
        self._script = client.register_script(SCRIPT)
        #: Whether calls go by FCALL; turned off for good once the server refuses it.
        self._functions = True
        #: The give-backs of cancelled callers still under way (held, so that none is
        #: collected before it ends; `aclose` waits for them).
        self._tasks: set[asyncio.Task[None]] = set()
        #: Round trips, `StoreUnavailable` raised, calls granted by failing open (written
        #: on the event loop only; read by `ratekit.telemetry`).
        self._counts = StoreTally()
        _hooks.made(self)

    # -- what the store is --------------------------------------------------------------

    @property
    def description(self) -> str:
        """What the store is, without credentials: ``"Redis at 127.0.0.1:6379/0"``."""
        return self._description

    @property
    def prefix(self) -> str:
        """What every key is prefixed with."""
        return self._prefix

    @property
    def fail_open(self) -> bool:
        """Whether calls are granted while the store is unreachable."""
        return self._fail_open

    @property
    def clock(self) -> Clock:
        """The clock that waits sleep on."""
        return self._clock

    @property
    def cluster(self) -> bool:
        """Whether the store is a Redis Cluster (its keys carry hash tags)."""
        return self._cluster

    def __repr__(self) -> str:
        return (
            f"AsyncRedisStore({self._description!r}, prefix={self._prefix!r}, "
            f"fail_open={self._fail_open!r})"
        )

    async def aclose(self) -> None:
        """Finish the give-backs under way, and close the client if made from a URL.

        A given client stays open.
        """
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if not self._owned:
            return
        if self._cluster:  # its connections are the nodes', closed with it
            await cast("RedisCluster", self._client).aclose()
        else:
            await cast("redis.asyncio.Redis", self._client).aclose(close_connection_pool=True)

    async def __aenter__(self) -> AsyncRedisStore:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- limiters -----------------------------------------------------------------------

    def _one(
        self,
        kind: str,
        key: str,
        params: tuple[float, float],
        shown: str,
        group: str | None = None,
    ) -> AsyncRedisLimiter:
        member = _member(self._prefix, kind, key, params, shown, tag=self._tag(key, group))
        return AsyncRedisLimiter(self, (member,), composite=False)

    def _tag(self, key: str, group: str | None) -> str | None:
        return _hash_tag(key, group, cluster=self._cluster)

    def token_bucket(
        self, key: str, rate: Rate | float | str, capacity: float, *, group: str | None = None
    ) -> AsyncRedisLimiter:
        """A `ratekit.TokenBucket` held in the store under *key* (see `RedisStore.token_bucket`).

        Raises:
            ValueError: If the rate or the capacity is not positive and finite, or the
                key or *group* is empty.
        """
        return self._one("tb", key, *_bucket_params(rate, capacity), group)

    def leaky_bucket(
        self, key: str, rate: Rate | float | str, capacity: float, *, group: str | None = None
    ) -> AsyncRedisLimiter:
        """A `ratekit.LeakyBucket` held in the store under *key* (see `RedisStore.leaky_bucket`).

        Raises:
            ValueError: If the rate or the capacity is not positive and finite, or the
                key or *group* is empty.
        """
        return self._one("lb", key, *_bucket_params(rate, capacity), group)

    def sliding_window(
        self, key: str, limit: float, window: float, *, group: str | None = None
    ) -> AsyncRedisLimiter:
        """A `ratekit.SlidingWindow` held under *key* (see `RedisStore.sliding_window`).

        Raises:
            ValueError: If *limit* or *window* is not positive and finite, or the key is
                empty, or *group* is.
        """
        return self._one("sw", key, *_window_params(limit, window), group)

    def fixed_window(
        self, key: str, limit: float, window: float, *, group: str | None = None
    ) -> AsyncRedisLimiter:
        """A `ratekit.FixedWindow` held in the store under *key* (see `RedisStore.fixed_window`).

        Raises:
            ValueError: If *limit* or *window* is not positive and finite, or the key is
                empty, or *group* is.
        """
        return self._one("fw", key, *_window_params(limit, window), group)

    def limiter(
        self,
        key: str,
        *limits: str | Rate,
        strategy: Literal["sliding", "fixed", "token"] = "sliding",
        group: str | None = None,
    ) -> AsyncRedisLimiter:
        """State one or more limits at once, held under *key* (see `RedisStore.limiter`).

        Raises:
            ValueError: If no limit is given, one cannot be parsed, *strategy* is unknown
                or the key or *group* is empty.
        """
        members: list[AsyncRedisLimiter] = []
        named = _named_limits(key, limits, strategy)
        tag = self._tag(key, group)
        for name, rate in named:
            if strategy == "sliding":
                members.append(self.sliding_window(name, rate.limit, rate.per, group=tag))
            elif strategy == "fixed":
                members.append(self.fixed_window(name, rate.limit, rate.per, group=tag))
            else:
                members.append(self.token_bucket(name, rate, rate.limit, group=tag))
        return members[0] if len(members) == 1 else self.all_of(*members)

    def all_of(self, *limiters: AsyncRedisLimiter) -> AsyncRedisLimiter:
        """Compose limiters of this store, in one script call (see `RedisStore.all_of`).

        On a cluster the members must share a group, as in `RedisStore.all_of`.

        Raises:
            TypeError: If an argument is not a limiter of this store.
            ValueError: If there are none, two members share a key with different
                parameters, or (on a cluster) two members are in different groups.
        """
        for index, limiter in enumerate(limiters):
            candidate: object = limiter
            if not isinstance(candidate, AsyncRedisLimiter) or candidate.store is not self:
                raise TypeError(
                    f"all_of() argument {index + 1} must be a limiter of this store, "
                    f"got {limiter!r}"
                )
        members = _merged([limiter._members for limiter in limiters])
        if self._cluster:
            _one_slot(members)
        return AsyncRedisLimiter(self, members, composite=True)

    # -- the round trip -----------------------------------------------------------------

    def _spawn(self, work: Coroutine[object, object, None]) -> asyncio.Task[None]:
        """Run *work* in a task of its own, held until it ends, whatever its caller does."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _run(
        self, keys: Sequence[str], args: Sequence[str], *, counted: bool = True
    ) -> list[str] | None:
        """Run the Lua code once; ``None`` means: unavailable, and granted (fail open).

        *counted*: whether the call counts in the store's counts (not a level read).

        Raises:
            StoreUnavailable: If Redis cannot be reached or refuses the call (unless
                failing open).
            redis.ResponseError: If Redis answers with another error: a bug.
        """
        if counted:
            self._counts.round_trips += 1
        try:
            reply = await self._invoke(keys, args)
        except Exception as error:
            reason = _explain(
                error,
                errors=self._errors,
                timeout=self._timeout,
                owned=self._owned,
                secrets=self._secrets,
            )
            if reason is None:  # not the store's outage: a bug, see _redis._REFUSALS
                raise
            unavailable = StoreUnavailable(self._description, reason)
            if not self._fail_open:
                if counted:
                    self._counts.unavailable += 1
                raise unavailable from error
            first, self._down = not self._down, True
            if first:
                log.warning(
                    "%s; granting every call without a limit until it is back (fail_open)",
                    unavailable,
                )
            return None
        if self._down:
            self._down = False
            log.warning("%s is available again; limits apply again", self._description)
        return _decoded(reply)

    async def _invoke(self, keys: Sequence[str], args: Sequence[str]) -> bytes | str:
        """`_send`, once one of the round trips that the store's gate allows is free.

        A cluster client of redis-py's asyncio opens at most ``max_connections`` to each
        node and then fails rather than waits, so a store that made one bounds its own
        round trips under way to `MAX_CONNECTIONS`, and a call waits for a free one as
        long as it would for a free connection of the blocking pool on one server.

        Raises:
            redis.ConnectionError: If none is free within the store's timeout.
        """
        gate = self._gate
        if gate is None:
            return await self._send(keys, args)
        try:
            await asyncio.wait_for(gate.acquire(), self._timeout)
        except asyncio.TimeoutError:
            from redis.exceptions import ConnectionError as NoConnection

            raise NoConnection(
                f"none of the store's {MAX_CONNECTIONS} connections was free within "
                f"{self._timeout!r} s"
            ) from None
        try:
            return await self._send(keys, args)
        finally:
            gate.release()

    async def _send(self, keys: Sequence[str], args: Sequence[str]) -> bytes | str:
        """One call: ``FCALL`` (loading the library if it is missing), else ``EVALSHA``."""
        from redis.exceptions import ResponseError

        if self._functions:
            try:
                return await self._fcall(keys, args)
            except self._errors:
                raise
            except ResponseError as error:
                failure = _fcall_failure(error)
                if failure == "load":
                    # A new node, a restart, a failover, FUNCTION FLUSH: load, retry once.
                    if await self._load_library(error, keys[0]):
                        return await self._fcall(keys, args)
                elif failure == "script":
                    self._no_functions(error)
                else:
                    raise
        reply: bytes | str = await self._script(keys=keys, args=args, client=self._client)
        return reply

    async def _fcall(self, keys: Sequence[str], args: Sequence[str]) -> bytes | str:
        reply: bytes | str = await self._client.fcall(FUNCTION, len(keys), *keys, *args)
        return reply

    async def _load_library(self, answered: BaseException | None = None, key: str = "") -> bool:
        """Load the function library; ``False`` if the server refuses (use the script).

        On a cluster it is loaded on the node that *answered* "function not found" to a
        call whose first key is *key*, or, without *answered*, on every primary (see
        `RedisStore._load_library`).

        Raises:
            redis.ConnectionError: And the other `_errors`, as any call does.
        """
        from redis.exceptions import ResponseError

        try:
            if self._cluster:
                client = cast("RedisCluster", self._client)
                # FUNCTION LOAD itself, as function_load sends it, to the nodes chosen.
                await client.execute_command(
                    "FUNCTION LOAD",
                    "REPLACE",
                    LIBRARY,
                    target_nodes=load_targets(client, answered, key),
                )
            else:
                await self._client.function_load(LIBRARY, replace=True)
        except self._errors:
            raise
        except ResponseError as error:
            if not _load_refused(error):
                raise
            self._no_functions(error)
            return False
        return True

    def _no_functions(self, error: BaseException) -> None:
        """Run every later call as a script (``EVALSHA``), for good."""
        self._functions = False
        log.debug(
            "%s: Redis functions unavailable (%s); running the script by EVALSHA",
            self._description,
            mask_secrets(str(error), self._secrets, shortest=1),
        )


@attrs.define(eq=False)
class _Withdrawal:
    """Whether a reservation is being withdrawn, or was."""

    claimed: bool = False
    done: bool = False


@attrs.frozen(eq=False)
class AsyncReservation:
    """A grant booked in an `AsyncRedisStore`, for a time that may lie in the future.

    What `AsyncRedisLimiter.reserve` returns: a `ratekit.Reservation` whose `cancel` is
    awaited, since withdrawing it is a round trip.

    Attributes:
        ok: Whether the reservation was made (``False``: its delay would exceed
            ``max_wait``; nothing was consumed).
        delay: Seconds from the moment of reserving until the cost may be used.
        cost: The cost reserved.
        ready_at: The reading of the store's clock at which the cost may be used.
    """

    ok: bool
    delay: float
    cost: float
    ready_at: float
    _owner: AsyncRedisLimiter | None = attrs.field(default=None, repr=False, alias="owner")
    _booking: _Booking | None = attrs.field(default=None, repr=False, alias="booking")
    _state: _Withdrawal = attrs.field(factory=_Withdrawal, init=False, repr=False)

    @property
    def cancelled(self) -> bool:
        """Whether `cancel` withdrew this reservation."""
        return self._state.done

    async def cancel(self) -> bool:
        """Withdraw the reservation if its time has not come (see `ratekit.Reservation.cancel`).

        One round trip.  If the calling task is cancelled meanwhile, the withdrawal
        still completes.

        Returns:
            ``True`` if the reservation was withdrawn; ``False`` if it was refused, had
            already been used, was cancelled before, or the store failed open.

        Raises:
            StoreUnavailable: If the store cannot be reached or refuses the call (and
                does not fail open); the reservation stays.
        """
        if not self.ok or self._owner is None or self._booking is None:
            return False
        if self._state.claimed:
            return False
        self._state.claimed = True  # so that two tasks cannot both withdraw it
        owner = self._owner
        task = owner.store._spawn(owner._withdraw(self._booking, self._state))
        await asyncio.shield(task)
        return self._state.done


@final
class AsyncRedisLimiter:
    """A limit held in an `AsyncRedisStore`: `RedisLimiter`'s answers, awaited.

    Made by the store's factories.  ``await try_acquire()``, ``await acquire()``
    (also as ``acquire_async``, so `ratekit.limited` and `ratekit.AsyncScheduler` take
    it), ``await reserve()`` and ``async with limiter:`` each make one round trip, and
    a wait sleeps once on the clock's ``sleep_async``.  Cancelling a waiting task gives
    back what it booked (a second round trip), also when it is cancelled during the
    round trip that books.

    Its `statistics` count this process's calls without a round trip, so their
    ``level`` is NaN; `statistics_async` reads the level from the store.
    """

    __slots__ = (
        "__weakref__",
        "_args",
        "_capacity",
        "_composite",
        "_keys",
        "_lock",
        "_max_delay",
        "_members",
        "_on_wait",
        "_store",
        "_tally",
    )

    def __init__(
        self, store: AsyncRedisStore, members: tuple[_Member, ...], *, composite: bool
    ) -> None:
        self._store = store
        self._members = members
        self._composite = composite
        self._capacity = min(member.capacity for member in members)
        self._max_delay = min(member.max_delay for member in members)
        self._keys = [key for member in members for key in (member.state_key, member.log_key)]
        self._args = _script_args(members, composite=composite)
        # Counters change on the event loop only; the lock keeps a snapshot taken from
        # another thread (metrics collection) consistent, and is never held across an await.
        self._lock = threading.Lock()
        self._tally = Tally()
        # Called with the seconds of each finished wait (`ratekit.telemetry`), or None.
        self._on_wait: Callable[[float], None] | None = None
        _hooks.made(self)

    @property
    def store(self) -> AsyncRedisStore:
        """The store that holds this limit."""
        return self._store

    @property
    def capacity(self) -> float:
        """The most that can ever be granted at once; larger costs raise `CostTooLarge`."""
        return self._capacity

    @property
    def keys(self) -> tuple[str, ...]:
        """The Redis keys that hold the state of each member (without their logs)."""
        return tuple(member.state_key for member in self._members)

    @property
    def clock(self) -> Clock:
        """The clock this limiter sleeps on."""
        return self._store.clock

    def __repr__(self) -> str:
        shown = ", ".join(map(repr, self._members))
        if self._composite:
            shown = f"all_of({shown})"
        return f"AsyncRedisLimiter({shown}, store={self._store.description!r})"

    # -- the script ---------------------------------------------------------------------

    async def _call(
        self, op: str, cost: float, extra: str = "", token: str = ""
    ) -> list[str] | None:
        inject = self._store._inject
        now = "" if inject is None else _fmt(inject.now())
        args = [op, now, _fmt(cost), extra, token, *self._args]
        return await self._store._run(self._keys, args, counted=op != "level")

    def _opened(self) -> None:
        """Count a call granted without the store, which is down (fail open)."""
        self._store._counts.fail_open += 1

    async def _book_call(self, cost: float, limit: float) -> _Booked:
        """Book *cost* if it waits at most *limit* (see `RedisLimiter._book_call`)."""
        reply = await self._call("book", cost, _fmt(limit))
        if reply is None:
            self._opened()
        return _booked(reply, self._store.clock, injected=self._store._inject is not None)

    async def _book_shielded(self, cost: float, limit: float, *, blocking: bool) -> _Booked:
        """`_book_call`, in a task of its own that a cancellation of the caller leaves be.

        If the caller is cancelled meanwhile, what the round trip books is given back as
        soon as it is known (*blocking*: a refusal counts as timed out, not denied), and
        the caller's cancellation propagates once that is done, or at once if it is
        cancelled again.
        """
        loop = asyncio.get_running_loop()
        trip = loop.create_task(self._book_call(cost, limit))
        try:
            return await asyncio.shield(trip)
        except asyncio.CancelledError:
            undo = self._store._spawn(self._abandon_trip(trip, blocking=blocking))
            await asyncio.shield(undo)
            raise

    async def _abandon_trip(self, trip: asyncio.Task[_Booked], *, blocking: bool) -> None:
        """Give back what *trip* books, for a caller that is gone."""
        try:
            booked, _, _, booking = await trip
        except Exception:  # noqa: BLE001 - nothing was booked, and its caller is gone
            return
        if not booked:
            with self._lock:
                if blocking:
                    self._tally.timed_out += 1
                else:
                    self._tally.denied += 1
            return
        if booking is None or not await self._settle(booking):
            with self._lock:
                self._tally.granted += 1  # granted at once, or its time had come: used

    async def _give_back(self, booking: _Booking) -> bool | None:
        """Withdraw a booking whose time has not come (see `RedisLimiter._give_back`)."""
        reply = await self._call("cancel", 1.0, _fmt(booking.at), booking.token)
        if reply is None:
            return None
        if reply[0] != "1":
            return False
        with self._lock:
            self._tally.cancelled += 1
        return True

    async def _settle(self, booking: _Booking) -> bool:
        """Give back an interrupted wait's booking (see `RedisLimiter._settle`)."""
        try:
            returned = await self._give_back(booking)
        except StoreUnavailable:
            returned = None
        if returned is None:
            log.warning("%s: a cancelled wait kept its booking", self._store.description)
            with self._lock:
                self._tally.cancelled += 1
            return True
        return returned

    async def _withdraw(self, booking: _Booking, state: _Withdrawal) -> None:
        """Withdraw a reservation, for `AsyncReservation.cancel`."""
        try:
            returned = await self._give_back(booking)
        finally:
            state.claimed = False
        if returned is True:
            state.claimed = state.done = True
            with self._lock:
                self._tally.withdraw()

    def _finish_wait(self, started: float, *, used: bool) -> None:
        with self._lock:
            waited = self._tally.end_wait(started, self._store.clock.now(), used=used)
        if self._on_wait is not None:
            self._on_wait(waited)

    # -- the calls ----------------------------------------------------------------------

    def _check_cost(self, cost: object) -> float:
        return check_cost(cost, self._capacity)

    async def try_acquire(self, cost: float = 1) -> Decision:
        """Grant *cost* now if the shared limit allows it (see `RedisLimiter.try_acquire`).

        A task cancelled during the round trip may have been granted: nothing is given
        back (a grant without a wait is never withdrawn), which never over-admits.

        Raises:
            ValueError: If *cost* is not a positive finite number.
            CostTooLarge: If *cost* exceeds `capacity`.
            StoreUnavailable: If the store cannot be reached or refuses the call (and does
                not fail open).
        """
        value = self._check_cost(cost)
        reply = await self._call("try", value)
        if reply is None:
            self._opened()
        if reply is None or reply[0] == "1":
            with self._lock:
                self._tally.granted += 1
            return GRANTED
        with self._lock:
            self._tally.denied += 1
        return Decision(False, float(reply[1]))

    async def reserve(self, cost: float = 1, *, max_wait: float | None = None) -> AsyncReservation:
        """Book *cost* for the earliest time it can be granted (see `RedisLimiter.reserve`).

        Withdraw it with ``await reservation.cancel()``.  A task cancelled during the
        round trip gives back what it booked.

        Raises:
            ValueError: If *cost* is not a positive finite number or *max_wait* is negative.
            CostTooLarge: If *cost* exceeds `capacity`.
            StoreUnavailable: If the store cannot be reached or refuses the call (and does
                not fail open).
        """
        limit = min(optional_wait("max_wait", max_wait), self._max_delay * (1 + _QUEUE_SLACK))
        value = self._check_cost(cost)
        booked, at, delay, booking = await self._book_shielded(value, limit, blocking=False)
        with self._lock:
            if not booked:
                self._tally.denied += 1
                return AsyncReservation(False, delay, value, at)
            self._tally.granted += 1
        return AsyncReservation(True, delay, value, at, owner=self, booking=booking)

    async def acquire(self, cost: float = 1, *, timeout: float | None = None) -> None:
        """Wait until *cost* is granted; callers are served in arrival order.

        The slot is booked by one round trip, then the exact delay it returns is slept
        once on the store's clock (``sleep_async``).  To cancel, cancel the task: what
        it booked is given back by a second round trip (also when it is cancelled
        during the first), and the cancellation propagates once that is done, or at once
        if the task is cancelled again (the give-back still completes).

        Args:
            cost: How much of the limit to use.
            timeout: The longest acceptable wait in seconds (``None``: no limit).

        Raises:
            AcquireTimeout: At once, if the wait would exceed *timeout*; nothing is
                consumed and nothing is slept (`QueueFull` for a full leaky bucket).
            ValueError: If *cost* is not positive and finite, or *timeout* is negative.
            CostTooLarge: If *cost* exceeds `capacity`.
            StoreUnavailable: If the store cannot be reached or refuses the call (and does
                not fail open).
        """
        limit = optional_wait("timeout", timeout)
        value = self._check_cost(cost)
        queue = self._max_delay * (1 + _QUEUE_SLACK)
        booked, at, delay, booking = await self._book_shielded(
            value, min(limit, queue), blocking=True
        )
        with self._lock:
            if not booked:
                self._tally.timed_out += 1
                if delay > queue:
                    raise QueueFull(value, self._max_delay, delay)
                raise AcquireTimeout(value, limit, delay)
            if delay <= 0 or booking is None:
                self._tally.granted += 1
                return
            self._tally.waiting += 1
        clock = self._store.clock
        started = clock.now()
        woke = False
        try:
            await sleep_until_async(clock, at, started)
            woke = True
        finally:
            if woke:
                self._finish_wait(started, used=True)
            else:
                settle = self._store._spawn(self._abandon(booking, started))
                await asyncio.shield(settle)

    #: The name `ratekit.limited` and `ratekit.AsyncScheduler` call.
    acquire_async = acquire

    async def _abandon(self, booking: _Booking, started: float) -> None:
        """End a wait whose caller is gone: give its booking back, count the wait as over."""
        used = False
        try:
            used = not await self._settle(booking)
        finally:
            self._finish_wait(started, used=used)

    def __aenter__(self) -> Awaitable[None]:
        return self.acquire()

    def __aexit__(self, *exc_info: object) -> _Done:
        return DONE

    def statistics(self) -> LimiterStatistics:
        """Return this process's counters, without a round trip: ``level`` is NaN."""
        return self._snapshot(math.nan)

    async def statistics_async(self) -> LimiterStatistics:
        """Return this process's counters, with the current level read from the store.

        The level costs one round trip; it is NaN while the store is unavailable.
        """
        try:
            reply = await self._call("level", 1.0)
        except StoreUnavailable:
            reply = None
        return self._snapshot(math.nan if reply is None else float(reply[0]))

    def _snapshot(self, level: float) -> LimiterStatistics:
        with self._lock:
            return self._tally.snapshot(level, self._capacity)
