"""Composition: `all_of` several limiters, and `limiter` to state several limits at once."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Literal, cast, final

from ._clock import same_clock
from ._decision import GRANTED, Decision
from ._limiter import LimiterBase
from ._observe import observer
from ._rate import Rate
from ._token_bucket import TokenBucket
from ._windows import FixedWindow, SlidingWindow

if TYPE_CHECKING:
    import threading
    from collections.abc import Mapping, Sequence
    from types import TracebackType

    from .typing import Clock


class _Locks:
    """Several locks taken as one, always in the same global order.

    Every composition sorts its members' locks the same way (by identity), so two
    compositions that share members in different orders cannot deadlock.
    """

    __slots__ = ("_locks",)

    def __init__(self, locks: Sequence[threading.Lock]) -> None:
        self._locks = tuple(sorted(locks, key=id))

    def acquire(self) -> bool:
        taken = 0
        try:
            for lock in self._locks:
                lock.acquire()
                taken += 1
        except BaseException:  # e.g. KeyboardInterrupt between two locks
            for lock in reversed(self._locks[:taken]):
                lock.release()
            raise
        return True

    def release(self) -> None:
        for lock in reversed(self._locks):
            lock.release()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


@final
class AllOf(LimiterBase):
    """A limiter that grants only what every one of its members grants together.

    Made by `all_of`; see there.
    """

    __slots__ = ("_capacity", "_members")

    def __init__(self, *limiters: LimiterBase) -> None:
        members: list[LimiterBase] = []
        for index, limiter in enumerate(limiters):
            if isinstance(limiter, AllOf):
                parts: tuple[LimiterBase, ...] = limiter.members
            elif isinstance(limiter, LimiterBase):
                parts = (limiter,)
            else:
                raise TypeError(
                    f"all_of() argument {index} must be a ratekit limiter (TokenBucket, "
                    f"LeakyBucket, SlidingWindow, FixedWindow or all_of), got {limiter!r}"
                )
            members.extend(part for part in parts if all(part is not m for m in members))
        if not members:
            raise ValueError("all_of() needs at least one limiter")
        clock = members[0].clock
        for member in members[1:]:
            if not same_clock(member.clock, clock):
                raise ValueError(
                    f"all_of() members must share one clock: {member!r} reads "
                    f"{member.clock!r}, {members[0]!r} reads {clock!r}"
                )
        super().__init__(clock)
        self._members = tuple(members)
        self._capacity = min(member.capacity for member in members)
        # Real locks only: every member is a strategy, so each has its own lock.
        self._lock = _Locks([cast("threading.Lock", member._lock) for member in members])
        self._max_delay = min(member._max_delay for member in members)

    @property
    def members(self) -> tuple[LimiterBase, ...]:
        """The limiters composed, nested compositions flattened, each once."""
        return self._members

    @property
    def capacity(self) -> float:
        """The largest cost every member can grant: the smallest member capacity."""
        return self._capacity

    def __repr__(self) -> str:
        return f"all_of({', '.join(map(repr, self._members))})"

    def observe(
        self,
        status: int,
        headers: Mapping[str, str] | None = None,
        *,
        sent_at: float | None = None,
    ) -> None:
        """Pass a server's answer on to the members that learn from answers.

        `ratekit.http.Client` reports every answer to its limiter's ``observe``; through
        this, an `ratekit.http.AdaptiveLimiter` composed with fixed limits still learns.

        Args:
            status: The HTTP status.
            headers: The response headers, if any.
            sent_at: When the request was sent (see `ratekit.http.AdaptiveLimiter.observe`).
        """
        for member in self._members:
            report = observer(member)
            if report is not None:
                report(status, headers, sent_at)

    def try_acquire(self, cost: float = 1) -> Decision:
        """Grant *cost* now if every member can, taking it from all of them; never blocks.

        Returns:
            A `Decision`, truthy iff granted.  When denied, no member changes, and its
            ``retry_after`` is the exact wait until all members could grant together.

        Raises:
            ValueError: If *cost* is not a positive finite number.
            CostTooLarge: If *cost* exceeds the smallest member capacity.
        """
        members = self._members
        try:
            valid = self._capacity >= cost > 0
        except TypeError:
            valid = False
        if not valid:  # the general path names the problem
            return LimiterBase.try_acquire(self, cost)
        lock = self._lock
        lock.acquire()
        try:
            now = self._now()
            for member in members:
                if not member._available_locked(cost, now):
                    break
            else:
                self._grant_locked(cost, now)
                self._granted += 1
                return GRANTED
            delay = max([member._delay_locked(cost, now) for member in members])
            self._denied += 1
        finally:
            lock.release()
        return Decision(False, delay)

    def _delay_locked(self, cost: float, now: float) -> float:
        # Availability is monotone from each member's earliest instant on, so the
        # earliest instant they all grant together is the latest of those.
        return max(member._delay_locked(cost, now) for member in self._members)

    def _take_locked(self, cost: float, now: float, at: float) -> tuple[object, ...]:
        return tuple(member._take_locked(cost, now, at) for member in self._members)

    def _grant_locked(self, cost: float, now: float) -> None:
        for member in self._members:
            member._grant_locked(cost, now)

    def _refund_locked(self, token: object, now: float) -> None:
        tokens = cast("tuple[object, ...]", token)
        for member, part in zip(self._members, tokens, strict=True):
            member._refund_locked(part, now)

    def _level_locked(self, now: float) -> float:
        return min(member._level_locked(now) for member in self._members)

    def _rest_at_locked(self, now: float) -> float:
        return max(member._rest_at_locked(now) for member in self._members)


def all_of(*limiters: LimiterBase) -> AllOf:
    """Compose limiters: grant only when every one of them grants, all or nothing.

    The result is itself a `ratekit.typing.Limiter`.  A call is granted only if every
    member can grant it; it then takes the cost from each member, and a denied call
    takes nothing from any of them, also when other threads use the members directly
    or through other compositions at the same time (each call holds every member's
    lock, taken in one global order, so sharing members never deadlocks).  A blocking
    call waits for the earliest instant at which all members can grant together, and
    is booked on all of them for that instant; a reservation is withdrawn from all of
    them at once.  Any strategies mix, for example a per-second burst limit with a
    per-day quota::

        limit = ratekit.all_of(TokenBucket(10, capacity=20), SlidingWindow(10_000, 86_400))

    Nested compositions are flattened, and a limiter given twice counts once.  The
    members keep their own statistics for calls made on them directly; the composition
    counts its own calls, and its level is the lowest of the members'.

    A booking holds its instant in every member, and each member serves bookings in
    time order.  So when one member makes a composition wait long (a per-day quota that
    is used up), a member shared with other limiters or callers makes them wait behind
    that booking too.  Give waits on such compositions a ``timeout`` (or ``max_wait``)
    when members are shared.

    Args:
        limiters: ratekit strategies (or compositions), all reading the same clock.

    Raises:
        TypeError: If an argument is not a ratekit limiter.
        ValueError: If there are none, or they read different clocks.
    """
    return AllOf(*limiters)


_SEPARATOR = re.compile(r"[,;]")


def limiter(
    *limits: str | Rate,
    strategy: Literal["sliding", "fixed", "token"] = "sliding",
    clock: Clock | None = None,
) -> LimiterBase:
    """State one or more limits at once: ``ratekit.limiter("10/second, 1000/hour")``.

    Each limit is a `Rate` or its text (see `Rate.parse`); a text may hold several,
    separated by commas or semicolons.  Each becomes one limiter, and several are
    composed with `all_of`.  ``"N/period"`` means at most N in any period, so the
    default strategy is the exact `SlidingWindow`; ``"fixed"`` builds `FixedWindow`
    instead (cheaper, but see its edge burst), and ``"token"`` builds a `TokenBucket`
    refilled at the rate with a capacity of N (smooth, and bursts of up to N).

    Args:
        limits: The limits, as text or `Rate` values.
        strategy: ``"sliding"`` (the default), ``"fixed"`` or ``"token"``.
        clock: Where time comes from (default: `MonotonicClock`).

    Returns:
        The one limiter, or the `all_of` composition of several.

    Raises:
        ValueError: If no limit is given, one cannot be parsed (the message quotes it),
            or *strategy* is unknown.
    """
    rates: list[Rate] = []
    for position, item in enumerate(limits):
        if isinstance(item, Rate):
            rates.append(item)
            continue
        if not isinstance(item, str):
            raise TypeError(f"limiter() argument {position} must be a Rate or text, got {item!r}")
        for part in _SEPARATOR.split(item):
            text = part.strip()
            if not text:
                raise ValueError(f"limiter() argument {position} has an empty limit: {item!r}")
            rates.append(Rate.parse(text))
    if not rates:
        raise ValueError('limiter() needs at least one limit, such as "10/second"')
    members = [_build(rate, strategy, clock) for rate in rates]
    return members[0] if len(members) == 1 else AllOf(*members)


def _build(rate: Rate, strategy: str, clock: Clock | None) -> LimiterBase:
    if strategy == "sliding":
        return SlidingWindow(rate.limit, rate.per, clock=clock)
    if strategy == "fixed":
        return FixedWindow(rate.limit, rate.per, clock=clock)
    if strategy == "token":
        return TokenBucket(rate, rate.limit, clock=clock)
    raise ValueError(f"strategy must be one of 'sliding', 'fixed' or 'token', got {strategy!r}")
