"""Injected faults: a list call's connection dropped, answered 503, or answered slowly."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from ratekit_cxone._sim._answers import _DROP, _error, _Refused

if TYPE_CHECKING:
    import random
    import threading

    from ratekit.typing import Clock

_Fault = Literal["drop", "fault", "slow"]


class _Faults:
    """The faults of a `Simulator`, drawn per list call from its seeded generator."""

    if TYPE_CHECKING:  # provided by `Simulator`
        _clock: Clock
        _drop_rate: float
        _fault_rate: float
        _fault_retry_after: float | None
        _faults: random.Random
        _lock: threading.Lock
        _slow_rate: float
        _slow_seconds: float
        _stopping: threading.Event

        def _count(self, name: str, amount: int = 1) -> None: ...

        def _retry_after_text(self, seconds: float) -> str: ...

    def _inject_fault(self) -> None:
        """Draw this list call's fault, if any, and act it out.

        Raises:
            _Refused: With the answer to send instead of the page.
        """
        fault = self._draw_fault()
        if fault == "drop":
            self._count("drops")
            raise _Refused(_DROP)
        if fault == "fault":
            self._count("faults")
            extra = {}
            if self._fault_retry_after is not None:
                extra["Retry-After"] = self._retry_after_text(self._fault_retry_after)
            description = "the service is unavailable"
            raise _Refused(_error(503, "service_unavailable", description, **extra))
        if fault == "slow":
            self._count("slow")
            if not self._clock.sleep(self._slow_seconds, cancel=self._stopping):
                self._count("drops")  # closed while waiting: nobody will read the answer
                raise _Refused(_DROP)

    def _draw_fault(self) -> _Fault | None:
        if not (self._drop_rate or self._fault_rate or self._slow_rate):
            return None
        with self._lock:
            draw = self._faults.random()
        if draw < self._drop_rate:
            return "drop"
        if draw < self._drop_rate + self._fault_rate:
            return "fault"
        if draw < self._drop_rate + self._fault_rate + self._slow_rate:
            return "slow"
        return None
