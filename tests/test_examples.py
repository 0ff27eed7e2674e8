"""Run every script in ``examples/`` as a user would, and check what it prints."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*.py") if not p.name.startswith("_"))

#: Lines that each example must print; an example not listed here must print something.
EXPECTED: dict[str, list[str]] = {
    "token_bucket_basics.py": [
        "call 3: denied, retry after 0.5 s",
        "one step before the instant: still denied",
        "at the instant: granted",
        "cost 4: cost=4.0 can never be granted",
    ],
    "blocking_workers.py": [
        "worker-3 call 2 granted",
        "12 calls in",
        "late worker",
    ],
    "async_acquire.py": [
        "page 7 fetched",
        "fetched pages [0, 1, 2, 3, 4, 5, 6, 7]",
        "timeout=0.01: refused at once",
        "cost 3 granted",
    ],
    "priority_lanes.py": [
        "bulk job: 30 calls done",
        "ratekit.limiter.grants: 33",
        "ratekit.scheduler.calls.completed: 30",
    ],
    "reservations.py": [
        "urgent: refused (it would wait 3.0 s)",
        "cleanup: cost 1, runs in 2.0 s",
        "t=2.0 s  cleanup runs",
        "sync: too late to cancel",
    ],
    "composed_limits.py": [
        "t=2.5 s  call 7 granted",
        "t=4.0 s  call 8 denied, retry after 86396.0 s",
        "the bucket still holds 3 tokens",
        "needs a wait of 86396 s, longer than timeout=60.0 s",
        "t=86400.0 s  call 8 granted",
        "all_of(SlidingWindow(limit=2.0, window=1.0), SlidingWindow(limit=5.0, window=60.0))",
        "t=2.0 s  call 5 refused at once, retry after 58.0 s",
    ],
    "per_key_limits.py": [
        "t=0.0 s  acme: denied, retry after 1.0 s",
        "t=0.0 s  globex: granted",
        "t=0.0 s  initech: new key refused, retry after 1.0 s",
        "t=1.0 s  initech: granted",
        "2 keys held, 1 forgotten; globex held: False",
        "acme: granted=4 denied=1",
        "t=1.0 s  globex: new key refused, retry after 1.0 s",
        "t=2.0 s  globex: denied, retry after 1.0 s",
    ],
    "fetch_pages.py": [
        "page  1: 10 items, ids 1 to 10",
        "page  2: 10 items, ids 11 to 20",
        "page  3: 10 items, ids 21 to 30",
        "page  4: 10 items, ids 31 to 40",
        "page  5: 10 items, ids 41 to 50",
        "page  6: 10 items, ids 51 to 60",
        "page  7: 10 items, ids 61 to 70",
        "page  8: 10 items, ids 71 to 80",
        "page  9: 10 items, ids 81 to 90",
        "page 10: 10 items, ids 91 to 100",
        "page 11: 10 items, ids 101 to 110",
        "page 12: 10 items, ids 111 to 120",
        "page 13: empty, the end",
        "12 pages, 120 items, in page order; at most 4 + 20/s requests started",
    ],
    "retry_with_backoff.py": [
        "t= 0.00 s  GET /orders/1",
        "t= 0.10 s  /orders/1: 200",
        "t= 0.10 s  GET /orders/2",
        "  attempt 1 failed (ConnectionError); retrying in 0.24 s (backoff)",
        "  attempt 2 failed (status 503); retrying in 0.73 s (backoff)",
        "t= 1.36 s  /orders/2: 200",
        "t= 1.36 s  GET /orders/3",
        "  attempt 1 failed (status 429); retrying in 5.00 s (Retry-After)",
        "t= 6.56 s  /orders/3: 200",
        "t= 6.56 s  GET /orders/4",
        "  attempt 1 failed (status 429); retrying in 10.00 s (Retry-After)",
        "t=16.76 s  /orders/4: gave up after 2 attempts (deadline), last: status 429",
        "t=16.76 s  GET /orders/5",
        "  attempt 1 failed (ConnectionError); retrying in 0.36 s (backoff)",
        "  attempt 2 failed (status 503); retrying in 0.27 s (backoff)",
        "t=17.69 s  /orders/5: gave up after 3 attempts (budget), last: status 503",
        "t=17.69 s  GET /orders/6",
        "t=17.79 s  /orders/6: gave up after 1 attempt (budget), last: ConnectionError",
        "t=17.79 s  GET /orders/7",
        "t=17.89 s  /orders/7: gave up after 1 attempt (budget), last: ConnectionError",
        "13 requests for 7 orders in 17.89 s, 16.59 s of it asleep; 0.3 retries left",
    ],
    "requests_integration.py": [
        "rate-limited session: 30 answered 200, 0 got 429",
        "GET /flaky: 200 after two 503s, retried",
        "POST /flaky: 503, sent once: a POST is not repeated",
    ],
    "httpx_integration.py": [
        "12 items fetched by 4 threads, each once: True",
        "POST /orders: 502, sent 1 time (it may have been carried out)",
        "statistics: 14 requests, 1 throttled, 1 retried, 1.0 s of cooldown",
        "/me: 200 ada, after token-1 was refused: token-2",
        "10 items fetched by 10 tasks, in order: True",
    ],
    "async_pages.py": [
        "httpx, fanned out: 95 contacts, ids 1 to 95",
        "aiohttp, one page after another: 95 contacts",
        "both walks gave every contact once, in order",
    ],
    "aiohttp_integration.py": [
        "page 12: 10 items",
        "keys rotated: token-1 refused with 401, token-2 fetched once, the request sent again",
        "turned away with 429 and Retry-After: 1",
        "every task waited out the second, then the refused page was sent again",
    ],
    "github_adapter.py": [
        "octo/hello: 25 issues, #1 to #25, each once",
        "octo/missing: HTTPStatusError, status 404",
        "first answer 403: waited for the reset, then got the same page",
        " requests, each with the token in its header, none in its URL",
    ],
}


def test_every_listed_example_exists():
    """Each example with expected output is a script in examples/ (none was renamed away)."""
    assert set(EXPECTED) <= {path.name for path in EXAMPLES}


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: path.name)
def test_example_has_a_docstring(example: Path):
    """Each example starts with a module docstring that says what it shows."""
    docstring = ast.get_docstring(ast.parse(example.read_text(encoding="utf-8")))
    assert docstring


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: path.name)
def test_example_runs(example: Path, tmp_path: Path):
    """Each example exits with 0, prints its expected lines and writes nothing to stderr."""
    result = subprocess.run(  # noqa: S603 - our own script, run with our own interpreter
        [sys.executable, str(example)],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # an example must not depend on the working directory
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.strip()
    for expected in EXPECTED.get(example.name, []):
        assert expected in result.stdout
