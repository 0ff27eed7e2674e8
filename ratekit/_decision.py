"""Values that limiters hand back: `Decision`, `Reservation`, `LimiterStatistics`."""

from __future__ import annotations

from typing import Protocol

import attrs


@attrs.frozen
class Decision:
    """The answer of a non-blocking `try_acquire`: truthy iff granted.

    Attributes:
        granted: Whether the cost was granted (and consumed).
        retry_after: Seconds until the same cost could be granted if nothing else is
            acquired meanwhile: asking again at ``now + retry_after`` is granted, asking
            earlier is not.  ``0.0`` when granted.
    """

    granted: bool
    retry_after: float

    def __bool__(self) -> bool:
        return self.granted


#: The one `Decision` every grant returns (values are immutable, so it is shared).
GRANTED = Decision(True, 0.0)


class _Refunder(Protocol):
    def _cancel_reservation(self, reservation: Reservation) -> bool: ...


class _Withdrawal:
    """Whether a `Reservation` was withdrawn."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = False


@attrs.frozen(eq=False)
class Reservation:
    """A grant booked for a time that may lie in the future.

    Returned by `reserve`.  When `ok`, the cost is already accounted for at `ready_at`;
    the holder should act after `delay` seconds, or call `cancel` to withdraw it.

    Attributes:
        ok: Whether the reservation was made.  ``False`` when its delay would exceed
            the ``max_wait`` given to `reserve`; then nothing was consumed.
        delay: Seconds from the moment of reserving until the cost may be used (for a
            refused reservation, the delay it would have needed).
        cost: The cost reserved.
        ready_at: The clock reading at which the cost may be used.
    """

    ok: bool
    delay: float
    cost: float
    ready_at: float
    _owner: _Refunder | None = attrs.field(default=None, repr=False, alias="owner")
    # What the limiter needs to withdraw this booking exactly.
    _token: object = attrs.field(default=None, repr=False, alias="token")
    # Whether it was withdrawn: the reservation is frozen, and this one mutable part is
    # changed only by its owner's _cancel_reservation, under the owner's lock.
    _withdrawal: _Withdrawal = attrs.field(factory=_Withdrawal, init=False, repr=False)

    @property
    def cancelled(self) -> bool:
        """Whether `cancel` withdrew this reservation."""
        return self._withdrawal.done

    def _mark(self, *, cancelled: bool) -> None:
        """Record whether the owner withdrew this reservation (for its owner only)."""
        self._withdrawal.done = cancelled

    def cancel(self) -> bool:
        """Withdraw the reservation if its time has not come, giving back its cost.

        A reservation whose `ready_at` has passed counts as used and is not withdrawn.
        If nothing was booked after it, its cost goes back at once.  Bookings made after
        it keep their times, so then its cost goes back only once all of those have been
        withdrawn as well, and is lost if any of them is used: giving it back earlier
        could let a newcomer share a slot already promised.  Calling it again does
        nothing.

        Returns:
            ``True`` if the reservation was withdrawn; ``False`` if it was refused, had
            already been used, or was cancelled before.
        """
        if not self.ok or self._owner is None:
            return False
        return self._owner._cancel_reservation(self)


@attrs.frozen
class LimiterStatistics:
    """A snapshot of a limiter's counters, for logging and metrics.

    Attributes:
        granted: Calls granted: non-blocking ones, blocking ones once their wait is
            over, and reservations (less those withdrawn later).
        denied: Non-blocking calls and reservations refused.
        timed_out: Blocking calls refused at once because the wait exceeded the timeout.
        cancelled: Waits and reservations withdrawn before their time (what they held
            was given back).
        waiting: Callers blocked in `acquire` or `acquire_async` right now.
        waited: Total seconds that blocking callers have spent waiting.
        level: What could be granted right now (negative while waits are queued); for
            `LeakyBucket`, the room left in its queue; for a composition, the lowest
            level of its members.
        capacity: The most that can ever be granted at once.
        withdrawn: Reservations withdrawn after they were granted; each one was taken
            off ``granted``, so ``granted + withdrawn`` never decreases (what
            `ratekit.telemetry` reports as grants).
    """

    granted: int
    denied: int
    timed_out: int
    cancelled: int
    waiting: int
    waited: float
    level: float
    capacity: float
    withdrawn: int = 0
