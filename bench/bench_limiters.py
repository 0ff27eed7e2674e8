# Copyright (c) 2026 The ratekit developers
# SPDX-License-Identifier: MIT
"""Measure ratekit's strategies beside other Python rate limiters, in one process.

Usage::

    python bench/bench_limiters.py              # the full run, about four minutes
    python bench/bench_limiters.py --quick      # a shorter, noisier run
    python bench/bench_limiters.py --only tokens      # the token-bucket table alone
    python bench/bench_limiters.py --only strategies  # the table by strategy alone
    python bench/bench_limiters.py --json out.json

It prints two Markdown tables: token buckets (``TokenBucket`` against the peers' token
buckets and a floor), and one by strategy (leaky bucket, sliding window, fixed window
and composition, each against the peers' implementations of the same algorithm), with
the cost of a full ``SlidingWindow`` at two limits.  What each column means and how each
library is driven is described in ``bench/README.md``.  Trials of different libraries
are interleaved and summarised by their median, so that a noisy machine blurs every row
alike.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import hashlib
import itertools
import json
import math
import os
import platform
import statistics
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeAlias, TypeVar

import aiolimiter
import pyrate_limiter as pyrate
import token_bucket
from limits import RateLimitItemPerSecond
from limits.storage import MemoryStorage as LimitsMemoryStorage
from limits.strategies import (
    FixedWindowRateLimiter,
    MovingWindowRateLimiter,
    RateLimiter,
    SlidingWindowCounterRateLimiter,
)
from throttled import MemoryStore, Throttled, per_sec

import ratekit

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from ratekit.typing import CancelEvent, Limiter

#: The one key every keyed peer is driven with.
KEY = "bench"
#: (a) and (b): a rate and a capacity so large that every call is granted.
HUGE = 10**9
#: (c): the accuracy scenario, in units per second and units.
RATE = 100
BURST = 10
#: (d): permits come back at this rate, one at a time, while wake lateness is measured.
LATENCY_RATE = 100
#: (b): calls between two looks at the clock in each hammering thread.
CHUNK = 200


@dataclass(frozen=True)
class Settings:
    """How long and how often each measurement runs."""

    speed_rounds: int
    speed_trial: float
    threads: int
    contention_rounds: int
    contention_trial: float
    accuracy_rounds: int
    accuracy_seconds: float
    latency_rounds: int
    latency_budget: float
    latency_min_samples: int
    #: The table by strategy: (b) trial length, and (c) length of each blocking run.
    strategy_contention_trial: float
    strategy_accuracy_seconds: float


FULL = Settings(
    speed_rounds=9,
    speed_trial=0.05,
    threads=4,
    contention_rounds=9,
    contention_trial=0.4,
    accuracy_rounds=2,
    accuracy_seconds=3.0,
    latency_rounds=2,
    latency_budget=2.0,
    latency_min_samples=3,
    strategy_contention_trial=0.2,
    strategy_accuracy_seconds=3.0,
)
QUICK = Settings(
    speed_rounds=3,
    speed_trial=0.02,
    threads=4,
    contention_rounds=2,
    contention_trial=0.2,
    accuracy_rounds=1,
    accuracy_seconds=1.0,
    latency_rounds=1,
    latency_budget=0.5,
    latency_min_samples=1,
    strategy_contention_trial=0.03,
    strategy_accuracy_seconds=0.2,
)


def _nothing() -> None:
    """Release nothing (the default clean-up)."""


# -- what a contender provides -----------------------------------------------------------


@dataclass
class Fast:
    """A limiter set up with a huge rate for (a) and (b): every call is granted."""

    #: Run *n* calls back to back and return the elapsed nanoseconds.
    time: Callable[[int], int]
    #: Make one more call and say whether it was granted (checked after timing).
    check: Callable[[], bool]
    #: The bare call, for the threads of (b); ``None`` when not thread-safe.
    call: Callable[[], object] | None
    close: Callable[[], None] = _nothing


@dataclass
class AccuracyRun:
    """One run of (c)."""

    grants: int
    ideal: float
    max_window: int
    cpu: float


@dataclass
class Contender:
    """A row of the table and the functions that measure it."""

    key: str
    label: str
    fast: Callable[[], Fast]
    #: (threads, seconds) -> one run of (c); ``None`` for the floor.
    accuracy: Callable[[int, float], AccuracyRun] | None = None
    #: (budget seconds, minimum samples) -> wake lateness samples in seconds, or ``None``.
    latency: Callable[[float, int], list[float]] | None = None
    notes: list[str] = field(default_factory=list)


def _time_calls(call: Callable[[], object], n: int) -> int:
    calls = itertools.repeat(None, n)
    start = time.perf_counter_ns()
    for _ in calls:
        call()
    return time.perf_counter_ns() - start


def _sync_fast(
    call: Callable[[], object],
    granted: Callable[[object], bool] = bool,
    close: Callable[[], None] = _nothing,
) -> Fast:
    return Fast(partial(_time_calls, call), lambda: granted(call()), call, close)


#: (c): a limiter set up for blocking callers, as (blocking acquire -> granted?, close).
Blocking: TypeAlias = "tuple[Callable[[], bool], Callable[[], None]]"

#: (d): a fresh limiter of capacity 1 at LATENCY_RATE, as (take one unit without
#: blocking -> granted?, blocking acquire, close).
Probe: TypeAlias = "tuple[Callable[[], bool], Callable[[], object], Callable[[], None]]"


def _probed_latency(make: Callable[[], Probe], budget: float, min_samples: int) -> list[float]:
    """Sample how late a blocking call returns after an exact token bucket would allow it.

    Each sample takes a fresh, full limiter of capacity 1, takes its unit without
    blocking, then blocks for the next one.  An exact limiter allows that one
    ``1 / LATENCY_RATE`` seconds after the take (at once if the full limiter refused the
    take); the time is read before the take, so lateness can only be overstated, by the
    duration of one call.  The permit time never comes from the limiter under test.
    """
    lateness: list[float] = []
    end = time.monotonic() + budget
    while time.monotonic() < end or len(lateness) < min_samples:
        take, acquire, close = make()
        before = time.monotonic()
        took = take()
        acquire()
        lateness.append(time.monotonic() - (before + (1 / LATENCY_RATE if took else 0.0)))
        close()
    return lateness


# -- the floor ---------------------------------------------------------------------------


def _floor_fast() -> Fast:
    lock = threading.Lock()
    monotonic = time.monotonic
    stamp = 0.0

    def floor() -> bool:
        # The least a thread-safe limiter in Python can do: lock, read the clock, store.
        # On CPython 3.11, acquire() with try/finally costs ~50 ns less than `with lock:`.
        nonlocal stamp
        lock.acquire()
        try:
            stamp = monotonic()
        finally:
            lock.release()
        return True

    return _sync_fast(floor)


# -- ratekit -----------------------------------------------------------------------------


def _ratekit_fast() -> Fast:
    bucket = ratekit.TokenBucket(HUGE, HUGE)
    return _sync_fast(bucket.try_acquire)


def _ratekit_blocking() -> Blocking:
    bucket = ratekit.TokenBucket(RATE, BURST)

    def acquire() -> bool:
        bucket.acquire()
        return True

    return acquire, _nothing


def _ratekit_probe() -> Probe:
    bucket = ratekit.TokenBucket(LATENCY_RATE, 1)
    return lambda: bool(bucket.try_acquire()), bucket.acquire, _nothing


# -- pyrate-limiter ----------------------------------------------------------------------


def _pyrate_limiter(rate: int, burst: int) -> tuple[pyrate.Limiter, pyrate.StateBucket]:
    # Its token bucket (a GCRA, O(1) state) rather than the default sliding-window log.
    bucket = pyrate.StateBucket(
        [pyrate.Rate(rate, pyrate.Duration.SECOND, burst=burst)], algorithm=pyrate.TokenBucket()
    )
    return pyrate.Limiter(bucket), bucket


def _pyrate_fast() -> Fast:
    return _pyrate_fast_of(lambda: _pyrate_limiter(HUGE, HUGE)[0])


def _pyrate_blocking() -> Blocking:
    return _pyrate_blocking_of(lambda: _pyrate_limiter(RATE, BURST)[0])


def _pyrate_probe() -> Probe:
    limiter, _ = _pyrate_limiter(LATENCY_RATE, 1)
    return (
        lambda: limiter.try_acquire(KEY, blocking=False) is True,
        lambda: limiter.try_acquire(KEY),
        limiter.close,
    )


# -- limits ------------------------------------------------------------------------------


def _limits_fast() -> Fast:
    return _limits_fast_of(SlidingWindowCounterRateLimiter)


def _limits_blocking() -> Blocking:
    return _limits_blocking_of(SlidingWindowCounterRateLimiter)


# -- throttled-py ------------------------------------------------------------------------


def _throttled(rate: int, burst: int) -> Throttled:
    return _throttled_of("token_bucket", rate, burst)


def _throttled_fast() -> Fast:
    return _throttled_fast_of("token_bucket", HUGE)


def _throttled_blocking() -> Blocking:
    return _throttled_blocking_of("token_bucket", BURST)


def _throttled_latency(budget: float, min_samples: int) -> list[float]:
    # Its in-memory token bucket refills on whole wall-clock seconds, so a unit that is
    # refused becomes available at the next whole second of time.time().
    throttle = _throttled(LATENCY_RATE, 1)
    lateness: list[float] = []
    end = time.monotonic() + budget
    while time.monotonic() < end or len(lateness) < min_samples:
        before = time.time()
        refused = throttle.limit(timeout=-1).limited
        after = time.time()
        if not refused or math.floor(before) != math.floor(after):
            continue
        permit = math.floor(before) + 1.0
        if not throttle.limit().limited:
            lateness.append(time.time() - permit)
    return lateness


# -- token-bucket ------------------------------------------------------------------------


def _token_bucket_fast() -> Fast:
    limiter = token_bucket.Limiter(HUGE, HUGE, token_bucket.MemoryStorage())
    return _sync_fast(partial(limiter.consume, KEY))


def _token_bucket_acquire(
    limiter: token_bucket.Limiter, storage: token_bucket.MemoryStorage, rate: float
) -> Callable[[], bool]:
    def acquire() -> bool:
        # No blocking call: retry after the time the missing fraction of a token takes.
        while not limiter.consume(KEY):
            missing = 1 - storage.get_token_count(KEY)
            time.sleep(missing / rate if missing > 0 else 0)
        return True

    return acquire


def _token_bucket_blocking() -> Blocking:
    storage = token_bucket.MemoryStorage()
    limiter = token_bucket.Limiter(RATE, BURST, storage)
    return _token_bucket_acquire(limiter, storage, RATE), _nothing


def _token_bucket_probe() -> Probe:
    storage = token_bucket.MemoryStorage()
    limiter = token_bucket.Limiter(LATENCY_RATE, 1, storage)
    return (
        partial(limiter.consume, KEY),
        _token_bucket_acquire(limiter, storage, LATENCY_RATE),
        _nothing,
    )


# -- aiolimiter (asyncio only) -----------------------------------------------------------


def _aiolimiter_fast() -> Fast:
    loop = asyncio.new_event_loop()
    limiter = aiolimiter.AsyncLimiter(HUGE, 1)

    async def timed(n: int) -> int:
        acquire = limiter.acquire
        calls = itertools.repeat(None, n)
        start = time.perf_counter_ns()
        for _ in calls:
            await acquire()
        return time.perf_counter_ns() - start

    async def has_capacity() -> bool:
        return limiter.has_capacity()

    return Fast(
        time=lambda n: loop.run_until_complete(timed(n)),
        check=lambda: loop.run_until_complete(has_capacity()),
        call=None,
        close=loop.close,
    )


def _aiolimiter_accuracy(tasks: int, seconds: float) -> AccuracyRun:
    # A leaky bucket of BURST units that drains at RATE per second.
    run = _aiolimiter_grants(BURST, BURST / RATE, tasks, seconds)
    return _accuracy_result(run.times, seconds, run.cpu)


def _aiolimiter_grants(max_rate: float, period: float, tasks: int, seconds: float) -> Grants:
    """Have *tasks* tasks loop on ``await acquire()`` for *seconds*; record the grants."""
    grants: list[float] = []
    start = [0.0]
    wall_offset = time.time() - time.monotonic()

    async def run() -> float:
        cpu = time.process_time()
        limiter = aiolimiter.AsyncLimiter(max_rate, period)
        deadline = time.monotonic() + seconds
        start[0] = deadline - seconds

        async def worker() -> None:
            while True:
                await limiter.acquire()
                now = time.monotonic()
                if now > deadline:
                    return
                grants.append(now)

        await asyncio.gather(*(worker() for _ in range(tasks)))
        return time.process_time() - cpu

    cpu = asyncio.run(run())
    return Grants(grants, start[0], seconds, cpu, wall_offset)


def _aiolimiter_latency(budget: float, min_samples: int) -> list[float]:
    lateness: list[float] = []

    async def run() -> None:
        end = time.monotonic() + budget
        while time.monotonic() < end or len(lateness) < min_samples:
            # A leaky bucket of one unit that drains at LATENCY_RATE per second.
            limiter = aiolimiter.AsyncLimiter(1, 1 / LATENCY_RATE)
            before = time.monotonic()
            took = limiter.has_capacity()
            if took:
                await limiter.acquire()  # returns at once: there is room for one unit
            await limiter.acquire()
            lateness.append(time.monotonic() - (before + (1 / LATENCY_RATE if took else 0.0)))

    asyncio.run(run())
    return lateness


# -- the measurements --------------------------------------------------------------------


def _max_in_window(stamps: list[float], width: float = 1.0) -> int:
    """Return the most stamps in any half-open window ``[t, t + width)``."""
    stamps = sorted(stamps)
    most = 0
    first = 0
    for last, stamp in enumerate(stamps):
        while stamp - stamps[first] >= width:
            first += 1
        most = max(most, last - first + 1)
    return most


def _accuracy_result(grants: list[float], seconds: float, cpu: float) -> AccuracyRun:
    return AccuracyRun(
        grants=len(grants),
        ideal=BURST + RATE * seconds,
        max_window=_max_in_window(grants),
        cpu=cpu,
    )


@dataclass
class Grants:
    """The grants of one blocking run, as ``time.monotonic()`` readings taken on return."""

    times: list[float]
    start: float
    seconds: float
    cpu: float
    #: ``time.time() - time.monotonic()`` at the start, to place wall-clock windows.
    wall_offset: float


def _threaded_accuracy(
    make: Callable[[], Blocking],
    threads: int,
    seconds: float,
) -> AccuracyRun:
    acquire, close = make()
    run = _threaded_grants(acquire, threads, seconds)
    close()
    return _accuracy_result(run.times, seconds, run.cpu)


def _threaded_grants(
    acquire: Callable[[], bool], threads: int, seconds: float, grace: float | None = None
) -> Grants:
    """Have *threads* threads loop on *acquire* for *seconds*; record each grant's time.

    With *grace* ``None``, wait for every worker's last call to return.  Otherwise wait at
    most *grace* seconds after the deadline: a worker still blocked then finishes on its
    own (a daemon thread), and what it gets is not counted either way.
    """
    grants: list[float] = []
    deadline = [math.inf]
    go = threading.Event()

    def worker() -> None:
        go.wait()
        stop = deadline[0]
        while True:
            granted = acquire()
            now = time.monotonic()
            if now > stop:
                return
            if granted:
                grants.append(now)

    workers = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for thread in workers:
        thread.start()
    cpu = time.process_time()
    wall_offset = time.time() - time.monotonic()
    deadline[0] = time.monotonic() + seconds
    go.set()
    for thread in workers:
        if grace is None:
            thread.join(timeout=seconds + 30)
        else:
            thread.join(timeout=max(deadline[0] + grace - time.monotonic(), 0.0))
    cpu = time.process_time() - cpu
    if grace is None and any(thread.is_alive() for thread in workers):
        print("  warning: a worker is still blocked after the run", file=sys.stderr)
    stop = deadline[0]
    return Grants([t for t in grants if t <= stop], stop - seconds, seconds, cpu, wall_offset)


def _contention(call: Callable[[], object], threads: int, seconds: float) -> tuple[int, float]:
    """Hammer *call* from *threads* threads for *seconds*; return (calls, wall seconds)."""
    counts = [0] * threads
    ends = [0.0] * threads
    deadline = [math.inf]
    go = threading.Event()

    def worker(index: int) -> None:
        go.wait()
        stop = deadline[0]
        clock = time.perf_counter
        done = 0
        while clock() < stop:
            for _ in itertools.repeat(None, CHUNK):
                call()
            done += CHUNK
        counts[index] = done
        ends[index] = clock()

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in workers:
        thread.start()
    start = time.perf_counter()
    deadline[0] = start + seconds
    go.set()
    for thread in workers:
        thread.join()
    return sum(counts), max(ends) - start


class Row(Protocol):
    """What (a) and (b) need of a row, in either table."""

    @property
    def key(self) -> str:
        """The row's key in the raw numbers."""
        ...

    @property
    def fast(self) -> Callable[[], Fast]:
        """Set up the limiter for (a) and (b)."""
        ...


RowT = TypeVar("RowT", bound=Row)


def _rotated(items: Sequence[RowT], shift: int) -> list[RowT]:
    shift %= len(items)
    return [*items[shift:], *items[:shift]]


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Speed:
    """The raw numbers of (a) and (b) for one row."""

    ns_per_call: list[float] = field(default_factory=list)
    all_granted: bool = True
    calls_per_second: list[float] = field(default_factory=list)


@dataclass
class Measured(Speed):
    """The raw numbers of one row of the token-bucket table."""

    accuracy: list[AccuracyRun] = field(default_factory=list)
    lateness: list[float] | None = None


def measure_speed(rows: Sequence[Row], raw: Mapping[str, Speed], settings: Settings) -> None:
    """(a): nanoseconds per granted non-blocking call, one thread."""
    _log("(a) single-thread non-blocking calls")
    handles = {row.key: row.fast() for row in rows}
    sizes: dict[str, int] = {}
    for row in rows:  # warm up, and size each trial to about speed_trial seconds
        handle = handles[row.key]
        handle.time(2000)
        per_call = handle.time(2000) / 2000
        sizes[row.key] = max(2000, int(settings.speed_trial * 1e9 / max(per_call, 1.0)))
    for round_ in range(settings.speed_rounds):
        for row in _rotated(rows, round_):
            n = sizes[row.key]
            gc.collect()
            raw[row.key].ns_per_call.append(handles[row.key].time(n) / n)
    for row in rows:
        handle = handles[row.key]
        raw[row.key].all_granted = all(handle.check() for _ in range(100))
        handle.close()


def measure_contention(
    rows: Sequence[Row], raw: Mapping[str, Speed], settings: Settings, trial: float
) -> None:
    """(b): calls per second with several threads on one shared limiter, *trial* seconds."""
    _log(f"(b) {settings.threads} threads on one limiter")
    for round_ in range(settings.contention_rounds):
        for row in _rotated(rows, round_):
            handle = row.fast()
            if handle.call is not None:
                gc.collect()
                calls, wall = _contention(handle.call, settings.threads, trial)
                raw[row.key].calls_per_second.append(calls / wall)
            handle.close()


def measure_accuracy(rows: list[Contender], raw: dict[str, Measured], settings: Settings) -> None:
    """(c): blocking callers at RATE per second with a burst of BURST."""
    for round_ in range(settings.accuracy_rounds):
        for row in _rotated(rows, round_):
            if row.accuracy is not None:
                _log(f"(c) accuracy, round {round_ + 1}: {row.label}")
                gc.collect()
                run = row.accuracy(settings.threads, settings.accuracy_seconds)
                raw[row.key].accuracy.append(run)


def measure_latency(rows: list[Contender], raw: dict[str, Measured], settings: Settings) -> None:
    """(d): how late a blocking call returns after its permit time."""
    for round_ in range(settings.latency_rounds):
        for row in _rotated(rows, round_):
            if row.latency is not None:
                _log(f"(d) wake lateness, round {round_ + 1}: {row.label}")
                samples = row.latency(settings.latency_budget, settings.latency_min_samples)
                raw[row.key].lateness = (raw[row.key].lateness or []) + samples


# -- the table ---------------------------------------------------------------------------


def _percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..1)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _ratio(value: float | None, reference: float | None) -> str:
    if value is None or not reference:
        return "—"
    return f"{value / reference:.2f}x"


def _count(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.0f}"


def _medians(
    raw: dict[str, Measured] | dict[str, StrategyMeasured],
) -> tuple[dict[str, float | None], dict[str, float | None]]:
    """Return the median (a) ns/call and (b) calls/s of each row, ``None`` where not run."""
    speed = {
        key: statistics.median(m.ns_per_call) if m.ns_per_call else None for key, m in raw.items()
    }
    throughput = {
        key: statistics.median(m.calls_per_second) if m.calls_per_second else None
        for key, m in raw.items()
    }
    return speed, throughput


def render(rows: list[Contender], raw: dict[str, Measured], header: str) -> str:
    """Return the Markdown table, with its header and notes."""
    speed, throughput = _medians(raw)
    lines = [
        header,
        "",
        (
            "| Limiter | (a) ns/call | (a) x floor | (a) x ratekit | (b) calls/s "
            "| (b) x floor | (b) x ratekit | (c) grants / ideal | (c) max in 1 s "
            "| (c) CPU s | (d) p50 ms | (d) p99 ms |"
        ),
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for row in rows:
        m = raw[row.key]
        ns = speed[row.key]
        cells = [
            row.label,
            "—" if ns is None else f"{ns:,.0f}" + ("" if m.all_granted else " (denials!)"),
            _ratio(ns, speed["floor"]),
            "—" if row.key == "ratekit" else _ratio(ns, speed["ratekit"]),
            _count(throughput[row.key]) if throughput[row.key] is not None else "skipped",
            _ratio(throughput[row.key], throughput["floor"]),
            "—" if row.key == "ratekit" else _ratio(throughput[row.key], throughput["ratekit"]),
        ]
        if m.accuracy:
            grants = statistics.median(run.grants for run in m.accuracy)
            ideal = m.accuracy[0].ideal
            cells += [
                f"{grants:.0f} / {ideal:.0f} ({grants / ideal:.1%})",
                str(max(run.max_window for run in m.accuracy)),
                f"{statistics.median(run.cpu for run in m.accuracy):.3f}",
            ]
        else:
            cells += ["—", "—", "—"]
        if m.lateness:
            p50 = _percentile(m.lateness, 0.5) * 1e3
            p99 = _percentile(m.lateness, 0.99) * 1e3
            small = f" (n={len(m.lateness)})" if len(m.lateness) < 100 else ""
            cells += [f"{p50:.2f}", f"{p99:.2f}{small}"]
        elif row.latency is None and row.key != "floor":
            cells += ["n/a", "n/a"]
        else:
            cells += ["—", "—"]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.extend(f"- {row.label}: {note}" for row in rows for note in row.notes)
    return "\n".join(lines)


def contenders() -> list[Contender]:
    """Return the rows of the table, the floor first and ratekit second."""
    return [
        Contender(
            "floor",
            "floor",
            _floor_fast,
            notes=[
                (
                    "a Python function doing lock.acquire(), try: one time.monotonic() read "
                    "stored in a float, finally: lock.release(); the least a thread-safe "
                    "Python limiter does."
                )
            ],
        ),
        Contender(
            "ratekit",
            "ratekit",
            _ratekit_fast,
            partial(_threaded_accuracy, _ratekit_blocking),
            partial(_probed_latency, _ratekit_probe),
            ["TokenBucket: (a, b) try_acquire(); (c, d) acquire()."],
        ),
        Contender(
            "pyrate",
            "pyrate-limiter",
            _pyrate_fast,
            partial(_threaded_accuracy, _pyrate_blocking),
            partial(_probed_latency, _pyrate_probe),
            [
                (
                    "Limiter(StateBucket(..., algorithm=TokenBucket())): (a, b) "
                    "try_acquire(key, blocking=False); (c, d) try_acquire(key), which sleeps "
                    "the computed wait plus buffer_ms (default 50 ms) and retries."
                )
            ],
        ),
        Contender(
            "limits",
            "limits",
            _limits_fast,
            partial(_threaded_accuracy, _limits_blocking),
            None,
            [
                (
                    "SlidingWindowCounterRateLimiter + MemoryStorage, hit(item) with "
                    f"{RATE}/second (no separate burst: the whole window may go at once); "
                    "(c) no blocking call, so hit() and sleep until get_window_stats().reset_time; "
                    "(d) n/a: the approximated window has no exact permit time."
                )
            ],
        ),
        Contender(
            "throttled",
            "throttled-py",
            _throttled_fast,
            partial(_threaded_accuracy, _throttled_blocking),
            _throttled_latency,
            [
                (
                    "Throttled(using='token_bucket', store=MemoryStore()): (a, b) "
                    "limit(timeout=-1); (c, d) limit() with timeout=10. Its in-memory token "
                    "bucket counts time in whole seconds (refills once a second) and waits "
                    "in 0.2-0.5 s sleeps; (d) is measured against that next whole second."
                )
            ],
        ),
        Contender(
            "aiolimiter",
            "aiolimiter",
            _aiolimiter_fast,
            _aiolimiter_accuracy,
            _aiolimiter_latency,
            [
                (
                    "AsyncLimiter (asyncio only): (a) `await acquire()` in one coroutine, "
                    f"capacity always available; (b) skipped: not thread-safe; (c) "
                    f"AsyncLimiter({BURST}, {BURST / RATE}) driven by 4 tasks in one event loop "
                    "instead of threads."
                )
            ],
        ),
        Contender(
            "token_bucket",
            "token-bucket",
            _token_bucket_fast,
            partial(_threaded_accuracy, _token_bucket_blocking),
            partial(_probed_latency, _token_bucket_probe),
            [
                (
                    "Limiter(rate, capacity, MemoryStorage()).consume(key), no lock (its docs "
                    "accept small races); (c, d) no blocking call, so consume() and sleep for "
                    "the missing fraction of a token."
                )
            ],
        ),
    ]


# -- the table by strategy ---------------------------------------------------------------

#: (c) by strategy: every limit is RATE units per WINDOW seconds.
WINDOW = 1.0
#: (c) for the compositions: RATE per WINDOW, and at most COMPOSITE_LIMIT per
#: COMPOSITE_WINDOW seconds, which binds within the run.
COMPOSITE_LIMIT = 250
COMPOSITE_WINDOW = 3.0
#: (c) by strategy: grants are timed when the call returns, which trails the instant the
#: limiter granted by the caller's wake-up delay (0.1-1 ms, more on a busy machine).  An
#: exact window that grants 100 at ``t`` and 100 more at exactly ``t + 1`` would show 101
#: or more in a 1-second window of return times whenever the first batch returned a
#: little later than the second.  So "max in 1 s" counts in windows this much shorter.
JITTER = 0.005
#: The limits at which a full `SlidingWindow` is timed, to show that a call costs the same.
FLAT_LIMITS = (100, 100_000)


@dataclass
class WindowRun:
    """One run of (c) in the table by strategy."""

    grants: int
    #: The most the strategy allows in the run's half-open span ``[start, deadline)``.
    allowed: int
    #: The most grants in any half-open window of ``WINDOW - JITTER`` seconds.
    max_in_window: int
    #: The same over a full ``WINDOW``, which wake-up jitter can push one or more over.
    max_in_full_window: int
    #: Fixed windows: the most grants in one of the limiter's own windows.
    max_per_window: int | None
    #: Leaky buckets: the least and the mean time between consecutive grants, seconds.
    min_gap: float | None
    mean_gap: float | None
    cpu: float


#: (c) by strategy: turns the grants of one run into its row's numbers.
Judge: TypeAlias = "Callable[[Grants], WindowRun]"


@dataclass
class Strategy:
    """A row of the table by strategy, and the functions that measure it."""

    key: str
    #: The algorithm, shown on the first row of each group.
    group: str
    label: str
    fast: Callable[[], Fast]
    #: (threads, seconds) -> one run of (c); ``None`` for the floor.
    accuracy: Callable[[int, float], WindowRun] | None = None
    #: The ratekit row that (a) and (b) are divided by; ``None`` for the floor.
    versus: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ours(self) -> bool:
        """Whether this row is a ratekit limiter."""
        return self.key == self.versus


@dataclass
class StrategyMeasured(Speed):
    """The raw numbers of one row of the table by strategy."""

    accuracy: list[WindowRun] = field(default_factory=list)


def _window_run(grants: Grants, allowed: int, *, per_window: int | None = None) -> WindowRun:
    times = sorted(grants.times)
    return WindowRun(
        grants=len(times),
        allowed=allowed,
        max_in_window=_max_in_window(times, WINDOW - JITTER),
        max_in_full_window=_max_in_window(times, WINDOW),
        max_per_window=per_window,
        min_gap=None,
        mean_gap=None,
        cpu=grants.cpu,
    )


def _windows_in(seconds: float, window: float) -> int:
    """How many back-to-back sliding windows a run of *seconds* spans."""
    return math.ceil(seconds / window - 1e-9)


def _judge_sliding(grants: Grants) -> WindowRun:
    # At most RATE in [start, start + WINDOW), again in the next window, and so on.
    return _window_run(grants, RATE * _windows_in(grants.seconds, WINDOW))


def _judge_composite(grants: Grants) -> WindowRun:
    allowed = min(
        RATE * _windows_in(grants.seconds, WINDOW),
        COMPOSITE_LIMIT * _windows_in(grants.seconds, COMPOSITE_WINDOW),
    )
    return _window_run(grants, allowed)


def _judge_leaky(grants: Grants) -> WindowRun:
    # Grants at least 1 / RATE apart: start, start + 1 / RATE, ... before the deadline.
    run = _window_run(grants, math.ceil(RATE * grants.seconds - 1e-9))
    times = sorted(grants.times)
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    if gaps:
        run.min_gap = min(gaps)
        run.mean_gap = statistics.fmean(gaps)
    return run


def _judge_fixed(align: str) -> Judge:
    """Judge a fixed window of RATE per WINDOW whose windows are placed by *align*.

    ``"monotonic"``: windows ``[k * WINDOW, (k + 1) * WINDOW)`` of ``time.monotonic()``;
    ``"wall"``: the same on ``time.time()``; ``"first-hit"``: a window opens at the first
    hit after the previous one has expired.
    """

    def judge(grants: Grants) -> WindowRun:
        times = sorted(grants.times)
        if align == "first-hit":
            index: list[int] = []
            opened = -math.inf
            for stamp in times:
                if stamp >= opened + WINDOW:
                    opened = stamp
                    index.append((index[-1] + 1) if index else 0)
                else:
                    index.append(index[-1])
            windows = len(set(index))
        else:
            offset = grants.wall_offset if align == "wall" else 0.0
            index = [math.floor((stamp + offset) / WINDOW) for stamp in times]
            first = math.floor((grants.start + offset) / WINDOW)
            last = math.ceil((grants.start + grants.seconds + offset) / WINDOW) - 1
            windows = last - first + 1
        # The grants are sorted, so the grants of one window are consecutive.
        most = max((len(list(group)) for _, group in itertools.groupby(index)), default=0)
        return _window_run(grants, RATE * windows, per_window=most)

    return judge


def _strategy_accuracy(
    make: Callable[[], Blocking], judge: Judge, threads: int, seconds: float
) -> WindowRun:
    acquire, close = make()
    # Workers still blocked 50 ms after the deadline are left to finish on their own.
    run = _threaded_grants(acquire, threads, seconds, grace=0.05)
    close()
    return judge(run)


# ratekit


def _ratekit_fast_of(make: Callable[[], Limiter]) -> Fast:
    return _sync_fast(make().try_acquire)


def _ratekit_blocking_of(make: Callable[[], Limiter]) -> Blocking:
    limiter = make()

    def acquire() -> bool:
        try:
            limiter.acquire()
        except ratekit.QueueFull:
            _log("  warning: QueueFull from a blocking acquire")
            return False
        return True

    return acquire, _nothing


# pyrate-limiter


def _pyrate_fast_of(make: Callable[[], pyrate.Limiter]) -> Fast:
    limiter = make()
    call = partial(limiter.try_acquire, KEY, blocking=False)
    return _sync_fast(call, lambda result: result is True, limiter.close)


def _pyrate_blocking_of(make: Callable[[], pyrate.Limiter]) -> Blocking:
    limiter = make()

    def acquire() -> bool:
        return limiter.try_acquire(KEY) is True

    return acquire, limiter.close


def _pyrate_gcra(rate: int, burst: int) -> pyrate.Limiter:
    bucket = pyrate.StateBucket(
        [pyrate.Rate(rate, pyrate.Duration.SECOND, burst=burst)], algorithm=pyrate.GCRA()
    )
    return pyrate.Limiter(bucket)


def _pyrate_log(
    rates: list[tuple[int, int]], algorithm: pyrate.LogAlgorithm | None = None
) -> pyrate.Limiter:
    # (limit, interval in ms) pairs, in one in-memory bucket: a log of one entry per unit.
    items = [pyrate.Rate(limit, interval) for limit, interval in rates]
    return pyrate.Limiter(pyrate.InMemoryBucket(items, algorithm))


# limits


def _limits_fast_of(make: Callable[[LimitsMemoryStorage], RateLimiter]) -> Fast:
    strategy = make(LimitsMemoryStorage())
    return _sync_fast(partial(strategy.hit, RateLimitItemPerSecond(HUGE)))


def _limits_blocking_of(make: Callable[[LimitsMemoryStorage], RateLimiter]) -> Blocking:
    strategy = make(LimitsMemoryStorage())
    item = RateLimitItemPerSecond(RATE)

    def acquire() -> bool:
        # limits never blocks: retry after the reset time its window statistics give.
        while not strategy.hit(item):
            reset = strategy.get_window_stats(item).reset_time
            time.sleep(max(reset - time.time(), 0.001))
        return True

    return acquire, _nothing


# throttled-py


def _throttled_of(using: str, rate: int, burst: int | None) -> Throttled:
    return Throttled(
        key=KEY,
        using=using,
        quota=per_sec(rate, burst=burst),
        store=MemoryStore(),
        timeout=10.0,
    )


def _throttled_fast_of(using: str, burst: int | None) -> Fast:
    throttle = _throttled_of(using, HUGE, burst)
    call = partial(throttle.limit, timeout=-1)
    return _sync_fast(call, lambda result: not getattr(result, "limited", True))


def _throttled_blocking_of(using: str, burst: int | None) -> Blocking:
    throttle = _throttled_of(using, RATE, burst)

    def acquire() -> bool:
        return not throttle.limit().limited

    return acquire, _nothing


# aiolimiter


def _aiolimiter_leaky_accuracy(tasks: int, seconds: float) -> WindowRun:
    # A leaky bucket of one unit that drains at RATE per second: no burst.
    return _judge_leaky(_aiolimiter_grants(1, 1 / RATE, tasks, seconds))


# SlidingWindow with its window kept full


class _SteppedClock:
    """A clock that moves one unit each time it is read.

    With ``SlidingWindow(limit, limit)`` on it, every call finds the oldest entry of a
    full log expiring and adds one: the log holds *limit* entries on every call.
    """

    __slots__ = ("now",)

    def __init__(self) -> None:
        # A C-level callable, no more expensive than time.monotonic.
        self.now: Callable[[], float] = itertools.count(0.0, 1.0).__next__

    def sleep(self, seconds: float, cancel: CancelEvent | None = None) -> bool:
        raise RuntimeError(f"the flatness measurement never sleeps ({seconds}, {cancel})")

    async def sleep_async(self, seconds: float) -> None:
        raise RuntimeError(f"the flatness measurement never sleeps ({seconds})")


@dataclass
class Flatness:
    """SlidingWindow's cost per call with a full window, at each of FLAT_LIMITS."""

    ns_per_call: dict[int, list[float]] = field(default_factory=dict)
    #: Whether every call was granted and the log was full at the end, for each limit.
    full: dict[int, bool] = field(default_factory=dict)


def measure_flatness(flat: Flatness, settings: Settings) -> None:
    """Time SlidingWindow with a full window at each of FLAT_LIMITS, interleaved."""
    _log("(a) SlidingWindow with a full window")
    limiters = {}
    sizes = {}
    for limit in FLAT_LIMITS:
        window = ratekit.SlidingWindow(limit, float(limit), clock=_SteppedClock())
        for _ in range(limit):  # fill the log
            window.try_acquire()
        _time_calls(window.try_acquire, 2000)
        per_call = _time_calls(window.try_acquire, 2000) / 2000
        sizes[limit] = max(2000, int(settings.speed_trial * 1e9 / max(per_call, 1.0)))
        limiters[limit] = window
        flat.ns_per_call[limit] = []
    for round_ in range(settings.speed_rounds):
        shift = round_ % len(FLAT_LIMITS)
        for limit in FLAT_LIMITS[shift:] + FLAT_LIMITS[:shift]:
            n = sizes[limit]
            gc.collect()
            flat.ns_per_call[limit].append(_time_calls(limiters[limit].try_acquire, n) / n)
    for limit, window in limiters.items():
        # Reading the statistics moves the clock once more: one entry leaves, so a full
        # log shows a level of exactly 1.
        stats = window.statistics()
        flat.full[limit] = stats.denied == 0 and stats.level == 1


def measure_strategy_accuracy(
    rows: list[Strategy], raw: dict[str, StrategyMeasured], settings: Settings
) -> None:
    """(c) by strategy: blocking callers at RATE per WINDOW."""
    for round_ in range(settings.accuracy_rounds):
        for row in _rotated(rows, round_):
            if row.accuracy is not None:
                _log(f"(c) accuracy, round {round_ + 1}: {row.label}")
                gc.collect()
                run = row.accuracy(settings.threads, settings.strategy_accuracy_seconds)
                raw[row.key].accuracy.append(run)


def strategies() -> list[Strategy]:
    """Return the rows of the table by strategy, grouped by algorithm, ratekit first."""
    leaky = "leaky bucket"
    exact = "sliding window (exact)"
    counter = "sliding window counter (approximate)"
    fixed = "fixed window"
    composite = "composition, two limits"
    huge_burst = f"burst {HUGE:.0e} for (a, b), 1 for (c)"
    return [
        Strategy(
            "floor",
            "reference",
            "floor",
            _floor_fast,
            notes=["the same floor as the token-bucket table."],
        ),
        Strategy(
            "leaky_ratekit",
            leaky,
            "ratekit LeakyBucket",
            partial(_ratekit_fast_of, partial(ratekit.LeakyBucket, HUGE, HUGE)),
            partial(
                _strategy_accuracy,
                partial(_ratekit_blocking_of, partial(ratekit.LeakyBucket, RATE, 4)),
                _judge_leaky,
            ),
            "leaky_ratekit",
            [f"LeakyBucket({HUGE:.0e}, {HUGE:.0e}); (c) LeakyBucket({RATE}, capacity=4)."],
        ),
        Strategy(
            "leaky_pyrate",
            "",
            "pyrate-limiter GCRA",
            partial(_pyrate_fast_of, partial(_pyrate_gcra, HUGE, HUGE)),
            partial(
                _strategy_accuracy,
                partial(_pyrate_blocking_of, partial(_pyrate_gcra, RATE, 1)),
                _judge_leaky,
            ),
            "leaky_ratekit",
            [
                (
                    f"StateBucket(algorithm=GCRA()), {huge_burst} (a burst of 1 is no burst; "
                    "at a huge rate its millisecond clock needs more to grant every call, "
                    "on the same code path)."
                )
            ],
        ),
        Strategy(
            "leaky_throttled_gcra",
            "",
            "throttled-py gcra",
            partial(_throttled_fast_of, "gcra", 1),
            partial(_strategy_accuracy, partial(_throttled_blocking_of, "gcra", 1), _judge_leaky),
            "leaky_ratekit",
            ["using='gcra', burst 1 (no burst); monotonic clock."],
        ),
        Strategy(
            "leaky_throttled",
            "",
            "throttled-py leaking_bucket",
            partial(_throttled_fast_of, "leaking_bucket", HUGE),
            partial(
                _strategy_accuracy,
                partial(_throttled_blocking_of, "leaking_bucket", 1),
                _judge_leaky,
            ),
            "leaky_ratekit",
            [f"using='leaking_bucket', {huge_burst}; it counts whole seconds of time.time()."],
        ),
        Strategy(
            "leaky_aiolimiter",
            "",
            "aiolimiter",
            _aiolimiter_fast,
            _aiolimiter_leaky_accuracy,
            "leaky_ratekit",
            [
                (
                    f"AsyncLimiter({HUGE:.0e}, 1) for (a), (b) skipped; (c) "
                    f"AsyncLimiter(1, {1 / RATE}) and 4 tasks in one event loop."
                )
            ],
        ),
        Strategy(
            "sliding_ratekit",
            exact,
            "ratekit SlidingWindow",
            partial(_ratekit_fast_of, partial(ratekit.SlidingWindow, HUGE, WINDOW)),
            partial(
                _strategy_accuracy,
                partial(_ratekit_blocking_of, partial(ratekit.SlidingWindow, RATE, WINDOW)),
                _judge_sliding,
            ),
            "sliding_ratekit",
            [f"SlidingWindow({HUGE:.0e}, 1): the log holds the last second of calls."],
        ),
        Strategy(
            "sliding_pyrate",
            "",
            "pyrate-limiter InMemoryBucket",
            partial(_pyrate_fast_of, partial(_pyrate_log, [(HUGE, 1000)])),
            partial(
                _strategy_accuracy,
                partial(_pyrate_blocking_of, partial(_pyrate_log, [(RATE, 1000)])),
                _judge_sliding,
            ),
            "sliding_ratekit",
            ["InMemoryBucket([Rate(n, Duration.SECOND)]): its default sliding-window log."],
        ),
        Strategy(
            "sliding_limits",
            "",
            "limits MovingWindowRateLimiter",
            partial(_limits_fast_of, MovingWindowRateLimiter),
            partial(
                _strategy_accuracy,
                partial(_limits_blocking_of, MovingWindowRateLimiter),
                _judge_sliding,
            ),
            "sliding_ratekit",
            ["MovingWindowRateLimiter + MemoryStorage: a log, new entries inserted at the front."],
        ),
        Strategy(
            "counter_limits",
            counter,
            "limits SlidingWindowCounterRateLimiter",
            partial(_limits_fast_of, SlidingWindowCounterRateLimiter),
            partial(
                _strategy_accuracy,
                partial(_limits_blocking_of, SlidingWindowCounterRateLimiter),
                _judge_sliding,
            ),
            "sliding_ratekit",
            ["weights the previous fixed window's count; compared with ratekit SlidingWindow."],
        ),
        Strategy(
            "counter_throttled",
            "",
            "throttled-py sliding_window",
            partial(_throttled_fast_of, "sliding_window", None),
            partial(
                _strategy_accuracy,
                partial(_throttled_blocking_of, "sliding_window", None),
                _judge_sliding,
            ),
            "sliding_ratekit",
            ["using='sliding_window': a counter like limits', on time.time()."],
        ),
        Strategy(
            "fixed_ratekit",
            fixed,
            "ratekit FixedWindow",
            partial(_ratekit_fast_of, partial(ratekit.FixedWindow, HUGE, WINDOW)),
            partial(
                _strategy_accuracy,
                partial(_ratekit_blocking_of, partial(ratekit.FixedWindow, RATE, WINDOW)),
                _judge_fixed("monotonic"),
            ),
            "fixed_ratekit",
            ["FixedWindow(n, 1): windows aligned on time.monotonic() whole seconds."],
        ),
        Strategy(
            "fixed_pyrate",
            "",
            "pyrate-limiter FixedWindow",
            partial(_pyrate_fast_of, partial(_pyrate_log, [(HUGE, 1000)], pyrate.FixedWindow())),
            partial(
                _strategy_accuracy,
                partial(
                    _pyrate_blocking_of, partial(_pyrate_log, [(RATE, 1000)], pyrate.FixedWindow())
                ),
                _judge_fixed("monotonic"),
            ),
            "fixed_ratekit",
            ["InMemoryBucket(..., algorithm=FixedWindow()): a log counted per aligned window."],
        ),
        Strategy(
            "fixed_limits",
            "",
            "limits FixedWindowRateLimiter",
            partial(_limits_fast_of, FixedWindowRateLimiter),
            partial(
                _strategy_accuracy,
                partial(_limits_blocking_of, FixedWindowRateLimiter),
                _judge_fixed("first-hit"),
            ),
            "fixed_ratekit",
            ["FixedWindowRateLimiter + MemoryStorage: a window opens at its first hit."],
        ),
        Strategy(
            "fixed_throttled",
            "",
            "throttled-py fixed_window",
            partial(_throttled_fast_of, "fixed_window", None),
            partial(
                _strategy_accuracy,
                partial(_throttled_blocking_of, "fixed_window", None),
                _judge_fixed("wall"),
            ),
            "fixed_ratekit",
            ["using='fixed_window': windows aligned on time.time() whole seconds."],
        ),
        Strategy(
            "composite_ratekit",
            composite,
            "ratekit limiter()",
            partial(_ratekit_fast_of, partial(ratekit.limiter, f"{HUGE}/second, {2 * HUGE}/hour")),
            partial(
                _strategy_accuracy,
                partial(
                    _ratekit_blocking_of,
                    partial(
                        ratekit.limiter,
                        f"{RATE}/second, {COMPOSITE_LIMIT}/{COMPOSITE_WINDOW:g}s",
                    ),
                ),
                _judge_composite,
            ),
            "composite_ratekit",
            [
                (
                    f'limiter("{HUGE}/second, {2 * HUGE}/hour"); (c) limiter("{RATE}/second, '
                    f'{COMPOSITE_LIMIT}/{COMPOSITE_WINDOW:g}s"): two SlidingWindows.'
                )
            ],
        ),
        Strategy(
            "composite_pyrate",
            "",
            "pyrate-limiter, two Rates",
            partial(_pyrate_fast_of, partial(_pyrate_log, [(HUGE, 1000), (2 * HUGE, 3_600_000)])),
            partial(
                _strategy_accuracy,
                partial(
                    _pyrate_blocking_of,
                    partial(
                        _pyrate_log,
                        [(RATE, 1000), (COMPOSITE_LIMIT, int(COMPOSITE_WINDOW * 1000))],
                    ),
                ),
                _judge_composite,
            ),
            "composite_ratekit",
            ["Limiter(InMemoryBucket([Rate(...), Rate(...)])): both rates in one log."],
        ),
    ]


def _milliseconds(value: float | None) -> str:
    return "—" if value is None else f"{value * 1e3:.2f}"


def render_strategies(
    rows: list[Strategy], raw: dict[str, StrategyMeasured], flat: Flatness, header: str
) -> str:
    """Return the Markdown table by strategy, the flatness table and the goals."""
    speed, throughput = _medians(raw)
    lines = [
        header,
        "",
        (
            "| Algorithm | Limiter | (a) ns/call | (a) x ratekit | (b) calls/s | (b) x floor "
            "| (b) x ratekit | (c) grants / allowed | (c) max in 1 s | (c) max per window "
            "| (c) gap min / mean ms | (c) CPU s |"
        ),
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for row in rows:
        m = raw[row.key]
        ns = speed[row.key]
        versus = row.versus
        mine = row.ours or versus is None
        cells = [
            row.group,
            row.label,
            "—" if ns is None else f"{ns:,.0f}" + ("" if m.all_granted else " (denials!)"),
            "—" if mine else _ratio(ns, speed[versus] if versus else None),
            _count(throughput[row.key]) if throughput[row.key] is not None else "skipped",
            _ratio(throughput[row.key], throughput["floor"]),
            "—" if mine else _ratio(throughput[row.key], throughput[versus] if versus else None),
        ]
        runs = m.accuracy
        if runs:
            grants = statistics.median(run.grants for run in runs)
            allowed = statistics.median(run.allowed for run in runs)
            per_window = [run.max_per_window for run in runs if run.max_per_window is not None]
            gaps = [run.min_gap for run in runs if run.min_gap is not None]
            means = [run.mean_gap for run in runs if run.mean_gap is not None]
            cells += [
                f"{grants:.0f} / {allowed:.0f} ({grants / allowed:.1%})",
                str(max(run.max_in_window for run in runs)),
                str(max(per_window)) if per_window else "—",
                (
                    f"{_milliseconds(min(gaps))} / {_milliseconds(statistics.fmean(means))}"
                    if gaps and means
                    else "—"
                ),
                f"{statistics.median(run.cpu for run in runs):.3f}",
            ]
        else:
            cells += ["—"] * 5
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.extend(f"- {row.label}: {note}" for row in rows for note in row.notes)
    base = statistics.median(flat.ns_per_call[FLAT_LIMITS[0]])
    lines += [
        "",
        "| SlidingWindow, window full | (a) ns/call | x limit 100 | all granted, log full |",
        "|---|--:|--:|---|",
    ]
    for limit in FLAT_LIMITS:
        ns = statistics.median(flat.ns_per_call[limit])
        cells = [
            f"limit {limit:,}",
            f"{ns:,.0f}",
            _ratio(ns, base),
            "yes" if flat.full[limit] else "NO",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", *_goals(rows, raw, speed)]
    return "\n".join(lines)


def _groups(rows: list[Strategy]) -> list[list[Strategy]]:
    """Split the rows into their algorithms: a row with a group name starts a new one."""
    groups: list[list[Strategy]] = []
    for row in rows:
        if row.group or not groups:
            groups.append([row])
        else:
            groups[-1].append(row)
    return groups


def _goals(
    rows: list[Strategy], raw: dict[str, StrategyMeasured], speed: dict[str, float | None]
) -> list[str]:
    """Summarise, per algorithm, the per-call goal and ratekit's accuracy."""
    by_key = {row.key: row for row in rows}
    lines = ["Per call, ratekit against the fastest peer of the same algorithm:", ""]
    for group in _groups(rows):
        peers = [row for row in group if not row.ours and row.versus is not None]
        timed = [row for row in peers if speed[row.key] is not None]
        if not timed:
            continue
        best = min(timed, key=lambda row: speed[row.key] or math.inf)
        ours = by_key[best.versus or ""]
        mine, theirs = speed[ours.key], speed[best.key]
        if mine is None or theirs is None:
            continue
        if ours in group:
            verdict = "met" if mine < theirs else "missed"
            lines.append(
                f"- {group[0].group}: {ours.label} {mine:,.0f} ns, fastest peer "
                f"{best.label} {theirs:,.0f} ns: {theirs / mine:.2f}x ({verdict})"
            )
        else:
            lines.append(
                f"- {group[0].group}, for reference: {ours.label} (exact) {mine:,.0f} ns, "
                f"fastest counter {best.label} {theirs:,.0f} ns: {theirs / mine:.2f}x"
            )
    lines += ["", "Accuracy of ratekit's strategies in (c):", ""]
    for ours in (row for row in rows if row.ours):
        runs = raw[ours.key].accuracy
        if not runs:
            continue
        worst = min(run.grants / run.allowed for run in runs)
        over = max(run.grants - run.allowed for run in runs)
        detail = f"max {max(run.max_in_window for run in runs)} in 1 s"
        per_window = [run.max_per_window for run in runs if run.max_per_window is not None]
        if per_window:
            detail += f", max {max(per_window)} per window"
        gaps = [run.min_gap for run in runs if run.min_gap is not None]
        means = [run.mean_gap for run in runs if run.mean_gap is not None]
        if gaps and means:
            detail += (
                f", gaps min {_milliseconds(min(gaps))} / mean "
                f"{_milliseconds(statistics.fmean(means))} ms (1/rate = {1e3 / RATE:g} ms)"
            )
        lines.append(
            f"- {ours.label}: worst run {worst:.1%} of what it allows, "
            f"{max(over, 0)} over; {detail}"
        )
    return lines


def _environment() -> dict[str, str]:
    sources = sorted(Path(ratekit.__file__).parent.glob("*.py"))
    digest = hashlib.sha256(b"".join(path.read_bytes() for path in sources)).hexdigest()
    env = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": f"{platform.system()} {platform.machine()}",
        "cpus": str(os.cpu_count()),
        # Which ratekit tree was measured (a checkout may differ from any release).
        "ratekit-sources-sha256": digest[:12],
    }
    for dist in ("ratekit", "pyrate-limiter", "limits", "throttled-py", "aiolimiter"):
        env[dist] = version(dist)
    env["token-bucket"] = version("token_bucket")
    return env


def main(argv: list[str] | None = None) -> int:
    """Run the measurements, print the tables, and optionally dump the raw numbers."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a shorter, noisier run")
    parser.add_argument(
        "--only",
        choices=("tokens", "strategies"),
        help="run one table only: token buckets, or the table by strategy",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write raw numbers here")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL

    started = time.monotonic()
    env = _environment()
    preamble = (
        f"ratekit benchmark, {env['date']}: {env['python']} on {env['platform']}, "
        f"{env['cpus']} CPUs, ratekit {env['ratekit']} "
        f"(sources {env['ratekit-sources-sha256']}){' --quick' if args.quick else ''}. "
    )
    dump: dict[str, object] = {"environment": env, "settings": asdict(settings)}
    tables: list[str] = []
    if args.only in (None, "tokens"):
        rows = contenders()
        raw = {row.key: Measured() for row in rows}
        measure_speed(rows, raw, settings)
        measure_contention(rows, raw, settings, settings.contention_trial)
        measure_accuracy(rows, raw, settings)
        measure_latency(rows, raw, settings)
        header = preamble + (
            f"(a) median of {settings.speed_rounds} interleaved trials; "
            f"(b) {settings.threads} threads, median of {settings.contention_rounds}; "
            f"(c) {RATE}/s, burst {BURST}, {settings.threads} callers for "
            f"{settings.accuracy_seconds:g} s, median of {settings.accuracy_rounds} "
            "(max in 1 s: worst run); (d) pooled samples."
        )
        tables.append(render(rows, raw, header))
        dump["results"] = {key: asdict(m) for key, m in raw.items()}
    if args.only in (None, "strategies"):
        _log("-- by strategy --")
        by_strategy = strategies()
        measured = {row.key: StrategyMeasured() for row in by_strategy}
        flat = Flatness()
        measure_speed(by_strategy, measured, settings)
        measure_flatness(flat, settings)
        measure_contention(by_strategy, measured, settings, settings.strategy_contention_trial)
        measure_strategy_accuracy(by_strategy, measured, settings)
        header = preamble + (
            f"By strategy: (a) median of {settings.speed_rounds} interleaved trials; "
            f"(b) {settings.threads} threads, median of {settings.contention_rounds}; "
            f"(c) {RATE} per {WINDOW:g} s, {settings.threads} callers for "
            f"{settings.strategy_accuracy_seconds:g} s, median of {settings.accuracy_rounds} "
            f"(max in 1 s: in any {WINDOW - JITTER:g} s, for wake-up jitter; max in 1 s, "
            "per window and min gap: worst run)."
        )
        tables.append(render_strategies(by_strategy, measured, flat, header))
        dump["strategies"] = {key: asdict(m) for key, m in measured.items()}
        dump["flatness"] = asdict(flat)
    print("\n\n".join(tables))
    _log(f"done in {time.monotonic() - started:.0f} s")
    if args.json is not None:
        args.json.write_text(json.dumps(dump, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
