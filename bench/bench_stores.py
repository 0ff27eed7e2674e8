# Copyright (c) 2026 The ratekit developers
# SPDX-License-Identifier: MIT
"""Measure ratekit's shared-limit stores: Redis latency against PING, and accuracy across processes.

Usage::

    python bench/bench_stores.py              # the full run, about 55 s
    python bench/bench_stores.py --quick      # a shorter, noisier run, about 15 s
    python bench/bench_stores.py --json out.json
    python bench/bench_stores.py --instructions  # under valgrind, 1 to 2 min

It starts a throwaway ``redis-server`` on a free loopback port (no persistence) and
prints three Markdown tables:

- **Redis latency**: one non-blocking call of a `ratekit.stores.RedisStore` limiter
  (granted and denied), beside pyrate-limiter's ``RedisBucket`` and the ``limits``
  library's ``RedisStorage``, as p50 and p99 against ``PING`` on the same client, with
  the round trips and the server commands that each call costs;
- **shared accuracy**: four processes sharing one limit of 100 per second for 3 s, on
  SQLite, on pyrate-limiter's multiprocess storage and on Redis: grants against the
  ideal, the most grants in any second, and any over-admission;
- **asyncio throughput**: calls per second of ``await limiter.acquire()`` on a
  `ratekit.stores.AsyncRedisStore` (``redis.asyncio``, no thread) against
  ``await limiter.acquire_async()`` on a `RedisStore` (its round trips on the store's
  four threads), with 1 to 256 tasks calling at once (``--asyncio-only``: this table
  alone).

``--latency-only`` prints the first table alone.

``--cluster-only`` prints one more table instead: the latency of one call on a Redis
Cluster of three primaries (started on loopback), beside the same call on one server,
with the server's microseconds per call (``FCALL`` in ``INFO commandstats`` on the node
that holds the limit's slot).

``--instructions`` prints one more table instead: the instructions that the server runs
per call of each latency row, counted by valgrind's callgrind in commands only, a
measure that the load of the machine does not move (it needs ``valgrind`` on PATH).

What each column means and how each library is driven is described in
``bench/README.md``.  Trials of different rows are interleaved and summarised by their
median, so that a noisy machine blurs every row alike.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import datetime as dt
import gc
import hashlib
import json
import math
import multiprocessing
import os
import platform
import re
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyrate_limiter as pyrate
import redis
from limits import RateLimitItemPerHour, RateLimitItemPerSecond
from limits.storage import RedisStorage
from limits.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter
from redis.backoff import NoBackoff
from redis.retry import Retry

import ratekit
from ratekit.stores import (
    AsyncRedisStore,
    PyrateLimiter,
    RedisStore,
    multiprocess_limiter,
    sqlite_limiter,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator, Sequence
    from multiprocessing.queues import Queue
    from multiprocessing.sharedctypes import Synchronized
    from multiprocessing.synchronize import Barrier

    from ratekit.typing import Limiter

#: A limit so large that every call is granted (per second, or as a bucket's capacity).
HUGE = 10**9
#: The shared limit of the accuracy runs: LIMIT per WINDOW seconds, on PROCESSES processes.
LIMIT = 100
WINDOW = 1.0
PROCESSES = 4
#: The socket and connect timeout of every Redis client, as `RedisStore(url=...)` sets it.
TIMEOUT = 1.0
#: A function that runs the commands an exact bucket on the server's clock needs, and
#: nothing else: the floor of such a bucket's server time.
FLOOR_LIBRARY = """#!lua name=bench_floor
redis.register_function('bench_floor', function(keys, args)
  redis.call('TIME')
  redis.call('GET', keys[1])
  redis.call('SET', keys[1], 'sixteen bytes...', 'PX', '60000')
  return 1
end)
"""

#: The goal for a ratekit call, as a multiple of PING's p50.
GOAL_P50 = 1.2
#: The least share of the ideal that an accuracy run should reach.
GOAL_SHARE = 0.98
#: How long a starting redis-server may take to answer PING, in seconds.
START_TIMEOUT = 20.0
#: Accuracy runs go on this long past their span, so that the span is full at its end.
TAIL = 0.2


@dataclass(frozen=True)
class Settings:
    """How long and how often each measurement runs."""

    latency_rounds: int
    latency_calls: int
    count_rounds: int
    count_calls: int
    accuracy_rounds: int
    accuracy_seconds: float
    async_rounds: int
    async_calls: int


FULL = Settings(
    latency_rounds=9,
    latency_calls=600,
    count_rounds=3,
    count_calls=200,
    accuracy_rounds=2,
    accuracy_seconds=3.0,
    async_rounds=5,
    async_calls=4000,
)
QUICK = Settings(
    latency_rounds=3,
    latency_calls=150,
    count_rounds=1,
    count_calls=50,
    accuracy_rounds=1,
    accuracy_seconds=1.0,
    async_rounds=2,
    async_calls=1000,
)

#: How many tasks call at once in the asyncio throughput runs.
ASYNC_TASKS = (1, 16, 256)
#: The rows of the asyncio table: (key, store, how each task calls).
ASYNC_ROWS = (
    ("native", "`AsyncRedisStore`", "`await acquire()`"),
    ("executor", "`RedisStore` (4 threads)", "`await acquire_async()`"),
)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _rotated(items: Sequence[Any], shift: int) -> list[Any]:
    shift %= len(items)
    return [*items[shift:], *items[:shift]]


def _percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..1)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _ratio(value: float | None, reference: float | None) -> str:
    if value is None or not reference:
        return "—"
    return f"{value / reference:.2f}x"


# -- a throwaway redis-server --------------------------------------------------------------


def _free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def redis_server(wrapper: Sequence[str] = ()) -> Iterator[str]:
    """Run ``redis-server`` on a free loopback port with no persistence; yield its URL.

    *wrapper* runs it (``valgrind`` and its options); it is stopped with SIGTERM.
    """
    executable = shutil.which("redis-server")
    if executable is None:
        raise SystemExit("bench_stores.py needs redis-server on PATH (apt install redis-server)")
    directory = tempfile.mkdtemp(prefix="ratekit-bench-redis-")
    port = _free_port()
    command = [*wrapper, executable, "--port", str(port), "--bind", "127.0.0.1"]
    command += ["--save", "", "--appendonly", "no", "--dir", directory]
    process = subprocess.Popen(  # noqa: S603 - a fixed executable and arguments
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not _answers_ping(port):
            if process.poll() is not None:
                raise SystemExit(f"redis-server exited with {process.returncode}")
            if time.monotonic() > deadline:
                raise SystemExit(f"redis-server did not answer within {START_TIMEOUT:g} s")
            time.sleep(0.01)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=START_TIMEOUT)
        shutil.rmtree(directory, ignore_errors=True)


class CountingConnection(redis.Connection):
    """A redis-py connection that counts its sends: one send is one round trip.

    redis-py sends a command, or a whole pipeline, with one ``send_packed_command``
    and then reads the replies, so the sends are the round trips.
    """

    sends = 0

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:  # noqa: ANN401, FBT002 - redis-py's signature
        """Count, then send as redis-py does."""
        CountingConnection.sends += 1
        super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]


def _client(url: str) -> redis.Redis:
    """The one client of every latency row: the settings `RedisStore(url=...)` uses."""
    return redis.Redis.from_url(
        url,
        socket_timeout=TIMEOUT,
        socket_connect_timeout=TIMEOUT,
        retry=Retry(NoBackoff(), 1, (redis.ConnectionError,)),
        connection_class=CountingConnection,
    )


# -- the latency rows ----------------------------------------------------------------------


@dataclass
class Caller:
    """A row of the latency table: one call, and the outcome it must have."""

    key: str
    library: str
    call_text: str
    outcome: str
    call: Callable[[], object]
    #: ``True``: must be granted; ``False``: must be denied; ``None``: PING.
    expect: bool | None
    ours: bool = False


def callers(client: redis.Redis, url: str, prefix: str) -> tuple[list[Caller], list[Any]]:
    """Every latency row, on one client; also what to close afterwards."""
    store = RedisStore(client, prefix=f"{prefix}ratekit:")

    def bucket(key: str, rate: pyrate.Rate) -> pyrate.Limiter:
        # pyrate-limiter's Redis bucket is a sliding log (a sorted set, one Lua script per
        # put); its Limiter starts a background leaker that trims it every 10 s.
        made = pyrate.RedisBucket.init([rate], client, f"{prefix}pyrate:{key}")
        return pyrate.Limiter(made)

    pyrate_granted = bucket("granted", pyrate.Rate(HUGE, pyrate.Duration.SECOND))
    pyrate_denied = bucket("denied", pyrate.Rate(1, pyrate.Duration.HOUR))
    storage = RedisStorage(
        url, connection_pool=client.connection_pool, key_prefix=f"{prefix}limits"
    )
    moving = MovingWindowRateLimiter(storage)
    fixed = FixedWindowRateLimiter(storage)
    many, one = RateLimitItemPerSecond(HUGE), RateLimitItemPerHour(1)

    def try_pyrate(limiter: pyrate.Limiter) -> Callable[[], object]:
        return partial(limiter.try_acquire, "bench", blocking=False)

    # The least a one-round-trip Lua limiter can cost: a script that does nothing, sent
    # with as many keys and arguments as a ratekit token bucket's call (2 and 11).
    nothing = client.register_script("return 1")
    keys = [f"{prefix}floor:state", f"{prefix}floor:log"]
    args = ["try", "", "1.0", "", "", "0", "1000", "1", "tb", "1000000000.0", "1000000000.0"]
    # The least an exact bucket on the server's clock can cost: a function that only
    # reads the time, reads a state and writes one back, called with as many keys and
    # arguments as a ratekit call.
    client.function_load(FLOOR_LIBRARY, replace=True)
    granted, denied = "granted", "denied"
    rows = [
        Caller("ping", "redis-py", "`PING`", "—", client.ping, None),
        Caller(
            "script",
            "redis-py",
            "`EVALSHA` of `return 1`, with 2 keys and 11 arguments",
            "—",
            partial(nothing, keys=keys, args=args),
            None,
        ),
        Caller(
            "floor",
            "redis-py",
            "`FCALL` of a function that runs `TIME`, `GET` and `SET` only, with 2 keys and "
            "11 arguments",
            "—",
            partial(client.fcall, "bench_floor", len(keys), *keys, *args),
            None,
        ),
        Caller(
            "ratekit-sw",
            "ratekit",
            "`RedisStore.sliding_window`, 10⁹ per 1 s",
            granted,
            store.sliding_window("sw-granted", HUGE, 1.0).try_acquire,
            True,
            ours=True,
        ),
        Caller(
            "ratekit-tb",
            "ratekit",
            "`RedisStore.token_bucket`, 10⁹/s, capacity 10⁹",
            granted,
            store.token_bucket("tb-granted", HUGE, HUGE).try_acquire,
            True,
            ours=True,
        ),
        Caller(
            "ratekit-fw",
            "ratekit",
            "`RedisStore.fixed_window`, 10⁹ per 1 s",
            granted,
            store.fixed_window("fw-granted", HUGE, 1.0).try_acquire,
            True,
            ours=True,
        ),
        Caller(
            "ratekit-lb",
            "ratekit",
            "`RedisStore.leaky_bucket`, 10⁹/s, capacity 10⁹",
            granted,
            store.leaky_bucket("lb-granted", HUGE, HUGE).try_acquire,
            True,
            ours=True,
        ),
        Caller(
            "pyrate",
            "pyrate-limiter",
            "`RedisBucket` (sliding log), 10⁹ per 1 s",
            granted,
            try_pyrate(pyrate_granted),
            True,
        ),
        Caller(
            "limits-moving",
            "limits",
            "`MovingWindowRateLimiter`, 10⁹ per 1 s",
            granted,
            partial(moving.hit, many, "moving-granted"),
            True,
        ),
        Caller(
            "limits-fixed",
            "limits",
            "`FixedWindowRateLimiter`, 10⁹ per 1 s",
            granted,
            partial(fixed.hit, many, "fixed-granted"),
            True,
        ),
        Caller(
            "ratekit-sw-denied",
            "ratekit",
            "`RedisStore.sliding_window`, 1 per hour, used",
            denied,
            store.sliding_window("sw-denied", 1, 3600.0).try_acquire,
            False,
            ours=True,
        ),
        Caller(
            "ratekit-tb-denied",
            "ratekit",
            "`RedisStore.token_bucket`, 1/hour, capacity 1, used",
            denied,
            store.token_bucket("tb-denied", "1/hour", 1).try_acquire,
            False,
            ours=True,
        ),
        Caller(
            "ratekit-fw-denied",
            "ratekit",
            "`RedisStore.fixed_window`, 1 per hour, used",
            denied,
            store.fixed_window("fw-denied", 1, 3600.0).try_acquire,
            False,
            ours=True,
        ),
        Caller(
            "ratekit-lb-denied",
            "ratekit",
            "`RedisStore.leaky_bucket`, 1/hour, capacity 1, used",
            denied,
            store.leaky_bucket("lb-denied", "1/hour", 1).try_acquire,
            False,
            ours=True,
        ),
        Caller(
            "pyrate-denied",
            "pyrate-limiter",
            "`RedisBucket` (sliding log), 1 per hour, used",
            denied,
            try_pyrate(pyrate_denied),
            False,
        ),
        Caller(
            "limits-moving-denied",
            "limits",
            "`MovingWindowRateLimiter`, 1 per hour, used",
            denied,
            partial(moving.hit, one, "moving-denied"),
            False,
        ),
        Caller(
            "limits-fixed-denied",
            "limits",
            "`FixedWindowRateLimiter`, 1 per hour, used",
            denied,
            partial(fixed.hit, one, "fixed-denied"),
            False,
        ),
    ]
    return rows, [pyrate_granted, pyrate_denied, store]


@dataclass
class Latency:
    """The raw numbers of one latency row."""

    #: Per trial: the latency of each call, in nanoseconds.
    trials: list[list[int]] = field(default_factory=list)
    #: Per trial: its p50 and p99 divided by PING's in the same round.
    p50_ratios: list[float] = field(default_factory=list)
    p99_ratios: list[float] = field(default_factory=list)
    #: Calls whose outcome was not the expected one (granted or denied).
    wrong: int = 0
    #: Per count: the server's commands per call (INFO commandstats), and client sends.
    commands: list[dict[str, float]] = field(default_factory=list)
    round_trips: list[float] = field(default_factory=list)
    #: Per count: the server's microseconds per call (the commands sent, scripts whole).
    server_us: list[float] = field(default_factory=list)

    def p50(self) -> float:
        """The median over trials of each trial's p50, in microseconds."""
        return statistics.median(_percentile(t, 0.50) for t in self.trials) / 1e3

    def p99(self) -> float:
        """The median over trials of each trial's p99, in microseconds."""
        return statistics.median(_percentile(t, 0.99) for t in self.trials) / 1e3


def _timed(row: Caller, n: int) -> tuple[list[int], int]:
    """Time *n* calls one by one; return their nanoseconds and the wrong outcomes."""
    samples: list[int] = []
    wrong = 0
    clock = time.perf_counter_ns
    call = row.call
    for _ in range(n):
        start = clock()
        result = call()
        end = clock()
        samples.append(end - start)
        if row.expect is not None and bool(result) is not row.expect:
            wrong += 1
    return samples, wrong


#: The commands that the rows send themselves; a script's own commands run inside these.
TOP_LEVEL = ("ping", "evalsha", "eval", "fcall")


def _commandstats(client: redis.Redis) -> dict[str, tuple[int, int]]:
    """Each command's calls and microseconds so far, from ``INFO commandstats``."""
    stats: dict[str, Any] = client.info("commandstats")
    return {
        name.removeprefix("cmdstat_"): (int(entry["calls"]), int(entry["usec"]))
        for name, entry in stats.items()
    }


def _count(client: redis.Redis, row: Caller, n: int) -> tuple[dict[str, float], float, float]:
    """Per call: the server's commands, the round trips, and the server's microseconds.

    The commands are ``INFO commandstats`` deltas, so they include those that a script
    runs; the server's time is that of the commands sent (`TOP_LEVEL`), scripts whole.
    """
    before = _commandstats(client)
    sends = CountingConnection.sends
    for _ in range(n):
        row.call()
    sent = CountingConnection.sends - sends
    after = _commandstats(client)
    delta = {
        name: (calls - before.get(name, (0, 0))[0], usec - before.get(name, (0, 0))[1])
        for name, (calls, usec) in after.items()
        if name != "info"
    }
    per_call = {name: calls / n for name, (calls, _) in delta.items() if calls}
    server = sum(delta.get(name, (0, 0))[1] for name in TOP_LEVEL) / n
    return per_call, sent / n, server


def measure_latency(
    client: redis.Redis, rows: list[Caller], settings: Settings
) -> dict[str, Latency]:
    """Latency of one call per row, interleaved with PING; then commands and round trips."""
    raw = {row.key: Latency() for row in rows}
    for row in rows:  # warm up: connect, load each script, use up the denied rows' limit
        for _ in range(50):
            row.call()
    for round_ in range(settings.latency_rounds):
        _log(f"latency, round {round_ + 1} of {settings.latency_rounds}")
        for row in _rotated(rows, round_):
            gc.collect()
            gc.disable()
            try:
                samples, wrong = _timed(row, settings.latency_calls)
            finally:
                gc.enable()
            raw[row.key].trials.append(samples)
            raw[row.key].wrong += wrong
        ping = raw["ping"].trials[-1]
        for row in rows:
            trial = raw[row.key].trials[-1]
            raw[row.key].p50_ratios.append(_percentile(trial, 0.5) / _percentile(ping, 0.5))
            raw[row.key].p99_ratios.append(_percentile(trial, 0.99) / _percentile(ping, 0.99))
    _log("round trips and commands per call")
    for round_ in range(settings.count_rounds):
        for row in _rotated(rows, round_):
            commands, round_trips, server = _count(client, row, settings.count_calls)
            raw[row.key].commands.append(commands)
            raw[row.key].round_trips.append(round_trips)
            raw[row.key].server_us.append(server)
    return raw


def _commands_text(counts: list[dict[str, float]]) -> str:
    """The median of each command's calls per call, most frequent first."""
    names = {name for count in counts for name in count}
    medians = {name: statistics.median(count.get(name, 0.0) for count in counts) for name in names}
    shown = sorted(
        ((name, value) for name, value in medians.items() if value > 0),
        key=lambda item: (-item[1], item[0]),
    )
    return ", ".join(f"{name} {value:.3g}" for name, value in shown)


def _per_core(server_us: float) -> str:
    """The calls per second that one Redis core sustains at *server_us* each, rounded."""
    if server_us <= 0:
        return "—"
    return f"{round(1e6 / server_us, -2):,.0f}"


def render_latency(rows: list[Caller], raw: dict[str, Latency], header: str) -> str:
    """The latency table, and whether ratekit meets its goal."""
    lines = [
        f"> {header}",
        "",
        (
            "| Library | Call | Outcome | p50 µs | p99 µs | p50 x PING | p99 x PING | server µs "
            "/ call | calls / s per Redis core (10⁶ / server µs) | round trips / call | server "
            "commands / call (INFO commandstats) |"
        ),
        "|---|---|---|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for row in rows:
        m = raw[row.key]
        outcome = row.outcome if not m.wrong else f"{row.outcome} (NOT for {m.wrong} calls)"
        ratio = "—" if row.key == "ping" else f"{statistics.median(m.p50_ratios):.2f}x"
        ratio99 = "—" if row.key == "ping" else f"{statistics.median(m.p99_ratios):.2f}x"
        cells = [
            row.library,
            row.call_text,
            outcome,
            f"{m.p50():.1f}",
            f"{m.p99():.1f}",
            ratio,
            ratio99,
            f"{statistics.median(m.server_us):.1f}",
            _per_core(statistics.median(m.server_us)),
            f"{statistics.median(m.round_trips):.2f}",
            _commands_text(m.commands),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Goal: each ratekit call at most {GOAL_P50:g}x PING p50, in one round trip:", ""]
    for row in rows:
        if not row.ours:
            continue
        m = raw[row.key]
        times = statistics.median(m.p50_ratios)
        trips = statistics.median(m.round_trips)
        met = times <= GOAL_P50 and trips == 1 and not m.wrong
        lines.append(
            f"- {row.call_text}, {row.outcome}: {times:.2f}x PING p50, "
            f"{trips:.2f} round trips per call: {'met' if met else 'MISSED'}"
        )
    script = raw["script"]
    lines.append(
        f"- For reference, a script that does nothing, sent with as many arguments: "
        f"{statistics.median(script.p50_ratios):.2f}x PING p50 "
        f"({statistics.median(script.server_us):.1f} µs of it in the server)."
    )
    return "\n".join(lines)


# -- the server's instructions per call ----------------------------------------------------

#: Each row is called this many times in each of two runs of a server under callgrind;
#: the difference of their counts over the difference of calls is the row's cost.
INSTRUCTION_CALLS = (200, 600)
#: Calls before those counted (connect, load each script, use up a denied row's limit):
#: the same in both runs, so they cancel out.
INSTRUCTION_WARMUP = 20
#: The goal for the server's work per ratekit call: at most this multiple of that of
#: limits' strategy of the same kind (its moving window for a sliding window, its fixed
#: window for the others).
GOAL_SERVER = 1.5
INSTRUCTION_GOALS = {
    "ratekit-sw": "limits-moving",
    "ratekit-tb": "limits-fixed",
    "ratekit-fw": "limits-fixed",
    "ratekit-lb": "limits-fixed",
}


def _instructions(key: str, calls: int) -> tuple[int, list[Caller]]:
    """The instructions a server under callgrind ran in its commands, and the rows.

    Counted from ``processCommand`` on (parsing the request, running the command and
    any script, queueing the reply), after *calls* calls of the row named *key*.
    """
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("--instructions needs valgrind on PATH (apt install valgrind)")
    with tempfile.TemporaryDirectory(prefix="ratekit-bench-callgrind-") as directory:
        out = Path(directory) / "callgrind.out"
        wrapper = [valgrind, "--tool=callgrind", f"--callgrind-out-file={out}"]
        wrapper.append("--toggle-collect=processCommand")
        with redis_server(wrapper) as url:
            client = _client(url)
            rows, closing = callers(client, url, "bench:")
            try:
                call = next(row.call for row in rows if row.key == key)
                for _ in range(INSTRUCTION_WARMUP + calls):
                    call()
            finally:
                for item in closing:
                    item.close()
                client.close()
        text = out.read_text(encoding="utf-8")
    found = re.search(r"^(?:summary|totals): (\d+)$", text, re.MULTILINE)
    if found is None:
        raise SystemExit("callgrind wrote no total")
    return int(found.group(1)), rows


def measure_instructions() -> tuple[list[Caller], dict[str, float]]:
    """Every row's server instructions per call (valgrind's callgrind counts them)."""
    counts: dict[str, float] = {}
    ping, rows = _instructions("ping", INSTRUCTION_CALLS[0])  # and the rows' list
    for row in rows:
        _log(f"instructions: {row.key}")
        few = ping if row.key == "ping" else _instructions(row.key, INSTRUCTION_CALLS[0])[0]
        many, _ = _instructions(row.key, INSTRUCTION_CALLS[1])
        counts[row.key] = (many - few) / (INSTRUCTION_CALLS[1] - INSTRUCTION_CALLS[0])
    return rows, counts


def render_instructions(rows: list[Caller], counts: dict[str, float], header: str) -> str:
    """The instructions table, and whether ratekit meets its goal."""
    fixed, moving = counts["limits-fixed"], counts["limits-moving"]
    lines = [
        f"> {header}",
        "",
        (
            "| Library | Call | Outcome | server instructions / call | x limits' fixed window "
            "| x limits' moving window |"
        ),
        "|---|---|---|--:|--:|--:|",
    ]
    for row in rows:
        count = counts[row.key]
        cells = [row.library, row.call_text, row.outcome, f"{count:,.0f}"]
        cells += [f"{count / fixed:.2f}x", f"{count / moving:.2f}x"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Goal: at most {GOAL_SERVER:g}x the instructions of limits' strategy:", ""]
    texts = {row.key: row.call_text for row in rows}
    for key, reference in INSTRUCTION_GOALS.items():
        ratio = counts[key] / counts[reference]
        lines.append(
            f"- {texts[key]}, granted: {ratio:.2f}x {texts[reference]}: "
            f"{'met' if ratio <= GOAL_SERVER else 'MISSED'}"
        )
    lines.append(
        f"- For reference, a function that runs `TIME`, `GET` and `SET` only, with as many "
        f"keys and arguments: {counts['floor']:,.0f} ({counts['floor'] / fixed:.2f}x limits' "
        "fixed window)."
    )
    return "\n".join(lines)


# -- the accuracy runs ---------------------------------------------------------------------


@dataclass(frozen=True)
class Share:
    """A row of the accuracy table: a shared limit and how each process calls it."""

    key: str
    store: str
    calls: str
    view: str


SHARES = [
    Share(
        "sqlite",
        '`sqlite_limiter(path, "100/second")`',
        "`try_acquire()`, else sleep `retry_after`",
        "the database's stamps",
    ),
    Share(
        "multiprocess",
        '`multiprocess_limiter("100/second")`',
        "`try_acquire()`, else sleep `retry_after`",
        "shared clock",
    ),
    Share(
        "redis-try",
        "`RedisStore.sliding_window(key, 100, 1.0)`",
        "`try_acquire()`, else sleep `retry_after`",
        "shared clock",
    ),
    Share(
        "redis-reserve",
        "`RedisStore.sliding_window(key, 100, 1.0)`",
        "`reserve()`, sleep its `delay` (what `acquire()` does)",
        "shared clock",
    ),
]


@dataclass(frozen=True)
class Plan:
    """One accuracy run, as every child process is told it."""

    index: int
    share: str
    seconds: float


def _database(directory: str, index: int) -> Path:
    return Path(directory) / f"run{index}.db"


def _open(plan: Plan, store: RedisStore, directory: str, given: dict[int, Any]) -> Limiter:
    if plan.share == "sqlite":
        return sqlite_limiter(_database(directory, plan.index), f"{LIMIT}/second")
    if plan.share == "multiprocess":
        limiter: Limiter = given[plan.index]
        return limiter
    return store.sliding_window(f"share-{plan.index}", LIMIT, WINDOW)


def _grants(limiter: Limiter, reserve: bool, end: float) -> list[tuple[float, float]]:
    """Call until *end*; return, per grant, the monotonic interval that holds its decision.

    After ``try_acquire`` the store decided between the call and its return.  After
    ``reserve`` it booked the slot ``delay`` seconds after a moment in that same interval.
    """
    grants: list[tuple[float, float]] = []
    clock = time.monotonic
    while True:
        sent = clock()
        if sent >= end:
            return grants
        if reserve:
            reservation = limiter.reserve()
            received = clock()
            if reservation.ok:
                grants.append((sent + reservation.delay, received + reservation.delay))
            time.sleep(max(received + reservation.delay - clock(), 0.0))
        else:
            decision = limiter.try_acquire()
            received = clock()
            if decision:
                grants.append((sent, received))
            else:
                time.sleep(decision.retry_after)


def share_worker(  # noqa: PLR0917 - a child's whole brief, passed by multiprocessing
    plans: list[Plan],
    url: str,
    directory: str,
    given: dict[int, Any],
    barrier: Barrier,
    start: Synchronized[float],
    results: Queue[tuple[int, int, list[tuple[float, float]]]],
) -> None:
    """Take part in every accuracy run of *plans*, in order; report each run's grants.

    Runs in a spawned child.  Each run: open the limit, use it once so that the store is
    connected, wait for the others (the barrier), wait for the parent to set the start,
    then call until the run's end.
    """
    with RedisStore(url=url, timeout=5.0) as store:
        for plan in plans:
            limiter = _open(plan, store, directory, given)
            limiter.statistics()  # connected, the script loaded, before the start
            barrier.wait()
            barrier.wait()  # the parent has set the start meanwhile
            begin = start.value
            time.sleep(max(begin - time.monotonic(), 0.0))
            grants = _grants(limiter, plan.share == "redis-reserve", begin + plan.seconds + TAIL)
            results.put((plan.index, os.getpid(), grants))
            if plan.share == "sqlite" and isinstance(limiter, PyrateLimiter):
                limiter.close()


@dataclass
class ShareRun:
    """What one accuracy run did, judged."""

    share: str
    seconds: float
    per_process: list[int]
    #: Grants certainly within the span of *seconds* that starts at the first grant.
    in_span: int
    ideal: int
    #: The most grants certainly within one window (of the view's times).
    max_in_window: int
    #: The widest interval in which the store's decision lies, in seconds (0: stamps).
    margin: float
    #: The same two counts from the processes' shared clock, for the SQLite runs too.
    clock_in_span: int
    clock_max_in_window: int
    #: Units that the store holds, when it is read (SQLite), against the grants reported.
    stored: int | None = None
    grants: list[list[tuple[float, float]]] = field(default_factory=list, repr=False)

    def over(self) -> int:
        """Grants beyond the limit in the worst window, or beyond the ideal in the span."""
        return max(0, self.max_in_window - LIMIT, self.in_span - self.ideal)


def _judge_clock(intervals: list[tuple[float, float]], seconds: float) -> tuple[int, int, float]:
    """Count soundly from intervals ``(earliest, latest)`` that hold each decision.

    With *margin* the widest interval, grants whose latest instants lie within
    ``WINDOW - margin`` of each other were decided within less than a window of each
    other; so a window holds at least the most such grants.  Likewise for the span,
    measured from the first grant.  Returns (in span, max in a window, margin).
    """
    margin = max(latest - earliest for earliest, latest in intervals)
    latest = sorted(end for _, end in intervals)
    in_span = bisect.bisect_left(latest, latest[0] + seconds - margin)
    most = max(
        bisect.bisect_left(latest, start + WINDOW - margin) - i for i, start in enumerate(latest)
    )
    return in_span, most, margin


def _judge_stamps(stamps: list[int], seconds: float) -> tuple[int, int]:
    """Count from integer millisecond stamps: (in the span, max in a half-open window)."""
    stamps = sorted(stamps)
    width = round(WINDOW * 1000)
    in_span = bisect.bisect_left(stamps, stamps[0] + round(seconds * 1000))
    most = max(bisect.bisect_left(stamps, start + width) - i for i, start in enumerate(stamps))
    return in_span, most


def _stamps(path: Path) -> list[int]:
    """Every unit an SQLite database admitted, as its millisecond stamp."""
    with contextlib.closing(sqlite3.connect(path)) as connection:
        rows = connection.execute("SELECT item_timestamp FROM ratekit").fetchall()
    return [int(stamp) for (stamp,) in rows]


def measure_accuracy(url: str, settings: Settings) -> list[ShareRun]:
    """Run every share with PROCESSES spawned processes, in interleaved rounds."""
    context = multiprocessing.get_context("spawn")
    plans = [
        Plan(len(SHARES) * round_ + i, share.key, settings.accuracy_seconds)
        for round_ in range(settings.accuracy_rounds)
        for i, share in enumerate(_rotated(SHARES, round_))
    ]
    runs: list[ShareRun] = []
    with tempfile.TemporaryDirectory(prefix="ratekit-bench-") as directory:
        given: dict[int, Any] = {}
        for plan in plans:
            if plan.share == "sqlite":  # created here, so that no two children race to
                sqlite_limiter(_database(directory, plan.index), f"{LIMIT}/second").close()
            elif plan.share == "multiprocess":
                given[plan.index] = multiprocess_limiter(f"{LIMIT}/second", context=context)
        barrier = context.Barrier(PROCESSES + 1)
        start = context.Value("d", 0.0)
        results: Queue[tuple[int, int, list[tuple[float, float]]]] = context.Queue()
        _log(f"accuracy: starting {PROCESSES} processes")
        children = [
            context.Process(
                target=share_worker,
                args=(plans, url, directory, given, barrier, start, results),
            )
            for _ in range(PROCESSES)
        ]
        for child in children:
            child.start()
        try:
            for plan in plans:
                _log(f"accuracy, run {plan.index + 1} of {len(plans)}: {plan.share}")
                barrier.wait(timeout=120)
                start.value = time.monotonic() + 0.05
                barrier.wait(timeout=120)
                reports = [results.get(timeout=120) for _ in children]
                assert all(index == plan.index for index, _, _ in reports)  # noqa: S101
                grants = [granted for _, _, granted in reports]
                runs.append(_judge(plan, grants, directory))
        finally:
            for child in children:
                child.join(timeout=60)
            for limiter in given.values():
                limiter.close()
        if any(child.exitcode != 0 for child in children):
            raise SystemExit("an accuracy process failed; see its traceback above")
    return runs


def _judge(plan: Plan, grants: list[list[tuple[float, float]]], directory: str) -> ShareRun:
    intervals = [grant for granted in grants for grant in granted]
    clock_in_span, clock_most, margin = _judge_clock(intervals, plan.seconds)
    in_span, most, stored = clock_in_span, clock_most, None
    if plan.share == "sqlite":
        stamps = _stamps(_database(directory, plan.index))
        stored = len(stamps)
        in_span, most = _judge_stamps(stamps, plan.seconds)
    return ShareRun(
        share=plan.share,
        seconds=plan.seconds,
        per_process=[len(granted) for granted in grants],
        in_span=in_span,
        ideal=round(LIMIT * plan.seconds / WINDOW),
        max_in_window=most,
        margin=0.0 if plan.share == "sqlite" else margin,
        clock_in_span=clock_in_span,
        clock_max_in_window=clock_most,
        stored=stored,
        grants=grants,
    )


def render_accuracy(runs: list[ShareRun], header: str) -> str:
    """The accuracy table, and whether each store meets the goal."""
    lines = [
        f"> {header}",
        "",
        (
            f"| Store | Each process calls | Times from | Grants in span / ideal | Max in any "
            f"{WINDOW:g} s (limit {LIMIT}) | Over-admitted | Per process (min to max) | "
            "Uncertainty ms |"
        ),
        "|---|---|---|--:|--:|--:|--:|--:|",
    ]
    verdicts: list[str] = []
    for share in SHARES:
        mine = [run for run in runs if run.share == share.key]
        if not mine:
            continue
        grants = statistics.median(run.in_span for run in mine)
        ideal = mine[0].ideal
        share_of_ideal = grants / ideal
        over = max(run.over() for run in mine)
        counts = [count for run in mine for count in run.per_process]
        margin = max(run.margin for run in mine)
        lost = [
            run for run in mine if run.stored is not None and run.stored != sum(run.per_process)
        ]
        cells = [
            share.store,
            share.calls,
            share.view,
            f"{grants:.0f} / {ideal} ({share_of_ideal:.1%})",
            str(max(run.max_in_window for run in mine)),
            str(over),
            f"{min(counts)} to {max(counts)}",
            "—" if share.key == "sqlite" else f"{margin * 1e3:.2f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
        met = share_of_ideal >= GOAL_SHARE and over == 0 and not lost
        verdicts.append(
            f"- {share.store}, {share.calls}: {share_of_ideal:.1%} of ideal, {over} over"
            + (
                f", {len(lost)} run(s) whose store holds other than the grants reported"
                if lost
                else ""
            )
            + f": {'met' if met else 'MISSED'}"
        )
    lines += [
        "",
        f"Goal: at least {GOAL_SHARE:.0%} of the ideal, and nothing over the limit:",
        "",
        *verdicts,
    ]
    return "\n".join(lines)


# -- asyncio throughput ---------------------------------------------------------------------


async def _throughput(acquire: Callable[[], Awaitable[None]], tasks: int, calls: int) -> float:
    """Calls per second of *tasks* tasks that share *calls* calls of *acquire*."""
    left = calls

    async def caller() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await acquire()

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(tasks)))
    return calls / (time.perf_counter() - started)


def measure_async(url: str, settings: Settings) -> dict[str, dict[int, list[float]]]:
    """Calls per second of each row of `ASYNC_ROWS`, by number of tasks, per trial.

    Both limiters are token buckets that grant every call at once: each call is one
    round trip (a booking), so the table compares how the round trips are carried.
    """
    rates: dict[str, dict[int, list[float]]] = {
        key: {tasks: [] for tasks in ASYNC_TASKS} for key, _, _ in ASYNC_ROWS
    }

    async def run() -> None:
        async with AsyncRedisStore(url=url, timeout=TIMEOUT, prefix="bench:aio:") as native:
            with RedisStore(url=url, timeout=TIMEOUT, prefix="bench:thr:") as threaded:
                acquires = {
                    "native": native.token_bucket("huge", HUGE, HUGE).acquire,
                    "executor": threaded.token_bucket("huge", HUGE, HUGE).acquire_async,
                }
                for acquire in acquires.values():  # connect, load the library
                    await _throughput(acquire, 16, 64)
                for index in range(settings.async_rounds):
                    for tasks in ASYNC_TASKS:
                        for key in _rotated(list(acquires), index):
                            rate = await _throughput(acquires[key], tasks, settings.async_calls)
                            rates[key][tasks].append(rate)

    asyncio.run(run())
    return rates


def render_async(rates: dict[str, dict[int, list[float]]], header: str) -> str:
    """The asyncio table: median calls per second, by number of tasks."""
    lines = [
        f"> {header}",
        "",
        "| Store | Each task calls | "
        + " | ".join(f"{tasks} task{'s' if tasks > 1 else ''}, calls/s" for tasks in ASYNC_TASKS)
        + " |",
        "|---|---|" + "--:|" * len(ASYNC_TASKS),
    ]
    for key, store, calls in ASYNC_ROWS:
        cells = [f"{statistics.median(rates[key][tasks]):,.0f}" for tasks in ASYNC_TASKS]
        lines.append(f"| {store} | {calls} | " + " | ".join(cells) + " |")
    ratios = ", ".join(
        f"{tasks} task{'s' if tasks > 1 else ''}: "
        + _ratio(
            statistics.median(rates["native"][tasks]), statistics.median(rates["executor"][tasks])
        )
        for tasks in ASYNC_TASKS
    )
    lines += ["", f"`AsyncRedisStore` against the executor: {ratios}."]
    return "\n".join(lines)


# -- Redis Cluster -------------------------------------------------------------------------

#: A cluster node's bus listens on its port plus this, which must be a port too.
BUS_OFFSET = 10000


def _free_cluster_port(taken: set[int]) -> int:
    """A free loopback port below the ephemeral range whose bus port is free too."""
    for port in range(21000, 30000, 7):
        if {port, port + BUS_OFFSET} & taken:
            continue
        try:
            for each in (port, port + BUS_OFFSET):
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                    probe.bind(("127.0.0.1", each))
        except OSError:
            continue
        taken.update({port, port + BUS_OFFSET})
        return port
    raise SystemExit("no free pair of ports for a cluster node")


@contextlib.contextmanager
def redis_cluster() -> Iterator[list[int]]:
    """Run a Redis Cluster of three primaries on loopback (no persistence); yield the ports."""
    executable, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if executable is None or cli is None:
        raise SystemExit("--cluster needs redis-server and redis-cli on PATH")
    directory = tempfile.mkdtemp(prefix="ratekit-bench-cluster-")
    taken: set[int] = set()
    ports = [_free_cluster_port(taken) for _ in range(3)]
    processes = []
    try:
        for port in ports:
            command = [executable, "--port", str(port), "--bind", "127.0.0.1"]
            command += ["--cluster-enabled", "yes", "--cluster-config-file"]
            command += [f"{directory}/nodes-{port}.conf", "--save", "", "--appendonly", "no"]
            command += ["--dir", directory]
            processes.append(
                subprocess.Popen(  # noqa: S603 - a fixed executable and arguments
                    command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not all(_answers_ping(port) for port in ports):
            if time.monotonic() > deadline:
                raise SystemExit(f"redis-server did not answer within {START_TIMEOUT:g} s")
            time.sleep(0.01)
        create = [cli, "--cluster", "create", *(f"127.0.0.1:{port}" for port in ports)]
        create += ["--cluster-replicas", "0", "--cluster-yes"]
        subprocess.run(  # noqa: S603 - a fixed executable and arguments
            create, check=True, capture_output=True, timeout=START_TIMEOUT
        )
        while True:
            states = []
            for port in ports:
                with contextlib.closing(redis.Redis(port=port)) as node:
                    states.append(node.cluster("info").get("cluster_state"))
            if states == ["ok"] * 3:
                break
            if time.monotonic() > deadline:
                raise SystemExit("the cluster was not ok in time")
            time.sleep(0.05)
        yield ports
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=START_TIMEOUT)
        shutil.rmtree(directory, ignore_errors=True)


def _owner_port(store: RedisStore, key: str, url: str) -> int:
    """The port of the server that holds *key*: the slot's primary on a cluster."""
    if not store.cluster:
        return int(url.rsplit(":", 1)[1].split("/", maxsplit=1)[0])
    client: Any = store._client  # a RedisCluster
    return int(client.get_node_from_key(key).port)


def measure_cluster(settings: Settings) -> list[str]:
    """Latency and server time of one call on a three-primary cluster and on one server.

    The server's time is that of ``FCALL`` in ``INFO commandstats`` on the node that
    holds the limit's slot.
    """
    table = [
        "| Store | Call | p50 µs | p99 µs | server µs per call | redis-server |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    with redis_cluster() as ports, redis_server() as url:
        cluster = RedisStore(url=f"redis://127.0.0.1:{ports[0]}", cluster=True, timeout=TIMEOUT)
        single = RedisStore(url=url, timeout=TIMEOUT)
        rows: list[tuple[str, str, Any, bool]] = []  # RedisLimiter rows
        for name, store in (("one server", single), ("cluster, 3 primaries", cluster)):
            rows += [
                (
                    name,
                    "token_bucket try_acquire, granted",
                    store.token_bucket("b", HUGE, HUGE),
                    True,
                ),
                (
                    name,
                    'limiter("N/s, N/h") try_acquire, granted',
                    store.limiter("l", f"{HUGE}/second, {HUGE}/hour"),
                    True,
                ),
                (
                    name,
                    "sliding_window try_acquire, denied",
                    store.sliding_window("d", 1, 3600.0),
                    False,
                ),
            ]
        for name, text, limiter, expect in rows:
            store = limiter.store
            port = _owner_port(store, limiter.keys[0], url)
            _log(f"cluster table: {name}, {text}")
            for _ in range(50):  # connect, load the library, use up the denied row's limit
                limiter.try_acquire()
            row = Caller(text, "ratekit", text, "", limiter.try_acquire, expect)
            with contextlib.closing(redis.Redis(port=port)) as node:
                version_text = str(node.info("server")["redis_version"])
                before = _commandstats(node).get("fcall", (0, 0))
                trials = []
                for _ in range(settings.latency_rounds):
                    samples, wrong = _timed(row, settings.latency_calls)
                    if wrong:
                        raise SystemExit(f"{name}, {text}: {wrong} calls had another outcome")
                    trials.append(samples)
                after = _commandstats(node).get("fcall", (0, 0))
            calls = after[0] - before[0]
            server = (after[1] - before[1]) / calls if calls else math.nan
            p50 = statistics.median(_percentile(t, 0.5) for t in trials) / 1e3
            p99 = statistics.median(_percentile(t, 0.99) for t in trials) / 1e3
            table.append(
                f"| {name} | {text} | {p50:.1f} | {p99:.1f} | {server:.1f} | {version_text} |"
            )
        cluster.close()
        single.close()
    return table


# -- the run -------------------------------------------------------------------------------


def _environment(client: redis.Redis) -> dict[str, str]:
    package = Path(ratekit.__file__).parent
    sources = sorted([*package.glob("*.py"), *package.glob("stores/*.py")])
    digest = hashlib.sha256(b"".join(path.read_bytes() for path in sources)).hexdigest()
    server: dict[str, Any] = client.info("server")
    env = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": f"{platform.system()} {platform.machine()}",
        "cpus": str(os.cpu_count()),
        # Which ratekit tree was measured (a checkout may differ from any release).
        "ratekit-sources-sha256": digest[:12],
        "redis-server": str(server["redis_version"]),
    }
    for dist in ("ratekit", "redis", "pyrate-limiter", "limits"):
        env[dist] = version(dist)
    return env


def main(argv: list[str] | None = None) -> int:
    """Run the measurements, print the tables, and optionally dump the raw numbers."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a shorter, noisier run")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write raw numbers here")
    parser.add_argument(
        "--asyncio-only", action="store_true", help="only the asyncio throughput table"
    )
    parser.add_argument(
        "--cluster-only", action="store_true", help="only the Redis Cluster latency table"
    )
    parser.add_argument("--latency-only", action="store_true", help="only the Redis latency table")
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="only the server's instructions per call, under valgrind (1 to 2 min)",
    )
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    if args.cluster_only:
        print("\n".join(measure_cluster(settings)))
        return 0
    if args.instructions:
        rows, counts = measure_instructions()
        header = (
            f"ratekit stores benchmark, instructions, "
            f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d}: each row alone on a fresh "
            f"redis-server under valgrind's callgrind; instructions from processCommand on, "
            f"per call: the difference between {INSTRUCTION_CALLS[0]} and "
            f"{INSTRUCTION_CALLS[1]} calls, over the difference of calls."
        )
        print(render_instructions(rows, counts, header))
        return 0

    began = time.monotonic()
    with redis_server() as url:
        client = _client(url)
        env = _environment(client)
        preamble = (
            f"ratekit stores benchmark, {env['date']}: {env['python']} on {env['platform']}, "
            f"{env['cpus']} CPUs, ratekit {env['ratekit']} "
            f"(sources {env['ratekit-sources-sha256']}), redis-server {env['redis-server']} "
            f"on loopback, redis-py {env['redis']}, pyrate-limiter {env['pyrate-limiter']}, "
            f"limits {env['limits']}{' --quick' if args.quick else ''}. "
        )
        async_header = preamble + (
            f"{settings.async_calls} calls shared by the tasks per trial, median of "
            f"{settings.async_rounds} interleaved trials; every call is granted at once "
            "(one round trip each)."
        )
        if args.asyncio_only:
            print(render_async(measure_async(url, settings), async_header))
            client.close()
            return 0
        rows, closing = callers(client, url, "bench:")
        try:
            latency = measure_latency(client, rows, settings)
        finally:
            for item in closing:
                item.close()
        ping = latency["ping"]
        latency_header = preamble + (
            f"One call at a time on one redis-py client; {settings.latency_calls} calls per "
            f"trial, median of {settings.latency_rounds} interleaved trials (ratios: median "
            f"of each trial's against PING's in the same round; PING p50 {ping.p50():.1f} µs, "
            f"p99 {ping.p99():.1f} µs); commands and round trips: median of "
            f"{settings.count_rounds} counts of {settings.count_calls} calls."
        )
        tables = [render_latency(rows, latency, latency_header)]
        if args.latency_only:
            print(tables[0])
            client.close()
            return 0
        runs = measure_accuracy(url, settings)
        rates = measure_async(url, settings)
        client.close()
    accuracy_header = preamble + (
        f"{PROCESSES} spawned processes share {LIMIT} per {WINDOW:g} s for "
        f"{settings.accuracy_seconds:g} s; span: {settings.accuracy_seconds:g} s from the first "
        f"grant, ideal {round(LIMIT * settings.accuracy_seconds / WINDOW)}; median of "
        f"{settings.accuracy_rounds} interleaved runs (max in 1 s, over-admitted, uncertainty: "
        "worst run)."
    )
    tables.append(render_accuracy(runs, accuracy_header))
    tables.append(render_async(rates, async_header))
    print("\n\n".join(tables))
    _log(f"done in {time.monotonic() - began:.0f} s")
    if args.json is not None:
        dump = {
            "environment": env,
            "settings": asdict(settings),
            "latency": {
                row.key: {"library": row.library, "call": row.call_text, **asdict(latency[row.key])}
                for row in rows
            },
            "accuracy": [asdict(run) for run in runs],
            "asyncio": {
                key: {str(tasks): r for tasks, r in by.items()} for key, by in rates.items()
            },
        }
        args.json.write_text(json.dumps(dump, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
