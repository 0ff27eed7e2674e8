# Copyright (c) 2026 The ratekit developers
# SPDX-License-Identifier: MIT
"""Measure ratekit's `TokenBucket` beside other Python rate limiters, in one process.

Usage::

    python bench/bench_limiters.py              # the full run, about a minute and a half
    python bench/bench_limiters.py --quick      # a shorter, noisier run
    python bench/bench_limiters.py --json out.json

It prints one Markdown table.  What each column means and how each library is driven
is described in ``bench/README.md``.  Trials of different libraries are interleaved
and summarised by their median, so that a noisy machine blurs every row alike.
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
from typing import TYPE_CHECKING, TypeAlias

import aiolimiter
import pyrate_limiter as pyrate
import token_bucket
from limits import RateLimitItemPerSecond
from limits.storage import MemoryStorage as LimitsMemoryStorage
from limits.strategies import SlidingWindowCounterRateLimiter
from throttled import MemoryStore, Throttled, per_sec

import ratekit

if TYPE_CHECKING:
    from collections.abc import Callable

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


def _ratekit_blocking() -> tuple[Callable[[], bool], Callable[[], None]]:
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
    limiter, _ = _pyrate_limiter(HUGE, HUGE)
    call = partial(limiter.try_acquire, KEY, blocking=False)
    return _sync_fast(call, lambda result: result is True, limiter.close)


def _pyrate_blocking() -> tuple[Callable[[], bool], Callable[[], None]]:
    limiter, _ = _pyrate_limiter(RATE, BURST)

    def acquire() -> bool:
        return limiter.try_acquire(KEY) is True

    return acquire, limiter.close


def _pyrate_probe() -> Probe:
    limiter, _ = _pyrate_limiter(LATENCY_RATE, 1)
    return (
        lambda: limiter.try_acquire(KEY, blocking=False) is True,
        lambda: limiter.try_acquire(KEY),
        limiter.close,
    )


# -- limits ------------------------------------------------------------------------------


def _limits_fast() -> Fast:
    strategy = SlidingWindowCounterRateLimiter(LimitsMemoryStorage())
    return _sync_fast(partial(strategy.hit, RateLimitItemPerSecond(HUGE)))


def _limits_blocking() -> tuple[Callable[[], bool], Callable[[], None]]:
    strategy = SlidingWindowCounterRateLimiter(LimitsMemoryStorage())
    item = RateLimitItemPerSecond(RATE)

    def acquire() -> bool:
        # limits never blocks: retry after the reset time its window statistics give.
        while not strategy.hit(item):
            reset = strategy.get_window_stats(item).reset_time
            time.sleep(max(reset - time.time(), 0.001))
        return True

    return acquire, _nothing


# -- throttled-py ------------------------------------------------------------------------


def _throttled(rate: int, burst: int) -> Throttled:
    return Throttled(
        key=KEY,
        using="token_bucket",
        quota=per_sec(rate, burst=burst),
        store=MemoryStore(),
        timeout=10.0,
    )


def _throttled_fast() -> Fast:
    throttle = _throttled(HUGE, HUGE)
    call = partial(throttle.limit, timeout=-1)
    return _sync_fast(call, lambda result: not getattr(result, "limited", True))


def _throttled_blocking() -> tuple[Callable[[], bool], Callable[[], None]]:
    throttle = _throttled(RATE, BURST)

    def acquire() -> bool:
        return not throttle.limit().limited

    return acquire, _nothing


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


def _token_bucket_blocking() -> tuple[Callable[[], bool], Callable[[], None]]:
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
    grants: list[float] = []

    async def run() -> float:
        cpu = time.process_time()
        # A leaky bucket of BURST units that drains at RATE per second.
        limiter = aiolimiter.AsyncLimiter(BURST, BURST / RATE)
        deadline = time.monotonic() + seconds

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
    return _accuracy_result(grants, seconds, cpu)


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


def _threaded_accuracy(
    make: Callable[[], tuple[Callable[[], bool], Callable[[], None]]],
    threads: int,
    seconds: float,
) -> AccuracyRun:
    acquire, close = make()
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
    deadline[0] = time.monotonic() + seconds
    go.set()
    for thread in workers:
        thread.join(timeout=seconds + 30)
    cpu = time.process_time() - cpu
    close()
    if any(thread.is_alive() for thread in workers):
        print("  warning: a worker is still blocked after the run", file=sys.stderr)
    return _accuracy_result(grants, seconds, cpu)


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


def _rotated(items: list[Contender], shift: int) -> list[Contender]:
    shift %= len(items)
    return items[shift:] + items[:shift]


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Measured:
    """The raw numbers of one row."""

    ns_per_call: list[float] = field(default_factory=list)
    all_granted: bool = True
    calls_per_second: list[float] = field(default_factory=list)
    accuracy: list[AccuracyRun] = field(default_factory=list)
    lateness: list[float] | None = None


def measure_speed(rows: list[Contender], raw: dict[str, Measured], settings: Settings) -> None:
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


def measure_contention(rows: list[Contender], raw: dict[str, Measured], settings: Settings) -> None:
    """(b): calls per second with several threads on one shared limiter."""
    _log(f"(b) {settings.threads} threads on one limiter")
    for round_ in range(settings.contention_rounds):
        for row in _rotated(rows, round_):
            handle = row.fast()
            if handle.call is not None:
                gc.collect()
                calls, wall = _contention(handle.call, settings.threads, settings.contention_trial)
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


def render(rows: list[Contender], raw: dict[str, Measured], header: str) -> str:
    """Return the Markdown table, with its header and notes."""
    speed = {
        key: statistics.median(m.ns_per_call) if m.ns_per_call else None for key, m in raw.items()
    }
    throughput = {
        key: statistics.median(m.calls_per_second) if m.calls_per_second else None
        for key, m in raw.items()
    }
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
    """Run every measurement, print the table, and optionally dump the raw numbers."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a shorter, noisier run")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write raw numbers here")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL

    started = time.monotonic()
    env = _environment()
    rows = contenders()
    raw = {row.key: Measured() for row in rows}
    measure_speed(rows, raw, settings)
    measure_contention(rows, raw, settings)
    measure_accuracy(rows, raw, settings)
    measure_latency(rows, raw, settings)
    header = (
        f"ratekit benchmark, {env['date']}: {env['python']} on {env['platform']}, "
        f"{env['cpus']} CPUs, ratekit {env['ratekit']} "
        f"(sources {env['ratekit-sources-sha256']}){' --quick' if args.quick else ''}. "
        f"(a) median of {settings.speed_rounds} interleaved trials; "
        f"(b) {settings.threads} threads, median of {settings.contention_rounds}; "
        f"(c) {RATE}/s, burst {BURST}, {settings.threads} callers for "
        f"{settings.accuracy_seconds:g} s, median of {settings.accuracy_rounds} "
        "(max in 1 s: worst run); (d) pooled samples."
    )
    print(render(rows, raw, header))
    _log(f"done in {time.monotonic() - started:.0f} s")
    if args.json is not None:
        dump = {
            "environment": env,
            "settings": asdict(settings),
            "results": {key: asdict(m) for key, m in raw.items()},
        }
        args.json.write_text(json.dumps(dump, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
