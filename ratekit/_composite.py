"""Composition: `all_of` several limiters, and `limiter` to state several limits at once."""

from __future__ import annotations

import math
import threading
from typing import TYPE_CHECKING, Literal, cast, final, overload

from ._cancel import _CURRENT
from ._clock import MONOTONIC, same_clock
from ._decision import GRANTED, Decision, Reservation
from ._errors import AcquireCancelled, AcquireTimeout
from ._limited import Acquiring
from ._limiter import _QUEUE_SLACK, LimiterBase
from ._observe import observer
from ._rate import Rate
from ._tally import Tally, check_cost, sleep_until, sleep_until_async
from ._token_bucket import TokenBucket
from ._validate import optional_wait
from ._windows import FixedWindow, SlidingWindow

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from types import TracebackType

    from ._decision import LimiterStatistics
    from .typing import CancelEvent, Clock, Limiter

#: Relative allowance when comparing a hold ahead with a member's slot, so that float
#: rounding never defers a booking that is exactly one slot ahead.
_HOLD_SLACK = 1e-9


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


def _observe_all(
    members: Iterable[object],
    status: int,
    headers: Mapping[str, str] | None,
    sent_at: float | None,
) -> None:
    """Report a server's answer to each of *members* that learns from answers."""
    for member in members:
        report = observer(member)
        if report is not None:
            report(status, headers, sent_at)


@final
class AllOf(LimiterBase):
    """A limiter that grants only what every one of its members grants together.

    Made by `all_of`; see there.
    """

    __slots__ = ("_capacity", "_members")

    # Blocks go through this class's own `acquire` and `acquire_async`.
    __enter__ = Acquiring.__enter__
    __aenter__ = Acquiring.__aenter__

    def __init__(self, *limiters: LimiterBase) -> None:
        members: list[LimiterBase] = []
        for index, limiter in enumerate(limiters, start=1):
            if isinstance(limiter, AllOf):
                parts: tuple[LimiterBase, ...] = limiter.members
            elif isinstance(limiter, LimiterBase):
                parts = (limiter,)
            else:
                raise TypeError(
                    f"AllOf() argument {index} must be a ratekit strategy (TokenBucket, "
                    f"LeakyBucket, SlidingWindow, FixedWindow or AllOf), got {limiter!r}; "
                    f"all_of() composes any limiter"
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
        _observe_all(self._members, status, headers, sent_at)

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
                self._tally.granted += 1
                return GRANTED
            delay = max([member._delay_locked(cost, now) for member in members])
            self._tally.denied += 1
        finally:
            lock.release()
        return Decision(False, delay)

    def acquire(
        self,
        cost: float = 1,
        *,
        timeout: float | None = None,
        cancel: CancelEvent | None = None,
    ) -> None:
        """Block until every member grants *cost* together (see `all_of` for the order).

        A wait that would book a member more than one of its slots ahead of its own
        need is not booked at once: it sleeps until the wait is that short, then books
        every member (see `all_of`).  The arguments and errors are those of
        `ratekit.LimiterBase.acquire`; *timeout* covers the whole wait, and a wait
        found too long after such a sleep (others took the members meanwhile) raises
        `AcquireTimeout` then.
        """
        if cancel is None:
            cancel = _CURRENT.get()
        left = timeout
        started = self._now()
        # Set once the call has slept before booking: its wait is counted as one, from
        # there to its grant (or to its end, if it ends otherwise).
        since: float | None = None
        try:
            while True:
                value, at, token = self._book_or_defer(cost, left, cancel)
                if token is not None:
                    break
                since = started if since is None else since
                self._sleep_deferred(value, at, cancel)
                if timeout is not None:
                    left = max(timeout - (self._now() - started), 0.0)
        except BaseException:
            if since is not None:
                self._count_wait(since)
            raise
        self._wait(value, at, token, cancel, since)

    async def acquire_async(self, cost: float = 1, *, timeout: float | None = None) -> None:
        """`acquire` without blocking the event loop; to cancel, cancel the task."""
        left = timeout
        started = self._now()
        since: float | None = None  # as in `acquire`
        try:
            while True:
                _, at, token = self._book_or_defer(cost, left, None)
                if token is not None:
                    break
                since = started if since is None else since
                with self._lock:
                    self._tally.waiting += 1
                try:
                    await sleep_until_async(self._clock, at, self._now())
                finally:
                    with self._lock:
                        self._tally.waiting -= 1
                if timeout is not None:
                    left = max(timeout - (self._now() - started), 0.0)
        except BaseException:
            if since is not None:
                self._count_wait(since)
            raise
        await self._wait_async(at, token, since)

    def _book_or_defer(
        self, cost: object, timeout: float | None, cancel: CancelEvent | None
    ) -> tuple[float, float, object | None]:
        """Book as `_book` does, unless that holds a member too far ahead (then defer)."""
        limit = optional_wait("timeout", timeout)
        value = self._check_cost(cost)
        members = self._members
        with self._lock:
            now = self._now()
            delays = [member._delay_locked(value, now) for member in members]
            wait = max(delays)
            # The members that would be held more than one of their slots ahead of
            # their own need, and the shortest such slot.
            over = [
                member._slot(value)
                for member, delay in zip(members, delays, strict=True)
                if wait - delay > member._slot(value) * (1 + _HOLD_SLACK)
            ]
        fits = wait <= limit
        queued = wait <= self._max_delay * (1 + _QUEUE_SLACK)
        # Sleep until the longest hold is one slot; an instant that rounds to now (a
        # clock far from zero) would never come closer: then book at once.
        wake = now + wait - min(over) if over else now
        if wake <= now or not fits or not queued or (cancel is not None and cancel.is_set()):
            return self._book(value, timeout, cancel)  # which books, or raises
        return value, wake, None

    def _sleep_deferred(self, cost: float, until: float, cancel: CancelEvent | None) -> None:
        """Sleep, booking nothing, until *until*; raise `AcquireCancelled` if cancelled."""
        with self._lock:
            self._tally.waiting += 1
        cancelled = False
        try:
            cancelled = not sleep_until(self._clock, until, cancel, self._now())
        finally:
            with self._lock:
                self._tally.waiting -= 1
                self._tally.cancelled += cancelled
        if cancelled:
            raise AcquireCancelled(cost)

    def _slot(self, cost: float) -> float:
        return min(member._slot(cost) for member in self._members)

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


_LIMITER_METHODS = ("try_acquire", "acquire", "acquire_async", "reserve", "statistics")


def is_limiter(obj: object) -> bool:
    """Whether *obj* has the methods of the `ratekit.typing.Limiter` protocol."""
    return all(callable(getattr(obj, name, None)) for name in _LIMITER_METHODS)


def clock_of(limiter: object) -> Clock | None:
    """The clock a limiter says it reads (a ``clock`` attribute), if it says."""
    clock = getattr(limiter, "clock", None)
    return clock if callable(getattr(clock, "now", None)) else None


@final
class _AllOfAny(Acquiring):
    """`all_of` over members of which some are not ratekit strategies (see `all_of`).

    The ratekit strategies among the members (*local*, composed as one `AllOf`) are
    taken first, under their locks, and given back if another member refuses; the
    others (*foreign*) are asked one by one through their public `try_acquire`.
    """

    __slots__ = ("__weakref__", "_capacity", "_clock", "_foreign", "_local", "_lock", "_tally")

    def __init__(self, local: AllOf | None, foreign: tuple[Limiter, ...]) -> None:
        self._local = local
        self._foreign = foreign
        stated = (clock_of(member) for member in (local, *foreign) if member is not None)
        known = [clock for clock in stated if clock is not None]
        for clock in known[1:]:
            if not same_clock(clock, known[0]):
                raise ValueError(
                    f"all_of() members must share one clock: {clock!r} and {known[0]!r}"
                )
        self._clock: Clock = known[0] if known else MONOTONIC
        capacities = [getattr(member, "capacity", math.inf) for member in foreign]
        if local is not None:
            capacities.append(local.capacity)
        self._capacity = min(
            (float(c) for c in capacities if isinstance(c, (int, float))), default=math.inf
        )
        self._lock = threading.Lock()
        self._tally = Tally()

    @property
    def members(self) -> tuple[Limiter, ...]:
        """The limiters composed, nested compositions flattened, each once."""
        local: tuple[Limiter, ...] = () if self._local is None else self._local.members
        return (*local, *self._foreign)

    @property
    def capacity(self) -> float:
        """The largest cost every member can grant (members that state none: no bound)."""
        return self._capacity

    @property
    def clock(self) -> Clock:
        """The clock the members read (`ratekit.MonotonicClock` if none says)."""
        return self._clock

    def __repr__(self) -> str:
        return f"all_of({', '.join(map(repr, self.members))})"

    def observe(
        self,
        status: int,
        headers: Mapping[str, str] | None = None,
        *,
        sent_at: float | None = None,
    ) -> None:
        """Pass a server's answer on to the members that learn from answers."""
        _observe_all(self.members, status, headers, sent_at)

    def _try(self, cost: float) -> Decision:
        """Take *cost* from every member, or from none of the local ones."""
        local = self._local
        token: object = None
        if local is not None:
            with local._lock:
                now = local._now()
                delay = local._delay_locked(cost, now)
                if delay > 0:
                    return Decision(False, delay)
                token = local._take_locked(cost, now, now)
        granted = False
        try:
            for member in self._foreign:
                decision = member.try_acquire(cost)
                if not decision:
                    return Decision(False, decision.retry_after)
            granted = True
            return GRANTED
        finally:
            if not granted and local is not None:  # refused, or a member raised
                with local._lock:
                    local._refund_locked(token, local._now())

    def try_acquire(self, cost: float = 1) -> Decision:
        """Grant *cost* now if every member does; never waits for a member.

        Returns:
            A `Decision`, truthy iff granted.  When denied, its ``retry_after`` is the
            wait that the member which refused reported (see `all_of`).

        Raises:
            ValueError: If *cost* is not a positive finite number.
            CostTooLarge: If *cost* exceeds `capacity`.
        """
        return self._decide(check_cost(cost, self._capacity))

    def _decide(self, cost: float) -> Decision:
        """`_try`, counted as a call that does not wait."""
        decision = self._try(cost)
        with self._lock:
            if decision:
                self._tally.granted += 1
            else:
                self._tally.denied += 1
        return decision

    def _next(self, cost: float, started: float, limit: float) -> float | None:
        """Try once: ``None`` if granted, else the instant to try again at.

        Raises:
            AcquireTimeout: If trying again would end past *limit* seconds from *started*.
        """
        decision = self._try(cost)
        now = self._clock.now()
        with self._lock:
            if decision:
                self._tally.granted += 1
                self._tally.waited += max(now - started, 0.0)
                return None
            if now - started + decision.retry_after > limit:
                self._tally.timed_out += 1
                self._tally.waited += max(now - started, 0.0)
                raise AcquireTimeout(cost, limit, now - started + decision.retry_after)
            self._tally.waiting += 1
        return now + decision.retry_after

    def _end_sleep(self, *, cancelled: bool, started: float) -> None:
        with self._lock:
            self._tally.waiting -= 1
            if cancelled:
                self._tally.cancelled += 1
                self._tally.waited += max(self._clock.now() - started, 0.0)

    def acquire(
        self,
        cost: float = 1,
        *,
        timeout: float | None = None,
        cancel: CancelEvent | None = None,
    ) -> None:
        """Block until every member grants *cost* together (see `all_of`).

        The arguments and errors are those of `ratekit.LimiterBase.acquire`.  Callers
        are not queued: each sleeps the wait its last refusal reported, then asks again.
        """
        limit = optional_wait("timeout", timeout)
        value = check_cost(cost, self._capacity)
        if cancel is None:
            cancel = _CURRENT.get()
        clock = self._clock
        started = clock.now()
        while True:
            if cancel is not None and cancel.is_set():
                with self._lock:
                    self._tally.cancelled += 1
                raise AcquireCancelled(value)
            at = self._next(value, started, limit)
            if at is None:
                return
            woke = False
            try:
                woke = sleep_until(clock, at, cancel, clock.now())
            finally:
                self._end_sleep(cancelled=not woke, started=started)
            if not woke:
                raise AcquireCancelled(value)

    async def acquire_async(self, cost: float = 1, *, timeout: float | None = None) -> None:
        """`acquire` without blocking the event loop while it waits; cancel the task to stop.

        The members' `try_acquire` calls run in the loop (for a store, one round trip).
        """
        limit = optional_wait("timeout", timeout)
        value = check_cost(cost, self._capacity)
        clock = self._clock
        started = clock.now()
        while True:
            at = self._next(value, started, limit)
            if at is None:
                return
            woke = False
            try:
                await sleep_until_async(clock, at, clock.now())
                woke = True
            finally:
                self._end_sleep(cancelled=not woke, started=started)

    def reserve(self, cost: float = 1, *, max_wait: float | None = None) -> Reservation:
        """Grant *cost* now if every member does; book nothing for later (see `all_of`).

        Returns:
            A `Reservation`: ``ok`` with no delay when granted now (it cannot be
            withdrawn: its time has come), else not ``ok``, with the reported wait.

        Raises:
            ValueError: If *cost* is not a positive finite number or *max_wait* is negative.
            CostTooLarge: If *cost* exceeds `capacity`.
        """
        optional_wait("max_wait", max_wait)
        value = check_cost(cost, self._capacity)
        decision = self._decide(value)
        now = self._clock.now()
        return Reservation(
            decision.granted, decision.retry_after, value, now + decision.retry_after
        )

    def statistics(self) -> LimiterStatistics:
        """The composition's own counters; its level is the lowest of the members'."""
        levels = [member.statistics().level for member in self.members]
        with self._lock:
            return self._tally.snapshot(min(levels), self._capacity)


def _split(limiters: Iterable[object]) -> tuple[list[LimiterBase], list[Limiter]]:
    """The ratekit strategies (which `AllOf` flattens) and the other limiters, each once."""
    local: list[LimiterBase] = []
    foreign: list[Limiter] = []
    for index, limiter in enumerate(limiters, start=1):
        if isinstance(limiter, _AllOfAny):
            if limiter._local is not None:
                local.append(limiter._local)
            parts: Iterable[object] = limiter._foreign
        elif isinstance(limiter, LimiterBase):
            local.append(limiter)
            continue
        elif is_limiter(limiter):
            parts = (limiter,)
        else:
            raise TypeError(
                f"all_of() argument {index} must be a limiter (a ratekit strategy, all_of, "
                f"or an object with the methods of ratekit.typing.Limiter), got {limiter!r}"
            )
        foreign.extend(
            cast("Limiter", part) for part in parts if all(part is not m for m in foreign)
        )
    return local, foreign


@overload
def all_of(*limiters: LimiterBase) -> AllOf: ...
@overload
def all_of(*limiters: Limiter) -> Limiter: ...
def all_of(*limiters: Limiter) -> AllOf | Limiter:
    """Compose limiters: grant only when every one of them grants, all or nothing.

    The result is itself a `ratekit.typing.Limiter`.  A call is granted only if every
    member can grant it; it then takes the cost from each member, and a denied call
    takes nothing from any of them (for members that are not ratekit strategies, see
    "Any limiter composes" below), also when other threads use the members directly
    or through other compositions at the same time (each call holds every member's
    lock, taken in one global order, so sharing members never deadlocks).  A blocking
    call waits for the earliest instant at which all members can grant together, and
    is booked on all of them for that instant; a reservation is withdrawn from all of
    them at once.  Any strategies mix, for example a per-second burst limit with a
    per-day quota:

    ```python
    limit = ratekit.all_of(TokenBucket(10, capacity=20), SlidingWindow(10_000, 86_400))
    ```

    Nested compositions are flattened, and a limiter given twice counts once.  The
    members keep their own statistics for calls made on them directly; the composition
    counts its own calls, and its level is the lowest of the members'.

    A booking holds its instant in every member, and each member serves bookings in
    time order, so a member booked far ahead would make its other users (other
    compositions, other keys, direct callers) wait behind that booking.  A blocking
    call (`acquire`, `acquire_async`, `Keyed.acquire`) therefore never books a member
    more than one of its slots (the time its rate takes to earn the cost: ``cost /
    rate``, or ``cost * window / limit``) ahead of that member's own need: when one
    member makes the wait longer (a per-day quota that is used up), the call sleeps
    without booking anything until the wait is that short, then books every member
    for the common instant.  Meanwhile the members serve their other users as if the
    call did not exist, and if another caller takes what it waited for, it waits
    again (still within its *timeout*, which refuses at once a wait known too long).
    `reserve` is a promise for an instant, so it books every member at once: reserve
    on a composition whose members are shared with ``max_wait``.

    **Any limiter composes.**  A member that is not a ratekit strategy (a
    `ratekit.stores.RedisStore` limiter, a `ratekit.Prioritized`, a class of your own
    that has the methods of `ratekit.typing.Limiter`) is asked through its public
    methods, so the composition cannot hold its lock or book it ahead.  Then a call
    takes the cost from the ratekit strategies first (under their locks), asks the
    other members' `try_acquire` one by one, and gives the strategies their part back
    if one refuses or raises.  What holds: no member ever grants more than its own
    limit; the strategies are all or nothing; with one such member (a local burst
    limit beside a shared Redis quota, say) the whole call is all or nothing too.
    With several, a refusal by a later one spends what the earlier ones granted (the
    protocol has no way to give a grant back), which errs on the safe side.  A blocking
    call sleeps the wait that the refusing member reported, then asks again (callers
    are not queued in arrival order), within its *timeout* and cancellably; `reserve`
    grants only what every member grants at once and books nothing ahead.  The
    members' clocks, where they state one, must be the same.  Stores can compose their
    own limiters exactly and in one round trip: prefer `ratekit.stores.RedisStore.all_of`
    when every member is held there.

    Args:
        limiters: Limiters to compose (nested compositions are flattened).

    Returns:
        An `AllOf` when every member is a ratekit strategy; otherwise a limiter with
        the same methods, composed as described above.

    Raises:
        TypeError: If an argument is not a limiter.
        ValueError: If there are none, or they read different clocks.
    """
    local, foreign = _split(limiters)
    if not foreign:
        return AllOf(*local)
    return _AllOfAny(AllOf(*local) if local else None, tuple(foreign))


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
    rates = Rate.parse_many(limits, caller="limiter(*limits)")
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
