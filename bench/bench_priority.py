# Copyright (c) 2026 The ratekit developers
# SPDX-License-Identifier: MIT
"""Measure ratekit's Prioritized: how long an interactive call waits behind bulk work.

Usage::

    python bench/bench_priority.py              # the full run, about 15 seconds
    python bench/bench_priority.py --quick      # about 5 seconds, noisier
    python bench/bench_priority.py --json out.json

It prints two Markdown tables.  *Waiting*: a ``TokenBucket`` at 200/s (capacity 1, the
real clock) saturated by 8 threads that acquire in a loop at ``Priority.BULK``, while
one more thread acquires every 50 ms at ``Priority.INTERACTIVE``; once on the plain
bucket (where priorities do not exist: every call books in arrival order) and once
through ``Prioritized``.  It shows the interactive waits (p50, p99, max), the ratio of
the medians, and the bulk and total grants per second, which must stay at the limit.
*Overhead*: microseconds per ``acquire`` with no contention (a bucket that always
grants), plain against ``Prioritized``.  Trials of the overhead are interleaved and
summarised by their median, so that a noisy machine blurs every row alike.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import hashlib
import json
import os
import platform
import random
import statistics
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING

import ratekit
from ratekit import Prioritized, Priority, TokenBucket

if TYPE_CHECKING:
    from collections.abc import Callable

#: Bulk worker threads, and the limit they saturate (grants per second; capacity 1).
WORKERS = 8
RATE = 200.0
#: Seconds between two interactive calls, on average; each gap is drawn within a slot
#: of it, so that the calls land at every phase of the bucket's slots.
INTERACTIVE_EVERY = 0.05
#: Seconds at the start of a run that are not measured (threads start, queues fill).
WARMUP = 0.5


@dataclass(frozen=True)
class Settings:
    """How long and how often each measurement runs."""

    #: Seconds of each saturated run, after the warm-up.
    seconds: float
    #: Interleaved trials of the overhead, and calls per trial.
    rounds: int
    calls: int


FULL = Settings(seconds=5.0, rounds=9, calls=50_000)
QUICK = Settings(seconds=1.5, rounds=3, calls=10_000)


@dataclass
class Waiting:
    """A row of the waiting table and its raw numbers."""

    key: str
    label: str
    waits: list[float] = field(default_factory=list)  # interactive, seconds
    bulk: int = 0  # bulk grants in the measured window
    interactive: int = 0  # interactive grants in the measured window
    seconds: float = 0.0


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))
    return ordered[index]


def run_saturated(row: Waiting, *, prioritized: bool, seconds: float) -> None:
    """Saturate a fresh bucket with bulk threads and time the interactive calls."""
    bucket = TokenBucket(RATE, 1)
    limiter = Prioritized(bucket) if prioritized else None
    stop = threading.Event()
    begin = time.monotonic() + WARMUP
    end = begin + seconds
    counts = [0] * WORKERS

    def acquire(level: Priority) -> None:
        if limiter is not None:
            limiter.acquire(priority=level)
        else:
            bucket.acquire()

    def bulk(index: int) -> None:
        while not stop.is_set():
            acquire(Priority.BULK)
            if begin <= time.monotonic() < end:
                counts[index] += 1

    def interactive() -> None:
        draw = random.Random(1)
        slot = 1.0 / RATE
        tick = time.monotonic()
        while True:
            tick += INTERACTIVE_EVERY + draw.uniform(-slot, slot)
            pause = tick - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            now = time.monotonic()
            if now >= end:
                return
            acquire(Priority.INTERACTIVE)
            if now >= begin:
                row.waits.append(time.monotonic() - now)
                row.interactive += 1

    threads = [threading.Thread(target=bulk, args=(i,), daemon=True) for i in range(WORKERS)]
    for thread in threads:
        thread.start()
    asker = threading.Thread(target=interactive, daemon=True)
    asker.start()
    asker.join()
    stop.set()
    for thread in threads:
        thread.join(5.0)
    row.bulk = sum(counts)
    row.seconds = seconds


def _acquires(limiter: Callable[[], object], calls: int) -> float:
    """Seconds per call of *limiter* over *calls* calls, with the collector off."""
    gc.collect()
    gc.disable()
    try:
        started = time.perf_counter()
        for _ in range(calls):
            limiter()
        return (time.perf_counter() - started) / calls
    finally:
        gc.enable()


def measure_overhead(settings: Settings) -> dict[str, list[float]]:
    """Microseconds per uncontended call: the plain bucket's, and through Prioritized."""
    plain = TokenBucket(1e12, 1e12)
    wrapped = Prioritized(TokenBucket(1e12, 1e12))
    rows: dict[str, Callable[[], object]] = {
        "TokenBucket.acquire()": plain.acquire,
        "TokenBucket.try_acquire()": plain.try_acquire,
        "Prioritized.acquire()": wrapped.acquire,
        "Prioritized.acquire(priority=BULK)": lambda: wrapped.acquire(priority=Priority.BULK),
    }
    samples: dict[str, list[float]] = {key: [] for key in rows}
    for _ in range(settings.rounds):
        for key, call in rows.items():
            samples[key].append(_acquires(call, settings.calls) * 1e6)
    return samples


def _ms(value: float) -> str:
    return f"{value * 1e3:.1f}"


def render_waiting(rows: list[Waiting], header: str) -> str:
    """The waiting table, with the ratio of the interactive medians."""
    lines = [
        header,
        "",
        "| limiter | interactive p50 (ms) | p99 (ms) | max (ms) | calls | bulk/s | total/s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        total = (row.bulk + row.interactive) / row.seconds
        lines.append(
            f"| {row.label} | {_ms(_percentile(row.waits, 0.5))} | "
            f"{_ms(_percentile(row.waits, 0.99))} | {_ms(max(row.waits, default=0.0))} | "
            f"{len(row.waits)} | {row.bulk / row.seconds:.1f} | {total:.1f} |"
        )
    plain, prioritized = rows
    ratio = _percentile(plain.waits, 0.5) / _percentile(prioritized.waits, 0.5)
    p99 = _percentile(plain.waits, 0.99) / _percentile(prioritized.waits, 0.99)
    lines += ["", f"Interactive wait, plain / Prioritized: {ratio:.1f}x at p50, {p99:.1f}x at p99."]
    return "\n".join(lines)


def render_overhead(samples: dict[str, list[float]], header: str) -> str:
    """The overhead table: median microseconds per call, and the extra over plain."""
    lines = [header, "", "| call | µs per call | extra |", "| --- | ---: | ---: |"]
    base = statistics.median(next(iter(samples.values())))
    for key, values in samples.items():
        median = statistics.median(values)
        lines.append(f"| `{key}` | {median:.2f} | {median - base:+.2f} |")
    return "\n".join(lines)


def _environment() -> dict[str, str]:
    sources = sorted(Path(ratekit.__file__).parent.glob("*.py"))
    digest = hashlib.sha256(b"".join(path.read_bytes() for path in sources)).hexdigest()
    return {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": f"{platform.system()} {platform.machine()}",
        "cpus": str(os.cpu_count()),
        # Which ratekit tree was measured (a checkout may differ from any release).
        "ratekit-sources-sha256": digest[:12],
        "ratekit": version("ratekit"),
    }


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run the measurements, print the tables, and optionally dump the raw numbers."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a shorter, noisier run")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write raw numbers here")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL

    started = time.monotonic()
    env = _environment()
    preamble = (
        f"ratekit priority benchmark, {env['date']}: {env['python']} on {env['platform']}, "
        f"{env['cpus']} CPUs, ratekit {env['ratekit']} "
        f"(sources {env['ratekit-sources-sha256']}){' --quick' if args.quick else ''}. "
    )
    rows = [
        Waiting("plain", "`TokenBucket` (no priorities)"),
        Waiting("prioritized", "`Prioritized(TokenBucket)`"),
    ]
    for row in rows:
        _log(f"saturating: {row.key}")
        run_saturated(row, prioritized=row.key == "prioritized", seconds=settings.seconds)
    _log("overhead")
    samples = measure_overhead(settings)

    tables = [
        render_waiting(
            rows,
            preamble
            + (
                f"Waiting: {WORKERS} threads acquire in a loop at BULK from a TokenBucket at "
                f"{RATE:g}/s (capacity 1), one more every {INTERACTIVE_EVERY * 1e3:g} ms "
                f"(give or take a slot) at INTERACTIVE; {settings.seconds:g} s measured "
                f"after {WARMUP:g} s."
            ),
        ),
        render_overhead(
            samples,
            preamble
            + (
                f"Overhead: one thread, a bucket that always grants; median of "
                f"{settings.rounds} interleaved trials of {settings.calls} calls."
            ),
        ),
    ]
    print("\n\n".join(tables))
    _log(f"done in {time.monotonic() - started:.0f} s")
    if args.json is not None:
        dump = {
            "environment": env,
            "settings": asdict(settings),
            "waiting": {
                row.key: {
                    "interactive_waits": row.waits,
                    "bulk": row.bulk,
                    "interactive": row.interactive,
                    "seconds": row.seconds,
                }
                for row in rows
            },
            "overhead_us": samples,
        }
        args.json.write_text(json.dumps(dump, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
