# Copyright (c) 2026 The ratekit developers
# SPDX-License-Identifier: MIT
"""Measure what ratekit adds where calls are already made: blocks, decorators, HTTP clients.

Usage::

    python bench/bench_integrations.py              # the full run, about 100 seconds
    python bench/bench_integrations.py --quick      # about 20 seconds, noisier
    python bench/bench_integrations.py --json out.json

It prints two Markdown tables, both with a limiter that never waits (a ``TokenBucket``
with a rate and capacity of 10⁹), so that they show overhead, not pacing:

- **block and decorator**: nanoseconds per call of ``with limiter:``, a function
  decorated with ``@ratekit.limited(limiter)`` and their asyncio forms, against a bare
  ``limiter.acquire()`` (and the decorated function against the same function written
  by hand), with aiolimiter's ``async with`` beside them;
- **integrations**: microseconds per request to a loopback HTTP server run in a
  process of its own, sequential requests on one kept-alive connection, for each
  library plain, with ratekit's integration, and with its rate-limiting peer
  (requests-ratelimiter, httpx-limiter), and ``ratekit.http.Client`` against a plain
  ``urllib3.PoolManager``.

An integration that does not import (its library or extra is not installed) has its
rows marked as skipped, with the reason.  What each column means and how each library
is driven is described in ``bench/README.md``.  Trials of different rows are
interleaved and summarised by their median, so that a noisy machine blurs every row
alike.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import gc
import hashlib
import importlib
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

import aiohttp
import aiolimiter
import httpx
import requests
import urllib3
from httpx_limiter import AsyncRateLimitedTransport as PeerAsyncTransport
from httpx_limiter import Rate as PeerRate
from httpx_limiter.aiolimiter import AiolimiterAsyncLimiter
from requests_ratelimiter import LimiterAdapter

import ratekit
import ratekit.http

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator
    from multiprocessing.connection import Connection
    from types import ModuleType

#: A rate and a capacity that no run comes near: every acquire is granted at once.
HUGE = 10**9
#: The server's answer to every request.
BODY = b'{"ok": true, "items": [1, 2, 3]}'
#: What every request must return: the status and the body.
OK = (200, BODY)

#: The libraries whose versions the tables record.
LIBRARIES = (
    "requests",
    "requests-ratelimiter",
    "pyrate-limiter",
    "httpx",
    "httpx-limiter",
    "aiolimiter",
    "aiohttp",
    "urllib3",
)

#: Wall and CPU nanoseconds of one trial.
Timing = tuple[int, int]


@dataclass(frozen=True)
class Settings:
    """How long and how often each measurement runs."""

    rounds: int
    #: Seconds that the slowest form of a group should take per trial (per-call table).
    call_trial: float
    #: Seconds that the slowest client of a library should take per trial.
    http_trial: float


FULL = Settings(rounds=21, call_trial=0.05, http_trial=0.3)
QUICK = Settings(rounds=3, call_trial=0.01, http_trial=0.05)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _optional(name: str) -> tuple[ModuleType | None, str | None]:
    """Import the integration *name*: the module, or ``None`` and why it did not import."""
    try:
        return importlib.import_module(name), None
    except Exception as error:  # noqa: BLE001 - reported in the table
        return None, f"`{name}` does not import ({type(error).__name__}: {error})"


@dataclass
class Row:
    """A row of either table and its raw numbers."""

    key: str
    group: str
    label: str
    #: Runs *n* calls or requests and returns their wall and CPU nanoseconds.
    timer: Callable[[int], Timing] | None
    reference: bool = False
    #: The key of a second row to compare with (the hand-written function, for a decorator).
    versus: str | None = None
    #: Why the row was not measured.
    skipped: str | None = None
    #: What the row is called in the lines below the table.
    name: str = ""
    #: A ratekit limiter behind the row, checked after the run: one grant per call.
    limiter: ratekit.TokenBucket | None = None
    n: int = 0
    #: Every call or request the row made, warm-up included.
    calls: int = 0
    wall_ns: list[int] = field(default_factory=list)
    cpu_ns: list[int] = field(default_factory=list)

    def run(self, n: int) -> Timing:
        """Time *n* calls of the row, after a full garbage collection."""
        if self.timer is None:
            raise ValueError(f"row {self.key} is skipped: {self.skipped}")
        gc.collect()
        self.calls += n
        return self.timer(n)


def _timed(run: Callable[[int], object]) -> Callable[[int], Timing]:
    """A timer of *run*: its wall and CPU nanoseconds for *n* calls."""

    def timer(n: int) -> Timing:
        cpu = time.process_time_ns()
        start = time.perf_counter_ns()
        run(n)
        return time.perf_counter_ns() - start, time.process_time_ns() - cpu

    return timer


def _atimed(
    loop: asyncio.AbstractEventLoop, run: Callable[[int], Awaitable[object]]
) -> Callable[[int], Timing]:
    """`_timed` for a coroutine, timed inside the event loop."""

    async def timed(n: int) -> Timing:
        cpu = time.process_time_ns()
        start = time.perf_counter_ns()
        await run(n)
        return time.perf_counter_ns() - start, time.process_time_ns() - cpu

    return lambda n: loop.run_until_complete(timed(n))


def _limiter() -> ratekit.TokenBucket:
    return ratekit.TokenBucket(HUGE, HUGE)


# -- the block and the decorator ----------------------------------------------------------
# Each loop writes its call inline, as a caller would, so that the rows differ only in
# the form measured; the loop itself costs the same in every row.


def _bare(limiter: ratekit.TokenBucket) -> Callable[[int], object]:
    def run(n: int) -> None:
        for _ in itertools.repeat(None, n):
            limiter.acquire()

    return run


def _try(limiter: ratekit.TokenBucket) -> Callable[[int], object]:
    def run(n: int) -> None:
        for _ in itertools.repeat(None, n):
            limiter.try_acquire()

    return run


def _block(limiter: ratekit.TokenBucket) -> Callable[[int], object]:
    def run(n: int) -> None:
        for _ in itertools.repeat(None, n):
            with limiter:
                pass

    return run


def _by_hand(limiter: ratekit.TokenBucket) -> Callable[[int], object]:
    def call() -> None:
        limiter.acquire()

    def run(n: int) -> None:
        for _ in itertools.repeat(None, n):
            call()

    return run


def _decorated(limiter: ratekit.TokenBucket) -> Callable[[int], object]:
    @ratekit.limited(limiter)
    def call() -> None:
        return None

    def run(n: int) -> None:
        for _ in itertools.repeat(None, n):
            call()

    return run


def _abare(limiter: ratekit.TokenBucket) -> Callable[[int], Awaitable[object]]:
    async def run(n: int) -> None:
        for _ in itertools.repeat(None, n):
            await limiter.acquire_async()

    return run


def _ablock(limiter: ratekit.TokenBucket) -> Callable[[int], Awaitable[object]]:
    async def run(n: int) -> None:
        for _ in itertools.repeat(None, n):
            async with limiter:
                pass

    return run


def _aby_hand(limiter: ratekit.TokenBucket) -> Callable[[int], Awaitable[object]]:
    async def call() -> None:
        await limiter.acquire_async()

    async def run(n: int) -> None:
        for _ in itertools.repeat(None, n):
            await call()

    return run


def _adecorated(limiter: ratekit.TokenBucket) -> Callable[[int], Awaitable[object]]:
    @ratekit.limited(limiter)
    async def call() -> None:
        return None

    async def run(n: int) -> None:
        for _ in itertools.repeat(None, n):
            await call()

    return run


def _aiolimiter_block(limiter: aiolimiter.AsyncLimiter) -> Callable[[int], Awaitable[object]]:
    async def run(n: int) -> None:
        for _ in itertools.repeat(None, n):
            async with limiter:
                pass

    return run


def call_rows(loop: asyncio.AbstractEventLoop) -> list[Row]:
    """Return the rows of the block-and-decorator table, each group's reference first."""
    sync = "threads"
    forms: list[tuple[str, str, Callable[[ratekit.TokenBucket], Callable[[int], object]]]] = [
        ("acquire", "`limiter.acquire()`", _bare),
        ("with", "`with limiter: pass`", _block),
        ("by-hand", "`f()`, where `def f(): limiter.acquire()`", _by_hand),
        ("limited", "`f()`, where `@ratekit.limited(limiter) def f(): pass`", _decorated),
        ("try", "for scale: `limiter.try_acquire()`, which never blocks", _try),
    ]
    rows: list[Row] = []
    for key, label, make in forms:
        limiter = _limiter()
        rows.append(
            Row(
                key,
                sync,
                label,
                _timed(make(limiter)),
                reference=key == "acquire",
                versus="by-hand" if key == "limited" else None,
                limiter=limiter,
            )
        )
    aforms: list[
        tuple[str, str, Callable[[ratekit.TokenBucket], Callable[[int], Awaitable[object]]]]
    ] = [
        ("async-acquire", "`await limiter.acquire_async()`", _abare),
        ("async-with", "`async with limiter: pass`", _ablock),
        (
            "async-by-hand",
            "`await f()`, where `async def f(): await limiter.acquire_async()`",
            _aby_hand,
        ),
        (
            "async-limited",
            "`await f()`, where `@ratekit.limited(limiter) async def f(): pass`",
            _adecorated,
        ),
    ]
    for key, label, amake in aforms:
        limiter = _limiter()
        rows.append(
            Row(
                key,
                "asyncio",
                label,
                _atimed(loop, amake(limiter)),
                reference=key == "async-acquire",
                versus="async-by-hand" if key == "async-limited" else None,
                limiter=limiter,
            )
        )
    rows.append(
        Row(
            "aiolimiter-with",
            "asyncio",
            "aiolimiter: `async with AsyncLimiter(10**9, 1): pass`",
            _atimed(loop, _aiolimiter_block(aiolimiter.AsyncLimiter(HUGE, 1))),
            versus="async-with",
        )
    )
    return rows


# -- the server --------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    """Answers every GET with 200 and `BODY`, keeping the connection alive."""

    protocol_version = "HTTP/1.1"
    # The headers and the body go out in two writes: without TCP_NODELAY, the second
    # would wait for the client's delayed ACK (Nagle's algorithm, RFC 896).
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        """Answer with `BODY`."""
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *args: object) -> None:
        """Log nothing: one line per request would cost more than the answer."""


def serve(port_out: Connection) -> None:
    """Serve on a free loopback port until terminated; send the port to *port_out*."""
    with ThreadingHTTPServer(("127.0.0.1", 0), _Handler) as server:
        server.daemon_threads = True
        port_out.send(server.server_address[1])
        port_out.close()
        server.serve_forever()


@contextlib.contextmanager
def served() -> Iterator[str]:
    """Run `serve` in a spawned process (a GIL of its own); yield its base URL."""
    context = multiprocessing.get_context("spawn")
    receiving, sending = context.Pipe(duplex=False)
    process = context.Process(target=serve, args=(sending,), daemon=True)
    process.start()
    sending.close()
    try:
        if not receiving.poll(60):
            raise RuntimeError("the benchmark's HTTP server did not start within 60 s")
        port = receiving.recv()
        yield f"http://127.0.0.1:{port}/items"
    finally:
        process.terminate()
        process.join(10)


# -- the integrations --------------------------------------------------------------------
# Every request goes through a fetch function that returns (status, body), checked
# against OK in the timed loop: one extra Python call per request, the same in every row.


def _sync_loop(fetch: Callable[[], tuple[int, bytes]]) -> Callable[[int], object]:
    def run(n: int) -> None:
        for _ in itertools.repeat(None, n):
            if fetch() != OK:
                raise AssertionError(f"unexpected answer: {fetch()!r}")

    return run


def _async_loop(
    fetch: Callable[[], Awaitable[tuple[int, bytes]]],
) -> Callable[[int], Awaitable[object]]:
    async def run(n: int) -> None:
        for _ in itertools.repeat(None, n):
            got = await fetch()
            if got != OK:
                raise AssertionError(f"unexpected answer: {got!r}")

    return run


def _requests_fetch(session: requests.Session, url: str) -> Callable[[], tuple[int, bytes]]:
    def fetch() -> tuple[int, bytes]:
        response = session.get(url)
        return response.status_code, response.content

    return fetch


def _httpx_fetch(client: httpx.Client, url: str) -> Callable[[], tuple[int, bytes]]:
    def fetch() -> tuple[int, bytes]:
        response = client.get(url)
        return response.status_code, response.content

    return fetch


def _httpx_afetch(
    client: httpx.AsyncClient, url: str
) -> Callable[[], Awaitable[tuple[int, bytes]]]:
    async def fetch() -> tuple[int, bytes]:
        response = await client.get(url)
        return response.status_code, response.content

    return fetch


def _aiohttp_afetch(
    session: aiohttp.ClientSession, url: str
) -> Callable[[], Awaitable[tuple[int, bytes]]]:
    async def fetch() -> tuple[int, bytes]:
        async with session.get(url) as response:
            return response.status, await response.read()

    return fetch


def _urllib3_fetch(pool: urllib3.PoolManager, url: str) -> Callable[[], tuple[int, bytes]]:
    def fetch() -> tuple[int, bytes]:
        response = pool.request("GET", url)
        return response.status, response.data

    return fetch


def _client_fetch(client: ratekit.http.Client, url: str) -> Callable[[], tuple[int, bytes]]:
    def fetch() -> tuple[int, bytes]:
        response = client.get(url)
        return response.status, response.data

    return fetch


def http_rows(url: str, loop: asyncio.AbstractEventLoop, stack: contextlib.ExitStack) -> list[Row]:
    """Return the rows of the integrations table, each library's plain client first.

    Every client is made here and closed by *stack*; async ones are made in *loop*.
    """
    rows: list[Row] = []

    def add(  # noqa: PLR0917 - a row's parts, in the order of the table
        key: str,
        group: str,
        name: str,
        label: str,
        fetch: Callable[[], tuple[int, bytes]] | None,
        limiter: ratekit.TokenBucket | None = None,
    ) -> None:
        timer = None if fetch is None else _timed(_sync_loop(fetch))
        rows.append(Row(key, group, label, timer, name=name, limiter=limiter))

    def aadd(  # noqa: PLR0917 - a row's parts, in the order of the table
        key: str,
        group: str,
        name: str,
        label: str,
        fetch: Callable[[], Awaitable[tuple[int, bytes]]] | None,
        limiter: ratekit.TokenBucket | None = None,
    ) -> None:
        timer = None if fetch is None else _atimed(loop, _async_loop(fetch))
        rows.append(Row(key, group, label, timer, name=name, limiter=limiter))

    def aclose(close: Callable[[], Awaitable[object]]) -> None:
        stack.callback(lambda: loop.run_until_complete(close()))

    # requests: a session per row, each adapter mounted for http://.
    from ratekit.integrations.requests import RateLimitedAdapter

    session = stack.enter_context(requests.Session())
    add(
        "requests-plain", "requests", "plain", "`requests.Session()`", _requests_fetch(session, url)
    )
    limiter = _limiter()
    session = stack.enter_context(requests.Session())
    session.mount("http://", RateLimitedAdapter(limiter))
    add(
        "requests-ratekit",
        "requests",
        "ratekit `RateLimitedAdapter`",
        "ratekit: `RateLimitedAdapter(limiter)` mounted on `http://`",
        _requests_fetch(session, url),
        limiter,
    )
    session = stack.enter_context(requests.Session())
    session.mount("http://", LimiterAdapter(per_second=HUGE))
    add(
        "requests-peer",
        "requests",
        "requests-ratelimiter",
        "requests-ratelimiter: `LimiterAdapter(per_second=10**9)` mounted on `http://`",
        _requests_fetch(session, url),
    )

    # httpx: a client per row; httpx-limiter has an async transport only.
    module, why = _optional("ratekit.integrations.httpx")
    client = stack.enter_context(httpx.Client())
    add("httpx-plain", "httpx", "plain", "`httpx.Client()`", _httpx_fetch(client, url))
    limiter = _limiter()
    fetch = None
    if module is not None:
        client = stack.enter_context(httpx.Client(transport=module.RateLimitedTransport(limiter)))
        fetch = _httpx_fetch(client, url)
    add(
        "httpx-ratekit",
        "httpx",
        "ratekit `RateLimitedTransport`",
        "ratekit: `httpx.Client(transport=RateLimitedTransport(limiter))`",
        fetch,
        limiter,
    )

    group = "httpx, asyncio"
    aclient = httpx.AsyncClient()
    aclose(aclient.aclose)
    aadd("httpx-async-plain", group, "plain", "`httpx.AsyncClient()`", _httpx_afetch(aclient, url))
    limiter = _limiter()
    afetch = None
    if module is not None:
        aclient = httpx.AsyncClient(transport=module.AsyncRateLimitedTransport(limiter))
        aclose(aclient.aclose)
        afetch = _httpx_afetch(aclient, url)
    aadd(
        "httpx-async-ratekit",
        group,
        "ratekit `AsyncRateLimitedTransport`",
        "ratekit: `httpx.AsyncClient(transport=AsyncRateLimitedTransport(limiter))`",
        afetch,
        limiter,
    )
    peer = AiolimiterAsyncLimiter.create(PeerRate.create(magnitude=HUGE))
    aclient = httpx.AsyncClient(transport=PeerAsyncTransport.create(limiter=peer))
    aclose(aclient.aclose)
    aadd(
        "httpx-async-peer",
        group,
        "httpx-limiter",
        "httpx-limiter: `httpx.AsyncClient(transport=AsyncRateLimitedTransport.create("
        "limiter=AiolimiterAsyncLimiter.create(Rate.create(magnitude=10**9))))`",
        _httpx_afetch(aclient, url),
    )
    _skipping(rows, "ratekit.integrations.httpx", why)

    # aiohttp: a session per row, made in the loop.
    async def make_session(*middlewares: aiohttp.ClientMiddlewareType) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(middlewares=middlewares)

    asession = loop.run_until_complete(make_session())
    aclose(asession.close)
    aadd(
        "aiohttp-plain",
        "aiohttp",
        "plain",
        "`aiohttp.ClientSession()`",
        _aiohttp_afetch(asession, url),
    )
    module, why = _optional("ratekit.integrations.aiohttp")
    limiter = _limiter()
    afetch = None
    if module is not None:
        asession = loop.run_until_complete(make_session(module.RateLimitMiddleware(limiter)))
        aclose(asession.close)
        afetch = _aiohttp_afetch(asession, url)
    aadd(
        "aiohttp-ratekit",
        "aiohttp",
        "ratekit `RateLimitMiddleware`",
        "ratekit: `aiohttp.ClientSession(middlewares=(RateLimitMiddleware(limiter),))`",
        afetch,
        limiter,
    )
    _skipping(rows, "ratekit.integrations.aiohttp", why)

    # urllib3, and ratekit's own client, which is built on it.
    pool = urllib3.PoolManager()
    stack.callback(pool.clear)
    add(
        "urllib3-plain",
        "urllib3",
        "plain",
        '`urllib3.PoolManager().request("GET", url)`',
        _urllib3_fetch(pool, url),
    )
    limiter = _limiter()
    rclient = stack.enter_context(ratekit.http.Client(limiter))
    add(
        "urllib3-ratekit",
        "urllib3",
        "ratekit `Client(limiter)`",
        "ratekit: `ratekit.http.Client(limiter).get(url)`",
        _client_fetch(rclient, url),
        limiter,
    )
    rclient = stack.enter_context(ratekit.http.Client())
    add(
        "urllib3-ratekit-none",
        "urllib3",
        "ratekit `Client()` without a limiter",
        "ratekit: `ratekit.http.Client().get(url)`, no limiter",
        _client_fetch(rclient, url),
    )
    for row in rows:
        row.reference = row.name == "plain"
    return rows


def _skipping(rows: list[Row], module: str, why: str | None) -> None:
    """Mark the rows of *module* that could not be made, with *why*."""
    for row in rows:
        if row.timer is None and row.skipped is None:
            row.skipped = why or f"`{module}` does not import"


# -- measuring ---------------------------------------------------------------------------


def measure(rows: list[Row], settings: Settings, trial: float, probe: int, what: str) -> None:
    """Time every live row on the same *n* per group, trials interleaved in rounds."""
    live = [row for row in rows if row.timer is not None]
    _log(f"{what}: sizing the trials")
    groups: dict[str, list[Row]] = {}
    for row in live:
        groups.setdefault(row.group, []).append(row)
    for members in groups.values():
        slowest = 0.0
        for row in members:
            row.run(probe)  # warm up: connect, load, fill caches
            per_call = min(row.run(probe)[0] for _ in range(2)) / probe
            slowest = max(slowest, per_call)
        n = max(probe, round(trial * 1e9 / slowest, -2))
        for row in members:
            row.n = int(n)
    for round_ in range(settings.rounds):
        _log(f"{what}: round {round_ + 1} of {settings.rounds}")
        shift = round_ % len(live)
        for row in [*live[shift:], *live[:shift]]:
            wall, cpu = row.run(row.n)
            row.wall_ns.append(wall)
            row.cpu_ns.append(cpu)


def check_limiters(rows: list[Row]) -> None:
    """Check that each ratekit limiter granted every call of its row, without a wait."""
    for row in rows:
        if row.limiter is None:
            continue
        stats = row.limiter.statistics()
        if stats.granted != row.calls or stats.waited != 0:
            raise AssertionError(
                f"{row.key}: {row.calls} calls, but the limiter granted {stats.granted} "
                f"and waited {stats.waited} s"
            )


# -- the tables --------------------------------------------------------------------------


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _per_call(row: Row, ns: list[int]) -> list[float]:
    return [value / row.n for value in ns]


def _ratios(row: Row, other: Row) -> list[float]:
    """Each round's time of *row* divided by *other*'s in the same round."""
    return [(a / row.n) / (b / other.n) for a, b in zip(row.wall_ns, other.wall_ns, strict=True)]


def _differences(row: Row, other: Row, ns: str = "wall_ns") -> list[float]:
    """Each round's nanoseconds per call of *row* minus *other*'s in the same round."""
    mine: list[int] = getattr(row, ns)
    theirs: list[int] = getattr(other, ns)
    return [a / row.n - b / other.n for a, b in zip(mine, theirs, strict=True)]


def _references(rows: list[Row]) -> tuple[dict[str, Row], dict[str, Row]]:
    by_key = {row.key: row for row in rows}
    reference = {row.group: row for row in rows if row.reference}
    return by_key, reference


def _verdict(ratio: float, goal: float) -> str:
    # Judged on the ratio as printed, so that a line never reads "1.10x: MISSED".
    return "met" if round(ratio, 2) <= goal else "MISSED"


def render_calls(rows: list[Row], header: str) -> str:
    """Return the block-and-decorator table, with its header and the goals."""
    by_key, reference = _references(rows)
    lines = [
        header,
        "",
        "| Group | Form | calls | ns/call | x `acquire` | x counterpart |",
        "|---|---|--:|--:|--:|--:|",
    ]
    seen: set[str] = set()
    for row in rows:
        group = "" if row.group in seen else row.group
        seen.add(row.group)
        ns = _median(_per_call(row, row.wall_ns))
        ref = reference[row.group]
        ratio = "—" if row.reference else f"{_median(_ratios(row, ref)):.2f}x"
        versus = "—" if row.versus is None else f"{_median(_ratios(row, by_key[row.versus])):.2f}x"
        label = row.label + (" (reference)" if row.reference else "")
        lines.append(f"| {group} | {label} | {row.n:,} | {ns:.0f} | {ratio} | {versus} |")

    def between(key: str, other: str) -> float:
        return _median(_ratios(by_key[key], by_key[other]))

    goals = [
        ("`with limiter:`", between("with", "acquire"), "`limiter.acquire()`"),
        ("`@limited` function", between("limited", "by-hand"), "the same function by hand"),
        ("`async with limiter:`", between("async-with", "async-acquire"), "`acquire_async()`"),
        (
            "`@limited` coroutine function",
            between("async-limited", "async-by-hand"),
            "the same coroutine function by hand",
        ),
    ]
    lines += ["", "Goal: each form at most 1.10x what it stands for:", ""]
    lines += [
        f"- {form}: {value:.2f}x {against}: {_verdict(value, 1.10)}"
        for form, value, against in goals
    ]
    peer = between("aiolimiter-with", "async-with")
    lines.append(f"- aiolimiter's `async with`: {peer:.2f}x ratekit's `async with limiter:`.")
    return "\n".join(lines)


def render_http(rows: list[Row], header: str) -> str:
    """Return the integrations table, with its header and a line per library."""
    reference = _references(rows)[1]
    lines = [
        header,
        "",
        (
            "| Library | Client | requests | µs/request | x plain | added µs "
            "| CPU µs/request | added CPU µs |"
        ),
        "|---|---|--:|--:|--:|--:|--:|--:|",
    ]
    seen: set[str] = set()
    for row in rows:
        group = "" if row.group in seen else row.group
        seen.add(row.group)
        if row.skipped is not None:
            lines.append(
                f"| {group} | {row.label}: skipped, {row.skipped} | — | — | — | — | — | — |"
            )
            continue
        ref = reference[row.group]
        us = _median(_per_call(row, row.wall_ns)) / 1e3
        cpu = _median(_per_call(row, row.cpu_ns)) / 1e3
        if row.reference:
            ratio = added = added_cpu = "—"
        else:
            ratio = f"{_median(_ratios(row, ref)):.2f}x"
            added = f"{_median(_differences(row, ref)) / 1e3:+.1f}"
            added_cpu = f"{_median(_differences(row, ref, 'cpu_ns')) / 1e3:+.1f}"
        label = row.label + (" (reference)" if row.reference else "")
        lines.append(
            f"| {group} | {label} | {row.n:,} | {us:.1f} | {ratio} | {added} "
            f"| {cpu:.1f} | {added_cpu} |"
        )
    lines += ["", "Added per request, against the same library's plain client (medians):", ""]
    for group, ref in reference.items():
        parts = []
        for row in rows:
            if row.group != group or row.reference:
                continue
            if row.skipped is not None:
                parts.append(f"{row.name} skipped")
                continue
            extra = _median(_differences(row, ref)) / 1e3
            parts.append(f"{row.name} {extra:+.1f} µs ({_median(_ratios(row, ref)):.2f}x)")
        lines.append(f"- {group}: {'; '.join(parts)}")
    skipped = [row for row in rows if row.skipped is not None]
    if skipped:
        lines += ["", f"Skipped: {len(skipped)} rows ({', '.join(r.key for r in skipped)})."]
    return "\n".join(lines)


def _environment() -> dict[str, str]:
    package = Path(ratekit.__file__).parent
    sources = sorted(
        [*package.glob("*.py"), *package.glob("http/*.py"), *package.glob("integrations/*.py")]
    )
    digest = hashlib.sha256(b"".join(path.read_bytes() for path in sources)).hexdigest()
    env = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": f"{platform.system()} {platform.machine()}",
        "cpus": str(os.cpu_count()),
        # Which ratekit tree was measured (a checkout may differ from any release).
        "ratekit-sources-sha256": digest[:12],
    }
    for dist in ("ratekit", *LIBRARIES):
        env[dist] = version(dist)
    return env


def main(argv: list[str] | None = None) -> int:
    """Run the measurements, print the tables, and optionally dump the raw numbers."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a shorter, noisier run")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write raw numbers here")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL

    started = time.monotonic()
    env = _environment()
    versions = ", ".join(f"{dist} {env[dist]}" for dist in LIBRARIES)
    preamble = (
        f"ratekit integrations benchmark, {env['date']}: {env['python']} on "
        f"{env['platform']}, {env['cpus']} CPUs, ratekit {env['ratekit']} "
        f"(sources {env['ratekit-sources-sha256']}), {versions}"
        f"{' --quick' if args.quick else ''}. "
    )
    loop = asyncio.new_event_loop()
    with contextlib.ExitStack() as stack:
        stack.callback(loop.close)
        calls = call_rows(loop)
        measure(calls, settings, settings.call_trial, 10_000, "block and decorator")
        check_limiters(calls)
        url = stack.enter_context(served())
        requests_ = http_rows(url, loop, stack)
        for row in requests_:
            if row.skipped is not None:
                _log(f"skipped {row.key}: {row.skipped}")
        measure(requests_, settings, settings.http_trial, 200, "integrations")
        check_limiters(requests_)

    tables = [
        render_calls(
            calls,
            preamble
            + (
                "Block and decorator: one thread or task, a `TokenBucket(10**9, 10**9)` that "
                f"never waits; median of {settings.rounds} interleaved trials (ratios: "
                "median of each round's)."
            ),
        ),
        render_http(
            requests_,
            preamble
            + (
                "Integrations: sequential GETs on one kept-alive connection to a loopback "
                "`http.server` in its own process, a limiter that never waits; median of "
                f"{settings.rounds} interleaved trials (ratios and differences: median of "
                "each round's against the plain client)."
            ),
        ),
    ]
    print("\n\n".join(tables))
    _log(f"done in {time.monotonic() - started:.0f} s")
    if args.json is not None:
        dump = {
            "environment": env,
            "settings": asdict(settings),
            "rows": {
                row.key: {
                    "group": row.group,
                    "label": row.label,
                    "skipped": row.skipped,
                    "n": row.n,
                    "wall_ns": row.wall_ns,
                    "cpu_ns": row.cpu_ns,
                }
                for row in [*calls, *requests_]
            },
        }
        args.json.write_text(json.dumps(dump, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
