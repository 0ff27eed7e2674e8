"""`RetryBudget`: retries as a share of recent successes, shared by every caller."""

from __future__ import annotations

import math
import threading
from typing import TYPE_CHECKING, final

from ratekit._clock import MONOTONIC
from ratekit._validate import at_least, positive

if TYPE_CHECKING:
    from ratekit.typing import Clock

#: How many slices the time-to-live is counted in: counts expire one slice at a time.
_SLICES = 10

#: Allowance for the float rounding of ``ratio * successes`` (0.1 * 70 is 7.000000000000001,
#: and a product a hair below a whole number must not refuse that retry).
_SLACK = 1e-9


@final
class RetryBudget:
    """Retries allowed as a share of recent successes plus a floor, shared by all callers.

    Over any *ttl* seconds, at most ``ratio * successes + min_per_second * ttl`` retries
    are allowed, counting the successes and retries of that time.  One budget shared by
    every request (and thread) of a client keeps an outage from becoming a retry storm:
    when most calls fail, successes stop adding to it and retries stop at the floor.
    It is modelled on Finagle's retry budget, which counts every request where this one
    counts successes only: in a full outage only the floor is left, which is what gRPC's
    retry throttling does with its token bucket.

    Counts are kept in ten slices of ``ttl / 10`` seconds and expire a slice at a time,
    so each is remembered for between ``0.9 * ttl`` and *ttl* seconds: O(1) memory and
    time per call.  Thread-safe.

    Args:
        ratio: Retries allowed per success (0.1: one retry per ten successes).
        min_per_second: The floor: retries per second allowed whatever the successes,
            so that a client that has just started can retry at all.
        ttl: How many seconds successes and retries are remembered.
        clock: Where time comes from (default: `ratekit.MonotonicClock`).

    Raises:
        ValueError: If a number is negative or not finite, or *ttl* is zero.
    """

    __slots__ = (
        "_clock",
        "_lock",
        "_min_per_second",
        "_ratio",
        "_retries",
        "_slice",
        "_successes",
        "_ttl",
        "_width",
    )

    def __init__(
        self,
        ratio: float = 0.1,
        min_per_second: float = 10.0,
        ttl: float = 10.0,
        *,
        clock: Clock | None = None,
    ) -> None:
        self._ratio = at_least("ratio", ratio, 0)
        self._min_per_second = at_least("min_per_second", min_per_second, 0)
        self._ttl = positive("ttl", ttl)
        self._clock: Clock = MONOTONIC if clock is None else clock
        self._width = self._ttl / _SLICES
        self._lock = threading.Lock()
        self._successes = [0] * _SLICES
        self._retries = [0] * _SLICES
        self._slice = math.floor(self._clock.now() / self._width)

    def __repr__(self) -> str:
        return (
            f"RetryBudget(ratio={self._ratio!r}, min_per_second={self._min_per_second!r}, "
            f"ttl={self._ttl!r})"
        )

    def _advance_locked(self) -> int:
        """Forget the slices that have expired; return the index of the current one."""
        current = math.floor(self._clock.now() / self._width)
        gone = min(current - self._slice, _SLICES)
        for step in range(gone):
            index = (self._slice + 1 + step) % _SLICES
            self._successes[index] = 0
            self._retries[index] = 0
        self._slice = max(self._slice, current)
        return self._slice % _SLICES

    def _allowed_locked(self) -> float:
        return self._ratio * sum(self._successes) + self._min_per_second * self._ttl

    def deposit(self) -> None:
        """Record a success: it allows *ratio* more retries for the next *ttl* seconds."""
        with self._lock:
            self._successes[self._advance_locked()] += 1

    def try_withdraw(self) -> bool:
        """Take one retry from the budget if it has one; return whether it did."""
        with self._lock:
            index = self._advance_locked()
            if sum(self._retries) + 1 > self._allowed_locked() + _SLACK:
                return False
            self._retries[index] += 1
            return True

    @property
    def balance(self) -> float:
        """How many retries the budget allows right now."""
        with self._lock:
            self._advance_locked()
            return self._allowed_locked() - sum(self._retries)
