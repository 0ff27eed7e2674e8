"""`Keyed`: one limiter per key, bounded in memory, never resetting a key that limits."""

from __future__ import annotations

import heapq
import itertools
import math
import threading
from collections.abc import Callable, Hashable, Iterable
from typing import TYPE_CHECKING, Generic, TypeVar, cast, final

from . import _hooks
from ._cancel import _CURRENT
from ._clock import MONOTONIC, same_clock
from ._composite import all_of, clock_of, is_limiter
from ._errors import AcquireCancelled, TooManyKeys
from ._limiter import LimiterBase
from ._validate import optional_wait, positive, whole_number

if TYPE_CHECKING:
    from ._decision import Decision, LimiterStatistics, Reservation
    from .typing import CancelEvent, Clock, Limiter

K = TypeVar("K", bound=Hashable)

#: How soon a key that a call is using (see `Keyed._pins`) is looked at again when a
#: new key needs its place: about the length of one call to a store.
_BUSY_RECHECK = 0.001


@final
class Keyed(Generic[K]):
    """One limiter per key, made on first use by *factory*: per user, per tenant, per host.

    Every method takes the key first, then the arguments of the same method of a
    limiter: ``keyed.try_acquire("alice", 2)``, ``keyed.acquire(host, timeout=5)``.

    Memory stays bounded: at most *max_keys* limiters are held.  A key is forgotten
    only when its limiter has come back to rest, that is, when a fresh limiter from
    *factory* would make exactly the same decisions (a full bucket, an empty window, no
    booking ahead), so forgetting never resets a limit that still holds anything.  Its
    statistics are forgotten with it.  When a new key arrives and every key held still
    limits something, `try_acquire` and `reserve` raise `TooManyKeys` (with the time
    until a key may come to rest) instead of silently resetting one, and `acquire` and
    `acquire_async` wait for a key to come to rest (within their *timeout*; a wait that
    cannot fit raises `TooManyKeys` at once): raise *max_keys* to suit.

    **Shared limits.**  Limits that every key shares (one per account beside one per
    user, say) go in *shared*: each key is then limited by ``all_of(own, *shared)``,
    where *own* is what *factory* made for it, and a key is forgotten as soon as its own
    part is at rest, however busy the shared ones are.  Forgetting it resets nothing:
    the shared limiters are not forgotten, and the key's next limiter composes the same
    ones.  A shared limiter put inside what *factory* returns instead would count as
    the key's own, and keep every key from rest while anyone uses it.

    Keys come to rest in the order their limits expire; finding one to forget costs
    amortised O(log max_keys) time, through a heap of the instants at which each key
    may come to rest.  Calls for different keys share one lock for the look-up and the
    booking, and never hold it while waiting.

    **Other limiters.**  *factory* and *shared* may give any limiter with the methods of
    `ratekit.typing.Limiter` (a `ratekit.Prioritized`, a store's limiter, your own); a
    key's limiter is then composed as `ratekit.all_of` composes such members, and is
    called through its public methods outside the table's lock.  A key whose own
    limiter is not a ratekit strategy is never forgotten, since nothing tells when it
    is at rest; for limits held in a store, name the key in the store instead
    (``store.token_bucket(f"user:{user}", ...)``), which costs nothing to hold.  A
    key is not forgotten while a call is using it.

    Args:
        factory: Makes the limiter for a new key, such as ``lambda: TokenBucket(10,
            capacity=20)``.  All of them must read the same clock.
        max_keys: The most keys held at once (default 10,000).
        shared: Limiters that every key shares, composed with each key's own, reading
            the clock of the keys' limiters.

    Raises:
        TypeError: If *factory* is not callable, *max_keys* is not an integer, or an
            item of *shared* is not a limiter.
        ValueError: If *max_keys* is less than 1, or the shared limiters read different
            clocks.
    """

    __slots__ = (
        "__weakref__",  # for ratekit.telemetry, which must not keep it alive
        "_clock",
        "_evicted",
        "_factory",
        "_heap",
        "_limiters",
        "_lock",
        "_max_keys",
        "_own",
        "_pins",
        "_refused",
        "_serial",
        "_shared",
    )

    def __init__(
        self,
        factory: Callable[[], Limiter],
        *,
        max_keys: int = 10_000,
        shared: Iterable[Limiter] = (),
    ) -> None:
        if not callable(factory):
            raise TypeError(f"factory must be a callable that makes a limiter, got {factory!r}")
        whole_number("max_keys", max_keys, 1)
        if is_limiter(shared):  # a single limiter is not an iterable of them
            raise TypeError(f"shared must be a list of limiters, got {shared!r}; use [{shared!r}]")
        self._shared = tuple(shared)
        for index, limiter in enumerate(self._shared):
            if not is_limiter(limiter):
                raise TypeError(
                    f"shared[{index}] must be a limiter (a ratekit strategy, all_of, or an "
                    f"object with the methods of ratekit.typing.Limiter), got {limiter!r}"
                )
        self._factory = factory
        self._max_keys = max_keys
        self._lock = threading.Lock()
        # What each key is limited by, and its own part (the same limiter when nothing
        # is shared): the own part alone decides when the key may be forgotten.
        self._limiters: dict[K, Limiter] = {}
        self._own: dict[K, Limiter] = {}
        # How many calls are using each key's limiter outside the lock (a limiter that
        # is not a ratekit strategy): such a key is not forgotten meanwhile.
        self._pins: dict[K, int] = {}
        # (instant from which the key may be at rest, serial, key); one entry per key
        # held.  An entry's instant is a lower bound: it is checked, and pushed back
        # later if the key was used since.
        self._heap: list[tuple[float, int, K]] = []
        self._serial = itertools.count()  # orders equal instants without comparing keys
        self._clock: Clock | None = None
        for index, limiter in enumerate(self._shared):
            clock = clock_of(limiter)
            if clock is None:
                continue
            if self._clock is None:
                self._clock, first = clock, index
            elif not same_clock(clock, self._clock):
                raise ValueError(
                    f"shared limiters must read one clock: shared[{index}] reads "
                    f"{clock!r}, shared[{first}] reads {self._clock!r}"
                )
        self._evicted = 0
        self._refused = 0
        _hooks.made(self)

    @property
    def max_keys(self) -> int:
        """The most keys held at once."""
        return self._max_keys

    @property
    def shared(self) -> tuple[Limiter, ...]:
        """The limiters every key shares, as given."""
        return self._shared

    @property
    def evicted(self) -> int:
        """How many keys have been forgotten (each back at rest when it was)."""
        return self._evicted

    @property
    def refused(self) -> int:
        """How many calls raised `TooManyKeys`: a new key found every key held still limiting."""
        return self._refused

    def __len__(self) -> int:
        return len(self._limiters)

    def __contains__(self, key: object) -> bool:
        return key in self._limiters

    def __repr__(self) -> str:
        shared = f", shared={list(self._shared)!r}" if self._shared else ""
        return (
            f"Keyed({self._factory!r}, max_keys={self._max_keys!r}{shared}) with {len(self)} keys"
        )

    def _get_locked(self, key: K) -> Limiter:
        limiter = self._limiters.get(key)
        if limiter is not None:
            return limiter
        if len(self._limiters) >= self._max_keys:
            self._forget_one_locked()
        # A key's limiters are reported through this `Keyed`, not one by one.
        made: object = (
            self._factory() if _hooks.created is None else _hooks.unwatched(self._factory)
        )
        if not is_limiter(made):
            raise TypeError(
                f"factory must return a limiter (a ratekit strategy, all_of, or an object "
                f"with the methods of ratekit.typing.Limiter), got {made!r}"
            )
        own = cast("Limiter", made)
        clock = clock_of(own)
        if self._clock is None:
            self._clock = MONOTONIC if clock is None else clock
        elif clock is not None and not same_clock(clock, self._clock):
            shared = " (the shared limiters' clock)" if self._shared else ""
            raise ValueError(
                f"factory must make limiters that read one clock{shared}: got "
                f"{clock!r} after {self._clock!r}"
            )
        limiter = _hooks.unwatched(lambda: all_of(own, *self._shared)) if self._shared else own
        self._limiters[key] = limiter
        self._own[key] = own
        heapq.heappush(self._heap, (self._clock.now(), next(self._serial), key))
        return limiter

    def _forget_one_locked(self) -> None:
        """Forget one key whose own part is back at rest, or raise `TooManyKeys`."""
        heap = self._heap
        now = cast("Clock", self._clock).now()  # keys are held, so the clock is known
        busy: list[tuple[float, int, K]] = []
        try:
            while heap and heap[0][0] <= now:
                _, serial, key = heapq.heappop(heap)
                own = self._own[key]
                if key in self._pins:
                    busy.append((now + _BUSY_RECHECK, serial, key))
                    continue
                if isinstance(own, LimiterBase):
                    with own._lock:
                        rest_at = own._rest_at_locked(now)
                else:  # nothing says when it is at rest: never forgotten
                    rest_at = math.inf
                if rest_at <= now:
                    del self._limiters[key]
                    del self._own[key]
                    self._evicted += 1
                    return
                heapq.heappush(heap, (rest_at, serial, key))
        finally:
            for entry in busy:
                heapq.heappush(heap, entry)
        raise TooManyKeys(self._max_keys, heap[0][0] - now)

    def _pin_locked(self, key: K) -> None:
        """Keep *key* from being forgotten until `_unpin`."""
        self._pins[key] = self._pins.get(key, 0) + 1

    def _unpin(self, key: K) -> None:
        with self._lock:
            left = self._pins[key] - 1
            if left:
                self._pins[key] = left
            else:
                del self._pins[key]

    def try_acquire(self, key: K, cost: float = 1) -> Decision:
        """`try_acquire` on *key*'s limiter.

        Raises:
            TooManyKeys: If *key* is new and no key held can be forgotten.
        """
        with self._lock:
            limiter = self._lookup_locked(key)
            if isinstance(limiter, LimiterBase):
                return limiter.try_acquire(cost)
            self._pin_locked(key)  # not a strategy: called outside the lock
        try:
            return limiter.try_acquire(cost)
        finally:
            self._unpin(key)

    def reserve(self, key: K, cost: float = 1, *, max_wait: float | None = None) -> Reservation:
        """`reserve` on *key*'s limiter.

        Raises:
            TooManyKeys: If *key* is new and no key held can be forgotten.
        """
        with self._lock:
            limiter = self._lookup_locked(key)
            if isinstance(limiter, LimiterBase):
                return limiter.reserve(cost, max_wait=max_wait)
            self._pin_locked(key)  # not a strategy: called outside the lock
        try:
            return limiter.reserve(cost, max_wait=max_wait)
        finally:
            self._unpin(key)

    def _lookup_locked(self, key: K) -> Limiter:
        """`_get_locked`, counting a `TooManyKeys` as a refusal."""
        try:
            return self._get_locked(key)
        except TooManyKeys:
            self._refused += 1
            raise

    def acquire(
        self,
        key: K,
        cost: float = 1,
        *,
        timeout: float | None = None,
        cancel: CancelEvent | None = None,
    ) -> None:
        """`acquire` on *key*'s limiter; the wait holds no lock, so other keys go on.

        A new key that finds the table full waits for a key to come to rest (it may be
        overtaken by another new key then), and *timeout* bounds the whole wait: for
        the table, then for the limiter.

        Raises:
            TooManyKeys: At once, if *key* is new and no key held can be forgotten
                within *timeout*.
            AcquireCancelled: If *cancel* is set while waiting, for the table or the
                limiter (nothing is booked or taken).
        """
        value = positive("cost", cost)
        if cancel is None:
            cancel = _CURRENT.get()
        wait = _Wait(optional_wait("timeout", timeout), timeout is not None)
        while True:
            limiter, booked = self._book_or_wait(key, value, wait, cancel)
            if limiter is not None and not isinstance(limiter, LimiterBase):  # pinned
                try:
                    limiter.acquire(value, timeout=wait.left(), cancel=cancel)
                finally:
                    self._unpin(key)
                return
            if booked is not None:
                break
            if not wait.clock.sleep(wait.seconds, cancel):
                raise AcquireCancelled(value)
        # The booking keeps the limiter from rest until it is due, so it is not forgotten.
        value, at, token = booked
        cast("LimiterBase", limiter)._wait(value, at, token, cancel)  # it booked

    async def acquire_async(self, key: K, cost: float = 1, *, timeout: float | None = None) -> None:
        """`acquire_async` on *key*'s limiter; a full table is waited for, as in `acquire`.

        Raises:
            TooManyKeys: At once, if *key* is new and no key held can be forgotten
                within *timeout*.
        """
        wait = _Wait(optional_wait("timeout", timeout), timeout is not None)
        while True:
            limiter, booked = self._book_or_wait(key, cost, wait, None)
            if limiter is not None and not isinstance(limiter, LimiterBase):  # pinned
                try:
                    await limiter.acquire_async(cost, timeout=wait.left())
                finally:
                    self._unpin(key)
                return
            if booked is not None:
                break
            await wait.clock.sleep_async(wait.seconds)
        _, at, token = booked
        await cast("LimiterBase", limiter)._wait_async(at, token)  # it booked

    def _book_or_wait(
        self, key: K, cost: object, wait: _Wait, cancel: CancelEvent | None
    ) -> tuple[Limiter | None, tuple[float, float, object] | None]:
        """Book for *key*; or, with no booking, say in *wait* how long to sleep first.

        The table may be full (a key comes to rest later), or the key's composition may
        defer a booking that would hold a shared limiter far ahead.  A limiter that is
        not a ratekit strategy is returned pinned, with nothing booked: the caller
        acquires on it and unpins.

        Raises:
            TooManyKeys: If the table stays full past the timeout.
        """
        with self._lock:
            try:
                limiter = self._get_locked(key)
            except TooManyKeys as full:
                clock = cast("Clock", self._clock)  # keys are held, so it is known
                late = wait.spent(clock) + full.retry_after > wait.limit
                if late or math.isinf(full.retry_after):
                    self._refused += 1
                    raise
                wait.clock, wait.seconds = clock, full.retry_after
                return None, None
            if not isinstance(limiter, LimiterBase):
                wait.clock = cast("Clock", self._clock)  # set by _get_locked
                self._pin_locked(key)
                return limiter, None
            left = max(wait.limit - wait.spent(limiter.clock), 0.0) if wait.timed else None
            value, at, token = limiter._book_or_defer(cost, left, cancel)
            if token is None:
                wait.clock, wait.seconds = limiter.clock, at - limiter.clock.now()
                return limiter, None
            return limiter, (value, at, token)

    def statistics(self, key: K) -> LimiterStatistics | None:
        """The statistics of *key*'s limiter, or ``None`` if the key is not held."""
        with self._lock:
            limiter = self._limiters.get(key)
        return None if limiter is None else limiter.statistics()


class _Wait:
    """How long a blocking call of `Keyed` may wait, has waited, and sleeps next."""

    __slots__ = ("clock", "limit", "seconds", "started", "timed")

    def __init__(self, limit: float, timed: bool) -> None:
        self.limit = limit
        self.timed = timed
        self.started: float | None = None
        self.clock: Clock = MONOTONIC
        self.seconds = 0.0

    def left(self) -> float | None:
        """What is left of the timeout (``None``: no timeout), read on `clock`."""
        return max(self.limit - self.spent(self.clock), 0.0) if self.timed else None

    def spent(self, clock: Clock) -> float:
        """Seconds since the first wait began (0 before it), read on *clock*."""
        now = clock.now()
        if self.started is None:
            self.started = now
        return max(now - self.started, 0.0)
