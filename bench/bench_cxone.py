# Copyright (c) 2026 The ratekit developers
# SPDX-License-Identifier: MIT
"""Export contacts from the CXone simulator under a server-side limit, three ways.

Usage::

    python bench/bench_cxone.py              # 20,000 contacts at 50 requests/s, ~30 s
    python bench/bench_cxone.py --quick      # 4,000 contacts, ~8 s
    python bench/bench_cxone.py --json out.json

Each run starts a fresh simulator in a process of its own (``ratekit-cxone simulate``,
so that it does not share the client's interpreter lock, as a remote server would not)
whose contacts endpoint allows ``--rate`` requests per second (an exact sliding window:
at most that many in any second; above it, 429 with ``Retry-After`` in whole seconds, as
CXone documents it), and walks every completed contact with ``top=--page-size``:

- **ratekit, rate given**: `CXoneClient` with ``make_limiter("50/second", burst=1)``
  (what ``ratekit-cxone export --rate 50/second --burst 1`` uses) and 4 workers;
- **ratekit, adaptive**: `CXoneClient` with its default limiter, which does not know
  the limit and learns it from the 429s;
- **tutorial's approach**: what the Go tutorial this project grew from does, in Python:
  a token bucket of 100 refilled at the given rate and polled every 100 ms, pages one
  after another, each 429 retried by itself after its ``Retry-After`` (integer seconds)
  or a 2 s, 4 s, ... backoff with jitter, and no cooldown shared with anything;
- **tutorial as written**: the same bucket, one thread per page, and the first 429 ends
  the run with an error (the tutorial's ``FetchInteractions``).

The table gives, per run, the records exported (and whether each came exactly once),
the list requests sent and the 429s received, the elapsed time from the end of the first
page (authentication and discovery done) to the last record, and requests per second as
a share of the server's limit.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import platform
import random
import shlex
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import urllib3

from ratekit.http import OAuth2Token
from ratekit_cxone import CXoneClient, CXoneConfig, make_limiter
from ratekit_cxone.simulator import Simulator

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

START = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
END = START + dt.timedelta(days=30)
WORKERS = 4


@dataclass(frozen=True)
class Run:
    """What one export did."""

    approach: str
    records: int
    exactly_once: bool
    requests: int
    throttled: int
    elapsed: float
    error: str = ""

    def per_second(self) -> float:
        """List requests per second over the run."""
        return self.requests / self.elapsed if self.elapsed > 0 else 0.0


class PollingBucket:
    """The tutorial's token bucket: refilled on demand, and polled every 100 ms."""

    def __init__(self, capacity: float, rate: float) -> None:
        self.capacity = capacity
        self.rate = rate
        self.tokens = capacity
        self.stamp = time.monotonic()
        self.lock = threading.Lock()

    def allow(self) -> bool:
        """Take a token if there is one (the tutorial's ``Allow``)."""
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            if self.tokens >= 1:
                self.tokens -= 1
                return True
            return False

    def wait(self) -> None:
        """Poll every 100 ms until a token is taken (the tutorial's ``Wait``)."""
        while not self.allow():
            time.sleep(0.1)


@dataclass(frozen=True)
class Server:
    """A simulator running in a process of its own."""

    url: str
    env: dict[str, str]
    expected: list[str]  # the ids of every contact of the export, in the API's order


@contextlib.contextmanager
def served(records: int, rate: str) -> Iterator[Server]:
    """Run ``ratekit-cxone simulate`` in a child process; read its URL and environment."""
    command = [sys.executable, "-m", "ratekit_cxone", "simulate", "--records", str(records)]
    command += ["--rate", rate, "--seed", "0"]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)  # noqa: S603
    try:
        assert child.stdout is not None  # noqa: S101 - piped above
        env: dict[str, str] = {}
        url = ""
        for line in child.stdout:
            if line.startswith("CXone simulator listening on "):
                url = line.split()[4]
            elif line.startswith("export "):
                name, _, value = line[len("export ") :].strip().partition("=")
                env.setdefault(name, shlex.split(value)[0])
            if "CXONE_SCOPES" in env:
                break
        expected = Simulator(records=records, seed=0).contacts(START, END)
        yield Server(url, env, [str(record["contactId"]) for record in expected])
    finally:
        child.terminate()
        child.wait(timeout=30)


def ratekit_run(server: Server, approach: str, rate: str | None, page_size: int) -> Run:
    """Export with `CXoneClient`: at *rate* (burst 1), or learning the limit (``None``)."""
    config = CXoneConfig.from_env("contacts", server.env)
    limiter = make_limiter(rate, 1 if rate else None)
    with CXoneClient(config, limiter=limiter, concurrency=WORKERS) as client:
        pages = client.completed_contact_pages(START, END, page_size=page_size)
        first = next(pages)  # authentication and discovery happen before the clock starts
        before = client.statistics()
        began = time.perf_counter()
        ids = [record.key for record in first.records]
        for page in pages:
            ids.extend(record.key for record in page.records)
        elapsed = time.perf_counter() - began
        after = client.statistics()
    return Run(
        approach,
        len(ids),
        ids == server.expected,
        after.requests - before.requests,
        after.throttled - before.throttled,
        elapsed,
    )


@dataclass
class Counts:
    """What the tutorial's client sent and got back."""

    requests: int = 0
    throttled: int = 0
    lock: threading.Lock = threading.Lock()  # noqa: RUF009 - one per bench, shared on purpose

    def sent(self, status: int) -> None:
        """Count one response."""
        with self.lock:
            self.requests += 1
            self.throttled += status == 429


def tutorial_fetch(  # noqa: PLR0917 - the tutorial's client, spelt out
    pool: urllib3.PoolManager,
    url: str,
    token: str,
    bucket: PollingBucket,
    rng: random.Random,
    counts: Counts,
) -> dict[str, object] | None:
    """The tutorial's FetchWithBackoff: five attempts, Retry-After or 2 s * 2**n + jitter."""
    for attempt in range(5):
        bucket.wait()
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        # retries=False: urllib3 would otherwise retry 429s itself, which Go's client does not.
        response = pool.request("GET", url, headers=headers, retries=False)
        counts.sent(response.status)
        if response.status == 429 or response.status >= 500:
            header = response.headers.get("Retry-After", "")
            backoff = 2.0 * 2**attempt
            delay = backoff + rng.uniform(0, backoff / 2)
            if response.status == 429 and header.isdigit() and int(header) > 0:
                delay = float(header)
            time.sleep(delay)
            continue
        if response.status == 204:
            return None
        if response.status != 200:
            raise RuntimeError(f"unexpected status {response.status}")
        body: dict[str, object] = json.loads(response.data)
        return body
    raise RuntimeError("max retries exceeded")


def simulator_auth(url: str, env: Mapping[str, str]) -> OAuth2Token:
    """The token provider of the simulator at *url*, whose credentials are in *env*."""
    return OAuth2Token(
        f"{url}/auth/token",
        client_id=env["CXONE_CLIENT_ID"],
        client_secret=env["CXONE_CLIENT_SECRET"],
        grant="password",
        username=env["CXONE_ACCESS_KEY_ID"],
        password=env["CXONE_ACCESS_KEY_SECRET"],
    )


def tutorial_setup(server: Server) -> tuple[urllib3.PoolManager, str, str]:
    """A pool, a token and the list URL (without top and skip) for the tutorial's runs."""
    auth = simulator_auth(server.url, server.env)
    base = f"{server.url}/inContactAPI/services/v34.0/contacts/completed"
    query = "startDate=2026-01-01T00:00:00Z&endDate=2026-01-31T00:00:00Z"
    return urllib3.PoolManager(maxsize=64), auth.token(), f"{base}?{query}"


def tutorial_sequential(server: Server, rate: float, page_size: int) -> Run:
    """Pages one after another, each retried by itself (the tutorial's FetchWithBackoff)."""
    pool, token, url = tutorial_setup(server)
    bucket = PollingBucket(100, rate)
    rng = random.Random(0)
    counts = Counts()
    began = time.perf_counter()
    ids: list[str] = []
    skip = 0
    while True:
        page_url = f"{url}&top={page_size}&skip={skip}"
        body = tutorial_fetch(pool, page_url, token, bucket, rng, counts)
        if body is None:
            break
        records = body["completedContacts"]
        if not isinstance(records, list):
            raise TypeError("completedContacts is not a list")
        ids.extend(str(record["contactId"]) for record in records)
        skip += page_size
        if "next" not in body["_links"]:  # type: ignore[operator]
            break
    elapsed = time.perf_counter() - began
    return Run(
        "tutorial's approach (sequential, polling bucket, per-request retry)",
        len(ids),
        ids == server.expected,
        counts.requests,
        counts.throttled,
        elapsed,
    )


def tutorial_as_written(server: Server, rate: float, page_size: int, records: int) -> Run:
    """One thread per page, and the first 429 ends the run (the tutorial's code)."""
    pool, token, url = tutorial_setup(server)
    counts = Counts()
    bucket = PollingBucket(100, rate)
    pages = math.ceil(records / page_size)
    stop = threading.Event()
    ids: list[str] = []
    lock = threading.Lock()

    def fetch(page: int) -> None:
        bucket.wait()
        if stop.is_set():
            return
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        page_url = f"{url}&top={page_size}&skip={page * page_size}"
        response = pool.request("GET", page_url, headers=headers, retries=False)
        counts.sent(response.status)
        if response.status == 429:
            stop.set()
            raise RuntimeError(f"rate limit exceeded for page {page + 1}")
        body = json.loads(response.data)
        with lock:
            ids.extend(str(record["contactId"]) for record in body["completedContacts"])

    began = time.perf_counter()
    error = ""
    with ThreadPoolExecutor(max_workers=pages) as executor:  # one thread per page
        futures = [executor.submit(fetch, page) for page in range(pages)]
        for future in futures:
            exception = future.exception()
            if exception is not None and not error:
                error = str(exception)
    elapsed = time.perf_counter() - began
    return Run(
        "tutorial as written (thread per page, fails on the first 429)",
        len(set(ids)),
        sorted(ids) == sorted(server.expected),
        counts.requests,
        counts.throttled,
        elapsed,
        error,
    )


def table(runs: list[Run], rate: float) -> str:
    """The runs as a Markdown table."""
    header = "| approach | records (exactly once) | requests | 429s | elapsed | requests/s |"
    lines = [
        header + " of the limit |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for run in runs:
        once = "yes" if run.exactly_once else "no"
        share = run.per_second() / rate
        result = f"{run.records:,} ({once})" + (f": {run.error}" if run.error else "")
        lines.append(
            f"| {run.approach} | {result} | {run.requests} | {run.throttled} | "
            f"{run.elapsed:.1f} s | {run.per_second():.1f} | {share:.1%} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the exports and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="4,000 contacts instead of 20,000")
    parser.add_argument("--records", type=int, help="contacts to export (default 20,000)")
    parser.add_argument("--rate", type=float, default=50.0, help="the server's requests/s")
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write raw numbers here")
    args = parser.parse_args(argv)
    records = args.records or (4_000 if args.quick else 20_000)
    spec = f"{args.rate:g}/second"
    runs = []
    for approach in ("given", "adaptive", "sequential", "as written"):
        with served(records, spec) as server:
            if approach == "given":
                label = f"ratekit, rate given ({spec}, burst 1)"
                runs.append(ratekit_run(server, label, spec, args.page_size))
            elif approach == "adaptive":
                label = "ratekit, adaptive (limit unknown)"
                runs.append(ratekit_run(server, label, None, args.page_size))
            elif approach == "sequential":
                runs.append(tutorial_sequential(server, args.rate, args.page_size))
            else:
                runs.append(tutorial_as_written(server, args.rate, args.page_size, records))
        print(f"  {runs[-1].approach}: {runs[-1].elapsed:.1f} s", file=sys.stderr)
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(
        f"{records:,} contacts, page size {args.page_size}, server limit {spec} "
        f"({when}, CPython {platform.python_version()}, {os.cpu_count()} CPUs)\n"
    )
    print(table(runs, args.rate))
    if args.json:
        args.json.write_text(json.dumps([asdict(run) for run in runs], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
