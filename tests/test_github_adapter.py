"""The GitHub-style adapter of examples/github_adapter.py against a real server on loopback."""

from __future__ import annotations

import importlib.util
import re
import sys
import threading
import time
from pathlib import Path

import pytest
from loopback import LoopbackServer, Reply, Request

from ratekit import MonotonicClock, TokenBucket
from ratekit.http import AdaptiveLimiter, AuthError, HTTPStatusError, ResponseError
from ratekit.testing import FakeClock

ROOT = Path(__file__).resolve().parent.parent


def _load_adapter():
    """Import the example as a module, as a user would copy it, without running its demo."""
    spec = importlib.util.spec_from_file_location(
        "github_adapter_example", ROOT / "examples" / "github_adapter.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


adapter = _load_adapter()
GitHub = adapter.GitHub

TOKEN = "ghp_S3cretT0kenValue"  # noqa: S105 - made up, to check it never shows
ISSUES = "/repos/octo/hello/issues"


def rate_headers(remaining: int, reset_in: float = 3600.0, limit: int = 5000) -> dict[str, str]:
    """GitHub's rate-limit headers: the reset is a Unix time, in whole seconds."""
    return {
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": str(remaining),
        "X-RateLimit-Used": str(limit - remaining),
        "X-RateLimit-Reset": str(int(time.time() + reset_in)),
    }


def issue_pages(server: LoopbackServer, total: int, **headers: str) -> None:
    """Serve *total* issues of octo/hello, paged by per_page/page with a ``Link`` header."""

    def handler(request: Request) -> Reply:
        page = int(request.query.get("page", ["1"])[0])
        size = int(request.query["per_page"][0])
        last = -(-total // size)
        first = (page - 1) * size + 1
        issues = [{"number": n, "title": f"Issue {n}"} for n in range(first, first + size)]
        url = f"{server.url}{ISSUES}?per_page={size}&page="
        # A prev link first, and first/last ones: only rel="next" may be followed.
        rels = {"prev": page - 1, "first": 1, "next": page + 1, "last": last}
        link = ", ".join(f'<{url}{n}>; rel="{r}"' for r, n in rels.items() if 1 <= n <= last)
        body = [issue for issue in issues if issue["number"] <= total]
        return Reply.json(body, **{"Link": link, **rate_headers(4999), **headers})

    server.route("GET", ISSUES)(handler)


def fake_github(server: LoopbackServer, clock: FakeClock, initial: float = 1.0):
    """An adapter whose waits, on the limiter and between retries, happen on *clock*."""
    return GitHub(server.url, TOKEN, limiter=AdaptiveLimiter(initial, clock=clock))


def test_every_issue_is_returned_once_across_link_pages(server: LoopbackServer):
    """All issues come back once, in order, by following rel="next" until the last page."""
    issue_pages(server, 35)
    with fake_github(server, FakeClock()) as github:
        numbers = [issue["number"] for issue in github.issues("octo", "hello", per_page=10)]
    assert numbers == list(range(1, 36))
    hits = server.hits(ISSUES)
    assert [hit.query.get("page") for hit in hits] == [None, ["2"], ["3"], ["4"]]
    assert all(hit.query["per_page"] == ["10"] for hit in hits)


def test_a_budget_left_is_room_not_a_pace(server: LoopbackServer):
    """Remaining 10 with the reset 20 s away is room to spend, not 2 s between requests.

    GitHub's budget is hourly: the limiter spends what is left as fast as its own pace
    allows, and only a spent budget holds requests (the next test).
    """
    issue_pages(server, 40, **rate_headers(10, reset_in=20.0))
    clock = FakeClock()
    with fake_github(server, clock, initial=100.0) as github:
        assert len(list(github.issues("octo", "hello", per_page=10))) == 40
    assert len(clock.sleeps) == 3
    assert all(sleep <= 0.01 for sleep in clock.sleeps), clock.sleeps


def test_a_spent_budget_holds_the_next_request_until_the_reset(server: LoopbackServer):
    """After remaining 0, the next page is not requested before X-RateLimit-Reset (real time)."""
    reset = int(time.time()) + 2  # between 1 and 2 s away
    arrivals: list[float] = []

    def handler(request: Request) -> Reply:
        arrivals.append(time.time())
        if "page" not in request.query:
            link = f'<{server.url}{ISSUES}?per_page=1&page=2>; rel="next"'
            headers = {**rate_headers(0), "X-RateLimit-Reset": str(reset), "Link": link}
            return Reply.json([{"number": 1, "title": "one"}], **headers)
        return Reply.json([{"number": 2, "title": "two"}], **rate_headers(59))

    server.route("GET", ISSUES)(handler)
    # A fast initial pace: without the hold, page 2 would follow within 10 ms.
    with GitHub(server.url, TOKEN, limiter=AdaptiveLimiter(100.0)) as github:
        assert [issue["number"] for issue in github.issues("octo", "hello", per_page=1)] == [1, 2]
    assert len(arrivals) == 2
    # Sleeps run on the monotonic clock and the reset is system-clock time; 10 ms covers
    # any drift between the two over two seconds.
    assert arrivals[1] >= reset - 0.01


@pytest.mark.parametrize("known_limit", [False, True], ids=["adaptive", "token-bucket"])
@pytest.mark.parametrize("status", [403, 429])
def test_a_spent_budget_answer_is_waited_out_and_retried(
    server: LoopbackServer, status: int, known_limit: bool
):
    """A 403 or 429 with remaining 0 waits for the reset, an hour away, then retries.

    With a limiter that reads no headers (a known limit), the retry policy alone waits.
    """
    spent = {"message": "API rate limit exceeded"}
    answers = [Reply.json(spent, status, **rate_headers(0))]
    answers.append(Reply.json([{"number": 7, "title": "seven"}], **rate_headers(4999)))
    server.route("GET", ISSUES)(lambda _: answers.pop(0))
    clock = FakeClock()
    if known_limit:
        limiter = TokenBucket("5000/hour", 100, clock=clock)
    else:
        limiter = AdaptiveLimiter(clock=clock)
    with GitHub(server.url, TOKEN, limiter=limiter) as github:
        assert [issue["number"] for issue in github.issues("octo", "hello")] == [7]
    assert len(server.hits(ISSUES)) == 2
    # Not a backoff of seconds, nor the 300 s default cap: the reset, 3599-3600 s away.
    assert 3598.0 <= clock.now() <= 3601.0, clock.sleeps


def test_a_secondary_limit_403_waits_its_retry_after(server: LoopbackServer):
    """A 403 with Retry-After (a secondary limit, budget left) waits that long and retries."""
    answers = [Reply.json({"message": "secondary rate limit"}, 403, **{"Retry-After": "60"})]
    answers.append(Reply.json([{"number": 1, "title": "one"}], **rate_headers(4999)))
    server.route("GET", ISSUES)(lambda _: answers.pop(0))
    clock = FakeClock()
    with fake_github(server, clock) as github:
        assert len(list(github.issues("octo", "hello"))) == 1
    assert 60.0 in clock.sleeps


def test_a_403_that_is_no_rate_limit_is_raised_at_once(server: LoopbackServer):
    """A 403 with budget left and no Retry-After is a permission error: one request, raised."""
    forbidden = Reply.json({"message": "Resource not accessible"}, 403, **rate_headers(4000))
    server.route("GET", ISSUES)(lambda _: forbidden)
    with fake_github(server, FakeClock()) as github, pytest.raises(HTTPStatusError) as caught:
        list(github.issues("octo", "hello"))
    assert caught.value.status == 403
    assert len(server.hits(ISSUES)) == 1


def test_a_missing_repository_raises_a_clear_404(server: LoopbackServer):
    """A 404 raises HTTPStatusError naming the method, the path and the status."""
    with fake_github(server, FakeClock()) as github, pytest.raises(HTTPStatusError) as caught:
        list(github.issues("octo", "missing", per_page=5))
    assert caught.value.status == 404
    assert f"GET {server.url}/repos/octo/missing/issues?per_page=*** answered 404" in str(
        caught.value
    )
    assert len(server.hits("/repos/octo/missing/issues")) == 1


def test_the_token_goes_in_the_header_and_nowhere_else(server: LoopbackServer):
    """Every request carries the token as a bearer header; no URL, repr or error shows it."""
    issue_pages(server, 3)
    with fake_github(server, FakeClock()) as github:
        assert len(list(github.issues("octo", "hello", per_page=1))) == 3
        with pytest.raises(HTTPStatusError) as missing:
            list(github.issues("octo", "missing"))
        shown = [repr(github), str(github), repr(adapter.StaticToken(TOKEN)), str(missing.value)]
    server.route("GET", ISSUES)(lambda _: Reply(401, body="Bad credentials"))
    with fake_github(server, FakeClock()) as github, pytest.raises(AuthError) as rejected:
        list(github.issues("octo", "hello"))
    shown.append(str(rejected.value))
    assert len(server.requests) == 6  # 3 pages, one 404, and a 401 sent twice
    for request in server.requests:
        assert request.headers["authorization"] == f"Bearer {TOKEN}"
        assert TOKEN not in request.path
        assert TOKEN not in str(request.query)
    assert not [text for text in shown if TOKEN in text]
    assert repr(adapter.StaticToken(TOKEN)) == "StaticToken(secret=***)"


def test_owner_and_repo_stay_one_path_segment_each(server: LoopbackServer):
    """Slashes and dots in names are escaped: they cannot reach another endpoint."""
    with fake_github(server, FakeClock()) as github, pytest.raises(HTTPStatusError):
        list(github.issues("../octo", "hello/issues"))
    assert [request.path for request in server.requests] == [
        "/repos/..%2Focto/hello%2Fissues/issues"
    ]


def test_a_record_that_is_no_issue_is_an_error(server: LoopbackServer):
    """A page whose records lack an issue number raises ResponseError, not a KeyError later."""
    server.route("GET", ISSUES)(lambda _: Reply.json([{"title": "no number"}], **rate_headers(9)))
    with fake_github(server, FakeClock()) as github, pytest.raises(ResponseError):
        list(github.issues("octo", "hello"))


def test_per_page_out_of_range_is_refused():
    """per_page outside 1..100 raises ValueError naming it, before any request."""
    with GitHub("https://api.github.com", TOKEN) as github:
        for bad in (0, 101):
            with pytest.raises(ValueError, match="per_page must be between 1 and 100"):
                next(github.issues("octo", "hello", per_page=bad))


class SignallingClock:
    """The real clock, which also tells when a sleep of half a second or more begins."""

    def __init__(self) -> None:
        self.real = MonotonicClock()
        self.long_sleep = threading.Event()

    def now(self) -> float:
        return self.real.now()

    def sleep(self, seconds: float, cancel: threading.Event | None = None) -> bool:
        if seconds >= 0.5:
            self.long_sleep.set()
        return self.real.sleep(seconds, cancel)

    async def sleep_async(self, seconds: float) -> None:
        await self.real.sleep_async(seconds)


def test_clients_sharing_a_limiter_wait_out_a_403_together(server: LoopbackServer):
    """A secondary-limit 403 seen by one client pauses another that shares its limiter."""
    arrivals: list[tuple[str, float]] = []
    limited = Reply.json({"message": "secondary rate limit"}, 403, **{"Retry-After": "1"})
    answers = {"one": [limited], "two": []}
    ok = Reply.json([{"number": 1, "title": "one"}], **rate_headers(4999))

    def handler(request: Request) -> Reply:
        repo = request.path.split("/")[3]
        arrivals.append((repo, request.at))
        return answers[repo].pop(0) if answers[repo] else ok

    for repo in ("one", "two"):
        server.route("GET", f"/repos/octo/{repo}/issues")(handler)
    clock = SignallingClock()
    limiter = AdaptiveLimiter(100.0, clock=clock)
    first = GitHub(server.url, TOKEN, limiter=limiter)
    second = GitHub(server.url, TOKEN, limiter=limiter)
    worker = threading.Thread(target=lambda: list(first.issues("octo", "one")))
    worker.start()
    # The retry's sleep begins after its hook shared the wait: only then may two start.
    assert clock.long_sleep.wait(10.0)
    assert len(list(second.issues("octo", "two"))) == 1
    worker.join(10.0)
    assert not worker.is_alive()
    first.close()
    second.close()
    (repo, limited_at), *later = arrivals
    assert repo == "one"
    assert sorted(repo for repo, _ in later) == ["one", "two"]
    # request.at is time.monotonic(), the clock the client waits on: no margin needed.
    assert all(at >= limited_at + 1.0 for _, at in later), arrivals


_EXCERPT = re.compile(
    r'^```(?:python|py) title="(?P<path>[^"]+)"\n(?P<code>.*?)^```$', re.MULTILINE | re.DOTALL
)


def test_the_excerpts_in_the_docs_are_verbatim():
    """Each code block of docs/adapters.md titled with a file name is a part of that file."""
    excerpts = _EXCERPT.findall((ROOT / "docs" / "adapters.md").read_text(encoding="utf-8"))
    assert len(excerpts) >= 4
    for path, code in excerpts:
        assert code in (ROOT / path).read_text(encoding="utf-8"), f"{path}:\n{code}"
