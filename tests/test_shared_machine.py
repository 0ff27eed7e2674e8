"""Members shared by several compositions and by a `Keyed`, driven by a stateful machine.

One token bucket is shared by two compositions (each with a quota of its own), by every
key of a `Keyed` and by direct calls.  Non-blocking calls, reservations, cancellations,
blocking acquires in threads (on a `SteppedClock`, so each wakes at its instant) and
cancellations of them interleave; after every step:

- every member keeps its own guarantee on the full history of what it granted, through
  compositions or directly, whatever keys were forgotten on the way;
- no booking holds the shared bucket far ahead: its level never falls below what its
  history leaves, less what the outstanding waits and reservations (and those withdrawn
  in the last window, which may stay spent) can take, plus one slot each; booking a
  member for a composition's far-off instant takes it down by the whole wait;
- a new key is refused (`TooManyKeys`) only while the table is full.
"""

from __future__ import annotations

import threading

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from specs import sliding_window_holds, token_bucket_holds
from stepped_clock import SteppedClock

from ratekit import (
    AcquireCancelled,
    AcquireTimeout,
    Keyed,
    SlidingWindow,
    TokenBucket,
    TooManyKeys,
    all_of,
)

RATE, CAPACITY = 2.0, 2.0  # the shared bucket: one slot of cost 1 is 0.5 s
QUOTAS = {"a": (2, 30.0), "b": (3, 10.0)}  # each composition's own quota: limit, window
OWN = (1, 5.0)  # each key's own limit
KEYS = ("k1", "k2", "k3")
#: The longest any booking can lie ahead: the longest quota window, and a slot.
LONGEST = 31.0

targets = st.sampled_from(["a", "b", *KEYS])
steps = st.one_of(st.just(0.0), st.floats(0.01, 1.0), st.floats(1.0, 40.0))


def bucket_level(grants: list[tuple[float, float]], now: float) -> float:
    """The level of a fresh bucket after *grants* (those up to *now*), at *now*."""
    level, stamp = CAPACITY, 0.0
    for instant, cost in sorted(grant for grant in grants if grant[0] <= now):
        level = min(CAPACITY, level + (instant - stamp) * RATE) - cost
        stamp = instant
    return min(CAPACITY, level + (now - stamp) * RATE)


class SharedMachine(RuleBasedStateMachine):
    """Drives the shared bucket through its compositions, its keys and directly."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = SteppedClock()
        self.shared = TokenBucket(RATE, CAPACITY, clock=self.clock)
        self.quotas = {
            name: SlidingWindow(limit, window, clock=self.clock)
            for name, (limit, window) in QUOTAS.items()
        }
        self.compositions = {name: all_of(self.shared, q) for name, q in self.quotas.items()}
        self.own: dict[str, list[SlidingWindow]] = {key: [] for key in KEYS}

        def factory() -> SlidingWindow:
            return SlidingWindow(*OWN, clock=self.clock)

        self.keyed: Keyed[str] = Keyed(factory, max_keys=2, shared=[self.shared])
        # What each limiter granted: (instant, cost); keys across their forgetting.
        self.history: dict[str, list[tuple[float, float]]] = {
            name: [] for name in ["shared", *QUOTAS, *KEYS]
        }
        self.reservations: list[tuple[str, object, float]] = []  # (target, reservation, at)
        self.waits: list[tuple[threading.Thread, threading.Event]] = []
        self.waiting_for: dict[threading.Thread, str] = {}
        # When waits or reservations ended without a grant: a booking withdrawn while
        # others stood behind it stays spent until its instant (see docs/concepts.md).
        self.withdrawn: list[float] = []
        self.lock = threading.Lock()

    def teardown(self) -> None:
        for _, stop in self.waits:
            stop.set()
        for thread, _ in self.waits:
            thread.join(30.0)

    def _record(self, target: str, instant: float, cost: float = 1.0) -> None:
        with self.lock:
            self.history["shared"].append((instant, cost))
            self.history[target].append((instant, cost))

    def _limiter(self, target: str):
        return self.compositions.get(target)

    @rule(who=targets)
    def try_acquire(self, who: str) -> None:
        if who in KEYS:
            try:
                decision = self.keyed.try_acquire(who)
            except TooManyKeys:
                self._check_refusal(who)
                return
        else:
            decision = self.compositions[who].try_acquire()
        if decision:
            self._record(who, self.clock.now())

    @rule()
    def direct(self) -> None:
        if self.shared.try_acquire():
            with self.lock:
                self.history["shared"].append((self.clock.now(), 1.0))

    @rule(who=st.sampled_from(list(QUOTAS)))
    def reserve(self, who: str) -> None:
        # A reservation is a promise for its instant: within one slot, as a caller would.
        reservation = self.compositions[who].reserve(max_wait=1.0 / RATE)
        if reservation.ok:
            self.reservations.append((who, reservation, reservation.ready_at))

    @precondition(lambda self: self.reservations)
    @rule(index=st.integers(0, 10))
    def settle_reservation(self, index: int) -> None:
        """Cancel a reservation, or use it if its time has come."""
        target, reservation, at = self.reservations.pop(index % len(self.reservations))
        if not reservation.cancel():  # its time came: it counts as used
            self._record(target, at)
        else:
            with self.lock:
                self.withdrawn.append(self.clock.now())

    @precondition(lambda self: len(self.waits) < 4)
    @rule(who=targets, timeout=st.sampled_from([None, 1.0, 60.0]))
    def wait(self, who: str, timeout: float | None) -> None:
        stop = threading.Event()

        def run() -> None:
            try:
                if who in KEYS:
                    self.keyed.acquire(who, timeout=timeout, cancel=stop)
                else:
                    self.compositions[who].acquire(timeout=timeout, cancel=stop)
            except (AcquireTimeout, AcquireCancelled, TooManyKeys):
                with self.lock:
                    self.withdrawn.append(self.clock.now())
                return
            self._record(who, self.clock.now())

        thread = threading.Thread(target=run)
        thread.start()
        self.waits.append((thread, stop))
        self.waiting_for[thread] = who
        self.clock.settle([thread])

    @precondition(lambda self: self.waits)
    @rule(index=st.integers(0, 10))
    def cancel(self, index: int) -> None:
        thread, stop = self.waits[index % len(self.waits)]
        stop.set()
        thread.join(30.0)

    @rule(seconds=steps)
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds, [thread for thread, _ in self.waits])

    def _check_refusal(self, key: str) -> None:
        """A new key is refused only while the table is full."""
        assert key not in self.keyed
        assert len(self.keyed) == self.keyed.max_keys

    @invariant()
    def waits_end(self) -> None:
        self.waits = [(thread, stop) for thread, stop in self.waits if thread.is_alive()]

    @invariant()
    def every_member_keeps_its_guarantee(self) -> None:
        with self.lock:
            history = {name: list(grants) for name, grants in self.history.items()}
        promised = [(at, 1.0) for _, _, at in self.reservations]
        assert token_bucket_holds(history["shared"] + promised, RATE, CAPACITY)
        for name, (limit, window) in QUOTAS.items():
            mine = [(at, 1.0) for target, _, at in self.reservations if target == name]
            assert sliding_window_holds(history[name] + mine, limit, window)
        for key in KEYS:
            assert sliding_window_holds(history[key], *OWN)

    @invariant()
    def the_shared_bucket_is_never_held_far_ahead(self) -> None:
        now = self.clock.now()
        with self.lock:
            grants = list(self.history["shared"])
            recent = sum(when > now - LONGEST for when in self.withdrawn)
        outstanding = len(self.reservations) + sum(t.is_alive() for t, _ in self.waits) + recent
        # Each outstanding booking takes its cost and holds at most one slot more.
        floor = bucket_level(grants, now) - 2.0 * outstanding - 1e-6
        assert self.shared.statistics().level >= floor


TestSharedMembers = SharedMachine.TestCase
