# Copyright (c) 2026 The ratekit developers
# SPDX-License-Identifier: MIT
"""Measure ratekit's Scheduler: its overhead per item, and how exactly a limiter paces it.

Usage::

    python bench/bench_scheduler.py              # the full run, about 35 seconds
    python bench/bench_scheduler.py --quick      # about 5 seconds, noisier
    python bench/bench_scheduler.py --json out.json

It prints two Markdown tables.  *Overhead*: microseconds per item of a no-op call
through ``Scheduler.map`` with no limiter, against ``ThreadPoolExecutor.map`` on the
same work (and ``ordered=False`` against ``as_completed``, ``AsyncScheduler.map``
against ``asyncio.gather`` over a semaphore).  *Pacing*: 8 workers on an endless
stream of no-op calls behind a ``TokenBucket`` and a ``LeakyBucket`` at 100/s, with
the time each call started.  What each column means is described in
``bench/README.md``.  Trials are interleaved and summarised by their median, so that a
noisy machine blurs every row alike.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import hashlib
import itertools
import json
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Generator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING

import ratekit

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ratekit.typing import Limiter

#: Worker threads (or tasks) in every scenario.
WORKERS = 8
#: The paced run: starts per second, and the token bucket's and leaky bucket's capacity.
RATE = 100
TOKEN_CAPACITY = 1
LEAKY_CAPACITY = 8


@dataclass(frozen=True)
class Settings:
    """How long and how often each measurement runs."""

    rounds: int
    #: Seconds that the slowest implementation of a group should take per trial.
    trial: float
    #: Seconds of each paced run.
    paced_seconds: float


FULL = Settings(rounds=9, trial=0.3, paced_seconds=5.0)
QUICK = Settings(rounds=3, trial=0.05, paced_seconds=1.0)


def _noop(item: int) -> int:
    return item


async def _async_noop(item: int) -> int:
    return item


# -- the implementations measured for overhead ------------------------------------------
# Each one maps the no-op over range(n) with WORKERS workers and returns every result in
# the order received (a list append per item, the same in every row; the list is checked
# after the timed region).  It returns when no worker is left: thread-based ones start and
# stop their threads inside the call, as Scheduler.map does, except the reused executor.


def _ratekit_map(n: int) -> list[int]:
    with ratekit.Scheduler(WORKERS) as scheduler:
        return list(scheduler.map(_noop, range(n)))


def _ratekit_unordered(n: int) -> list[int]:
    with ratekit.Scheduler(WORKERS) as scheduler:
        return list(scheduler.map(_noop, range(n), ordered=False))


def _executor_map(n: int) -> list[int]:
    with ThreadPoolExecutor(WORKERS) as executor:
        return list(executor.map(_noop, range(n)))


def _reused_map(executor: ThreadPoolExecutor) -> Callable[[int], list[int]]:
    def run(n: int) -> list[int]:
        return list(executor.map(_noop, range(n)))

    return run


def _executor_completed(n: int) -> list[int]:
    with ThreadPoolExecutor(WORKERS) as executor:
        futures = [executor.submit(_noop, i) for i in range(n)]
        return [future.result() for future in as_completed(futures)]


async def _gather(n: int) -> list[int]:
    semaphore = asyncio.Semaphore(WORKERS)

    async def bounded(item: int) -> int:
        async with semaphore:
            return await _async_noop(item)

    return await asyncio.gather(*(bounded(i) for i in range(n)))


async def _async_ratekit(n: int, *, ordered: bool = True) -> list[int]:
    async with ratekit.AsyncScheduler(WORKERS) as scheduler:
        return [r async for r in scheduler.map(_async_noop, range(n), ordered=ordered)]


async def _async_unordered(n: int) -> list[int]:
    return await _async_ratekit(n, ordered=False)


@dataclass
class Overhead:
    """A row of the overhead table and its raw numbers."""

    key: str
    group: str
    label: str
    #: Map over range(n) in threads; or, for asyncio rows, ``None`` and *arun* instead.
    run: Callable[[int], list[int]] | None
    #: Whether it is the reference of its group.
    reference: bool = False
    #: Map over range(n) in the running event loop (timed inside the loop).
    arun: Callable[[int], Awaitable[list[int]]] | None = None
    #: Whether results must come in the order of the items.
    ordered: bool = True
    items: int = 0
    us_per_item: list[float] = field(default_factory=list)
    cpu_us_per_item: list[float] = field(default_factory=list)
    #: The most threads found alive after a trial, beyond those alive before it.
    threads_left: int = 0


def overhead_rows(executor: ThreadPoolExecutor) -> list[Overhead]:
    """Return the rows of the overhead table, each group's reference first."""
    return [
        Overhead(
            "tpe-map",
            "threads, ordered",
            "`ThreadPoolExecutor.map`, executor created and shut down per map",
            _executor_map,
            reference=True,
        ),
        Overhead(
            "tpe-map-reused",
            "threads, ordered",
            "`ThreadPoolExecutor.map`, one executor reused (threads already running)",
            _reused_map(executor),
        ),
        Overhead("ratekit-map", "threads, ordered", "ratekit `Scheduler.map`", _ratekit_map),
        Overhead(
            "tpe-completed",
            "threads, unordered",
            "`as_completed` over `ThreadPoolExecutor.submit`, executor per map",
            _executor_completed,
            reference=True,
            ordered=False,
        ),
        Overhead(
            "ratekit-unordered",
            "threads, unordered",
            "ratekit `Scheduler.map(ordered=False)`",
            _ratekit_unordered,
            ordered=False,
        ),
        Overhead(
            "gather",
            "asyncio",
            "`asyncio.gather` of tasks bounded by `Semaphore(8)`",
            None,
            reference=True,
            arun=_gather,
        ),
        Overhead(
            "ratekit-async",
            "asyncio",
            "ratekit `AsyncScheduler.map`",
            None,
            arun=_async_ratekit,
        ),
        Overhead(
            "ratekit-async-unordered",
            "asyncio",
            "ratekit `AsyncScheduler.map(ordered=False)`",
            None,
            arun=_async_unordered,
            ordered=False,
        ),
    ]


def _trial(row: Overhead, n: int) -> tuple[float, float, int]:
    """Run *row* once on *n* items: (wall seconds, CPU seconds, threads left behind)."""
    gc.collect()
    before = threading.active_count()
    if row.arun is not None:
        arun = row.arun
        timing: list[float] = []
        got: list[int] = []

        async def main() -> None:
            cpu = time.process_time()
            start = time.perf_counter()
            results = await arun(n)
            timing.extend((time.perf_counter() - start, time.process_time() - cpu))
            got.extend(results)

        asyncio.run(main())
        wall, cpu = timing
    elif row.run is not None:
        cpu = time.process_time()
        start = time.perf_counter()
        got = row.run(n)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    else:
        raise ValueError(f"row {row.key} has nothing to run")
    left = threading.active_count() - before
    expected = list(range(n))
    if (got if row.ordered else sorted(got)) != expected:
        raise AssertionError(f"{row.key}: wrong results for {n} items")
    return wall, cpu, left


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def measure_overhead(rows: list[Overhead], settings: Settings) -> None:
    """Time every row on the same number of items per group, trials interleaved."""
    _log("overhead: sizing the trials")
    groups: dict[str, list[Overhead]] = {}
    for row in rows:
        groups.setdefault(row.group, []).append(row)
    for members in groups.values():
        slowest = 0.0
        for row in members:
            _trial(row, 2000)  # warm up
            per_item = min(_trial(row, 5000)[0] for _ in range(2)) / 5000
            slowest = max(slowest, per_item)
        n = max(2000, round(settings.trial / slowest, -3))
        for row in members:
            row.items = int(n)
    for round_ in range(settings.rounds):
        _log(f"overhead: round {round_ + 1} of {settings.rounds}")
        shift = round_ % len(rows)
        for row in [*rows[shift:], *rows[:shift]]:
            wall, cpu, left = _trial(row, row.items)
            row.us_per_item.append(wall / row.items * 1e6)
            row.cpu_us_per_item.append(cpu / row.items * 1e6)
            row.threads_left = max(row.threads_left, left)


# -- the paced run -----------------------------------------------------------------------


@dataclass
class Paced:
    """One paced run: the start of every call, and what the run cost."""

    key: str
    label: str
    #: The most starts any second may hold: the rate plus the burst (or the first grant).
    bound: int
    make: Callable[[], Limiter]
    seconds: float = 0.0
    starts: list[float] = field(default_factory=list)
    cpu: float = 0.0
    #: Seconds from leaving the loop until the map's threads had all ended.
    stop: float = 0.0
    #: Calls that started after the loop was left.
    after_stop: int = 0
    threads_left: int = 0
    error: str | None = None


def paced_rows() -> list[Paced]:
    """Return the paced runs."""
    return [
        Paced(
            "token",
            f"`TokenBucket({RATE}, capacity={TOKEN_CAPACITY})`",
            RATE + TOKEN_CAPACITY,
            lambda: ratekit.TokenBucket(RATE, TOKEN_CAPACITY),
        ),
        Paced(
            "leaky",
            f"`LeakyBucket({RATE}, capacity={LEAKY_CAPACITY})`",
            RATE + 1,
            lambda: ratekit.LeakyBucket(RATE, LEAKY_CAPACITY),
        ),
    ]


def run_paced(row: Paced, seconds: float) -> None:
    """Map a no-op over an endless stream for *seconds*, paced by the row's limiter."""
    _log(f"paced: {row.label}, {seconds:g} s")
    gc.collect()
    starts: list[float] = []

    def call(item: int) -> int:
        starts.append(time.monotonic())
        return item

    before = threading.active_count()
    cpu = time.process_time()
    with ratekit.Scheduler(WORKERS, row.make()) as scheduler:
        origin = time.monotonic()
        deadline = origin + seconds
        results = scheduler.map(call, itertools.count())
        try:
            for _ in results:
                if time.monotonic() >= deadline:
                    break
        except Exception as error:  # noqa: BLE001 - reported in the table
            row.error = f"{type(error).__name__}: {error}"
        left_at = time.monotonic()
        # Closing the iterator stops the map and joins its threads (leaving the block
        # would too).  It is typed as an Iterator, which has no close().
        if isinstance(results, Generator):
            results.close()
        row.stop = time.monotonic() - left_at
    row.cpu = time.process_time() - cpu
    row.threads_left = threading.active_count() - before
    row.seconds = seconds
    row.starts = sorted(t - origin for t in starts if origin <= t < deadline)
    row.after_stop = sum(t >= left_at for t in starts)


def _max_in_window(stamps: list[float], width: float = 1.0) -> int:
    """Return the most stamps in any half-open window ``[t, t + width)``."""
    most = 0
    first = 0
    for last, stamp in enumerate(stamps):
        while stamp - stamps[first] >= width:
            first += 1
        most = max(most, last - first + 1)
    return most


# -- the tables --------------------------------------------------------------------------


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def render_overhead(rows: list[Overhead], header: str) -> str:
    """Return the overhead table, with its header and the goal line."""
    lines = [
        header,
        "",
        "| Group | Implementation | items | µs/item | x reference | CPU µs/item | threads left |",
        "|---|---|--:|--:|--:|--:|--:|",
    ]
    reference: dict[str, float] = {}
    seen: set[str] = set()
    for row in rows:
        us = _median(row.us_per_item)
        if row.reference:
            reference[row.group] = us
        ratio = "—" if row.reference else f"{us / reference[row.group]:.2f}x"
        group = "" if row.group in seen else row.group
        seen.add(row.group)
        label = row.label + (" (reference)" if row.reference else "")
        lines.append(
            f"| {group} | {label} | {row.items:,} | {us:.1f} | {ratio} "
            f"| {_median(row.cpu_us_per_item):.1f} | {row.threads_left} |"
        )
    by_key = {row.key: _median(row.us_per_item) for row in rows}
    ordered = by_key["ratekit-map"] / by_key["tpe-map"]
    verdict = "met" if ordered <= 1.3 else "missed"
    lines += [
        "",
        (
            f"- Goal `Scheduler.map` <= 1.3x `ThreadPoolExecutor.map`: {ordered:.2f}x, "
            f"{verdict} ({by_key['ratekit-map'] / by_key['tpe-map-reused']:.2f}x "
            "a reused executor)."
        ),
        (
            f"- `ordered=False`: {by_key['ratekit-unordered'] / by_key['tpe-map']:.2f}x "
            "`ThreadPoolExecutor.map`."
        ),
    ]
    return "\n".join(lines)


def render_paced(rows: list[Paced], header: str) -> str:
    """Return the pacing table, with its header."""
    lines = [
        header,
        "",
        (
            "| Limiter | starts | starts/s | % of rate | max in 1 s (bound) "
            "| gap min / mean ms | vs grid min / p50 / max ms | CPU s | stop ms "
            "| calls after stop | threads left |"
        ),
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for row in rows:
        starts = row.starts
        per_second = len(starts) / row.seconds if row.seconds else 0.0
        gaps = [b - a for a, b in itertools.pairwise(starts)]
        gap = f"{min(gaps) * 1e3:.2f} / {statistics.fmean(gaps) * 1e3:.2f}" if gaps else "—"
        # How far each start lags the exact grid ``first start + i / RATE``; a negative
        # value would be a start ahead of it, that is, a burst after the first start.
        behind = [t - (starts[0] + i / RATE) for i, t in enumerate(starts)]
        grid = (
            f"{min(behind) * 1e3:.2f} / {statistics.median(behind) * 1e3:.2f} "
            f"/ {max(behind) * 1e3:.2f}"
            if len(behind) > 1
            else "—"
        )
        label = row.label + (f" (failed: {row.error})" if row.error else "")
        lines.append(
            f"| {label} | {len(starts):,} | {per_second:.1f} | {per_second / RATE:.1%} "
            f"| {_max_in_window(starts)} ({row.bound}) | {gap} | {grid} | {row.cpu:.3f} "
            f"| {row.stop * 1e3:.1f} | {row.after_stop} | {row.threads_left} |"
        )
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
        f"ratekit scheduler benchmark, {env['date']}: {env['python']} on {env['platform']}, "
        f"{env['cpus']} CPUs, ratekit {env['ratekit']} "
        f"(sources {env['ratekit-sources-sha256']}){' --quick' if args.quick else ''}. "
    )
    with ThreadPoolExecutor(WORKERS) as executor:
        _reused_map(executor)(1000)  # start its threads before any trial
        rows = overhead_rows(executor)
        measure_overhead(rows, settings)
    paced = paced_rows()
    for row in paced:
        run_paced(row, settings.paced_seconds)

    tables = [
        render_overhead(
            rows,
            preamble
            + (
                f"Overhead: a no-op on {WORKERS} workers, no limiter, every result consumed; "
                f"median of {settings.rounds} interleaved trials."
            ),
        ),
        render_paced(
            paced,
            preamble
            + (
                f"Pacing: {WORKERS} workers, a no-op on an endless stream for "
                f"{settings.paced_seconds:g} s at {RATE}/s, one run per limiter."
            ),
        ),
    ]
    print("\n\n".join(tables))
    _log(f"done in {time.monotonic() - started:.0f} s")
    if args.json is not None:
        dump = {
            "environment": env,
            "settings": asdict(settings),
            "overhead": {
                row.key: {
                    "items": row.items,
                    "us_per_item": row.us_per_item,
                    "cpu_us_per_item": row.cpu_us_per_item,
                    "threads_left": row.threads_left,
                }
                for row in rows
            },
            "paced": {
                row.key: {
                    "seconds": row.seconds,
                    "starts": row.starts,
                    "cpu": row.cpu,
                    "stop": row.stop,
                    "after_stop": row.after_stop,
                    "threads_left": row.threads_left,
                    "error": row.error,
                }
                for row in paced
            },
        }
        args.json.write_text(json.dumps(dump, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
