# Copyright (c) 2026 The ratekit developers
# SPDX-License-Identifier: MIT
"""Measure what ratekit.telemetry costs: on hot paths, on waits, on requests, per collection.

Usage::

    python bench/bench_telemetry.py              # the full run, about 15 seconds
    python bench/bench_telemetry.py --quick      # about 2 seconds, noisier
    python bench/bench_telemetry.py --json out.json

It prints one Markdown table.  Each pair of rows runs the same loop on an object that is
not instrumented and on one instrumented with the OpenTelemetry SDK (a `MeterProvider`
with an in-memory reader attached, so that every instrument is live):

- ``try_acquire`` on a `TokenBucket` that never refuses: the hot path, which
  instrumenting must leave alone (ratio about 1.00x);
- a blocking ``acquire`` that waits on a `FakeClock` (the sleep is instant), so that
  the difference is the histogram record at the end of each wait;
- a ``ratekit.http.Client`` GET to a loopback ``http.server`` in a process of its own,
  on one kept-alive connection: the attempt counted with its method and status class;
- one collection of the reader with 1,000 instrumented limiters, against one with
  none: what each export or scrape costs.

Trials of the two rows of a pair are interleaved and summarised by their median.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import itertools
import json
import multiprocessing
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from ratekit import TokenBucket, telemetry
from ratekit.http import Client
from ratekit.testing import FakeClock

if TYPE_CHECKING:
    from collections.abc import Callable
    from contextlib import AbstractContextManager
    from multiprocessing.connection import Connection

#: A rate and a capacity that no run comes near: every acquire is granted at once.
HUGE = 10**9
#: Limiters instrumented for the collection rows.
LIMITERS = 1_000
#: The server's answer to every request.
BODY = b'{"ok": true}'


@dataclass(frozen=True)
class Settings:
    """How long and how often each measurement runs."""

    rounds: int
    #: Seconds that one trial of a row should take.
    trial: float


FULL = Settings(rounds=15, trial=0.2)
QUICK = Settings(rounds=3, trial=0.05)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Row:
    """One measured loop and its raw numbers."""

    group: str
    label: str
    unit: str
    #: Nanoseconds per unit (``1``: ns, ``1e3``: µs, ``1e6``: ms).
    scale: float
    #: Runs *n* iterations and returns their wall nanoseconds.
    timer: Callable[[int], int]
    n: int = 0
    wall_ns: list[int] = field(default_factory=list)

    def run(self, n: int) -> int:
        """Time *n* iterations, after a full garbage collection."""
        gc.collect()
        return self.timer(n)

    def per_call(self) -> list[float]:
        """Each trial's time per iteration, in the row's unit."""
        return [ns / self.n / self.scale for ns in self.wall_ns]


def _timed(run: Callable[[int], object]) -> Callable[[int], int]:
    def timer(n: int) -> int:
        start = time.perf_counter_ns()
        run(n)
        return time.perf_counter_ns() - start

    return timer


def _provider() -> tuple[MeterProvider, InMemoryMetricReader]:
    reader = InMemoryMetricReader()
    return MeterProvider(metric_readers=[reader]), reader


# -- the loops -------------------------------------------------------------------------


def _try(limiter: TokenBucket) -> Callable[[int], object]:
    def run(n: int) -> None:
        for _ in itertools.repeat(None, n):
            limiter.try_acquire()

    return run


def _waits(instrumented: MeterProvider | None) -> Callable[[int], object]:
    """Acquires that each wait a microsecond on a fresh fake clock (the sleep is instant)."""

    def run(n: int) -> None:
        limiter = TokenBucket(1e6, capacity=1, clock=FakeClock())
        if instrumented is not None:
            telemetry.instrument(limiter, meter_provider=instrumented)
        limiter.acquire()
        for _ in itertools.repeat(None, n):
            limiter.acquire()
        if limiter.statistics().waiting or limiter.statistics().granted != n + 1:
            raise AssertionError("every acquire but the first must have waited")

    return run


def _gets(client: Client, url: str) -> Callable[[int], object]:
    def run(n: int) -> None:
        for _ in itertools.repeat(None, n):
            response = client.request("GET", url)
            if response.status != 200 or response.data != BODY:
                raise AssertionError(f"unexpected answer: {response.status}")

    return run


def _collections(reader: InMemoryMetricReader) -> Callable[[int], object]:
    def run(n: int) -> None:
        for _ in itertools.repeat(None, n):
            reader.get_metrics_data()

    return run


# -- the server ----------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = 1 << 16  # headers and body in one write

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base's name
        """Stay quiet."""


def serve(ready: Connection) -> None:
    """Serve `BODY` on a free loopback port; send the port through *ready*."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    ready.send(server.server_address[1])
    server.serve_forever()


class _Served:
    """`serve` in a spawned process (a GIL of its own), for the length of a block."""

    def __enter__(self) -> str:
        context = multiprocessing.get_context("spawn")
        receiving, sending = context.Pipe(duplex=False)
        self._process = context.Process(target=serve, args=(sending,), daemon=True)
        self._process.start()
        sending.close()
        if not receiving.poll(60):
            raise RuntimeError("the benchmark's HTTP server did not start within 60 s")
        return f"http://127.0.0.1:{receiving.recv()}/items"

    def __exit__(self, *exc_info: object) -> None:
        self._process.terminate()
        self._process.join(10)


def served() -> AbstractContextManager[str]:
    """A loopback HTTP server in its own process; its URL."""
    return _Served()


# -- the rows ------------------------------------------------------------------------------


def rows(url: str) -> tuple[list[Row], list[Client], list[TokenBucket]]:
    """Every pair of rows, uninstrumented first; the clients to close; what to keep alive."""
    provider, _ = _provider()
    plain_bucket, watched_bucket = TokenBucket(HUGE, HUGE), TokenBucket(HUGE, HUGE)
    telemetry.instrument(watched_bucket, meter_provider=provider)
    plain_client, watched_client = Client(retry=None), Client(retry=None)
    telemetry.instrument(watched_client, meter_provider=provider)
    _, empty = _provider()
    crowded, full = _provider()
    limiters = [TokenBucket(HUGE, HUGE) for _ in range(LIMITERS)]
    for index, limiter in enumerate(limiters):
        limiter.try_acquire()
        telemetry.instrument(limiter, meter_provider=crowded, name=f"limiter-{index % 10}")
    table = [
        Row("try_acquire", "uninstrumented", "ns/call", 1, _timed(_try(plain_bucket))),
        Row("try_acquire", "instrumented", "ns/call", 1, _timed(_try(watched_bucket))),
        Row("acquire that waits (FakeClock)", "uninstrumented", "ns/call", 1, _timed(_waits(None))),
        Row(
            "acquire that waits (FakeClock)",
            "instrumented",
            "ns/call",
            1,
            _timed(_waits(provider)),
        ),
        Row(
            "Client GET, loopback",
            "uninstrumented",
            "µs/request",
            1e3,
            _timed(_gets(plain_client, url)),
        ),
        Row(
            "Client GET, loopback",
            "instrumented",
            "µs/request",
            1e3,
            _timed(_gets(watched_client, url)),
        ),
        Row(
            f"one collection, {LIMITERS:,} limiters",
            "no limiter instrumented",
            "ms/collection",
            1e6,
            _timed(_collections(empty)),
        ),
        Row(
            f"one collection, {LIMITERS:,} limiters",
            f"{LIMITERS:,} instrumented (10 names)",
            "ms/collection",
            1e6,
            _timed(_collections(full)),
        ),
    ]
    return table, [plain_client, watched_client], limiters


def measure(table: list[Row], settings: Settings) -> None:
    """Size each pair's trials on its slower row, then run interleaved rounds."""
    for index in range(0, len(table), 2):
        first, second = table[index], table[index + 1]
        slowest = 0.0
        for row in (first, second):
            row.run(10)  # warm up: connect, create, fill caches
            slowest = max(slowest, min(row.run(20) for _ in range(2)) / 20)
        n = max(20, int(settings.trial * 1e9 / slowest))
        first.n = second.n = n
    for round_ in range(settings.rounds):
        _log(f"round {round_ + 1} of {settings.rounds}")
        for index in range(0, len(table), 2):
            pair = table[index : index + 2]
            if round_ % 2:
                pair.reverse()
            for row in pair:
                row.wall_ns.append(row.run(row.n))


#: Decimals shown, by unit.
_DIGITS = {"ns/call": 0, "µs/request": 1, "ms/collection": 2}


def render(table: list[Row], header: str) -> str:
    """The Markdown table: each pair's medians, ratio and difference."""
    lines = [
        header,
        "",
        "| Measurement | Unit | n per trial | uninstrumented | instrumented | ratio | added |",
        "|---|---|--:|--:|--:|--:|--:|",
    ]
    for index in range(0, len(table), 2):
        plain, watched = table[index], table[index + 1]
        ratios = [w / p for w, p in zip(watched.wall_ns, plain.wall_ns, strict=True)]
        added = [
            (w - p) / plain.n / plain.scale
            for w, p in zip(watched.wall_ns, plain.wall_ns, strict=True)
        ]
        digits = _DIGITS[plain.unit]
        # Against nothing instrumented, a collection's ratio means nothing: its cost does.
        ratio = (
            "—" if plain.group.startswith("one collection") else f"{statistics.median(ratios):.2f}x"
        )
        lines.append(
            f"| {plain.group} | {plain.unit} | {plain.n:,} "
            f"| {statistics.median(plain.per_call()):,.{digits}f} "
            f"| {statistics.median(watched.per_call()):,.{digits}f} "
            f"| {ratio} | {statistics.median(added):+,.{digits}f} |"
        )
    collections = table[-1]
    per_limiter = statistics.median(collections.per_call()) * 1e3 / LIMITERS
    lines += [
        "",
        (
            "One collection reads each limiter's statistics() once for all its instruments: "
            f"about {per_limiter:.2g} µs per instrumented limiter."
        ),
    ]
    return "\n".join(lines)


def _environment() -> dict[str, str]:
    return {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": f"{platform.system()} {platform.machine()}",
        "cpus": str(os.cpu_count()),
        "ratekit": version("ratekit"),
        "opentelemetry-sdk": version("opentelemetry-sdk"),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the measurements, print the table, and optionally dump the raw numbers."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a shorter, noisier run")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write raw numbers here")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    started = time.monotonic()
    env = _environment()
    header = (
        f"ratekit.telemetry benchmark, {env['date']}: {env['python']} on {env['platform']}, "
        f"{env['cpus']} CPUs, ratekit {env['ratekit']}, opentelemetry-sdk "
        f"{env['opentelemetry-sdk']}{' --quick' if args.quick else ''}; median of "
        f"{settings.rounds} interleaved trials (ratio and added: median of each round's)."
    )
    with served() as url:
        table, clients, _alive = rows(url)
        try:
            measure(table, settings)
        finally:
            for client in clients:
                client.close()
    print(render(table, header))
    _log(f"done in {time.monotonic() - started:.0f} s")
    if args.json is not None:
        dump = {"environment": env, "rows": [asdict(row) | {"timer": None} for row in table]}
        args.json.write_text(json.dumps(dump, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
