"""Window strategies: `SlidingWindow` (exact) and `FixedWindow` (aligned, cheap)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, cast, final

import attrs

from ._decision import GRANTED, Decision
from ._limiter import LimiterBase, exact_delay, first_instant, withdraw
from ._validate import positive

if TYPE_CHECKING:
    from .typing import Clock

#: Expired entries are dropped from the log in batches once they are at least this many
#: and at least half of it, so that dropping costs amortised O(1) per entry.
_COMPACT_AFTER = 32


class WindowBase(LimiterBase):
    """What both window strategies share: a limit per window of some seconds."""

    __slots__ = ("_limit", "_window")

    def __init__(self, limit: float, window: float, clock: Clock | None) -> None:
        super().__init__(clock)
        self._limit = positive("limit", limit)
        self._window = positive("window", window)

    @property
    def limit(self) -> float:
        """The most that may be granted within a window."""
        return self._limit

    @property
    def window(self) -> float:
        """The window's length in seconds."""
        return self._window

    @property
    def capacity(self) -> float:
        """The largest cost that can ever be granted: the limit."""
        return self._limit

    def _slot(self, cost: float) -> float:
        return cost * self._window / self._limit

    def __repr__(self) -> str:
        return f"{type(self).__name__}(limit={self._limit!r}, window={self._window!r})"


@final
class SlidingWindow(WindowBase):
    """At most *limit* in every window of length *window*, exactly.

    Guarantee: the grants in any half-open interval ``[s, s + window)`` sum to at most
    *limit*, for every ``s``; a grant at ``t`` stops counting at ``t + window``.  This is
    a sliding log, not an estimate: unlike the sliding-window counters of other
    libraries, it never admits more than *limit*, however the calls are timed.

    Cost: the log keeps one entry per distinct grant instant inside the last window (and
    per booking ahead), which is at most *limit* entries when costs are whole numbers:
    for 100,000 per day, at most 100,000 pairs of floats, about 6 MB (expired entries are
    dropped in batches, so up to twice that just before a batch goes).  A call costs
    amortised O(1) time, whatever the limit; working out the exact ``retry_after`` of a
    denial adds a binary search, O(log limit).  Bookings are served in arrival order: a
    call is never granted ahead of a waiter already booked.

    Args:
        limit: The most that may be granted within any window; also the largest cost.
        window: The window's length in seconds.
        clock: Where time comes from (default: `MonotonicClock`).

    Raises:
        ValueError: If *limit* or *window* is not a positive finite number (the message
            names which).
    """

    __slots__ = (
        "_base",
        "_cums",
        "_epoch",
        "_head",
        "_times",
        "_total",
        "_version",
        "_withdrawn",
    )

    def __init__(self, limit: float, window: float, *, clock: Clock | None = None) -> None:
        super().__init__(limit, window, clock)
        # The log: grant instants in time order, and the running total of cost through
        # each entry.  Entries before ``_head`` have left the window; ``_base`` is the
        # running total through the last of them, ``_total`` through the newest entry.
        self._times: list[float] = []
        self._cums: list[float] = []
        self._head = 0
        self._base = 0.0
        self._total = 0.0
        # Bookings are undone only in the state they left: the version counts bookings,
        # the epoch changes whenever the running totals are rebased.
        self._epoch = 0
        self._version = 0
        self._withdrawn: list[_Entry] = []

    def try_acquire(self, cost: float = 1) -> Decision:
        """Grant *cost* now if the last window has room for it, without blocking.

        Returns:
            A `Decision`, truthy iff granted.  When denied, nothing changes and its
            ``retry_after`` is the exact wait until enough of the window has expired.

        Raises:
            ValueError: If *cost* is not a positive finite number.
            CostTooLarge: If *cost* exceeds the limit.
        """
        lock = self._lock
        lock.acquire()
        try:
            now = self._now()
            times = self._times
            if self._head < len(times) and times[self._head] <= now - self._window:
                self._expire(now)
            total = self._total + cost
            # Room in the window, and no waiter booked ahead.
            if total - self._base <= self._limit and cost > 0 and (not times or times[-1] <= now):
                if times and times[-1] == now:
                    self._cums[-1] = total
                else:
                    times.append(now)
                    self._cums.append(total)
                self._total = total
                self._version += 1
                self._tally.granted += 1
                return GRANTED
        except TypeError:
            pass
        finally:
            lock.release()
        return LimiterBase.try_acquire(self, cost)

    def _expire(self, now: float) -> None:
        """Drop the entries that no window from *now* on can contain."""
        times, cums = self._times, self._cums
        edge = now - self._window
        head, size = self._head, len(times)
        while head < size and times[head] <= edge:
            head += 1
        if head == self._head:
            return
        if head == size:  # the window is empty: start afresh, with exact zero totals
            times.clear()
            cums.clear()
            self._head, self._base, self._total = 0, 0.0, 0.0
            self._epoch += 1
            return
        self._base = cums[head - 1]
        self._head = head
        if head >= _COMPACT_AFTER and 2 * head >= size:
            # Drop the expired entries and rebase the running totals on zero, so that
            # they stay small and the differences between them exact.
            del times[:head]
            base = self._base
            self._cums = [cum - base for cum in cums[head:]]
            self._total = self._cums[-1]
            self._head, self._base = 0, 0.0
            self._epoch += 1

    def _push(self, cost: float, at: float) -> float | None:
        """Add *cost* at *at* to the log; return the running total it merged into, if any."""
        times, cums = self._times, self._cums
        total = self._total + cost
        if times and times[-1] == at:
            merged: float | None = cums[-1]
            cums[-1] = total
        else:
            merged = None
            times.append(at)
            cums.append(total)
        self._total = total
        self._version += 1
        return merged

    def _used_at(self, when: float) -> float:
        """What counts against the limit at *when* (not before the newest entry)."""
        times = self._times
        # Bisect for the first entry still inside the window at *when*.
        edge = when - self._window
        low, high = self._head, len(times)
        while low < high:
            middle = (low + high) // 2
            if times[middle] <= edge:
                low = middle + 1
            else:
                high = middle
        out = self._cums[low - 1] if low > self._head else self._base
        return self._total - out

    def _delay_locked(self, cost: float, now: float) -> float:
        self._expire(now)
        times, cums, limit, total = self._times, self._cums, self._limit, self._total
        last = times[-1] if times else -math.inf
        if now >= last and total - self._base + cost <= limit:
            return 0.0

        def granted_at(when: float) -> bool:
            return when >= last and self._used_at(when) + cost <= limit

        # The first entry whose expiry leaves room: bisect on the running totals.
        low, high = self._head, len(cums) - 1
        while low < high:
            middle = (low + high) // 2
            if total - cums[middle] + cost <= limit:
                high = middle
            else:
                low = middle + 1
        estimate = last
        if times and total - self._base + cost > limit:
            estimate = max(last, times[low] + self._window)
        return exact_delay(now, estimate, granted_at)

    def _take_locked(self, cost: float, now: float, at: float) -> _Entry:  # noqa: ARG002
        before = (self._epoch, self._version, self._total)
        merged = self._push(cost, at)
        return _Entry(before, (self._epoch, self._version), at, merged)

    def _available_locked(self, cost: float, now: float) -> bool:
        times = self._times
        if self._head < len(times) and times[self._head] <= now - self._window:
            self._expire(now)
        return self._total - self._base + cost <= self._limit and (not times or times[-1] <= now)

    def _grant_locked(self, cost: float, now: float) -> None:
        # `_push` written out: this is the hot path of a composition.
        times = self._times
        total = self._total + cost
        if times and times[-1] == now:
            self._cums[-1] = total
        else:
            times.append(now)
            self._cums.append(total)
        self._total = total
        self._version += 1

    def _refund_locked(self, token: object, now: float) -> None:
        self._withdrawn = withdraw(
            self._withdrawn, cast("_Entry", token), now, self._state, self._undo
        )

    def _state(self) -> tuple[int, int]:
        return self._epoch, self._version

    def _undo(self, entry: _Entry) -> None:
        if entry.merged is None:
            self._times.pop()
            self._cums.pop()
        else:
            self._cums[-1] = entry.merged
        _, self._version, self._total = entry.before

    def _level_locked(self, now: float) -> float:
        self._expire(now)
        return self._limit - (self._total - self._base)

    def _rest_at_locked(self, now: float) -> float:
        self._expire(now)
        if not self._times:
            return now
        last, window = self._times[-1], self._window
        return first_instant(now, last + window, lambda when: last <= when - window)


@attrs.frozen
class _Entry:
    """One booking in the log, and what undoing it exactly needs."""

    before: tuple[int, int, float]  # (epoch, version, total) before the booking
    after: tuple[int, int]  # (epoch, version) after it
    at: float
    merged: float | None  # the entry's running total before, if merged into an entry


@final
class FixedWindow(WindowBase):
    """At most *limit* per window, the windows aligned on the clock's zero.

    Guarantee: the grants in each window ``[k * window, (k + 1) * window)`` of clock
    time sum to at most *limit*.  It is the cheapest strategy, but it allows a burst of
    up to ``2 * limit`` across a window edge: *limit* at the end of one window and
    *limit* again at the start of the next.  Use `SlidingWindow` when the server counts
    in a sliding window, or when that burst matters.  The windows are aligned on the
    clock's zero; for `MonotonicClock` that is an arbitrary instant (often boot time),
    not the server's window edges.

    The state is the current window and what it has granted, so every call costs O(1)
    time and the limiter O(1) memory.  Bookings are served in arrival order: a call is
    never granted ahead of a waiter already booked.

    Args:
        limit: The most that may be granted within one window; also the largest cost.
        window: The window's length in seconds.
        clock: Where time comes from (default: `MonotonicClock`).

    Raises:
        ValueError: If *limit* or *window* is not a positive finite number (the message
            names which).
    """

    __slots__ = ("_end", "_last", "_used", "_withdrawn")

    def __init__(self, limit: float, window: float, *, clock: Clock | None = None) -> None:
        super().__init__(limit, window, clock)
        # The window of the newest booking ends at ``_end``; it holds ``_used``.
        self._end = -math.inf
        self._used = 0.0
        self._last = -math.inf  # the newest booking's instant
        self._withdrawn: list[_Booking] = []

    def try_acquire(self, cost: float = 1) -> Decision:
        """Grant *cost* now if the current window has room for it, without blocking.

        Returns:
            A `Decision`, truthy iff granted.  When denied, nothing changes and its
            ``retry_after`` is the exact wait until the next window starts.

        Raises:
            ValueError: If *cost* is not a positive finite number.
            CostTooLarge: If *cost* exceeds the limit.
        """
        lock = self._lock
        lock.acquire()
        try:
            now = self._now()
            if now < self._end:
                if self._used + cost <= self._limit and cost > 0 and now >= self._last:
                    self._used += cost
                    self._last = now
                    self._tally.granted += 1
                    return GRANTED
            elif self._limit >= cost > 0:
                self._end = self._window_end(now)
                self._used = cost
                self._last = now
                self._tally.granted += 1
                return GRANTED
        except TypeError:
            pass
        finally:
            lock.release()
        return LimiterBase.try_acquire(self, cost)

    def _window_end(self, when: float) -> float:
        """The first instant of the window after the one holding *when*.

        Windows are numbered ``floor(t / window)``; the end is found to the float, so
        that the limiter and that formula never disagree about which window holds an
        instant.
        """
        window = self._window
        index = math.floor(when / window)
        end = (index + 1) * window
        inf = math.inf
        while math.floor(end / window) <= index:
            end = math.nextafter(end, inf)
        while math.floor(math.nextafter(end, -inf) / window) > index:
            end = math.nextafter(end, -inf)
        return end

    def _delay_locked(self, cost: float, now: float) -> float:
        last, end, full = self._last, self._end, self._used + cost > self._limit

        def granted_at(when: float) -> bool:
            return when >= last and (when >= end or not full)

        if granted_at(now):
            return 0.0
        return exact_delay(now, max(last, end) if full else last, granted_at)

    def _take_locked(self, cost: float, now: float, at: float) -> _Booking:  # noqa: ARG002
        before = self._state()
        if at >= self._end:
            self._end = self._window_end(at)
            self._used = cost
        else:
            self._used += cost
        self._last = max(self._last, at)
        return _Booking(before, self._state(), at)

    def _available_locked(self, cost: float, now: float) -> bool:
        return now >= self._last and (now >= self._end or self._used + cost <= self._limit)

    def _grant_locked(self, cost: float, now: float) -> None:
        if now >= self._end:
            self._end = self._window_end(now)
            self._used = cost
        else:
            self._used += cost
        self._last = now

    def _refund_locked(self, token: object, now: float) -> None:
        self._withdrawn = withdraw(
            self._withdrawn, cast("_Booking", token), now, self._state, self._undo
        )

    def _state(self) -> tuple[float, float, float]:
        return self._end, self._used, self._last

    def _undo(self, booking: _Booking) -> None:
        self._end, self._used, self._last = booking.before

    def _level_locked(self, now: float) -> float:
        return self._limit if now >= self._end else self._limit - self._used

    def _rest_at_locked(self, now: float) -> float:
        return max(now, self._end)


@attrs.frozen
class _Booking:
    """What withdrawing one booking needs: the state before and after it, and its time."""

    before: tuple[float, float, float]
    after: tuple[float, float, float]
    at: float
