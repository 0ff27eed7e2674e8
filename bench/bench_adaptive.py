# Copyright (c) 2026 The ratekit developers
# SPDX-License-Identifier: MIT
"""Measure how well a client that does not know a server's rate limit uses it.

Usage::

    python bench/bench_adaptive.py               # the full run
    python bench/bench_adaptive.py --quick       # 1 repeat, 4 workers only
    python bench/bench_adaptive.py --only ietf --json raw.json

Five kinds of server-side limiter run on loopback, each in a process of its own (so
that none shares the client's interpreter lock, as a remote server would not); see
``adaptive_servers.py``: ``sliding`` (the CXone simulator, 40/s), ``x-ratelimit``
(Flask-Limiter, 25/s), ``ietf`` (IETF ``RateLimit`` fields, 25/s), ``strict`` (nginx's
``limit_req``, 20/s, no burst) and ``burst`` (the same with ``burst=10 nodelay``).
Against each, three clients fetch jobs of 200 pages (4 and 8 workers) and 40 pages (4
workers):

- **ratekit adaptive**: `ratekit.http.Client` with an `AdaptiveLimiter` (for the
  simulator, the CXone adapter's default, `ratekit_cxone.adaptive_limiter`) and
  `ratekit.http.DEFAULT_RETRY`, its pages mapped by a `ratekit.Scheduler`; nothing about
  the limit is given to it;
- **ratekit, rate given**: the same with ``make_limiter(f"{L}/second", burst=1)``, a
  token bucket paced 2.5% below the limit;
- **tutorial's approach**: what the Go tutorial the project grew from does, as in
  ``bench_cxone.py``: a token bucket of 100 at the limit, polled every 100 ms, pages one
  after another, each 429 retried after its ``Retry-After`` or a 2 s, 4 s, ... backoff.

Each run starts with a fresh limiter against a server whose windows have all passed;
runs are repeated (interleaved, rotating the order) and the table gives medians.  It
prints Markdown to stdout and progress to stderr; what each column means is described
in ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import random
import signal
import statistics
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import urllib3
from adaptive_servers import KINDS, Server, find_nginx, nginx_version, served
from bench_cxone import Counts, PollingBucket, simulator_auth, tutorial_fetch

import ratekit
import ratekit_cxone
from ratekit import MapTimeout, Scheduler
from ratekit.http import DEFAULT_RETRY, AdaptiveLimiter, Client, OAuth2Token, cancellable_pool
from ratekit_cxone import adaptive_limiter, make_limiter

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import FrameType

    from ratekit.typing import Limiter

#: The servers' limits, in requests per second, unless a flag says otherwise.
LIMITS = {"sliding": 40, "x-ratelimit": 25, "ietf": 25, "strict": 20, "burst": 20}
#: The burst of the ``burst`` kind (nginx's ``burst=``).
BURST = 10

#: The jobs: pages to fetch, and workers fetching them.
JOBS = ((200, 4), (200, 8), (40, 4))
QUICK_JOBS = ((200, 4), (40, 4))
#: The job whose adaptive run (the first of each kind) is traced.
TRACED = (200, 4)

ADAPTIVE = "ratekit adaptive"
GIVEN = "ratekit, rate given"
TUTORIAL = "tutorial's approach"
APPROACHES = (ADAPTIVE, GIVEN, TUTORIAL)

#: Seconds between two samples of the adaptive limiter's rate.
TRACE_EVERY = 0.25
#: Seconds of quiet between two runs: longer than every server's window (1 s) and than
#: the time its bucket takes to refill (11 requests at 20/s: 0.55 s), so that each run
#: meets a server with nothing counted.
QUIET = 1.5
#: A run is stopped after this many times the time its job takes at the limit (a run
#: slower than a third of the limit has shown what it does).
CAP = 3.0

#: The goal for the adaptive client: this share of the limit on the long jobs, with at
#: most this share of its requests answered 429; and this share on the short job.
GOAL_LONG = 0.90
GOAL_THROTTLED = 0.05
GOAL_SHORT = 0.70


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Run:
    """What one client did in one job against one server."""

    kind: str
    approach: str
    workers: int  # 1 for the tutorial's approach, which fetches pages one after another
    job: int
    repeat: int
    pages: int = 0  # pages received
    failed: int = 0  # pages given up on
    requests: int = 0
    throttled: int = 0  # answers 429
    elapsed: float = 0.0  # first request to last page (to the cap, if it was stopped)
    capped: bool = False
    rate: float | None = None  # the adaptive limiter's, at the end
    estimate: float | None = None
    trace: list[tuple[float, float, int]] = field(default_factory=list)  # (s, rate, 429s)

    def share(self, limit: float) -> float:
        """Pages per second, as a share of the server's limit."""
        return self.pages / self.elapsed / limit if self.elapsed > 0 else 0.0

    def throttled_share(self) -> float:
        """The share of the requests answered 429."""
        return self.throttled / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class Probe:
    """What a server said to requests sent back to back, before any run."""

    accepted: int  # answered 200 before the first 429
    ok_headers: dict[str, str]
    refused_headers: dict[str, str]


# -- the clients ----------------------------------------------------------------------


def _auth(server: Server) -> OAuth2Token | None:
    """The simulator's token provider; the other servers ask for no credentials."""
    return simulator_auth(server.url, server.env) if server.env else None


def _limiter(server: Server, approach: str) -> Limiter:
    if approach == GIVEN:
        return make_limiter(f"{server.limit}/second", burst=1)
    return adaptive_limiter() if server.kind == "sliding" else AdaptiveLimiter()


class RateTrace:
    """Samples an adaptive limiter's rate, and the 429s so far, every `TRACE_EVERY` s."""

    def __init__(self, limiter: AdaptiveLimiter, client: Client) -> None:
        self._limiter = limiter
        self._client = client
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="rate-trace", daemon=True)
        self._began = 0.0
        self.samples: list[tuple[float, float, int]] = []

    def start(self, began: float) -> None:
        """Sample from *began* (a `time.perf_counter` reading) on."""
        self._began = began
        self._thread.start()

    def stop(self) -> None:
        """Take a last sample, and stop."""
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        tick = 0
        while True:
            now = time.perf_counter()
            self.samples.append(
                (now - self._began, self._limiter.rate, self._client.statistics().throttled)
            )
            if self._stop.is_set():
                return
            tick += 1
            self._stop.wait(max(self._began + tick * TRACE_EVERY - time.perf_counter(), 0.0))


def ratekit_run(server: Server, approach: str, job: int, workers: int, *, traced: bool) -> Run:
    """Fetch *job* pages through `ratekit.http.Client`, mapped on *workers* threads."""
    run = Run(server.kind, approach, workers, job, 0)
    limiter = _limiter(server, approach)
    auth = _auth(server)
    if auth is not None:
        auth.token()  # before the clock starts: the token request is not a page
    cap = CAP * job / server.limit
    received: list[float] = []
    pool = cancellable_pool(maxsize=workers)  # a connection per worker, kept alive
    with Client(limiter, auth=auth, retry=DEFAULT_RETRY, pool=pool) as client:

        def fetch(page: int) -> None:
            if not client.get_json(server.page_url(page)):
                raise ValueError(f"page {page} is empty")
            received.append(time.perf_counter())

        trace = RateTrace(limiter, client) if isinstance(limiter, AdaptiveLimiter) else None
        with Scheduler(max_workers=workers) as scheduler:
            # The limiter is fresh and nothing is cooling down: the first request leaves now.
            began = time.perf_counter()
            if trace is not None:
                trace.start(began)
            try:
                pages = scheduler.map(
                    fetch, range(job), ordered=False, return_exceptions=True, timeout=cap
                )
                for outcome in pages:
                    run.failed += isinstance(outcome, BaseException)
            except MapTimeout:
                run.capped = True
            finally:
                if trace is not None:
                    trace.stop()
        counts = client.statistics()
    run.pages, run.requests, run.throttled = len(received), counts.requests, counts.throttled
    run.elapsed = cap if run.capped else max(received, default=began) - began
    if isinstance(limiter, AdaptiveLimiter):
        # `estimate` is recent: a tree whose limiter lacks it is still measured.
        run.rate, run.estimate = limiter.rate, getattr(limiter, "estimate", None)
        if traced and trace is not None:
            run.trace = trace.samples
    return run


def tutorial_run(server: Server, job: int, seed: int) -> Run:
    """Fetch *job* pages one after another, as the tutorial does (``bench_cxone.py``)."""
    run = Run(server.kind, TUTORIAL, 1, job, 0)
    auth = _auth(server)
    token = auth.token() if auth is not None else "unused"  # only the simulator reads it
    pool = urllib3.PoolManager(maxsize=1)
    bucket = PollingBucket(100, server.limit)
    rng = random.Random(seed)
    counts = Counts()
    cap = CAP * job / server.limit
    received: list[float] = []
    began = time.perf_counter()
    for page in range(job):
        # Checked between pages: a page's retries may run past the cap by one backoff.
        if time.perf_counter() - began >= cap:
            run.capped = True
            break
        try:
            body = tutorial_fetch(pool, server.page_url(page), token, bucket, rng, counts)
        except RuntimeError:  # five attempts failed: the tutorial gives the page up
            run.failed += 1
            continue
        if not body:
            raise ValueError(f"page {page} is empty")
        received.append(time.perf_counter())
    pool.clear()
    run.pages, run.requests, run.throttled = len(received), counts.requests, counts.throttled
    run.elapsed = cap if run.capped else max(received, default=began) - began
    return run


def probe(server: Server) -> Probe:
    """Send requests back to back until the first 429; keep the rate-limit headers."""
    auth = _auth(server)
    headers = {"Accept": "application/json"}
    if auth is not None:
        headers["Authorization"] = f"Bearer {auth.token()}"
    pool = urllib3.PoolManager(maxsize=1)

    def shown(response: urllib3.BaseHTTPResponse) -> dict[str, str]:
        return {
            name: value
            for name, value in response.headers.items()
            if "ratelimit" in name.lower().replace("-", "") or name.lower() == "retry-after"
        }

    accepted = 0
    ok: dict[str, str] = {}
    refused: dict[str, str] = {}
    for page in range(3 * server.limit + BURST + 1):
        response = pool.request("GET", server.page_url(page), headers=headers, retries=False)
        if response.status != 200:
            refused = (
                shown(response) if response.status == 429 else {"status": str(response.status)}
            )
            break
        ok = ok or shown(response)
        accepted += 1
    pool.clear()
    return Probe(accepted, ok, refused)


# -- the run --------------------------------------------------------------------------


def configurations(jobs: Sequence[tuple[int, int]]) -> list[tuple[str, int, int]]:
    """(approach, pages, workers) of every run of one repeat, in table order."""
    configs = [(approach, job, workers) for approach in (ADAPTIVE, GIVEN) for job, workers in jobs]
    sizes = sorted({job for job, _ in jobs}, reverse=True)
    return configs + [(TUTORIAL, job, 1) for job in sizes]


def measure(server: Server, jobs: Sequence[tuple[int, int]], repeats: int) -> list[Run]:
    """Every configuration against *server*, *repeats* times, rotating the order."""
    configs = configurations(jobs)
    runs: list[Run] = []
    for repeat in range(repeats):
        shift = repeat % len(configs)
        for approach, job, workers in configs[shift:] + configs[:shift]:
            time.sleep(QUIET)  # every window of the server has passed: nothing is counted
            if approach == TUTORIAL:
                run = tutorial_run(server, job, seed=repeat)
            else:
                traced = repeat == 0 and approach == ADAPTIVE and (job, workers) == TRACED
                run = ratekit_run(server, approach, job, workers, traced=traced)
            run.repeat = repeat
            runs.append(run)
            how = "one at a time" if approach == TUTORIAL else f"{workers} workers"
            _log(
                f"  [{server.kind} {repeat + 1}/{repeats}] {approach}, {job} pages, "
                f"{how}: {run.pages} pages in {run.elapsed:.1f} s"
                f"{' (stopped at the cap)' if run.capped else ''}, {run.requests} requests, "
                f"{run.throttled} 429s, {run.share(server.limit):.0%} of the limit"
            )
    return runs


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else 0.0


def _number(value: float) -> str:
    return f"{value:.0f}" if value == int(value) else f"{value:.1f}"


def _headers_text(headers: dict[str, str]) -> str:
    return "; ".join(f"`{name}: {value}`" for name, value in headers.items()) or "none"


def render_servers(servers: list[tuple[Server, Probe]]) -> str:
    """The servers, and what each said to requests sent back to back."""
    lines = [
        (
            "| kind | limit | served by | 200s back to back | rate-limit headers of a 200 "
            "| of the first 429 |"
        ),
        "|---|--:|---|--:|---|---|",
    ]
    for server, seen in servers:
        lines.append(
            f"| {server.kind} | {server.limit}/s | {server.description} | {seen.accepted} "
            f"| {_headers_text(seen.ok_headers)} | {_headers_text(seen.refused_headers)} |"
        )
    return "\n".join(lines)


def render_runs(servers: list[tuple[Server, Probe]], runs: list[Run], repeats: int) -> str:
    """The medians of each configuration, as a Markdown table."""
    lines = [
        (
            "| kind | approach | workers | job | pages | requests | 429s | elapsed s "
            "| % of the limit | learnt rate |"
        ),
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for server, _ in servers:
        first = True
        for approach, job, workers in configurations(JOBS):
            group = [
                run
                for run in runs
                if (run.kind, run.approach, run.job, run.workers)
                == (server.kind, approach, job, workers)
            ]
            if not group:
                continue
            pages = _number(_median([run.pages for run in group]))
            capped = sum(run.capped for run in group)
            failed = sum(run.failed for run in group)
            notes = [f"cap {capped}/{len(group)}"] if capped else []
            notes += [f"{failed} given up"] if failed else []
            if notes:
                pages += f" ({', '.join(notes)})"
            throttled = _median([run.throttled for run in group])
            share = _median([run.throttled_share() for run in group])
            rates = [run.rate for run in group if run.rate is not None]
            learnt = f"{_median(rates):.1f}/s" if rates else "—"
            estimates = [run.estimate for run in group if run.estimate is not None]
            if estimates:
                learnt += f" (estimate {_median(estimates):.1f})"
            kind = f"{server.kind} ({server.limit}/s)" if first else ""
            first = False
            lines.append(
                f"| {kind} | {approach} | {workers} | {job} | {pages} "
                f"| {_number(_median([run.requests for run in group]))} "
                f"| {_number(throttled)} ({share:.1%}) "
                f"| {_median([run.elapsed for run in group]):.1f} "
                f"| {_median([run.share(server.limit) for run in group]):.0%} | {learnt} |"
            )
    if repeats > 1:
        lines.append("")
        lines.append(f"Each cell is the median of {repeats} runs, column by column.")
    return "\n".join(lines)


def render_traces(servers: list[tuple[Server, Probe]], runs: list[Run]) -> str:
    """One adaptive run per kind: its rate, every `TRACE_EVERY` s, a second per group."""
    job, workers = TRACED
    lines = [
        (
            f"Adaptive rate over time (requests per second), one run per kind ({job} pages, "
            f"{workers} workers, the first repeat), sampled every {TRACE_EVERY:g} s from the "
            "first request, four samples to a second between bars; `*` marks a sample with "
            "new 429s since the one before:"
        ),
        "",
    ]
    per_second = round(1 / TRACE_EVERY)
    for server, _ in servers:
        traced = [run for run in runs if run.kind == server.kind and run.trace]
        if not traced:
            continue
        cells: list[str] = []
        before = 0
        for _, rate, throttled in traced[0].trace:
            cells.append(f"{rate:.3g}" + ("*" if throttled > before else ""))
            before = throttled
        seconds = [" ".join(cells[i : i + per_second]) for i in range(0, len(cells), per_second)]
        lines.append(f"- **{server.kind}** ({server.limit}/s): {' | '.join(seconds)}")
    return "\n".join(lines)


def render_goals(servers: list[tuple[Server, Probe]], runs: list[Run]) -> str:
    """Whether the adaptive client met its goal against each kind of server."""
    lines = [
        (
            f"Goal: the adaptive client reaches at least {GOAL_LONG:.0%} of the limit with "
            f"at most {GOAL_THROTTLED:.0%} of its requests answered 429 on the 200-page "
            f"jobs, and at least {GOAL_SHORT:.0%} of the limit on the 40-page job (medians):"
        ),
        "",
    ]
    for server, _ in servers:
        parts: list[str] = []
        met = True
        for job, workers in JOBS:
            group = [
                run
                for run in runs
                if (run.kind, run.approach, run.job, run.workers)
                == (server.kind, ADAPTIVE, job, workers)
            ]
            if not group:
                continue
            share = _median([run.share(server.limit) for run in group])
            throttled = _median([run.throttled_share() for run in group])
            if job == 200:
                met = met and share >= GOAL_LONG and throttled <= GOAL_THROTTLED
                parts.append(f"{job} pages, {workers} workers: {share:.0%}, {throttled:.1%} 429s")
            else:
                met = met and share >= GOAL_SHORT
                parts.append(f"{job} pages, {workers} workers: {share:.0%}")
        lines.append(f"- {server.kind}: {'; '.join(parts)}: {'met' if met else 'missed'}")
    return "\n".join(lines)


def _environment(nginx: bool) -> dict[str, str]:
    packages = (Path(ratekit.__file__).parent, Path(ratekit_cxone.__file__).parent)
    sources = sorted(path for package in packages for path in package.rglob("*.py"))
    digest = hashlib.sha256(b"".join(path.read_bytes() for path in sources)).hexdigest()
    env = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": f"{platform.system()} {platform.machine()}",
        "cpus": str(os.cpu_count()),
        # Which ratekit tree was measured (a checkout may differ from any release).
        "ratekit-sources-sha256": digest[:12],
    }
    for dist in ("ratekit", "flask", "flask-limiter", "urllib3"):
        env[dist] = version(dist)
    executable = find_nginx() if nginx else None
    env["nginx"] = nginx_version(executable) if executable else "not used"
    return env


def _exit_on_signal(signum: int, frame: FrameType | None) -> NoReturn:
    """Turn SIGTERM and SIGHUP into an exit that runs every ``finally``: servers stop."""
    del frame
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    """Start each server, run every client against it, and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="1 repeat, and 4 workers only")
    parser.add_argument("--repeat", type=int, help="runs of each configuration (default 3)")
    parser.add_argument("--only", choices=KINDS, action="append", metavar="KIND", help="a kind")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write raw runs here")
    parser.add_argument("--no-nginx", action="store_true", help="the Python stand-in for nginx")
    for kind in KINDS:
        parser.add_argument(
            f"--{kind}-limit",
            type=int,
            default=LIMITS[kind],
            metavar="L",
            help=f"the {kind} server's requests per second (default {LIMITS[kind]})",
        )
    parser.add_argument("--burst", type=int, default=BURST, help="the burst kind's burst")
    args = parser.parse_args(argv)
    repeats = args.repeat or (1 if args.quick else 3)
    jobs = QUICK_JOBS if args.quick else JOBS
    kinds = [kind for kind in KINDS if not args.only or kind in args.only]
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _exit_on_signal)

    began = time.monotonic()
    env = _environment(not args.no_nginx)
    servers: list[tuple[Server, Probe]] = []
    runs: list[Run] = []
    try:
        for kind in kinds:
            limit = getattr(args, f"{kind.replace('-', '_')}_limit")
            pages = max(job for job, _ in jobs)
            with served(
                kind, limit, pages=pages, burst=args.burst, nginx=not args.no_nginx
            ) as server:
                _log(f"{kind}: {server.description}, at {server.url}")
                seen = probe(server)
                servers.append((server, seen))
                runs += measure(server, jobs, repeats)
    except KeyboardInterrupt:
        _log("interrupted: every server is stopped")
        return 130
    preamble = (
        f"> ratekit adaptive benchmark, {env['date']}: {env['python']} on {env['platform']}, "
        f"{env['cpus']} CPUs, ratekit {env['ratekit']} "
        f"(sources {env['ratekit-sources-sha256']}), urllib3 {env['urllib3']}, "
        f"Flask {env['flask']}, Flask-Limiter {env['flask-limiter']}, {env['nginx']}"
        f"{' --quick' if args.quick else ''}. Every server on loopback in a process of its "
        f"own; {repeats} interleaved run{'s' if repeats > 1 else ''} of each row; a run is "
        f"stopped at {CAP:g}x the time its job takes at the limit."
    )
    print(
        "\n\n".join(
            [
                preamble,
                render_servers(servers),
                render_runs(servers, runs, repeats),
                render_traces(servers, runs),
                render_goals(servers, runs),
            ]
        )
    )
    _log(f"done in {time.monotonic() - began:.0f} s")
    if args.json is not None:
        dump: dict[str, Any] = {
            "environment": env,
            "settings": {
                "repeats": repeats,
                "jobs": jobs,
                "cap": CAP,
                "quiet": QUIET,
                "trace_every": TRACE_EVERY,
            },
            "servers": [
                {
                    "kind": server.kind,
                    "limit": server.limit,
                    "description": server.description,
                    "probe": asdict(seen),
                }
                for server, seen in servers
            ],
            "runs": [asdict(run) for run in runs],
        }
        args.json.write_text(json.dumps(dump, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
