"""`Keyed`: one limiter per key, bounded in memory, never resetting a key that limits."""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Generic, TypeVar, cast, final

from ._clock import same_clock
from ._errors import TooManyKeys
from ._limiter import LimiterBase

if TYPE_CHECKING:
    from ._decision import Decision, LimiterStatistics, Reservation
    from .typing import CancelEvent, Clock

K = TypeVar("K", bound=Hashable)


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
    limits something, the call raises `TooManyKeys` (with the time until a key may
    come to rest) instead of silently resetting one: raise *max_keys* to suit.

    Keys come to rest in the order their limits expire; finding one to forget costs
    amortised O(log max_keys) time, through a heap of the instants at which each key
    may come to rest.  Calls for different keys share one lock for the look-up and the
    booking, and never hold it while waiting.

    Args:
        factory: Makes the limiter for a new key: a ratekit strategy or composition,
            such as ``lambda: TokenBucket(10, capacity=20)``.  All of them must read
            the same clock.
        max_keys: The most keys held at once (default 10,000).

    Raises:
        TypeError: If *factory* is not callable or *max_keys* is not an integer.
        ValueError: If *max_keys* is less than 1.
    """

    __slots__ = (
        "_clock",
        "_evicted",
        "_factory",
        "_heap",
        "_limiters",
        "_lock",
        "_max_keys",
        "_serial",
    )

    def __init__(self, factory: Callable[[], LimiterBase], *, max_keys: int = 10_000) -> None:
        if not callable(factory):
            raise TypeError(f"factory must be a callable that makes a limiter, got {factory!r}")
        if isinstance(max_keys, bool) or not isinstance(max_keys, int):
            raise TypeError(f"max_keys must be an integer, got {max_keys!r}")
        if max_keys < 1:
            raise ValueError(f"max_keys must be at least 1, got {max_keys!r}")
        self._factory = factory
        self._max_keys = max_keys
        self._lock = threading.Lock()
        self._limiters: dict[K, LimiterBase] = {}
        # (instant from which the key may be at rest, serial, key); one entry per key
        # held.  An entry's instant is a lower bound: it is checked, and pushed back
        # later if the key was used since.
        self._heap: list[tuple[float, int, K]] = []
        self._serial = itertools.count()  # orders equal instants without comparing keys
        self._clock: Clock | None = None
        self._evicted = 0

    @property
    def max_keys(self) -> int:
        """The most keys held at once."""
        return self._max_keys

    @property
    def evicted(self) -> int:
        """How many keys have been forgotten (each back at rest when it was)."""
        return self._evicted

    def __len__(self) -> int:
        return len(self._limiters)

    def __contains__(self, key: object) -> bool:
        return key in self._limiters

    def __repr__(self) -> str:
        return f"Keyed({self._factory!r}, max_keys={self._max_keys!r}) with {len(self)} keys"

    def _get_locked(self, key: K) -> LimiterBase:
        limiter = self._limiters.get(key)
        if limiter is not None:
            return limiter
        if len(self._limiters) >= self._max_keys:
            self._forget_one_locked()
        made: object = self._factory()
        if not isinstance(made, LimiterBase):
            raise TypeError(
                f"factory must return a ratekit limiter (TokenBucket, LeakyBucket, "
                f"SlidingWindow, FixedWindow or all_of), got {made!r}"
            )
        limiter = made
        if self._clock is None:
            self._clock = limiter.clock
        elif not same_clock(limiter.clock, self._clock):
            raise ValueError(
                f"factory must make limiters that read one clock: got {limiter.clock!r} "
                f"after {self._clock!r}"
            )
        self._limiters[key] = limiter
        heapq.heappush(self._heap, (self._clock.now(), next(self._serial), key))
        return limiter

    def _forget_one_locked(self) -> None:
        """Forget one key that is back at rest, or raise `TooManyKeys`."""
        heap = self._heap
        now = cast("Clock", self._clock).now()  # keys are held, so the clock is known
        while heap[0][0] <= now:
            _, serial, key = heapq.heappop(heap)
            limiter = self._limiters[key]
            with limiter._lock:
                rest_at = limiter._rest_at_locked(now)
            if rest_at <= now:
                del self._limiters[key]
                self._evicted += 1
                return
            heapq.heappush(heap, (rest_at, serial, key))
        raise TooManyKeys(self._max_keys, heap[0][0] - now)

    def try_acquire(self, key: K, cost: float = 1) -> Decision:
        """`try_acquire` on *key*'s limiter.

        Raises:
            TooManyKeys: If *key* is new and no key held can be forgotten.
        """
        with self._lock:
            return self._get_locked(key).try_acquire(cost)

    def reserve(self, key: K, cost: float = 1, *, max_wait: float | None = None) -> Reservation:
        """`reserve` on *key*'s limiter.

        Raises:
            TooManyKeys: If *key* is new and no key held can be forgotten.
        """
        with self._lock:
            return self._get_locked(key).reserve(cost, max_wait=max_wait)

    def acquire(
        self,
        key: K,
        cost: float = 1,
        *,
        timeout: float | None = None,
        cancel: CancelEvent | None = None,
    ) -> None:
        """`acquire` on *key*'s limiter; the wait holds no lock, so other keys go on.

        Raises:
            TooManyKeys: If *key* is new and no key held can be forgotten.
        """
        with self._lock:
            limiter = self._get_locked(key)
            value, at, token = limiter._book(cost, timeout, cancel)
        # The booking keeps the limiter from rest until it is due, so it is not forgotten.
        limiter._wait(value, at, token, cancel)

    async def acquire_async(self, key: K, cost: float = 1, *, timeout: float | None = None) -> None:
        """`acquire_async` on *key*'s limiter.

        Raises:
            TooManyKeys: If *key* is new and no key held can be forgotten.
        """
        with self._lock:
            limiter = self._get_locked(key)
            _, at, token = limiter._book(cost, timeout, None)
        await limiter._wait_async(at, token)

    def statistics(self, key: K) -> LimiterStatistics | None:
        """The statistics of *key*'s limiter, or ``None`` if the key is not held."""
        with self._lock:
            limiter = self._limiters.get(key)
        return None if limiter is None else limiter.statistics()
