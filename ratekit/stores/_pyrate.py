"""pyrate-limiter's buckets as ratekit limiters: one limit shared by processes on one host.

`PyrateLimiter` adapts any synchronous pyrate-limiter bucket or ``Limiter`` to the
`ratekit.typing.Limiter` protocol.  `sqlite_limiter` and `multiprocess_limiter` build
one on pyrate-limiter's file-backed ``SQLiteBucket`` and on its ``MultiprocessBucket``.

pyrate-limiter's window buckets are sliding logs: one stored entry per unit granted,
stamped with an integer number of milliseconds, and a cost is granted when every rate
still has room for it among the entries of its last ``interval`` milliseconds.  They
decide only about the present: they cannot book a future slot, so waiters are not queued
and not served in arrival order (each one retries when its wait is over, and whoever
reaches the store first wins), and a reservation is granted only when it can be used
at once.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import multiprocessing.context
import os
import re
import sqlite3
import sys
import threading
from contextlib import ExitStack
from inspect import isawaitable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pyrate_limiter
from pyrate_limiter import AbstractBucket, MultiprocessBucket, RateItem, SlidingWindowLog
from pyrate_limiter import Limiter as _PyrateLimiter
from pyrate_limiter import Rate as _PyrateRate

from ratekit import _hooks
from ratekit._cancel import resolve
from ratekit._clock import MONOTONIC
from ratekit._decision import GRANTED, Decision, LimiterStatistics, Reservation
from ratekit._errors import AcquireCancelled, AcquireTimeout, StoreUnavailable
from ratekit._limited import Acquiring
from ratekit._limiter import exact_delay
from ratekit._rate import Rate
from ratekit._redact import mask_credentials
from ratekit._tally import StoreTally, Tally, check_cost
from ratekit._validate import optional_wait, positive

if TYPE_CHECKING:
    from collections.abc import Callable

    from ratekit.typing import CancelEvent, Clock

__all__ = ["PyrateLimiter", "multiprocess_limiter", "sqlite_limiter"]

#: Where a limiter that fails open reports each grant it made without its store.
log = logging.getLogger("ratekit.stores")

#: How often, in the bucket's milliseconds, a bare bucket is cleared of entries that
#: have left every window (pyrate-limiter's own background leaker runs every 10 s too).
#: Entries outside the windows never count, so this bounds memory, not correctness.
_LEAK_EVERY_MS = 10_000

#: How often a waiter for a file lock held by another process tries again, in seconds.
_FILE_LOCK_POLL = 0.001

_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def _store_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean the store could not be used, rather than a bug.

    Evaluated only when an exception is being handled, so the client libraries of
    other stores are looked up only if they are already imported.
    """
    errors: list[type[BaseException]] = [sqlite3.Error, OSError, EOFError]
    redis_errors = sys.modules.get("redis.exceptions")
    if redis_errors is not None:
        errors += [redis_errors.ConnectionError, redis_errors.TimeoutError]
    psycopg = sys.modules.get("psycopg")
    if psycopg is not None:
        errors.append(psycopg.OperationalError)
    pool = sys.modules.get("psycopg_pool")
    if pool is not None:
        errors.append(pool.PoolTimeout)
    return tuple(errors)


def _reason(error: BaseException) -> str:
    """Describe a store error for a message, with anything that looks like a secret masked."""
    return f"{type(error).__name__}: {mask_credentials(str(error) or 'no details')}"


def _sync(value: Any, what: str) -> Any:  # noqa: ANN401 - whatever a bucket returns
    """Return *value*, refusing the awaitable that an asynchronous bucket hands back."""
    if isawaitable(value):
        close = getattr(value, "close", None)
        if callable(close):
            close()  # a coroutine that is never awaited would warn
        raise TypeError(
            f"{what} returned an awaitable: PyrateLimiter adapts synchronous buckets only"
        )
    return value


def _acquire_lock(lock: Any, timeout: float) -> bool:  # noqa: ANN401 - three lock types
    """Take a pyrate-limiter lock (thread, process or file lock) within *timeout* seconds."""
    wait = -1 if math.isinf(timeout) else timeout
    if hasattr(lock, "lock_file"):  # a filelock lock: poll often, the holder is quick
        try:
            lock.acquire(timeout=wait, poll_interval=_FILE_LOCK_POLL)
        except TimeoutError:
            return False
        return True
    if wait < 0:
        return bool(lock.acquire())
    return bool(lock.acquire(timeout=wait))


class PyrateLimiter(Acquiring):
    """A pyrate-limiter bucket or ``Limiter`` as a ratekit `ratekit.typing.Limiter`.

    Each call stamps one ``RateItem`` (named *name*, weighing the cost) and puts it in
    the bucket, holding the bucket's cross-process lock (``bucket.limiter_lock()``, or
    the pyrate ``Limiter``'s locks) and a lock of its own, so that a process stamps and
    puts in one step.  Whatever guarantee the bucket gives holds across every process
    that shares it; for pyrate-limiter's window buckets (the default ``SlidingWindowLog``
    algorithm), at most ``limit`` units in any ``interval`` milliseconds, for each rate:
    in real time, at most ``limit`` grants in any half-open interval of ``interval``.

    Time: the stamps come from the bucket (``bucket.now()``, integer milliseconds on
    the clock the bucket was built with, which every process sharing it reads), unless
    *clock* is given; then they come from *clock* (``floor(clock.now() * 1000)``), for
    tests on a `ratekit.testing.FakeClock`, and every user of the bucket must stamp on
    that same clock.  Waits are slept on *clock* (the monotonic clock by default).

    ``retry_after`` is exact to the millisecond on the bucket's time: asking again
    after it, with nothing else acquired meanwhile, is granted, and asking a
    millisecond earlier is not.  With several rates it is the wait for all of them
    together (read with one more store query per rate after a denial) for the sliding
    log; for other algorithms (fixed windows, GCRA) it is the wait of the first rate
    that refused, a lower bound.  When the bucket's clock is not the sleeping clock
    (SQLite stamps with the system wall clock), a wake-up may come a hair early: the
    retry is then refused with a short wait and tried again.

    pyrate-limiter cannot book the future, so `acquire` waits for the reported time and
    then tries again: waiters are not served in arrival order, a large cost may wait
    behind a stream of small ones, and each try is one round trip to the store.
    `reserve` grants only what can be used now.

    Errors of the store (an SQLite database locked beyond its timeout, a
    multiprocessing manager that has gone, a lock not acquired within *timeout*)
    raise `StoreUnavailable`: the limiter fails closed.  With ``fail_open=True`` it
    grants instead and logs a warning on the ``ratekit.stores`` logger.

    Memory and time are those of the bucket: a sliding log keeps one entry per unit
    granted within its longest interval, and each call is one put (a few queries for
    SQLite, a few manager calls for the multiprocess bucket).  Entries that have left
    every window are removed every 10 s by the call that notices (for a pyrate
    ``Limiter``, by its own background leaker).

    A `PyrateLimiter` can be passed to a process that is being started (as an argument
    of ``multiprocessing.Process`` or a pool's initializer) when its bucket can; the
    copy shares the store and starts with its own counters.

    Args:
        source: A synchronous ``pyrate_limiter`` bucket (``InMemoryBucket``,
            ``SQLiteBucket``, ``MultiprocessBucket``, a ``RedisBucket`` over a
            synchronous client, ...) or a ``pyrate_limiter.Limiter``.
        name: The name of the items put in the bucket (the key of a ``Limiter``'s
            bucket factory).
        clock: Where waits are slept, and the stamps read when given; not with a
            ``Limiter`` (its leaker reads the bucket's own clock).
        fail_open: Grant, with a warning, when the store cannot be used.
        store: How to name the store in messages (no credentials); by default the
            bucket's class.
        timeout: The longest wait, in seconds, for the store's locks (``None``: no
            limit); a wait that is longer raises `StoreUnavailable`.

    Raises:
        TypeError: If *source* is neither a bucket nor a ``Limiter``, or is asynchronous.
        ValueError: If *clock* is given with a ``Limiter``, or *timeout* is negative.
    """

    __slots__ = (
        "__weakref__",
        "_algorithm",
        "_bucket",
        "_capacity",
        "_clock",
        "_clock_arg",
        "_counts",
        "_factory",
        "_fail_open",
        "_leaked_at",
        "_limiter",
        "_locks",
        "_name",
        "_on_wait",
        "_recipe",
        "_source",
        "_stamp_on_clock",
        "_stats",
        "_store",
        "_tally",
        "_timeout",
    )

    def __init__(  # noqa: PLR0913 - the options of an adapter, all keyword-only
        self,
        source: AbstractBucket | _PyrateLimiter,
        *,
        name: str = "ratekit",
        clock: Clock | None = None,
        fail_open: bool = False,
        store: str | None = None,
        timeout: float | None = None,
    ) -> None:
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, got {type(name).__name__} {name!r}")
        self._timeout = optional_wait("timeout", timeout)
        self._source = source
        self._name = name
        self._clock_arg = clock
        self._clock: Clock = MONOTONIC if clock is None else clock
        self._stamp_on_clock = clock is not None
        self._fail_open = bool(fail_open)
        self._recipe: tuple[Callable[..., PyrateLimiter], tuple[Any, ...]] | None = None
        own = threading.RLock()
        if isinstance(source, _PyrateLimiter):
            if clock is not None:
                raise ValueError(
                    "clock cannot be given with a pyrate_limiter.Limiter: its background "
                    "leaker reads the bucket's own clock; wrap the bucket itself instead"
                )
            self._limiter: _PyrateLimiter | None = source
            self._factory: Any = source.bucket_factory
            lock = source.lock
            self._locks: tuple[Any, ...] = tuple(lock) if isinstance(lock, tuple) else (lock,)
            bucket = _sync(
                self._factory.get(_sync(self._factory.wrap_item(name, 1), "the bucket factory")),
                "the bucket factory",
            )
        elif isinstance(source, AbstractBucket):
            self._limiter = None
            self._factory = None
            bucket = source
            shared = bucket.limiter_lock()
            # Our own lock first: one thread per process contends for the shared lock.
            self._locks = (own,) if shared is None else (own, shared)
        else:
            raise TypeError(
                f"source must be a pyrate_limiter bucket or Limiter, got {type(source).__name__}"
            )
        if bucket.is_async is True:
            raise TypeError(
                f"{type(bucket).__name__} is asynchronous: PyrateLimiter adapts "
                "synchronous buckets only"
            )
        self._bucket: AbstractBucket = bucket
        algorithm = getattr(bucket, "algorithm", None) or getattr(bucket, "_algorithm", None)
        self._algorithm: Any = algorithm
        if algorithm is not None:
            self._capacity = float(min(algorithm.max_weight(rate) for rate in bucket.rates))
        else:  # pragma: no cover - pyrate-limiter before 4.5
            self._capacity = float(min(rate.limit for rate in bucket.rates))
        self._store = store if store is not None else f"pyrate-limiter {type(bucket).__name__}"
        self._leaked_at: int | None = None
        self._stats = threading.Lock()
        self._tally = Tally()  # under ``_stats``
        # Round trips, `StoreUnavailable` raised, calls granted by failing open (under
        # ``_stats``; read by `ratekit.telemetry`).
        self._counts = StoreTally()
        # Called with the seconds of each finished wait (`ratekit.telemetry`), or None.
        self._on_wait: Callable[[float], None] | None = None
        _hooks.made(self)

    # -- properties --------------------------------------------------------------------

    @property
    def capacity(self) -> float:
        """The most that can be granted at once: the smallest rate's limit."""
        return self._capacity

    @property
    def clock(self) -> Clock:
        """The clock this limiter sleeps on."""
        return self._clock

    @property
    def rates(self) -> list[Rate]:
        """The bucket's rates as ratekit `Rate` values, shortest interval first."""
        return [Rate(rate.limit, per=rate.interval / 1000) for rate in self._bucket.rates]

    @property
    def bucket(self) -> AbstractBucket:
        """The pyrate-limiter bucket that holds the state."""
        return self._bucket

    @property
    def fail_open(self) -> bool:
        """Whether this limiter grants, with a warning, when its store cannot be used."""
        return self._fail_open

    def __repr__(self) -> str:
        rates = ", ".join(str(rate) for rate in self.rates)
        return f"PyrateLimiter(store={self._store!r}, rates=[{rates}], name={self._name!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        if self._recipe is not None:
            return self._recipe
        options = {
            "name": self._name,
            "clock": self._clock_arg,
            "fail_open": self._fail_open,
            "store": self._store,
            "timeout": None if math.isinf(self._timeout) else self._timeout,
        }
        return (_rebuild, (self._source, options))

    # -- one round trip ------------------------------------------------------------------

    def _check_cost(self, cost: object) -> int:
        value = check_cost(cost, self._capacity)
        if not value.is_integer():
            raise ValueError(
                f"cost must be a whole number for a pyrate-limiter bucket, got {cost!r}"
            )
        return int(value)

    def _locked(self, stack: ExitStack) -> None:
        for lock in self._locks:
            if not _acquire_lock(lock, self._timeout):
                raise TimeoutError(f"the store's lock was not acquired within {self._timeout} s")
            stack.callback(lock.release)

    def _attempt(self, weight: int) -> float:
        """Put *weight* in the bucket: ``0.0`` if granted, else the seconds to wait."""
        with self._stats:
            self._counts.round_trips += 1
        try:
            with ExitStack() as stack:
                self._locked(stack)
                return self._attempt_locked(weight)
        except _store_errors() as error:
            self._unavailable(error, weight)
            return 0.0

    def _unavailable(self, error: BaseException, weight: int) -> None:
        """Fail closed (raise `StoreUnavailable`) or open (log, and let the caller grant)."""
        self._rollback()
        reason = _reason(error)
        with self._stats:
            if self._fail_open:
                self._counts.fail_open += 1
            else:
                self._counts.unavailable += 1
        if not self._fail_open:
            raise StoreUnavailable(self._store, reason) from error
        log.warning(
            "%s is unavailable (%s): granting cost=%d without it, as fail_open is set",
            self._store,
            reason,
            weight,
        )

    def _rollback(self) -> None:
        """End a transaction that a failed SQLite statement left open (a stale snapshot)."""
        connection = getattr(self._bucket, "conn", None)
        if isinstance(connection, sqlite3.Connection):
            try:
                if connection.in_transaction:
                    connection.rollback()
            except sqlite3.Error:  # pragma: no cover - nothing more can be done here
                pass

    def _stamp(self) -> tuple[RateItem, AbstractBucket, float]:
        """Stamp an item of weight 1; return it, its bucket and the clock reading."""
        return self._item(1)

    def _item(self, weight: int) -> tuple[RateItem, AbstractBucket, float]:
        now = self._clock.now()
        if self._factory is not None:
            item = _sync(self._factory.wrap_item(self._name, weight), "the bucket factory")
            bucket = _sync(self._factory.get(item), "the bucket factory")
            return item, bucket, now
        bucket = self._bucket
        if self._stamp_on_clock:
            return RateItem(self._name, math.floor(now * 1000), weight=weight), bucket, now
        stamp = _sync(bucket.now(), "now()")  # type: ignore[no-untyped-call]  # unannotated
        return RateItem(self._name, stamp, weight=weight), bucket, now

    def _attempt_locked(self, weight: int) -> float:
        item, bucket, now = self._item(weight)
        if _sync(bucket.put(item), f"{type(bucket).__name__}.put()"):
            if self._factory is None:
                self._leak(bucket, item.timestamp)
            return 0.0
        wait = self._wait_ms(bucket, item)
        if not self._stamp_on_clock:
            return wait / 1000
        target = item.timestamp + wait
        return exact_delay(now, target / 1000, lambda at: math.floor(at * 1000) >= target)

    def _wait_ms(self, bucket: AbstractBucket, item: RateItem) -> int:
        """The milliseconds until *item* fits, just after the bucket refused it."""
        wait = _sync(bucket.waiting(item), f"{type(bucket).__name__}.waiting()")
        if isinstance(self._algorithm, SlidingWindowLog) and len(bucket.rates) > 1:
            # pyrate reports the wait of the first rate that refused; another rate may
            # refuse later still.  The entry whose expiry makes room under a rate sits
            # a fixed offset from the newest one.
            for rate in bucket.rates:
                entry = _sync(bucket.peek(rate.limit - item.weight), "peek()")
                if entry is not None:
                    wait = max(wait, entry.timestamp + rate.interval - item.timestamp + 1)
        # A refusal means another millisecond at least: the same stamp is refused again.
        return max(int(wait), 1)

    def _leak(self, bucket: AbstractBucket, stamp: int) -> None:
        """Drop entries that left every window, every 10 s (the grant already stands)."""
        if self._leaked_at is None:
            self._leaked_at = stamp
            return
        if stamp - self._leaked_at < _LEAK_EVERY_MS:
            return
        self._leaked_at = stamp
        try:
            bucket.leak(stamp)
        except _store_errors() as error:  # only memory is at stake; the next one retries
            log.debug("%s: could not drop old entries: %s", self._store, _reason(error))

    # -- the Limiter protocol --------------------------------------------------------------

    def try_acquire(self, cost: float = 1) -> Decision:
        """Grant *cost* now if the bucket has room, without blocking.

        Returns:
            A `Decision`, truthy iff granted.  When refused, nothing was stored and
            ``retry_after`` is the wait in seconds until the same cost fits (see the
            class for its precision).

        Raises:
            TypeError: If *cost* is not a number.
            ValueError: If *cost* is not a positive whole number.
            CostTooLarge: If *cost* exceeds `capacity`.
            StoreUnavailable: If the store cannot be used and the limiter fails closed.
        """
        weight = self._check_cost(cost)
        delay = self._attempt(weight)
        with self._stats:
            if delay <= 0:
                self._tally.granted += 1
                return GRANTED
            self._tally.denied += 1
        return Decision(False, delay)

    def acquire(
        self,
        cost: float = 1,
        *,
        timeout: float | None = None,
        cancel: CancelEvent | None = None,
    ) -> None:
        """Block until *cost* is granted.

        Each try is one round trip to the store; a refused try sleeps exactly the wait
        the store reported, once, and tries again.  Waiters are not served in arrival
        order: whoever tries first after a slot frees up gets it.

        Args:
            cost: How much of the limit to use (a whole number).
            timeout: The longest acceptable wait in seconds (``None``: no limit).
            cancel: An event (such as `threading.Event`) that aborts the wait when set;
                ``None``: the `ratekit.current_cancel`, if any.

        Raises:
            AcquireTimeout: At once, without sleeping, when the reported wait would end
                after *timeout*; nothing is consumed.
            AcquireCancelled: If *cancel* is set before or during the wait; nothing was
                consumed.
            StoreUnavailable: If the store cannot be used and the limiter fails closed.
            TypeError, ValueError, CostTooLarge: As for `try_acquire`; ``ValueError``
                too if *timeout* is negative.
        """
        limit = optional_wait("timeout", timeout)
        weight = self._check_cost(cost)
        cancel = resolve(cancel)
        if cancel is not None and cancel.is_set():
            with self._stats:
                self._tally.cancelled += 1
            raise AcquireCancelled(float(weight))
        clock = self._clock
        started = clock.now()
        slept = False
        try:
            while True:
                delay = self._attempt(weight)
                if delay <= 0:
                    with self._stats:
                        self._tally.granted += 1
                    return
                self._check_wait(weight, timeout, limit, clock.now() - started, delay)
                if not slept:
                    slept = True
                    with self._stats:
                        self._tally.waiting += 1
                if not clock.sleep(delay, cancel):
                    with self._stats:
                        self._tally.cancelled += 1
                    raise AcquireCancelled(float(weight))
        finally:
            if slept:
                self._end_wait(started)

    def _end_wait(self, started: float) -> None:
        """Count a wait that began at *started* as over."""
        with self._stats:
            waited = self._tally.end_wait(started, self._clock.now(), used=False)
        if self._on_wait is not None:
            self._on_wait(waited)

    def _check_wait(
        self, weight: int, timeout: float | None, limit: float, elapsed: float, delay: float
    ) -> None:
        if elapsed + delay > limit:
            with self._stats:
                self._tally.timed_out += 1
            self._raise_timeout(weight, math.inf if timeout is None else timeout, delay)

    @staticmethod
    def _raise_timeout(weight: int, timeout: float, delay: float) -> NoReturn:
        raise AcquireTimeout(float(weight), timeout, delay)

    async def acquire_async(self, cost: float = 1, *, timeout: float | None = None) -> None:
        """`acquire` for asyncio: the waits do not block the event loop.

        Each try is a short synchronous call to the store on the event loop's thread
        (an in-memory list, a local SQLite file, a manager process); only a store lock
        held by someone else makes it last longer, up to the limiter's ``timeout``.
        Cancel by cancelling the task: nothing is consumed.

        Raises:
            AcquireTimeout: At once when the reported wait would end after *timeout*.
            StoreUnavailable: If the store cannot be used and the limiter fails closed.
            TypeError, ValueError, CostTooLarge: As for `acquire`.
        """
        limit = optional_wait("timeout", timeout)
        weight = self._check_cost(cost)
        clock = self._clock
        started = clock.now()
        slept = False
        try:
            while True:
                delay = self._attempt(weight)
                if delay <= 0:
                    with self._stats:
                        self._tally.granted += 1
                    return
                self._check_wait(weight, timeout, limit, clock.now() - started, delay)
                if not slept:
                    slept = True
                    with self._stats:
                        self._tally.waiting += 1
                try:
                    await clock.sleep_async(delay)
                except BaseException:
                    with self._stats:
                        self._tally.cancelled += 1
                    raise
        finally:
            if slept:
                self._end_wait(started)

    def reserve(self, cost: float = 1, *, max_wait: float | None = None) -> Reservation:
        """Grant *cost* now if it fits; pyrate-limiter cannot book a later slot.

        A reservation is made only when it can be used at once (``delay == 0``); it
        counts as used, so its `Reservation.cancel` gives nothing back.  Otherwise the
        reservation is refused (``ok`` false, nothing consumed), whatever *max_wait*,
        and its ``delay`` says how long to wait before asking again.

        Raises:
            ValueError: If *max_wait* is negative, or as for `try_acquire`.
            StoreUnavailable: If the store cannot be used and the limiter fails closed.
        """
        optional_wait("max_wait", max_wait)
        weight = self._check_cost(cost)
        delay = self._attempt(weight)
        now = self._clock.now()
        with self._stats:
            if delay <= 0:
                self._tally.granted += 1
                return Reservation(True, 0.0, float(weight), now)
            self._tally.denied += 1
        return Reservation(False, delay, float(weight), now + delay)

    def statistics(self) -> LimiterStatistics:
        """A snapshot of this process's counters, and the level read from the store.

        ``granted``, ``denied`` and the rest count this limiter object's calls only;
        the other processes keep their own.  ``level`` is what could be granted now,
        read from the store for sliding-log buckets (a few queries), ``nan`` for other
        algorithms or when the store cannot be read.
        """
        level = self._level()
        with self._stats:
            return self._tally.snapshot(level, self._capacity)

    def _level(self) -> float:
        if not isinstance(self._algorithm, SlidingWindowLog):
            return math.nan
        try:
            with ExitStack() as stack:
                self._locked(stack)
                item, bucket, _ = self._stamp()
                return float(
                    min(
                        rate.limit - _in_window(bucket, rate, item.timestamp)
                        for rate in bucket.rates
                    )
                )
        except _store_errors():
            self._rollback()
            return math.nan

    def close(self) -> None:
        """Close the bucket or ``Limiter`` (an SQLite connection, for instance).

        ``with limiter:`` acquires, as on every limiter; to close at the end of a block,
        use ``with contextlib.closing(limiter):``.
        """
        self._source.close()


def _in_window(bucket: AbstractBucket, rate: _PyrateRate, stamp: int) -> int:
    """How many entries *rate* counts at *stamp* (at most its limit), by bisection."""
    bound = stamp - rate.interval
    low, high = 0, rate.limit  # the count lies in [low, high]
    while low < high:
        middle = (low + high + 1) // 2
        entry = _sync(bucket.peek(middle - 1), "peek()")
        if entry is not None and entry.timestamp >= bound:
            low = middle
        else:
            high = middle - 1
    return low


def _rebuild(source: AbstractBucket | _PyrateLimiter, options: dict[str, Any]) -> PyrateLimiter:
    """Unpickle a `PyrateLimiter` around its (unpickled) source."""
    return PyrateLimiter(source, **options)


def _pyrate_rates(limits: tuple[str | Rate, ...], name: str) -> list[_PyrateRate]:
    """Turn limits as `ratekit.limiter` takes them into pyrate-limiter rates.

    pyrate-limiter counts whole units in whole milliseconds, so ``"1.5/s"`` is refused
    (write ``"3/2s"``, which is not the same sliding window) and so is a period that is
    not a whole number of milliseconds.
    """
    converted: list[_PyrateRate] = []
    for rate in Rate.parse_many(limits, caller=name):
        interval = rate.per * 1000
        if not rate.limit.is_integer():
            raise ValueError(
                f"{name}: pyrate-limiter counts whole units, and {rate} has a limit of "
                f"{rate.limit:g}; state it over a longer period"
            )
        if abs(interval - round(interval)) > 1e-6 * max(1.0, interval) or round(interval) < 1:
            raise ValueError(
                f"{name}: pyrate-limiter counts whole milliseconds, and the period of "
                f"{rate} is {interval:g} ms"
            )
        converted.append(_PyrateRate(int(rate.limit), round(interval)))
    converted.sort(key=lambda rate: rate.interval)
    if not pyrate_limiter.validate_rate_list(converted):
        shown = ", ".join(f"{rate.limit}/{rate.interval}ms" for rate in converted)
        raise ValueError(
            f"{name}: pyrate-limiter needs limits that grow with their periods while the "
            f"rate per second does not (a longer period must be the tighter rate), got {shown}"
        )
    return converted


def _valid_table(table: object) -> bool:
    return isinstance(table, str) and _TABLE_NAME.match(table) is not None


def sqlite_limiter(
    path: str | os.PathLike[str],
    *limits: str | Rate,
    table: str = "ratekit",
    timeout: float = 5.0,
    fail_open: bool = False,
) -> PyrateLimiter:
    """A limit shared by every process on this host that opens the same SQLite file.

    Built on pyrate-limiter's ``SQLiteBucket`` with its file lock (``path + ".lock"``,
    from the ``filelock`` package): each call takes the file lock, counts the entries of
    each window and inserts the new ones, so the sliding-log guarantee holds across
    processes: at most ``N`` units in any window of each limit ``"N/period"``.  The
    database runs in WAL mode; one table (*table*) holds one row per unit granted within
    the longest period, indexed by time, and each call is a few indexed queries and a
    commit under the file lock (about a millisecond on a local disk).

    Time: pyrate-limiter's ``SQLiteBucket`` stamps with the system wall clock in whole
    milliseconds, read in Python by each process (not by SQLite).  Every process on the
    host reads the same clock, so they agree; but if the wall clock is stepped (by hand
    or by NTP) while the limit is in use, a step forward lets old entries leave their
    windows early (over-admission of up to one window's worth), and a step back keeps
    them longer (under-admission).  Waits are slept on the monotonic clock, so a retry
    can come a hair early and then waits again.  See `PyrateLimiter` for the rest.

    Each process calls `sqlite_limiter` itself (or receives the limiter as an argument
    of a process being started, which opens the file again).

    Args:
        path: The database file; created if missing, in a directory that must exist.
        limits: One or more limits as text (``"10/second, 1000/hour"`` or several
            strings) or `Rate` values, with whole limits and whole milliseconds.
        table: The table name (letters, digits, underscores); limiters that use
            different tables in one file are independent.
        timeout: Seconds to wait for the file lock and for a locked database before
            giving up with `StoreUnavailable`.
        fail_open: Grant, with a warning on the ``ratekit.stores`` logger, when the
            database cannot be used, instead of raising `StoreUnavailable`.

    Returns:
        The limiter, with the database opened and its table created.

    Raises:
        FileNotFoundError: If the directory of *path* does not exist.
        ValueError: If a limit cannot be parsed or used, or *table* or *timeout* is
            not valid.
        StoreUnavailable: If the database cannot be opened or set up (not a database,
            a directory, locked beyond *timeout*), whatever *fail_open*.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__} {path!r}")
    location = Path(path).absolute()
    rates = _pyrate_rates(limits, "sqlite_limiter(*limits)")
    if not _valid_table(table):
        raise ValueError(f"table must be a name of letters, digits and underscores, got {table!r}")
    seconds = positive("timeout", timeout)
    if not location.parent.is_dir():
        raise FileNotFoundError(
            f"path={os.fspath(path)!r}: the directory {str(location.parent)!r} does not exist"
        )
    store = f"SQLite database {str(location)!r} (table {table!r})"
    bucket = _open_sqlite(str(location), rates, table, seconds, store)
    limiter = PyrateLimiter(bucket, fail_open=fail_open, store=store, timeout=seconds)
    options = {"table": table, "timeout": seconds, "fail_open": fail_open}
    texts = tuple(f"{rate.limit}/{rate.interval}ms" for rate in rates)
    limiter._recipe = (_reopen_sqlite, (str(location), texts, options))
    return limiter


def _reopen_sqlite(path: str, limits: tuple[str, ...], options: dict[str, Any]) -> PyrateLimiter:
    """Unpickle an `sqlite_limiter`: open the same file again in this process."""
    return sqlite_limiter(path, *limits, **options)


def _open_sqlite(
    path: str, rates: list[_PyrateRate], table: str, timeout: float, store: str
) -> pyrate_limiter.SQLiteBucket:
    try:
        from filelock import FileLock
    except ImportError as error:  # pragma: no cover - a dependency of ours
        raise ImportError(
            "sqlite_limiter needs the filelock package: pip install 'pyrate-limiter[filelock]'"
        ) from error
    queries = pyrate_limiter.SQLiteQueries
    lock = FileLock(path + ".lock", timeout=timeout)
    connection: sqlite3.Connection | None = None
    try:
        with ExitStack() as stack:
            if not _acquire_lock(lock, timeout):
                raise TimeoutError(f"the file lock was not acquired within {timeout} s")
            stack.callback(lock.release)
            connection = sqlite3.connect(
                path, timeout=timeout, isolation_level="DEFERRED", check_same_thread=False
            )
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute(queries.CREATE_BUCKET_TABLE.format(table=table))
            connection.execute(
                queries.CREATE_INDEX_ON_TIMESTAMP.format(
                    index_name=f"idx_{table}_rate_item_timestamp", table_name=table
                )
            )
            connection.commit()
    except _store_errors() as error:
        if connection is not None:
            connection.close()
        raise StoreUnavailable(store, _reason(error)) from error
    return pyrate_limiter.SQLiteBucket(rates, connection, table=table, lock=lock)


def multiprocess_limiter(
    *limits: str | Rate, context: str | multiprocessing.context.BaseContext | None = None
) -> PyrateLimiter:
    """A limit shared by the processes that this process starts, in a manager process.

    Built on pyrate-limiter's ``MultiprocessBucket``: the sliding log lives in a list
    held by a ``multiprocessing.Manager`` server process that this call starts, and a
    ``multiprocessing.RLock`` makes each stamp-and-put atomic, so the sliding-log
    guarantee holds across processes: at most ``N`` units in any window of each limit
    ``"N/period"``.  Each call is a few round trips to the manager (a local socket),
    and a denial's wait a few more; memory is one entry per unit within the longest
    period, in the manager.

    Time is the monotonic clock in whole milliseconds, which is system-wide on Linux,
    macOS and Windows, so every process on the host reads the same one.

    The limiter must reach the other processes when they are started, as an argument
    of ``multiprocessing.Process`` or of a pool's ``initializer`` (the lock cannot be
    sent through a queue later), started with the same *context*; each copy keeps its
    own counters.  If the manager
    process goes away (the creating process exited), calls raise `StoreUnavailable`:

    ```python
    import multiprocessing
    from ratekit.stores import multiprocess_limiter

    def work(limiter):
        for _ in range(20):
            limiter.acquire()  # at most 10 a second across all four processes

    if __name__ == "__main__":
        limiter = multiprocess_limiter("10/second", context="spawn")
        spawn = multiprocessing.get_context("spawn")
        workers = [spawn.Process(target=work, args=(limiter,)) for _ in range(4)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    ```

    Args:
        limits: One or more limits as text (``"10/second, 1000/hour"`` or several
            strings) or `Rate` values, with whole limits and whole milliseconds.
        context: The ``multiprocessing`` context (or start method name, such as
            ``"spawn"``) that will start the processes; the default context if
            ``None``.  A lock made for one start method cannot go to a process
            started by another.

    Raises:
        ValueError: If a limit cannot be parsed or used, or *context* is unknown.
    """
    rates = _pyrate_rates(limits, "multiprocess_limiter(*limits)")
    if context is None or isinstance(context, str):
        context = multiprocessing.get_context(context)
    # As MultiprocessBucket.init does, but with the caller's context for the lock.
    items: Any = context.Manager().list()
    bucket = MultiprocessBucket(rates, items, context.RLock())
    return PyrateLimiter(bucket, store="pyrate-limiter MultiprocessBucket (a manager process)")
