"""`Prioritized`: one limit shared by callers of different urgency, served by priority.

Every strategy books a slot at reservation time, in arrival order (see
`ratekit.LimiterBase`): a caller that asks first gets the first slot, and a blocking
caller sleeps once, for exactly its delay.  That is what keeps large costs from
starving, but it also means that eight bulk workers on one limit hold eight slots
booked ahead at all times, and an interactive call that arrives waits behind all of
them.  Priorities cannot be had by reordering bookings: a booked slot is a promise
(a `Reservation` the caller may already act on), and withdrawing one can only give
back what no later booking relied on.  So `Prioritized` leaves the bookings alone and
orders the callers *before* they book:

- Callers that are not booked yet wait in a queue of its own, ranked by effective
  priority, then arrival.  Only the head of the queue books on the wrapped limiter,
  and only a booking that lies at most *horizon* ahead (by default the time the
  limiter's rate takes to earn the cost, so about one slot); when the booking would
  lie further ahead, nothing is booked, and the head sleeps until it would fit.  At
  most about one horizon of bookings is ever made ahead of need, so a caller of
  higher priority that arrives is booked before every caller of lower priority that
  is not booked yet, after at most one horizon of the bookings already made.
- Every grant is a booking on the wrapped limiter (`reserve`), so its guarantee holds
  whatever the queue does, together with any other user of the same limiter.  Bookings
  are never reordered or withdrawn, except a cancelled caller's own
  (`Reservation.cancel`, which gives back only what can be given back).
- Priorities alone would let a steady stream of urgent calls starve the rest forever.
  So a caller's effective priority rises by one level per *aging* seconds waited:
  after ``(levels - 1 - level) * aging`` seconds every caller ranks at the top, where
  callers are served in arrival order, and no later arrival overtakes it again.

The alternatives weighed: ordering only callers that are already waiting (a
priority queue in front of ``acquire``) does not help, as the slots are booked the
moment they ask; a strict priority queue without aging starves; booking nothing
ahead (a head that polls ``try_acquire``) spends a wake-up per slot and loses the
exact single sleep of the strategies, while one slot of look-ahead keeps the limiter
saturated with one wake-up per grant.

Waking is explicit and cheap: each queued thread sleeps on the clock with an event of
its own (linked to its cancel event), each queued task on a future resolved with
``loop.call_soon_threadsafe``; whoever changes the queue (an arrival, a booking, a
timeout, a cancellation) books what fits, in rank order, on the spot, and wakes the
callers it booked and the new head.  The head alone keeps a timer, for the instant its
booking will fit.  Threads and tasks may share one `Prioritized`.  A caller that finds
nobody queued is first offered the wrapped limiter's `try_acquire`, so that an
uncontended call costs about what the plain limiter's does.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import math
import threading
from collections import deque
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, final

import attrs

from . import _hooks
from ._cancel import _CURRENT, linked
from ._clock import MONOTONIC
from ._decision import Decision, Reservation
from ._errors import AcquireCancelled, AcquireTimeout
from ._limited import Acquiring
from ._tally import Tally, check_cost, sleep_until, sleep_until_async
from ._validate import optional_wait, positive, whole_number

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from ._decision import LimiterStatistics
    from .typing import CancelEvent, Clock, Limiter


class Priority(enum.IntEnum):
    """The priority levels of a `Prioritized` of three levels; higher is served first.

    Any integer from ``0`` to ``levels - 1`` is a priority; these name the three
    levels of the default.
    """

    #: Work that can wait: exports, backfills, batch jobs.
    BULK = 0
    #: The default.
    NORMAL = 1
    #: Someone is waiting for the answer.
    INTERACTIVE = 2


#: The priority that calls given none run at (see `priority`).
_PRIORITY: ContextVar[int | None] = ContextVar("ratekit_priority", default=None)

#: Seconds a queued thread that is not the head sleeps before it looks again, when
#: nothing wakes it and it has no deadline (anything that concerns it wakes it sooner).
_IDLE = 3600.0

#: Relative allowance on the horizon, for the float rounding of ``now + delay - horizon``.
_HORIZON_SLACK = 1e-9


def check_priority(level: object, name: str = "priority") -> int:
    """Return *level* if it is a priority (an integer of at least 0), else raise.

    Raises:
        TypeError: If *level* is not an integer.
        ValueError: If it is negative.
    """
    if isinstance(level, bool) or not isinstance(level, int):
        raise TypeError(
            f"{name} must be an integer level such as ratekit.Priority.BULK, got {level!r}"
        )
    if level < 0:
        raise ValueError(f"{name} must be a level of at least 0, got {level!r}")
    return int(level)


def current_priority() -> int | None:
    """Return the priority that calls given none run at here, if any.

    It is set by a `priority` block, and inside the calls of a `ratekit.Scheduler`
    map or a `ratekit.http.Client` request given ``priority=``.  A `Prioritized`
    limiter uses it for every call given no ``priority``; other limiters ignore it.

    Returns:
        The level, or ``None`` outside of any of them.
    """
    return _PRIORITY.get()


@contextlib.contextmanager
def priority(level: int) -> Iterator[None]:
    """Run the block at priority *level*: what `current_priority` returns within it.

    Every acquire on a `Prioritized` limiter within the block that is given no
    ``priority`` uses it, however deep in the call stack (a `ratekit.http.Client`
    request, a paginator, the maps of a `ratekit.Scheduler` started there).  It
    follows the context (`contextvars`): threads started within the block do not
    inherit it, tasks do.  Never wrap a ``yield`` of a generator in it: the level
    would leak to the generator's consumer.

    ```python
    with ratekit.priority(ratekit.Priority.BULK):
        export_everything(client)
    ```

    Args:
        level: The priority, a `Priority` or any integer of at least 0.

    Raises:
        TypeError: If *level* is not an integer.
        ValueError: If *level* is negative.
    """
    token = _PRIORITY.set(check_priority(level))
    try:
        yield
    finally:
        _PRIORITY.reset(token)


def map_priority(level: object) -> int | None:
    """The priority of the calls of a map: *level* checked, else the current one."""
    return _PRIORITY.get() if level is None else check_priority(level)


@contextlib.contextmanager
def at_priority(level: int | None) -> Iterator[None]:
    """`priority` for pass-through arguments: ``None`` leaves the current one as it is."""
    if level is None:
        yield
        return
    token = _PRIORITY.set(level)
    try:
        yield
    finally:
        _PRIORITY.reset(token)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _Waiter:
    """One blocking call: queued until it is booked (or fails), then asleep until due."""

    __slots__ = (
        "arrived",
        "cost",
        "deadline",
        "error",
        "event",
        "future",
        "level",
        "loop",
        "reservation",
        "seq",
        "timeout",
    )

    def __init__(  # noqa: PLR0913 - what a waiter is, all from its call
        self,
        cost: float,
        level: int,
        arrived: float,
        seq: int,
        *,
        timeout: float | None,
        deadline: float,
    ) -> None:
        self.cost = cost
        self.level = level
        self.arrived = arrived
        self.seq = seq
        self.timeout = timeout
        self.deadline = deadline
        self.reservation: Reservation | None = None
        self.error: BaseException | None = None
        # A thread sleeps on its event; a task awaits its future.  Made only once the
        # call has to queue (under the lock, so no wake-up can come before).
        self.event: threading.Event | None = None
        self.future: asyncio.Future[None] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def resolved(self) -> bool:
        return self.reservation is not None or self.error is not None

    def wake(self) -> None:
        """Wake the call to look at its state again (under the `Prioritized`'s lock)."""
        if self.event is not None:
            self.event.set()
        elif self.future is not None and self.loop is not None:
            with contextlib.suppress(RuntimeError):  # its loop is closed: nobody waits
                self.loop.call_soon_threadsafe(_resolve, self.future)


@final
class Prioritized(Acquiring):
    """A limiter that serves its waiting callers by priority, then arrival, with aging.

    Wrap the one limiter that every user of a limit shares; give each call a
    ``priority`` (or run it in a `ratekit.priority` block), and a caller of higher
    priority is served before every caller of lower priority that is not booked yet:
    an interactive call waits for at most about one slot of bulk bookings, not for all
    of them.  The wrapped limiter's guarantee holds as it is, since every grant is a
    booking on it.  The reasoning is in the module ``ratekit._priority``.

    **Order.**  A blocking caller that cannot be booked at once queues.  The queue is
    ranked by *effective* priority, then arrival; its head alone books on the wrapped
    limiter, and only when the booking lies at most *horizon* seconds ahead: otherwise
    it sleeps until it does (cancellably), then books.  Once booked, a caller sleeps
    until its slot, and nothing reorders it.

    **Starvation bound.**  A caller's effective priority is its priority plus one per
    *aging* seconds it has waited, up to the top level (``levels - 1``); callers of
    equal effective priority are served in arrival order.  A caller of level ``p``
    that arrived at ``t`` therefore ranks at the top from ``T = t + (levels - 1 - p)
    * aging`` on, and from then on no caller that arrived after it is booked before
    it.  So, when every user of the wrapped limiter goes through this `Prioritized`,
    it is granted by ``T`` plus the time the wrapped limiter takes to serve, at its
    full pace, the bookings outstanding at ``T``, the callers that arrived before it
    and still wait at ``T``, and its own cost: for a token bucket of rate ``r``, by
    ``T + (booked + earlier + cost) / r``, where ``booked`` and ``earlier`` are the
    sums of those costs.  With the defaults (three levels, 30 s), a bulk caller ranks
    at the top after 60 s.

    **Timeouts.**  A plain limiter refuses a wait longer than *timeout* at once,
    without sleeping, as it knows the whole wait when asked.  Here the wait also
    depends on who arrives later, so a queued caller fails with `AcquireTimeout` as
    soon as its wait is known not to fit: at once while it is the head and the
    wrapped limiter's delay exceeds what remains of its timeout, else at its
    deadline, having waited *timeout* seconds (then ``retry_after`` is the time it
    waited, a lower bound of the wait it needed).  Nothing is booked by a call that
    times out.

    **Tests.**  A `ratekit.testing.FakeClock` sleeps by moving its time at once, which
    suits one thread (with any number of tasks); callers in several threads need a
    clock whose sleepers block until the test moves the time.

    **Non-blocking calls.**  `try_acquire` and `reserve` never queue: they are refused
    while a queued caller ranks at or above their priority (so that they cannot jump
    the queue), and otherwise go straight to the wrapped limiter.

    Args:
        limiter: The limiter to share: a ratekit strategy or composition, or, with a
            *horizon*, any `ratekit.typing.Limiter` whose `reserve` books.
        levels: How many priority levels there are (at least 1): ``0`` to
            ``levels - 1``, higher served first (`Priority` names the three of the
            default).
        aging: Seconds of waiting that raise a caller's effective priority by one
            level; ``math.inf`` turns aging off (and with it the starvation bound).
        horizon: How far ahead, in seconds, the head of the queue may book; ``None``:
            the time the wrapped limiter's rate takes to earn the cost (one slot).
            Longer horizons book further ahead, which later callers of higher priority
            must then wait behind; shorter ones wake the head more often.
        default: The priority of calls given none, outside any `ratekit.priority`
            block.

    Raises:
        TypeError: If *levels* or *default* is not an integer, or *horizon* is ``None``
            for a limiter that is not a ratekit strategy (it has no rate to derive one
            from).
        ValueError: If *levels*, *aging*, *horizon* or *default* is out of range.
    """

    __slots__ = (
        "__weakref__",  # so that clients can share state per limiter (ratekit.http)
        "_aging",
        "_clock",
        "_default",
        "_horizon",
        "_levels",
        "_limiter",
        "_lock",
        "_now",
        "_on_wait",
        "_owner",
        "_owner_until",
        "_probes",
        "_queued",
        "_queues",
        "_retry_at",
        "_retry_head",
        "_seq",
        "_sleeping",
        "_slot",
        "_tally",
    )

    def __init__(
        self,
        limiter: Limiter,
        *,
        levels: int = 3,
        aging: float = 30.0,
        horizon: float | None = None,
        default: int = Priority.NORMAL,
    ) -> None:
        self._limiter = limiter
        self._levels = whole_number("levels", levels, 1)
        if aging != math.inf:
            aging = positive("aging", aging)
        self._aging = float(aging)
        slot: Callable[[float], float] | None = None
        if horizon is None:
            slot = getattr(limiter, "_slot", None)
            if not callable(slot):
                raise TypeError(
                    f"horizon must be given for {type(limiter).__name__}: it is not a ratekit "
                    "strategy, so it has no rate to derive how far ahead to book from"
                )
        else:
            horizon = positive("horizon", horizon)
        self._horizon = horizon
        self._slot = slot
        self._default = self._check_level(default, "default")
        clock = getattr(limiter, "clock", None)
        self._clock: Clock = MONOTONIC if clock is None else clock
        self._now = self._clock.now
        self._lock = threading.Lock()
        # Callers not booked yet, one queue per level, each in arrival order (aging
        # keeps a level's order: an earlier arrival is never of lower rank).
        self._queues: list[deque[_Waiter]] = [deque() for _ in range(self._levels)]
        self._queued = 0
        self._seq = 0
        # The head's booking fits the horizon from `_retry_at` on (it was refused
        # before); `_owner` keeps the timer for it, and sleeps until `_owner_until`.
        self._retry_at = -math.inf
        self._retry_head: _Waiter | None = None
        self._owner: _Waiter | None = None
        self._owner_until = math.inf
        self._sleeping = 0  # booked callers asleep until their slot
        self._probes = 0  # refused bookings of the head: not the users' denials
        # What happened here, added to the wrapped limiter's counts (`statistics`).
        self._tally = Tally()
        # Called with the seconds of each finished wait (`ratekit.telemetry`), or None.
        self._on_wait: Callable[[float], None] | None = None
        _hooks.made(self)  # `ratekit.telemetry.instrument()` reports it as a limiter

    def __repr__(self) -> str:
        return (
            f"Prioritized({self._limiter!r}, levels={self._levels!r}, aging={self._aging!r}, "
            f"horizon={self._horizon!r})"
        )

    # -- settings -------------------------------------------------------------------

    @property
    def limiter(self) -> Limiter:
        """The wrapped limiter."""
        return self._limiter

    @property
    def levels(self) -> int:
        """How many priority levels there are: ``0`` to ``levels - 1``."""
        return self._levels

    @property
    def aging(self) -> float:
        """Seconds of waiting that raise a caller's effective priority by one level."""
        return self._aging

    @property
    def horizon(self) -> float | None:
        """How far ahead the head of the queue books; ``None``: one slot of its cost."""
        return self._horizon

    @property
    def clock(self) -> Clock:
        """The wrapped limiter's clock, which this one reads and sleeps on."""
        return self._clock

    @property
    def observe(self) -> Callable[..., Any] | None:
        """The wrapped limiter's ``observe``, if it learns from answers (else ``None``).

        A `ratekit.http.Client` reports each answer to it, so that an
        `ratekit.http.AdaptiveLimiter` wrapped here goes on learning the limit.
        """
        observe = getattr(self._limiter, "observe", None)
        return observe if callable(observe) else None

    @property
    def capacity(self) -> float:
        """The wrapped limiter's capacity (``math.inf`` if it tells none)."""
        capacity = getattr(self._limiter, "capacity", math.inf)
        return float(capacity) if isinstance(capacity, (int, float)) else math.inf

    # -- checks ---------------------------------------------------------------------

    def _check_level(self, level: object, name: str = "priority") -> int:
        value = check_priority(level, name)
        if value >= self._levels:
            raise ValueError(
                f"{name} must be a level from 0 to {self._levels - 1} for this limiter of "
                f"{self._levels} levels, got {level!r}"
            )
        return value

    def _level(self, level: int | None) -> int:
        """The priority of a call: *level*, else the context's, else the default."""
        if level is None:
            level = _PRIORITY.get()
            if level is None:
                return self._default
            return self._check_level(level, "priority (from ratekit.priority)")
        return self._check_level(level)

    def _check_cost(self, cost: object) -> float:
        return check_cost(cost, self.capacity)

    def _horizon_for(self, cost: float) -> float:
        if self._slot is not None:
            return self._slot(cost)
        return self._horizon or 0.0

    # -- the queue (every method here is called with ``_lock`` held) ----------------

    def _rank(self, waiter: _Waiter, now: float) -> int:
        aged = waiter.level + math.floor(max(now - waiter.arrived, 0.0) / self._aging)
        return min(aged, self._levels - 1)

    def _head(self, now: float) -> _Waiter | None:
        """The first caller by effective priority, then arrival: a level's first one."""
        best: _Waiter | None = None
        best_rank = -1
        for queue in self._queues:
            if not queue:
                continue
            first = queue[0]
            rank = self._rank(first, now)
            if best is None or rank > best_rank or (rank == best_rank and first.seq < best.seq):
                best, best_rank = first, rank
        return best

    def _top_rank(self, now: float) -> int:
        """The highest effective priority of a queued caller (``-1``: none queued)."""
        ranks = [self._rank(queue[0], now) for queue in self._queues if queue]
        return max(ranks, default=-1)

    def _remove(self, waiter: _Waiter) -> None:
        self._queues[waiter.level].remove(waiter)
        self._queued -= 1
        if waiter is self._owner:
            self._owner = None
        if waiter is self._retry_head:
            self._retry_head = None

    def _pump(self, now: float, me: _Waiter | None) -> None:
        """Book, in rank order, every queued caller whose booking fits the horizon.

        Stops at the first that does not fit, which keeps the timer for the instant it
        will (and is woken if it did not keep it yet); a head whose wait cannot fit
        its timeout fails at once.  Callers booked or failed here are woken (*me*, the
        caller that pumps, needs no waking).
        """
        while self._queued:
            head = self._head(now)
            if head is None:  # pragma: no cover - _queued counts the queues
                return
            if head is self._retry_head and now < self._retry_at:
                break  # refused before, and nothing booked since can make it fit
            if not self._book(head, now):
                break
            if head is not me:
                head.wake()
        else:
            self._owner = None
            self._retry_head = None
            return
        # The head keeps the timer: wake it if it is new to it, or its timer is late.
        if head is not self._owner or self._retry_at < self._owner_until:
            self._owner = head
            self._owner_until = self._retry_at
            if head is not me:
                head.wake()

    def _book(self, head: _Waiter, now: float) -> bool:
        """Try to book the head; ``False`` if it does not fit the horizon yet.

        ``True``: it left the queue, booked, or failed (its timeout cannot be met, or
        the wrapped limiter raised).
        """
        horizon = self._horizon_for(head.cost)
        left = max(head.deadline - now, 0.0)
        max_wait = min(horizon * (1 + _HORIZON_SLACK), left)
        try:
            reservation = self._limiter.reserve(head.cost, max_wait=max_wait)
        except Exception as error:  # noqa: BLE001 - the caller's to raise (a store down)
            self._remove(head)
            head.error = error
            return True
        if reservation.ok:
            self._remove(head)
            head.reservation = reservation
            return True
        self._probes += 1
        if reservation.delay > left:
            self._remove(head)
            self._tally.timed_out += 1
            timeout = head.timeout if head.timeout is not None else math.inf
            head.error = AcquireTimeout(head.cost, timeout, now - head.arrived + reservation.delay)
            return True
        # A limiter that books only what it grants at once (`PyrateLimiter`, `all_of`
        # over limiters that are not strategies) refuses a wait within *max_wait* too:
        # ask it again when that wait is over, not a horizon before.
        ahead = horizon if reservation.delay > max_wait else 0.0
        retry_at = now + (reservation.delay - ahead)
        # A clock reading far from zero may round a tiny difference away: move on a step.
        self._retry_at = retry_at if retry_at > now else math.nextafter(now, math.inf)
        self._retry_head = head
        return False

    def _granted_at_once(self, cost: float) -> bool:
        """With nobody queued, grant *cost* if the wrapped limiter can now (the fast path)."""
        if self._queued:
            return False
        if self._limiter.try_acquire(cost):
            return True
        self._probes += 1  # not a denial: the call goes on to wait
        return False

    def _enter(self, cost: float, level: int, timeout: float | None, limit: float) -> _Waiter:
        """Queue a blocking call and book what fits; it may come out booked already."""
        now = self._now()
        waiter = _Waiter(cost, level, now, self._seq, timeout=timeout, deadline=now + limit)
        self._seq += 1
        self._queues[level].append(waiter)
        self._queued += 1
        self._pump(now, waiter)
        return waiter

    def _step(self, waiter: _Waiter, *, cancelled: bool) -> float | None:
        """Move a queued caller on; return the instant to sleep until, or ``None``.

        ``None``: it was booked, or failed (its ``error`` says how).
        """
        if waiter.resolved():
            return None
        now = self._now()
        if cancelled:
            self._remove(waiter)
            self._tally.cancelled += 1
            waiter.error = AcquireCancelled(waiter.cost)
            self._pump(now, waiter)
            return None
        self._pump(now, waiter)
        if waiter.resolved():
            return None
        if now >= waiter.deadline:
            self._remove(waiter)
            self._tally.timed_out += 1
            timeout = waiter.timeout if waiter.timeout is not None else math.inf
            waiter.error = AcquireTimeout(waiter.cost, timeout, now - waiter.arrived)
            self._pump(now, waiter)
            return None
        until = waiter.deadline
        if waiter is self._owner:
            self._owner_until = self._retry_at
            until = min(until, self._retry_at)
        return until

    def _withdraw(self, reservation: Reservation) -> bool:
        """Give back a cancelled caller's booking, if its time has not come."""
        if not reservation.cancel():
            return False
        # What it gave back may let the head book sooner than it was told.
        self._retry_head = None
        self._retry_at = -math.inf
        self._pump(self._now(), None)
        return True

    # -- blocking -------------------------------------------------------------------

    def acquire(
        self,
        cost: float = 1,
        *,
        timeout: float | None = None,
        cancel: CancelEvent | None = None,
        priority: int | None = None,
    ) -> None:
        """Block until *cost* is granted: by priority, then arrival (see the class).

        Args:
            cost: How much of the limit to use.
            timeout: The longest acceptable wait in seconds (``None``: no limit).
            cancel: An event that aborts the wait when set; ``None``: the
                `ratekit.current_cancel`, if any.
            priority: The call's priority, from ``0`` to ``levels - 1``; ``None``: the
                `ratekit.current_priority`, else the *default*.

        Raises:
            AcquireTimeout: As soon as the wait is known not to fit *timeout* (see the
                class docstring); nothing is consumed.
            AcquireCancelled: If *cancel* is set before or during the wait; its place
                in the queue, or what it had booked, is given back.  A cancellation
                noticed only after the booking fell due is too late: the call returns,
                granted.
            ValueError: If *cost* is not positive and finite, *timeout* is negative,
                or *priority* is out of range.
            TypeError: If *priority* is not an integer.
            CostTooLarge: If *cost* exceeds `capacity`.
        """
        level = self._level(priority)
        value = self._check_cost(cost)
        limit = optional_wait("timeout", timeout)
        if cancel is None:
            cancel = _CURRENT.get()
        if cancel is not None and cancel.is_set():
            with self._lock:
                self._tally.cancelled += 1
            raise AcquireCancelled(value)
        with self._lock:
            if self._granted_at_once(value):
                return
            waiter = self._enter(value, level, timeout, limit)
            if not waiter.resolved():
                waiter.event = threading.Event()
        try:
            if waiter.event is not None:
                self._wait_queued(waiter, waiter.event, cancel)
            self._wait_booked(waiter, cancel)
        finally:
            self._waited_for(waiter)

    def _wait_queued(
        self, waiter: _Waiter, event: threading.Event, cancel: CancelEvent | None
    ) -> None:
        clock = self._clock
        with linked(cancel, event.set):
            while True:
                with self._lock:
                    event.clear()  # before looking: a wake-up from now on is kept
                    cancelled = cancel is not None and cancel.is_set()
                    until = self._step(waiter, cancelled=cancelled)
                    now = self._now()
                if until is None:
                    break
                clock.sleep(min(until - now, _IDLE), event)
        with self._lock:
            self._tally.waited += max(self._now() - waiter.arrived, 0.0)

    @staticmethod
    def _booking(waiter: _Waiter) -> Reservation:
        """What a resolved *waiter* booked; or raise what ended its wait."""
        if waiter.error is not None:
            raise waiter.error
        if waiter.reservation is None:  # pragma: no cover - resolved means one of the two
            raise AssertionError(waiter)
        return waiter.reservation

    def _wait_booked(self, waiter: _Waiter, cancel: CancelEvent | None) -> None:
        reservation = self._booking(waiter)
        ready = reservation.ready_at
        now = self._now()
        if ready <= now:
            return
        with self._lock:
            self._sleeping += 1
        granted = True
        began = now
        try:
            granted = sleep_until(self._clock, ready, cancel, now)
        finally:
            with self._lock:
                self._sleeping -= 1
                self._tally.waited += max(self._now() - began, 0.0)
                withdrawn = not granted and self._withdraw(reservation)
        if withdrawn:
            raise AcquireCancelled(waiter.cost)

    async def acquire_async(
        self, cost: float = 1, *, timeout: float | None = None, priority: int | None = None
    ) -> None:
        """`acquire` for asyncio, without blocking the loop or using other threads.

        To cancel, cancel the task: its place in the queue, or what it had booked, is
        given back, and `asyncio.CancelledError` propagates as usual.

        Raises:
            AcquireTimeout: As soon as the wait is known not to fit *timeout*.
            ValueError: If *cost*, *timeout* or *priority* is out of range.
            TypeError: If *priority* is not an integer.
            CostTooLarge: If *cost* exceeds `capacity`.
        """
        level = self._level(priority)
        value = self._check_cost(cost)
        limit = optional_wait("timeout", timeout)
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._granted_at_once(value):
                return
            waiter = self._enter(value, level, timeout, limit)
            if not waiter.resolved():
                waiter.loop = loop
                waiter.future = loop.create_future()
        try:
            if waiter.future is not None:
                await self._wait_queued_async(waiter, loop)
            await self._wait_booked_async(waiter)
        finally:
            self._waited_for(waiter)

    def _waited_for(self, waiter: _Waiter) -> None:
        """Report a finished wait, queued and booked, to `ratekit.telemetry` (if on)."""
        on_wait = self._on_wait
        if on_wait is not None:
            on_wait(max(self._now() - waiter.arrived, 0.0))

    async def _wait_queued_async(self, waiter: _Waiter, loop: asyncio.AbstractEventLoop) -> None:
        clock = self._clock
        try:
            while True:
                with self._lock:
                    future = waiter.future
                    if future is None or future.done():  # a wake-up from now on is kept
                        waiter.future = future = loop.create_future()
                    until = self._step(waiter, cancelled=False)
                    now = self._now()
                if until is None:
                    break
                seconds = until - now
                if seconds == math.inf:
                    await future
                    continue
                sleeper = loop.create_task(clock.sleep_async(seconds))
                try:
                    await asyncio.wait((future, sleeper), return_when=asyncio.FIRST_COMPLETED)
                finally:
                    sleeper.cancel()
        except BaseException:
            with self._lock:
                if waiter.reservation is not None:  # booked meanwhile: give it back
                    self._withdraw(waiter.reservation)
                elif waiter.error is None:
                    self._remove(waiter)
                    self._tally.cancelled += 1
                    self._pump(self._now(), waiter)
            raise
        finally:
            with self._lock:
                self._tally.waited += max(self._now() - waiter.arrived, 0.0)

    async def _wait_booked_async(self, waiter: _Waiter) -> None:
        reservation = self._booking(waiter)
        ready = reservation.ready_at
        began = self._now()
        if ready <= began:
            return
        with self._lock:
            self._sleeping += 1
        granted = False
        try:
            await sleep_until_async(self._clock, ready, began)
            granted = True
        finally:
            with self._lock:
                self._sleeping -= 1
                self._tally.waited += max(self._now() - began, 0.0)
                if not granted:
                    self._withdraw(reservation)

    # -- non-blocking ---------------------------------------------------------------

    def try_acquire(self, cost: float = 1, *, priority: int | None = None) -> Decision:
        """Grant *cost* now, unless the queue is ahead of *priority*; never blocks.

        Refused while a queued caller ranks at or above *priority*; otherwise the
        wrapped limiter's `try_acquire`.

        Args:
            cost: How much of the limit to use.
            priority: The call's priority (``None``: the `ratekit.current_priority`,
                else the *default*).

        Returns:
            A `Decision`, truthy iff granted.  Refused for the queue, its
            ``retry_after`` is an estimate (one horizon), not the exact wait.

        Raises:
            ValueError: If *cost* is not positive and finite, or *priority* is out of
                range.
            TypeError: If *priority* is not an integer.
            CostTooLarge: If *cost* exceeds `capacity`.
        """
        level = self._level(priority)
        value = self._check_cost(cost)
        with self._lock:
            if self._queued and self._top_rank(self._now()) >= level:
                self._tally.denied += 1
                return Decision(False, self._horizon_for(value))
            return self._limiter.try_acquire(value)

    def reserve(
        self, cost: float = 1, *, max_wait: float | None = None, priority: int | None = None
    ) -> Reservation:
        """Book *cost* on the wrapped limiter without waiting, unless the queue is ahead.

        Refused (``ok`` false, nothing booked) while a queued caller ranks at or above
        *priority*; otherwise the wrapped limiter's `reserve`, whose booking may lie as
        far ahead as *max_wait* allows (later callers of higher priority wait behind it).

        Args:
            cost: How much of the limit to book.
            max_wait: The longest delay to accept (``None``: any).
            priority: The call's priority (``None``: the `ratekit.current_priority`,
                else the *default*).

        Raises:
            ValueError: If *cost* is not positive and finite, *max_wait* is negative,
                or *priority* is out of range.
            TypeError: If *priority* is not an integer.
            CostTooLarge: If *cost* exceeds `capacity`.
        """
        level = self._level(priority)
        value = self._check_cost(cost)
        optional_wait("max_wait", max_wait)
        with self._lock:
            now = self._now()
            if self._queued and self._top_rank(now) >= level:
                self._tally.denied += 1
                delay = self._horizon_for(value)
                return Reservation(False, delay, value, now + delay)
            return self._limiter.reserve(value, max_wait=max_wait)

    # -- statistics -----------------------------------------------------------------

    def statistics(self) -> LimiterStatistics:
        """Return the wrapped limiter's snapshot, with this limiter's waits in it.

        ``waiting`` counts the callers blocked here (queued, or booked and asleep
        until their slot); ``denied``, ``timed_out``, ``cancelled`` and ``waited``
        add what happened here to the wrapped limiter's own counts (the bookings the
        queue's head tried too early are not denials).  ``granted`` counts bookings
        as they are made.
        """
        inner = self._limiter.statistics()
        with self._lock:
            return attrs.evolve(
                inner,
                denied=inner.denied - self._probes + self._tally.denied,
                timed_out=inner.timed_out + self._tally.timed_out,
                cancelled=inner.cancelled + self._tally.cancelled,
                waiting=self._queued + self._sleeping,
                waited=inner.waited + self._tally.waited,
            )

    def waiting_by_level(self) -> tuple[int, ...]:
        """How many callers of each level (by the priority they asked for) are queued.

        Queued callers are those not booked yet; index ``i`` counts level ``i``.
        """
        with self._lock:
            return tuple(len(queue) for queue in self._queues)
