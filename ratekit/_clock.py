"""Clocks: the only place where ratekit reads or waits on time.

Everything that reads time or waits takes a `ratekit.typing.Clock`.  Library code goes
through it instead of calling `time` directly, so that tests can substitute
`FakeClock`, on which blocking code runs instantly and deterministically.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from typing import TYPE_CHECKING, final

if TYPE_CHECKING:
    from .typing import CancelEvent


@final
class MonotonicClock:
    """The real clock: `time.monotonic` seconds and real sleeps.

    `sleep` is interruptible: given a ``cancel`` event it returns early, and returns
    ``False``, as soon as the event is set.
    """

    __slots__ = ()

    #: Monotonic seconds; bound straight to the C function, as it sits on every hot path.
    now = staticmethod(time.monotonic)

    def sleep(self, seconds: float, cancel: CancelEvent | None = None) -> bool:
        """Sleep for *seconds*; return ``False`` at once if *cancel* is (or gets) set."""
        if cancel is None:
            if seconds > 0:
                time.sleep(seconds)
            return True
        # Event.wait returns the flag: True means the event was set, so we were cancelled.
        return not cancel.wait(max(0, seconds))

    async def sleep_async(self, seconds: float) -> None:
        """Sleep for *seconds* on the running event loop (cancel by cancelling the task)."""
        await asyncio.sleep(max(0, seconds))

    def __repr__(self) -> str:
        return "MonotonicClock()"


def wall_time() -> float:
    """Seconds since the Unix epoch, from the system clock.

    Limits and waits never use it (the system clock may jump); only the parsing of
    dates that servers send (``Retry-After`` dates, epoch resets) needs it, and it is
    read here so that every reading of time stays in this module.
    """
    return time.time()


#: The one real clock every limiter uses unless given another (the class is stateless).
MONOTONIC = MonotonicClock()


def same_clock(first: object, second: object) -> bool:
    """Whether two clocks tell the same time: the same object, or both real."""
    return first is second or (type(first) is MonotonicClock and type(second) is MonotonicClock)


@final
class FakeClock:
    """A clock that only moves when told to, for deterministic tests.

    `sleep` and `sleep_async` advance the virtual time by the requested amount at once
    (they never block), so code that waits runs instantly.  The clock never goes
    backwards: `advance` with a negative number raises `ValueError`.

    Args:
        start: The initial reading, in seconds.
    """

    __slots__ = ("_lock", "_now", "_sleeps")

    def __init__(self, start: float = 0.0) -> None:
        if not math.isfinite(start):
            raise ValueError(f"start must be a finite number of seconds, got {start!r}")
        self._now = float(start)
        self._lock = threading.Lock()
        self._sleeps: list[float] = []

    def now(self) -> float:
        """Return the current virtual time, in seconds."""
        return self._now

    @property
    def sleeps(self) -> list[float]:
        """The durations of every sleep so far, in order (a copy), for tests that count them."""
        with self._lock:
            return list(self._sleeps)

    def advance(self, seconds: float) -> float:
        """Move virtual time forward by *seconds* and return the new reading.

        Raises:
            ValueError: If *seconds* is negative or not finite.
        """
        if not (seconds >= 0 and math.isfinite(seconds)):
            raise ValueError(f"seconds must be a non-negative finite number, got {seconds!r}")
        with self._lock:
            target = self._now + seconds
            if seconds > 0 and target == self._now:
                # Too small to change the sum: still make progress, by one step.
                target = math.nextafter(self._now, math.inf)
            self._now = target
            return target

    def advance_to(self, instant: float) -> float:
        """Move virtual time forward to *instant* (not backwards) and return it.

        Raises:
            ValueError: If *instant* is earlier than the current reading or not finite.
        """
        if not math.isfinite(instant):
            raise ValueError(f"instant must be a finite number of seconds, got {instant!r}")
        with self._lock:
            if instant < self._now:
                raise ValueError(
                    f"instant={instant!r} is earlier than now={self._now!r}: "
                    "a clock never goes backwards"
                )
            self._now = float(instant)
            return self._now

    def sleep(self, seconds: float, cancel: CancelEvent | None = None) -> bool:
        """Advance by *seconds* at once; return ``False`` without advancing if *cancel* is set."""
        if cancel is not None and cancel.is_set():
            return False
        seconds = max(seconds, 0.0)
        with self._lock:
            self._sleeps.append(seconds)
        self.advance(seconds)
        return True

    async def sleep_async(self, seconds: float) -> None:
        """Advance by *seconds* at once, then yield to the event loop once."""
        self.sleep(seconds)
        await asyncio.sleep(0)

    def __repr__(self) -> str:
        return f"FakeClock(now={self._now!r})"
