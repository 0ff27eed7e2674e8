"""`RedisStore`: one limit shared by every process and host that reaches a Redis server.

Every call is one round trip: one ``FCALL`` of a Lua function (Redis 7 and later; the
library is loaded once, and again if the server forgot it), or else one ``EVALSHA`` of
the same code as a script (loaded once; redis-py loads it again if the server forgot
it), that reads the time, decides and writes back, atomically.  The code ports the
in-memory strategies operation for operation (see ``_redis_script.py``), so a limit held
in Redis answers exactly as the same limit held in memory would.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Literal, TypeVar, cast, final

import attrs

from ratekit import _hooks
from ratekit._cancel import resolve
from ratekit._clock import MONOTONIC
from ratekit._decision import GRANTED, Decision, LimiterStatistics, Reservation
from ratekit._errors import (
    AcquireCancelled,
    AcquireTimeout,
    QueueFull,
    StoreUnavailable,
)
from ratekit._limited import Acquiring
from ratekit._limiter import _QUEUE_SLACK
from ratekit._rate import Rate, to_rate
from ratekit._redact import mask_secrets, redact_url
from ratekit._tally import StoreTally, Tally, check_cost, sleep_until, sleep_until_async
from ratekit._validate import optional_wait, positive

from ._redis_cluster import check as check_cluster
from ._redis_cluster import connect as connect_cluster
from ._redis_cluster import describe as describe_cluster
from ._redis_cluster import hash_tag, load_targets
from ._redis_cluster import outages as cluster_outages
from ._redis_script import FUNCTION, LIBRARY, SCRIPT

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from concurrent.futures import Future
    from types import TracebackType

    import redis
    from redis.cluster import RedisCluster

    from ratekit.typing import CancelEvent, Clock

__all__ = ["RedisLimiter", "RedisStore"]

_T = TypeVar("_T")

#: How long a key outlives the instant its state is back at rest, in seconds: the
#: margin covers the rounding of that instant to milliseconds and slow clients.
EXPIRY_MARGIN = 1.0

#: How many threads a store runs the round trips of its asyncio waits on.  Each job is
#: one round trip, bounded by the store's timeout, and none sleeps (waits are slept on
#: the event loop), so a handful keeps up with thousands of waits per second against
#: one (single-threaded) Redis server; more would not make it answer sooner, and while
#: it hangs they would only tie up more threads and connections.
_ASYNC_THREADS = 4

#: The names of those threads start with this, followed by a number.
_THREAD_PREFIX = "ratekit-redis"

#: The logger that reports an unavailable store when ``fail_open`` grants without it.
log = logging.getLogger("ratekit.stores")

#: The error codes with which a Redis that works as configured refuses a call for its
#: own state or policy, and what `StoreUnavailable` says it refused.  The same call
#: would succeed on a healthy server, so these fail closed or open as an unreachable
#: server does.  Every other error reply propagates as redis-py raises it, even with
#: ``fail_open``: a key of the wrong type (``WRONGTYPE``: something else wrote under
#: the store's prefix), an error raised by the store's own Lua code, ``CROSSSLOT``,
#: ``MOVED`` or ``ASK`` (a composition whose keys have no common hash tag, or a plain
#: client on a cluster) are bugs to fix, not outages to wait out, and granting or
#: refusing every call because of them would hide them.
_REFUSALS = {
    "OOM": "refused writes",  # over maxmemory, with noeviction or nothing to evict
    "MISCONF": "refused writes",  # an RDB save failed (stop-writes-on-bgsave-error)
    "READONLY": "refused writes",  # a replica: a failover, or an address gone stale
    "NOREPLICAS": "refused writes",  # fewer replicas in sync than min-replicas-to-write
    "BUSY": "refused the call",  # another client's script or function runs too long
    "LOADING": "refused the call",  # loading its data set after a restart
    "MASTERDOWN": "refused the call",  # a replica cut off from its master, no stale data
    "CLUSTERDOWN": "refused the call",  # a cluster with slots that no node serves
    "TRYAGAIN": "refused the call",  # keys of one call split by a resharding under way
    "NOPERM": "refused the call",  # ACLs: a command or a key this user may not use
    "NOAUTH": "refused the call",  # a password is required
    "WRONGPASS": "refused the call",  # the user or password is wrong, or disabled
}

#: An error code, as Redis puts it first in an error reply.
_CODE = re.compile(r"[A-Z][A-Z0-9_]*")

#: Before Redis 7, an error of a command that a script ran comes wrapped:
#: ``ERR Error running script (call to f_<sha>): @user_script:1: @user_script: 1: -OOM
#: command not allowed ...``.
_WRAPPED = re.compile(r"Error running script \(call to \w+\): .*?: -([A-Z][A-Z0-9_]*) ")

#: Redis 7.0 and 7.1 answer a command of a script that ACLs deny with a plain ``ERR``
#: (later versions say ``NOPERM``).
_SCRIPT_ACL = "The user executing the script can't"

#: The longest that a refusal's text is quoted in `StoreUnavailable`, in characters.
_QUOTED = 160

#: The member kinds the script knows, with their names in keys and reprs.
_KINDS = {
    "tb": ("token_bucket", "TokenBucket"),
    "lb": ("leaky_bucket", "LeakyBucket"),
    "sw": ("sliding_window", "SlidingWindow"),
    "fw": ("fixed_window", "FixedWindow"),
}


@attrs.frozen
class _Member:
    """One strategy held in the store: where its state lives and its parameters."""

    kind: str  # a key of _KINDS
    key: str  # the caller's key
    state_key: str
    log_key: str
    first: float  # rate per second (buckets) or limit (windows)
    second: float  # capacity (buckets) or window (windows)
    capacity: float
    max_delay: float
    shown: str  # the parameters, for repr
    #: The hash tag of its keys (see `_member`), or ``None``: keys without one.
    tag: str | None = None

    def __repr__(self) -> str:
        group = "" if self.tag in {None, self.key} else f", group={self.tag!r}"
        return f"{_KINDS[self.kind][1]}({self.shown}, key={self.key!r}{group})"


def _fmt(value: float) -> str:
    """A float as text the script reads back exactly (``repr`` round-trips)."""
    return repr(float(value))


def _member(  # noqa: PLR0913 - a member's parts, and where its keys go
    prefix: str,
    kind: str,
    key: str,
    params: tuple[float, float],
    shown: str,
    *,
    tag: str | None = None,
) -> _Member:
    """One member, with (rate per second, capacity) or (limit, window), and its keys.

    Its state key is ``prefix`` and *key*, then the kind (``ratekit:api:sliding_window``),
    as ever; with a hash *tag* (on a cluster, or with a ``group``) it is
    ``prefix{tag}:key:kind``, or ``prefix{key}:kind`` when the tag is the key.  The log
    key is the state key and ``:log``.
    """
    first, second = params
    name = _KINDS[kind][0]
    if tag is None:
        state = f"{prefix}{_check_key(key)}:{name}"
    elif tag == key:
        state = f"{prefix}{{{hash_tag(_check_key(key))}}}:{name}"
    else:
        state = f"{prefix}{{{hash_tag(tag)}}}:{_check_key(key)}:{name}"
    capacity = second if kind in {"tb", "lb"} else first
    max_delay = capacity / first if kind == "lb" else math.inf
    return _Member(kind, key, state, f"{state}:log", first, second, capacity, max_delay, shown, tag)


def _bucket_params(rate: Rate | float | str, capacity: float) -> tuple[tuple[float, float], str]:
    """A bucket's (rate per second, capacity), checked, and how its repr shows them."""
    value = to_rate(rate, "rate")
    size = positive("capacity", capacity)
    return (value.per_second, size), f"rate={value!r}, capacity={size!r}"


def _window_params(limit: float, window: float) -> tuple[tuple[float, float], str]:
    """A window's (limit, length in seconds), checked, and how its repr shows them."""
    size = positive("limit", limit)
    length = positive("window", window)
    return (size, length), f"limit={size!r}, window={length!r}"


def _check_key(key: object) -> str:
    if not isinstance(key, str):
        raise TypeError(f"key must be a str, got {type(key).__name__} {key!r}")
    if not key:
        raise ValueError("key must not be empty")
    return key


@final
class RedisStore:
    """Shared limits held in Redis: one round trip per call, atomic, on the server's time.

    Every limiter made here keeps its state in Redis under ``prefix`` and its key, so all
    the processes and hosts that use the same key share one limit, with the guarantee
    of the in-memory strategy of the same name (see `ratekit.TokenBucket` and the
    others).  Each call runs one Lua function (Redis 7 and later: a library loaded
    once, then run by ``FCALL``; Redis 6.2, or users refused ``FUNCTION``, run the
    same code as a script by its SHA; older servers are not supported) that reads
    the time from the Redis server, decides and writes back atomically, so no
    client's clock takes part in a decision and a client whose clock is off cannot
    over-admit; clients only sleep the durations the code returns, on their own
    clock.  Keys expire once their state is back at rest (a bucket full again, a
    window past, a queue drained), plus `EXPIRY_MARGIN`, so idle keys use no memory.

    When Redis cannot be reached within *timeout*, or refuses the call (out of memory
    with ``noeviction``, a failed RDB save, a read-only replica, a busy script, ACLs), a
    call raises `StoreUnavailable` (fail closed: the other processes' use is unknown),
    or with ``fail_open=True`` is granted, with one warning on the ``ratekit.stores``
    logger per outage.  Nothing needs to be done when Redis is back: the next call
    reconnects.  Other errors of Redis (a key of the wrong type) are bugs, and are
    raised as redis-py raises them.

    On a Redis Cluster (a `redis.cluster.RedisCluster` client, or ``cluster=True``
    with a URL) each call goes to the primary that serves its keys' slot.  The store
    gives every limit's keys a hash tag of its own (``ratekit:{api}:sliding_window``),
    so that one limiter's keys share a slot while different limits spread over the
    primaries; the members of a composition must share a slot too, so limits that are
    composed are made with one ``group`` (``group="tenant-42"`` for a tenant's limit
    and its users' limits), and `all_of` refuses members of different groups.  The
    function library is loaded on each primary by the first call it gets, and again
    after a restart, a failover or ``FUNCTION FLUSH`` (see ``docs/stores.md``).

    Args:
        client: A `redis.Redis` or `redis.cluster.RedisCluster` client to use as it is
            (its own timeouts and retries apply); it is left open by `close`.
        url: Or a URL such as ``"redis://:password@host:6379/0"``, for a client made
            here with *timeout* and one immediate retry of a dropped connection.
        cluster: With *url*: the server is one node of a Redis Cluster, whose other
            nodes the client discovers from it (a URL alone cannot tell).  With a
            client, its class tells.
        prefix: Put before every key (on a cluster, without ``{``: the store places the
            hash tags).
        timeout: Seconds to wait for a connection and for each answer (URL only).
        fail_open: Grant calls while Redis is unreachable, instead of raising.
        clock: ``None`` (production): the Redis server's ``TIME`` decides.  A clock
            (such as `ratekit.testing.FakeClock`) supplies the time of every decision
            instead, for deterministic tests.  Blocking waits sleep on it (or on
            `ratekit.MonotonicClock`) for the durations the script returns.

    Raises:
        ValueError: If neither or both of *client* and *url* are given, *url* is not a
            Redis URL, *timeout* is not a positive number, *cluster* is given with a
            client that is not a cluster's, or a cluster's *prefix* holds a ``{``.
        StoreUnavailable: With ``cluster=True``, if no node of the cluster can be
            reached (its client reads the cluster's layout at once).
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
        "_inject",
        "_lock",
        "_owned",
        "_pool",
        "_prefix",
        "_script",
        "_secrets",
        "_timeout",
    )

    def __init__(  # noqa: PLR0913 - a client or a URL (of a cluster?), and four options
        self,
        client: redis.Redis | RedisCluster | None = None,
        *,
        url: str | None = None,
        cluster: bool | None = None,
        prefix: str = "ratekit:",
        timeout: float = 1.0,
        fail_open: bool = False,
        clock: Clock | None = None,
    ) -> None:
        import redis as redis_module
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, got {type(prefix).__name__} {prefix!r}")
        self._timeout = positive("timeout", timeout)
        self._cluster = check_cluster("RedisStore", client, url, cluster, prefix)
        if url is not None and self._cluster:
            client = self._connect_cluster(url)
        elif url is not None:
            try:
                client = redis_module.Redis.from_url(
                    url,
                    socket_timeout=self._timeout,
                    socket_connect_timeout=self._timeout,
                    # One immediate retry, for a connection the server dropped (a restart);
                    # a timeout is not retried, so no call waits longer than the timeout.
                    retry=Retry(NoBackoff(), 1, (redis_module.ConnectionError,)),
                )
            except ValueError:
                raise ValueError(
                    f"url must be a Redis URL (redis://, rediss:// or unix://), got "
                    f"{redact_url(url)!r}"
                ) from None
        assert client is not None  # noqa: S101 - for the type checker: exactly one was given
        self._client = client
        self._owned = url is not None
        self._prefix = prefix
        self._fail_open = bool(fail_open)
        self._inject = clock
        self._clock: Clock = MONOTONIC if clock is None else clock
        self._lock = threading.Lock()
        self._down = False
        #: The threads of asyncio waits, started on first use (see `_submit`).
        self._pool: ThreadPoolExecutor | None = None
        self._description, self._secrets = _describe(client, cluster=self._cluster)
        #: The failures to reach the server; its refusals are told apart by `_refusal`.
        self._errors = _unreachable(cluster=self._cluster)
        self._script = client.register_script(SCRIPT)
        #: Whether calls go by FCALL; turned off for good once the server refuses it.
        self._functions = True
        #: Round trips, `StoreUnavailable` raised, calls granted by failing open (under
        #: ``_lock``; read by `ratekit.telemetry`).
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
        """The clock that blocking waits sleep on."""
        return self._clock

    @property
    def cluster(self) -> bool:
        """Whether the store is a Redis Cluster (its keys carry hash tags)."""
        return self._cluster

    def _connect_cluster(self, url: str) -> RedisCluster:
        """A client of the cluster that *url* names a node of (see `connect_cluster`).

        Raises:
            StoreUnavailable: If no node can be reached.
        """
        try:
            return cast("RedisCluster", connect_cluster(url, self._timeout))
        except ValueError:
            raise
        except Exception as error:
            reason = _explain(
                error,
                errors=(*cluster_outages(), OSError),
                timeout=self._timeout,
                owned=True,
                secrets=(),
            )
            if reason is None:
                raise
            raise StoreUnavailable(
                f"Redis Cluster at {redact_url(url)}", redact_url(reason)
            ) from error

    def __repr__(self) -> str:
        return (
            f"RedisStore({self._description!r}, prefix={self._prefix!r}, "
            f"fail_open={self._fail_open!r})"
        )

    def close(self) -> None:
        """Stop the store's threads, and close the client if this store made it from a URL.

        The threads that run the round trips of `RedisLimiter.acquire_async` finish
        what was handed to them (each round trip is bounded by the timeout) and are
        joined, so none outlives this call; a later asyncio wait starts them again.
        A given client stays open.
        """
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        if self._owned:
            self._client.close()

    def __enter__(self) -> RedisStore:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- limiters -----------------------------------------------------------------------

    def _one(
        self,
        kind: str,
        key: str,
        params: tuple[float, float],
        shown: str,
        group: str | None = None,
    ) -> RedisLimiter:
        """A limiter of one member, with (rate per second, capacity) or (limit, window)."""
        member = _member(self._prefix, kind, key, params, shown, tag=self._tag(key, group))
        return RedisLimiter(self, (member,), composite=False)

    def _tag(self, key: str, group: str | None) -> str | None:
        return _hash_tag(key, group, cluster=self._cluster)

    def token_bucket(
        self, key: str, rate: Rate | float | str, capacity: float, *, group: str | None = None
    ) -> RedisLimiter:
        """A `ratekit.TokenBucket` held in the store under *key*.

        Args:
            key: Names the limit; every limiter with this key shares it.
            rate: A `Rate`, units per second, or text (``"90/minute"``).
            capacity: The largest burst, and the largest cost.
            group: Names the limits that may be composed with this one (see `all_of`);
                part of the limit's name: the same key in another group is another limit.
                ``None``: on a cluster, the key; else no group.

        Raises:
            ValueError: If the rate or the capacity is not positive and finite, or the
                key or group is empty.
        """
        return self._one("tb", key, *_bucket_params(rate, capacity), group)

    def leaky_bucket(
        self, key: str, rate: Rate | float | str, capacity: float, *, group: str | None = None
    ) -> RedisLimiter:
        """A `ratekit.LeakyBucket` held in the store under *key*.

        Args:
            key: Names the limit; every limiter with this key shares it.
            rate: A `Rate`, units per second, or text (``"2/s"``).
            capacity: How much may wait in the queue, in cost units; also the largest cost.
            group: Names the limits that may be composed with this one (see `all_of`);
                part of the limit's name: the same key in another group is another limit.
                ``None``: on a cluster, the key; else no group.

        Raises:
            ValueError: If the rate or the capacity is not positive and finite, or the
                key or group is empty.
        """
        return self._one("lb", key, *_bucket_params(rate, capacity), group)

    def sliding_window(
        self, key: str, limit: float, window: float, *, group: str | None = None
    ) -> RedisLimiter:
        """A `ratekit.SlidingWindow` held in the store under *key*.

        Its log is a list beside the key's state, with one entry per distinct grant
        instant in the last window (at most *limit* for whole costs).

        Args:
            key: Names the limit; every limiter with this key shares it.
            limit: The most that may be granted within any window; also the largest cost.
            window: The window's length in seconds.
            group: Names the limits that may be composed with this one (see `all_of`);
                part of the limit's name: the same key in another group is another limit.
                ``None``: on a cluster, the key; else no group.

        Raises:
            ValueError: If *limit* or *window* is not positive and finite, or the key or
                group is empty.
        """
        return self._one("sw", key, *_window_params(limit, window), group)

    def fixed_window(
        self, key: str, limit: float, window: float, *, group: str | None = None
    ) -> RedisLimiter:
        """A `ratekit.FixedWindow` held in the store under *key*.

        On the server's time the windows are aligned on the Unix epoch, so ``"100/hour"``
        resets on the hour.

        Args:
            key: Names the limit; every limiter with this key shares it.
            limit: The most that may be granted within one window; also the largest cost.
            window: The window's length in seconds.
            group: Names the limits that may be composed with this one (see `all_of`);
                part of the limit's name: the same key in another group is another limit.
                ``None``: on a cluster, the key; else no group.

        Raises:
            ValueError: If *limit* or *window* is not positive and finite, or the key or
                group is empty.
        """
        return self._one("fw", key, *_window_params(limit, window), group)

    def limiter(
        self,
        key: str,
        *limits: str | Rate,
        strategy: Literal["sliding", "fixed", "token"] = "sliding",
        group: str | None = None,
    ) -> RedisLimiter:
        """State one or more limits at once, as `ratekit.limiter` does, held under *key*.

        ``store.limiter("api", "10/second, 1000/hour")`` makes one member per limit (a
        sliding window by default, or ``"fixed"`` windows, or ``"token"`` buckets with a
        capacity of N) and composes them with `all_of`.  Each member's key is *key* and
        its period (``"api@1s"``, ``"api@3600s"``), so limits can be added without
        resetting the others.  Its members share *group* (on a cluster, by default
        *key*), so they share a slot.

        Raises:
            ValueError: If no limit is given, one cannot be parsed, *strategy* is unknown
                or the key or group is empty.
        """
        members: list[RedisLimiter] = []
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

    def all_of(self, *limiters: RedisLimiter) -> RedisLimiter:
        """Compose limiters of this store: grant only what all of them grant, at once.

        The same as `ratekit.all_of`, in one script call: all or nothing, a blocking
        call booked on every member at the earliest instant that suits them all, and a
        reservation withdrawn from all of them at once.  Nested compositions are
        flattened, and a member given twice counts once.

        On a cluster one call reaches the keys of one slot only, so the members must
        share a group (see `token_bucket`); members of different groups are refused
        here, when the composition is made, rather than by every call.

        Raises:
            TypeError: If an argument is not a limiter of this store.
            ValueError: If there are none, two members share a key with different
                parameters, or (on a cluster) two members are in different groups.
        """
        for index, limiter in enumerate(limiters):
            candidate: object = limiter
            if not isinstance(candidate, RedisLimiter) or candidate.store is not self:
                raise TypeError(
                    f"all_of() argument {index + 1} must be a limiter of this store, "
                    f"got {limiter!r}"
                )
        members = _merged([limiter._members for limiter in limiters])
        if self._cluster:
            _one_slot(members)
        return RedisLimiter(self, members, composite=True)

    # -- the round trip -----------------------------------------------------------------

    def _submit(self, call: Callable[..., _T], *args: object) -> Future[_T]:
        """Run *call* on the store's own threads, started on first use.

        Not the event loop's default executor: that one also resolves host names
        (``getaddrinfo``) and runs everybody's `asyncio.to_thread`, which a hung Redis
        must not starve.  The job is queued under the lock, so that `close`, which
        takes the pool under the same lock, waits for every job handed to it.
        """
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(_ASYNC_THREADS, thread_name_prefix=_THREAD_PREFIX)
            return self._pool.submit(call, *args)

    def _run(
        self, keys: Sequence[str], args: Sequence[str], *, counted: bool = True
    ) -> list[str] | None:
        """Run the script once; ``None`` means: unavailable, and granted (fail open).

        *counted*: whether the call counts in the store's counts (not a level read for
        `RedisLimiter.statistics`, which metrics collection makes).

        Raises:
            StoreUnavailable: If Redis cannot be reached or refuses the call (unless
                failing open).
            redis.ResponseError: If Redis answers with another error: a bug.
        """
        if counted:
            with self._lock:
                self._counts.round_trips += 1
        try:
            reply = self._invoke(keys, args)
        except Exception as error:
            reason = self._reason(error)
            if reason is None:  # not the store's outage: a bug, see _REFUSALS
                raise
            unavailable = StoreUnavailable(self._description, reason)
            if not self._fail_open:
                if counted:
                    with self._lock:
                        self._counts.unavailable += 1
                raise unavailable from error
            with self._lock:
                first, self._down = not self._down, True
            if first:
                log.warning(
                    "%s; granting every call without a limit until it is back (fail_open)",
                    unavailable,
                )
            return None
        if self._down:
            with self._lock:
                back, self._down = self._down, False
            if back:
                log.warning("%s is available again; limits apply again", self._description)
        return _decoded(reply)

    def _invoke(self, keys: Sequence[str], args: Sequence[str]) -> bytes | str:
        """One call: ``FCALL`` (loading the library if it is missing), else ``EVALSHA``."""
        from redis.exceptions import ResponseError

        if self._functions:
            try:
                return self._fcall(keys, args)
            except self._errors:
                raise
            except ResponseError as error:
                failure = _fcall_failure(error)
                if failure == "load":
                    # A new server, a restart or FUNCTION FLUSH: load it, and retry once.
                    if self._load_library(error, keys[0]):
                        return self._fcall(keys, args)
                elif failure == "script":
                    self._no_functions(error)
                else:
                    raise
        reply: bytes | str = self._script(keys=keys, args=args, client=self._client)
        return reply

    def _fcall(self, keys: Sequence[str], args: Sequence[str]) -> bytes | str:
        reply: bytes | str = self._client.fcall(FUNCTION, len(keys), *keys, *args)
        return reply

    def _load_library(self, answered: BaseException | None = None, key: str = "") -> bool:
        """Load the function library; ``False`` if the server refuses (use the script).

        On a cluster it is loaded on the node that *answered* "function not found" to a
        call whose first key is *key* (the others load it when they say so themselves),
        or, without *answered*, on every primary.

        Raises:
            redis.ConnectionError: And the other `_errors`, as any call does.
        """
        from redis.exceptions import ResponseError

        try:
            if self._cluster:
                client = cast("RedisCluster", self._client)
                # FUNCTION LOAD itself, as function_load sends it, to the nodes chosen.
                client.execute_command(  # type: ignore[no-untyped-call]
                    "FUNCTION LOAD",
                    "REPLACE",
                    LIBRARY,
                    target_nodes=load_targets(client, answered, key),
                )
            else:
                self._client.function_load(LIBRARY, replace=True)
        except self._errors:
            raise
        except ResponseError as error:
            if not _load_refused(error):
                raise
            self._no_functions(error)  # before Redis 7, or FUNCTION denied by an ACL
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

    def _reason(self, error: BaseException) -> str | None:
        """What went wrong, for `StoreUnavailable` (see `_explain`)."""
        return _explain(
            error,
            errors=self._errors,
            timeout=self._timeout,
            owned=self._owned,
            secrets=self._secrets,
        )


def _hash_tag(key: str, group: str | None, *, cluster: bool) -> str | None:
    """The hash tag of a limit's keys: its group; on a cluster, by default its key."""
    if group is not None:
        if not isinstance(group, str):
            raise TypeError(f"group must be a str, got {type(group).__name__} {group!r}")
        if not group:
            raise ValueError("group must not be empty")
        return group
    return key if cluster else None


def _named_limits(key: str, limits: Sequence[str | Rate], strategy: str) -> list[tuple[str, Rate]]:
    """The members of ``limiter(key, *limits)``: each one's key (``"api@1s"``) and rate.

    Raises:
        ValueError: If no limit is given, one cannot be parsed, *strategy* is unknown
            or the key is empty.
    """
    _check_key(key)
    if strategy not in {"sliding", "fixed", "token"}:
        raise ValueError(f"strategy must be one of 'sliding', 'fixed' or 'token', got {strategy!r}")
    named: list[tuple[str, Rate]] = []
    seen: dict[str, int] = {}
    for rate in Rate.parse_many(limits, caller="limiter()"):
        name = f"{key}@{rate.per:g}s"
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            name = f"{name}#{seen[name]}"
        named.append((name, rate))
    return named


def _merged(groups: Sequence[tuple[_Member, ...]]) -> tuple[_Member, ...]:
    """The members of ``all_of`` over limiters with these members: flat, each once.

    Raises:
        ValueError: If there are none, or two members share a key with different
            parameters.
    """
    members: list[_Member] = []
    for group in groups:
        for member in group:
            same = [m for m in members if m.state_key == member.state_key]
            if not same:
                members.append(member)
            elif same[0] != member:
                raise ValueError(
                    f"all_of() members {same[0]!r} and {member!r} share a key "
                    "with different parameters"
                )
    if not members:
        raise ValueError("all_of() needs at least one limiter")
    return tuple(members)


def _one_slot(members: tuple[_Member, ...]) -> None:
    """Check that a cluster composition's members share a group, so one slot holds them.

    Raises:
        ValueError: Naming two members of different groups, and what to do.
    """
    first = members[0]
    for member in members[1:]:
        if member.tag != first.tag:
            raise ValueError(
                f"all_of() members {first!r} (group {first.tag!r}) and {member!r} "
                f"(group {member.tag!r}) are in different groups, so their keys are in "
                "different slots of the Redis Cluster, which no single call can reach: "
                f"make the limits that are composed with one group, as in "
                f"store.token_bucket(key, ..., group={first.tag!r}) or "
                f"store.limiter(key, ..., group={first.tag!r})"
            )


def _script_args(members: tuple[_Member, ...], *, composite: bool) -> list[str]:
    """The arguments every call of a limiter with *members* passes after its first five."""
    return [
        "1" if composite else "0",
        str(math.ceil(EXPIRY_MARGIN * 1000)),
        str(len(members)),
        *(
            text
            for member in members
            for text in (member.kind, _fmt(member.first), _fmt(member.second))
        ),
    ]


def _decoded(reply: bytes | str) -> list[str]:
    """A reply of the Lua code, as its parts: one text, the parts separated by spaces."""
    return (reply.decode() if isinstance(reply, bytes) else reply).split(" ")


def _booked(
    reply: list[str] | None, clock: Clock, *, injected: bool
) -> tuple[bool, float, float, _Booking | None]:
    """Read the reply of a ``book`` call: (booked, local instant, delay, booking).

    ``None`` (the store is down and fails open) is booked at once, with nothing to give
    back.
    """
    if reply is None:
        return True, clock.now(), 0.0, None
    delay = float(reply[2])
    # With an injected clock the script's instants are that clock's; otherwise they
    # are the server's, and the wait is placed on the local clock by its duration.
    at = float(reply[1]) if injected else clock.now() + delay
    if reply[0] != "1":
        return False, at, delay, None
    return True, at, delay, _Booking(float(reply[1]), reply[3])


def _fcall_failure(error: BaseException) -> Literal["load", "script"] | None:
    """What to do when ``FCALL`` fails with the error reply *error*.

    Returns:
        ``"load"``: the library is missing (a new server, a restart, ``FUNCTION
        FLUSH``), load it and retry once; ``"script"``: functions are unavailable
        (before Redis 7, or ``FCALL`` denied), run the script from now on; ``None``:
        neither, raise it.
    """
    from redis.exceptions import NoPermissionError

    text = str(error).lower()
    if "function not found" in text:
        return "load"
    if "unknown command" in text or (
        # FCALL itself denied; a NOPERM for the keys would deny EVALSHA too.
        isinstance(error, NoPermissionError) and "'fcall'" in text
    ):
        return "script"
    return None


def _load_refused(error: BaseException) -> bool:
    """Whether a failed ``FUNCTION LOAD`` means: no functions here, run the script.

    ``False``: a passing refusal (OOM, MISCONF, READONLY...), raised as a script's
    would be; a later call loads the library.
    """
    from redis.exceptions import NoPermissionError

    return _refusal(error) is None or isinstance(error, NoPermissionError)


def _explain(
    error: BaseException,
    *,
    errors: tuple[type[BaseException], ...],
    timeout: float,
    owned: bool,
    secrets: Sequence[str],
) -> str | None:
    """What went wrong, for `StoreUnavailable`, with any credential masked.

    Args:
        error: What the client raised.
        errors: The failures to reach the server.
        timeout: The store's timeout, in seconds.
        owned: Whether the store made the client (so that *timeout* applies).
        secrets: The credentials to mask.

    Returns:
        ``None`` if *error* is neither a failure to reach the server nor one of its
        refusals (see `_REFUSALS`).
    """
    import redis as redis_module

    refusal = _refusal(error)
    if refusal is not None:
        text = refusal
    elif not isinstance(error, errors):
        return None
    elif isinstance(error, (redis_module.TimeoutError, TimeoutError)):
        text = f"no answer within {timeout!r} s ({error})" if owned else str(error)
    else:
        text = str(error) or type(error).__name__
    return mask_secrets(text, secrets, shortest=1)


def _refusal(error: BaseException) -> str | None:
    """What the server refused and what it said, in short, or ``None`` if not a refusal.

    ``"refused writes: OOM command not allowed when used memory > 'maxmemory'"``: the
    reply's code, then its first sentence, without the script's name and line that
    Redis 7 adds to the errors of commands that a script runs.
    """
    from redis import exceptions

    if not isinstance(error, exceptions.RedisError):
        return None
    text = str(error)
    code = getattr(error, "status_code", None)  # where redis-py keeps it
    if not isinstance(code, str):
        # Older redis-py: the classes of the codes it takes off the message.
        classes = (
            (exceptions.MasterDownError, "MASTERDOWN"),
            (exceptions.ClusterDownError, "CLUSTERDOWN"),
            (exceptions.TryAgainError, "TRYAGAIN"),
            (exceptions.OutOfMemoryError, "OOM"),
            (exceptions.ReadOnlyError, "READONLY"),
            (exceptions.NoPermissionError, "NOPERM"),
            (exceptions.BusyLoadingError, "LOADING"),
        )
        code = next((name for kind, name in classes if isinstance(error, kind)), None)
    if code is None and isinstance(error, exceptions.ResponseError):
        first = text.split(" ", 1)[0]  # a code redis-py does not know stays in the message
        code = first if _CODE.fullmatch(first) else None
    if code is not None and text.startswith(f"{code} "):
        text = text[len(code) + 1 :]
    said = f"{code} {text}" if code else text
    wrapped = _WRAPPED.match(text)
    if wrapped is not None:
        code, said = wrapped[1], text[wrapped.start(1) :]
    elif text.startswith(_SCRIPT_ACL):
        code = "NOPERM"
    refused = _REFUSALS.get(code or "")
    if refused is None:
        return None
    said = said.split(" script: ", 1)[0].split(". ", 1)[0].rstrip(".")
    said = " ".join(said.split())  # one line
    if len(said) > _QUOTED:
        said = f"{said[: _QUOTED - 3]}..."
    return f"{refused}: {said}"


def _unreachable(*, cluster: bool) -> tuple[type[BaseException], ...]:
    """The errors of a client that mean: the server (or the *cluster*) cannot be reached.

    Its refusals are told apart by `_refusal`.
    """
    import redis as redis_module

    return (
        redis_module.ConnectionError,
        redis_module.TimeoutError,
        OSError,
        *(cluster_outages() if cluster else ()),
    )


def _describe(client: object, *, cluster: bool = False) -> tuple[str, tuple[str, ...]]:
    """Name the server a client talks to, and list the secrets to keep out of messages.

    With *cluster*: name the cluster by its startup nodes (see `describe_cluster`).
    """
    if cluster:
        return describe_cluster(client)  # type: ignore[arg-type]
    pool = getattr(client, "connection_pool", None)
    kwargs: dict[str, object] = dict(getattr(pool, "connection_kwargs", {}) or {})
    secrets = tuple(
        str(kwargs[name])
        for name in ("password", "username")
        if isinstance(kwargs.get(name), str) and kwargs[name]
    )
    db = kwargs.get("db", 0)
    if "path" in kwargs:
        return f"Redis at unix:{kwargs['path']}/{db}", secrets
    host, port = kwargs.get("host", "localhost"), kwargs.get("port", 6379)
    return f"Redis at {host}:{port}/{db}", secrets


@attrs.frozen
class _Booking:
    """What withdrawing a booking needs: its instant in the script's time, its token."""

    at: float
    token: str


@attrs.define(eq=False)
class _Handoff:
    """A booking made in a store thread for a task that may be cancelled meanwhile.

    The thread, once booked, and the task, once cancelled, each mark it under the
    limiter's lock; whichever comes second gives the booking back, so exactly one does.
    """

    booking: _Booking | None = None
    abandoned: bool = False


@final
class RedisLimiter(Acquiring):
    """A limit held in a `RedisStore`: a `ratekit.typing.Limiter` shared by every process.

    Made by the store's `RedisStore.token_bucket`, `RedisStore.leaky_bucket`,
    `RedisStore.sliding_window`, `RedisStore.fixed_window`, `RedisStore.limiter` and
    `RedisStore.all_of`.  It answers as the in-memory strategy does (exact
    ``retry_after``, bookings in arrival order, waits slept once, cancelled waits given
    back), with one round trip per call, and raises `StoreUnavailable` when the store
    cannot be reached or refuses the call (unless it fails open).

    Its `statistics` count this process's calls; their ``level`` is read from the store
    (one round trip), and is NaN while the store is unavailable.
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

    def __init__(self, store: RedisStore, members: tuple[_Member, ...], *, composite: bool) -> None:
        self._store = store
        self._members = members
        self._composite = composite
        self._capacity = min(member.capacity for member in members)
        self._max_delay = min(member.max_delay for member in members)
        self._keys = [key for member in members for key in (member.state_key, member.log_key)]
        self._args = _script_args(members, composite=composite)
        self._lock = threading.Lock()
        self._tally = Tally()
        # Called with the seconds of each finished wait (`ratekit.telemetry`), or None.
        self._on_wait: Callable[[float], None] | None = None
        _hooks.made(self)

    @property
    def store(self) -> RedisStore:
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
        return f"RedisLimiter({shown}, store={self._store.description!r})"

    # -- the script ---------------------------------------------------------------------

    def _call(self, op: str, cost: float, extra: str = "", token: str = "") -> list[str] | None:
        inject = self._store._inject
        now = "" if inject is None else _fmt(inject.now())
        args = [op, now, _fmt(cost), extra, token, *self._args]
        return self._store._run(self._keys, args, counted=op != "level")

    def _opened(self) -> None:
        """Count a call granted without the store, which is down (fail open)."""
        store = self._store
        with store._lock:
            store._counts.fail_open += 1

    def _book_call(self, cost: float, limit: float) -> tuple[bool, float, float, _Booking | None]:
        """Book *cost* if it waits at most *limit*: (booked, local instant, delay, booking).

        A store that is unreachable and fails open books nothing and grants at once.
        """
        reply = self._call("book", cost, _fmt(limit))
        if reply is None:
            self._opened()
        return _booked(reply, self._store.clock, injected=self._store._inject is not None)

    def _give_back(self, booking: _Booking) -> bool | None:
        """Withdraw a booking whose time has not come (in the script's time).

        Returns ``True`` if withdrawn, ``False`` if its time had come (it counts as
        used), ``None`` if the store was unreachable and fails open.
        """
        reply = self._call("cancel", 1.0, _fmt(booking.at), booking.token)
        if reply is None:
            return None
        if reply[0] != "1":
            return False
        with self._lock:
            self._tally.cancelled += 1
        return True

    # -- the Limiter protocol -----------------------------------------------------------

    def _check_cost(self, cost: object) -> float:
        return check_cost(cost, self._capacity)

    def try_acquire(self, cost: float = 1) -> Decision:
        """Grant *cost* now if the shared limit allows it, without blocking.

        Returns:
            A `Decision`, truthy iff granted.  When denied, nothing changes and its
            ``retry_after`` is the exact wait until the same cost could be granted.

        Raises:
            ValueError: If *cost* is not a positive finite number.
            CostTooLarge: If *cost* exceeds `capacity`.
            StoreUnavailable: If the store cannot be reached or refuses the call (and does
                not fail open).
        """
        value = self._check_cost(cost)
        reply = self._call("try", value)
        if reply is None:
            self._opened()
        if reply is None or reply[0] == "1":
            with self._lock:
                self._tally.granted += 1
            return GRANTED
        with self._lock:
            self._tally.denied += 1
        return Decision(False, float(reply[1]))

    def reserve(self, cost: float = 1, *, max_wait: float | None = None) -> Reservation:
        """Book *cost* for the earliest time it can be granted, without waiting.

        The caller should act after ``reservation.delay`` seconds, or cancel.  If that
        delay would exceed *max_wait* (or a leaky bucket's queue), nothing is booked and
        ``reservation.ok`` is false.  ``ready_at`` is a reading of the store's clock.

        Raises:
            ValueError: If *cost* is not a positive finite number or *max_wait* is negative.
            CostTooLarge: If *cost* exceeds `capacity`.
            StoreUnavailable: If the store cannot be reached or refuses the call (and does
                not fail open).
        """
        limit = min(optional_wait("max_wait", max_wait), self._max_delay * (1 + _QUEUE_SLACK))
        value = self._check_cost(cost)
        booked, at, delay, booking = self._book_call(value, limit)
        with self._lock:
            if not booked:
                self._tally.denied += 1
                return Reservation(False, delay, value, at)
            self._tally.granted += 1
        if booking is None:  # granted by failing open: nothing to withdraw
            return Reservation(True, delay, value, at)
        return Reservation(True, delay, value, at, owner=self, token=booking)

    def _cancel_reservation(self, reservation: Reservation) -> bool:
        """Withdraw *reservation* (called by `Reservation.cancel`)."""
        booking = reservation._token
        if not isinstance(booking, _Booking):  # pragma: no cover - only ours reach here
            return False
        with self._lock:
            if reservation.cancelled:
                return False
            # Claimed before the round trip, so that two threads cannot both withdraw it.
            reservation._mark(cancelled=True)
        returned: bool | None = False
        try:
            returned = self._give_back(booking)
        finally:
            with self._lock:
                if returned is True:
                    self._tally.withdraw()
                else:
                    reservation._mark(cancelled=False)
        return returned is True

    def _book(
        self, cost: object, timeout: float | None, cancel: CancelEvent | None
    ) -> tuple[float, float, _Booking | None]:
        """Book a blocking call; return its cost, when to wake (``-inf``: granted), booking."""
        limit = optional_wait("timeout", timeout)
        value = self._check_cost(cost)
        if cancel is not None and cancel.is_set():
            with self._lock:
                self._tally.cancelled += 1
            raise AcquireCancelled(value)
        queue = self._max_delay * (1 + _QUEUE_SLACK)
        booked, at, delay, booking = self._book_call(value, min(limit, queue))
        with self._lock:
            if not booked:
                self._tally.timed_out += 1
                if delay > queue:
                    raise QueueFull(value, self._max_delay, delay)
                raise AcquireTimeout(value, limit, delay)
            if delay <= 0 or booking is None:
                self._tally.granted += 1
                return value, -math.inf, None
            self._tally.waiting += 1
        return value, at, booking

    def _finish_wait(self, started: float, *, used: bool) -> None:
        with self._lock:
            waited = self._tally.end_wait(started, self._store.clock.now(), used=used)
        if self._on_wait is not None:
            self._on_wait(waited)

    def acquire(
        self,
        cost: float = 1,
        *,
        timeout: float | None = None,
        cancel: CancelEvent | None = None,
    ) -> None:
        """Block until *cost* is granted; callers are served in arrival order.

        The slot is booked in the store by one round trip, then the exact delay it
        returns is slept once, on the store's clock, without asking Redis again.

        Args:
            cost: How much of the limit to use.
            timeout: The longest acceptable wait in seconds (``None``: no limit).
            cancel: An event (such as `threading.Event`) that aborts the wait when set;
                ``None``: the `ratekit.current_cancel`, if any.

        Raises:
            AcquireTimeout: At once, if the wait would exceed *timeout*; nothing is
                consumed and nothing is slept (`QueueFull` for a full leaky bucket).
            AcquireCancelled: If *cancel* is set before or during the wait; the booking
                is given back by a second round trip (if that fails, it is kept, which
                is safe).
            ValueError: If *cost* is not positive and finite, or *timeout* is negative.
            CostTooLarge: If *cost* exceeds `capacity`.
            StoreUnavailable: If the store cannot be reached or refuses the call (and does
                not fail open).
        """
        cancel = resolve(cancel)
        value, at, booking = self._book(cost, timeout, cancel)
        if booking is None:
            return
        clock = self._store.clock
        started = clock.now()
        woke = False
        try:
            woke = sleep_until(clock, at, cancel, started)
        finally:
            used = woke or not self._settle(booking)
            self._finish_wait(started, used=used)
        if not used:
            raise AcquireCancelled(value)

    def _settle(self, booking: _Booking) -> bool:
        """Give back an interrupted wait's booking; return whether the caller must not go.

        ``False`` means its time had come, so it counts as used.  If the store cannot be
        reached, the booking stays (its slot is lost to everyone, which never
        over-admits) and the caller does not go either.
        """
        try:
            returned = self._give_back(booking)
        except StoreUnavailable:
            returned = None
        if returned is None:
            log.warning("%s: a cancelled wait kept its booking", self._store.description)
            with self._lock:
                self._tally.cancelled += 1
            return True
        return returned

    async def acquire_async(self, cost: float = 1, *, timeout: float | None = None) -> None:
        """Wait without blocking the event loop until *cost* is granted.

        The same as `acquire`.  The round trips run on the store's own small pool of
        threads (stopped by `RedisStore.close`), not on the event loop's default
        executor, so a slow or hung Redis cannot starve host name resolution or
        `asyncio.to_thread`.  To cancel, cancel the task: it ends once what it had booked
        is given back, or at once if cancelled again (the give-back still completes, and
        `statistics` stays exact).

        Raises:
            AcquireTimeout: At once, if the wait would exceed *timeout*.
            ValueError: If *cost* is not positive and finite, or *timeout* is negative.
            CostTooLarge: If *cost* exceeds `capacity`.
            StoreUnavailable: If the store cannot be reached or refuses the call (and does
                not fail open).
        """
        value = self._check_cost(cost)
        optional_wait("timeout", timeout)
        loop = asyncio.get_running_loop()
        handoff = _Handoff()
        job = self._store._submit(self._book_for_task, value, timeout, handoff)
        try:
            _, at, booking = await asyncio.wrap_future(job, loop=loop)
        except asyncio.CancelledError:
            pending = self._abandon_booking(job, handoff)
            if pending is not None:
                # The booking's own outcome no longer matters: this task is cancelled.
                with contextlib.suppress(Exception):
                    await asyncio.shield(asyncio.wrap_future(pending, loop=loop))
            raise
        if booking is None:
            return
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
                # The give-back's thread also ends the wait's count, so that a second
                # cancellation, which ends only this await, cannot leave it waiting.
                settle = self._store._submit(self._abandon, booking, started)
                await asyncio.shield(asyncio.wrap_future(settle, loop=loop))

    def _book_for_task(
        self, cost: float, timeout: float | None, handoff: _Handoff
    ) -> tuple[float, float, _Booking | None]:
        """`_book`, in a store thread, for a task that may be cancelled meanwhile."""
        result = self._book(cost, timeout, None)
        booking = result[2]
        if booking is not None:
            with self._lock:
                handoff.booking = booking
                gone = handoff.abandoned
            if gone:
                self._abandon(booking, self._store.clock.now())
        return result

    def _abandon_booking(
        self, job: Future[tuple[float, float, _Booking | None]], handoff: _Handoff
    ) -> Future[tuple[float, float, _Booking | None]] | Future[None] | None:
        """Give back what a task cancelled while booking holds, or will hold.

        Returns:
            The job that ends with the booking given back, or ``None`` if nothing was
            booked.
        """
        if job.cancel():  # still queued: nothing was booked, nothing will be
            with self._lock:
                self._tally.cancelled += 1
            return None
        with self._lock:
            handoff.abandoned = True
            booking = handoff.booking
        if booking is None:  # not booked yet (or nothing to give back): its thread sees to it
            return job
        return self._store._submit(self._abandon, booking, self._store.clock.now())

    def _abandon(self, booking: _Booking, started: float) -> None:
        """End a wait whose caller is gone: give its booking back, count the wait as over.

        It runs in a store thread, from start to end whatever happens to the task that
        waited (cancelled again, its event loop closed).
        """
        used = False
        try:
            used = not self._settle(booking)
        finally:
            self._finish_wait(started, used=used)

    def statistics(self) -> LimiterStatistics:
        """Return this process's counters, with the current level read from the store.

        The level costs one round trip; it is NaN while the store is unavailable.
        """
        try:
            reply = self._call("level", 1.0)
        except StoreUnavailable:
            reply = None
        level = math.nan if reply is None else float(reply[0])
        with self._lock:
            return self._tally.snapshot(level, self._capacity)
