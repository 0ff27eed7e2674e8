"""`SteppedClock`: virtual time in which threads really block until the test moves it.

`ratekit.testing.FakeClock` jumps forward when anybody sleeps, which suits one thread.
With several threads waiting on a limiter, a test needs them to sleep until *it* moves
the time, one wake-up at a time, so that each wakes at exactly the instant it asked for:
`advance` steps through the sleepers' wake-up instants in order, and `settle` waits
until every thread the test started is asleep again or done.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

    from ratekit.typing import CancelEvent

#: Seconds between two looks at a sleeper's cancel event (a real wait, not virtual time).
_POLL = 0.002
#: The longest a test waits for its threads to settle, in real seconds.
_SETTLE = 30.0


class SteppedClock:
    """A clock that moves only when the test advances it; sleepers block until then."""

    def __init__(self) -> None:
        self._now = 0.0
        self._condition = threading.Condition()
        self._sleeping: dict[int, float] = {}  # thread id -> the instant it wakes at

    def now(self) -> float:
        """The virtual time."""
        with self._condition:
            return self._now

    def sleep(self, seconds: float, cancel: CancelEvent | None = None) -> bool:
        """Block until the test has moved the time by *seconds*, or *cancel* is set."""
        me = threading.get_ident()
        with self._condition:
            until = self._now + max(seconds, 0.0)
            self._sleeping[me] = until
            self._condition.notify_all()
            try:
                while self._now < until:
                    if cancel is not None and cancel.is_set():
                        return False
                    self._condition.wait(_POLL if cancel is not None else None)
                return True
            finally:
                del self._sleeping[me]
                self._condition.notify_all()

    async def sleep_async(self, seconds: float) -> None:
        """Not for asyncio: the tests that use this clock block threads."""
        raise NotImplementedError("SteppedClock is for threads")

    def asleep(self, thread: threading.Thread) -> bool:
        """Whether *thread* is asleep on this clock, and not due to wake already."""
        with self._condition:
            return self._waiting(thread)

    def _waiting(self, thread: threading.Thread) -> bool:
        until = self._sleeping.get(thread.ident or 0)
        return until is not None and until > self._now

    def _settled(self, threads: list[threading.Thread]) -> bool:
        """Whether each of *threads* is done or asleep until later (lock held)."""
        return all(not thread.is_alive() or self._waiting(thread) for thread in threads)

    def settle(self, threads: Iterable[threading.Thread]) -> None:
        """Wait (in real time) until each of *threads* is asleep on this clock or done."""
        pending = list(threads)
        deadline = time.monotonic() + _SETTLE
        while True:
            with self._condition:
                if self._settled(pending):
                    return
            if time.monotonic() > deadline:
                raise AssertionError("threads did not settle")
            time.sleep(_POLL)

    def advance(self, seconds: float, threads: Iterable[threading.Thread] = ()) -> None:
        """Move the time by *seconds*, waking each sleeper at its instant, in order.

        Between two wake-ups the *threads* settle, so a thread that books and sleeps
        again is asleep before the time moves on.
        """
        pending = list(threads)
        target = self.now() + seconds
        while True:
            self.settle(pending)
            with self._condition:
                if not self._settled(pending):  # one woke meanwhile: settle again
                    continue
                due = [until for until in self._sleeping.values() if until <= target]
                self._now = max(self._now, min(due)) if due else target
                self._condition.notify_all()
                if not due:
                    break
        self.settle(pending)
