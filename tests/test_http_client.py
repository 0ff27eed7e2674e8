"""ratekit.http.Client against a real HTTP server on loopback."""

from __future__ import annotations

import email.utils
import logging
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import attrs
import pytest
import urllib3
from loopback import LoopbackServer, Reply, Request, script

from ratekit import Scheduler, TokenBucket
from ratekit.http import (
    DEFAULT_RETRY,
    AuthError,
    Client,
    ClientStatistics,
    HTTPStatusError,
    InsecureTransport,
    ResponseError,
)
from ratekit.retry import ConstantBackoff, RetryError, RetryPolicy
from ratekit.testing import FakeClock


class Tokens:
    """A token provider that hands out numbered tokens and counts invalidations."""

    def __init__(self) -> None:
        self.issued = 0
        self.current = ""
        self.invalidated: list[str] = []
        self.lock = threading.Lock()

    def token(self) -> str:
        with self.lock:
            if not self.current:
                self.issued += 1
                self.current = f"tok-{self.issued}"
            return self.current

    def invalidate(self, token: str) -> None:
        with self.lock:
            self.invalidated.append(token)
            if token == self.current:
                self.current = ""


def fast_retry(clock: FakeClock) -> RetryPolicy:
    """The client's default policy with a constant 1 s backoff, on the fake clock."""
    return attrs.evolve(DEFAULT_RETRY, backoff=ConstantBackoff(1.0), clock=clock)


def test_get_json_paces_requests_and_builds_urls(server: LoopbackServer):
    """Each request acquires from the limiter; params and base_url make the URL."""
    server.route("GET", "/items")(lambda request: Reply.json({"page": request.query["page"][0]}))
    clock = FakeClock()
    bucket = TokenBucket(2.0, 1, clock=clock)
    with Client(bucket, base_url=server.url) as client:
        pages = [client.get_json("/items", params={"page": n})["page"] for n in range(3)]
    assert pages == ["0", "1", "2"]
    assert clock.sleeps == [0.5, 0.5]  # the limiter, not the server, set the pace
    assert repr(client) == f"Client(base_url={server.url!r}, limiter={bucket!r})"


@pytest.mark.parametrize("retry_after", ["2", "0.5", "http-date"])
def test_429_is_retried_after_its_retry_after(server: LoopbackServer, retry_after: str):
    """Integer, fractional and HTTP-date Retry-After values set the wait."""
    if retry_after == "http-date":
        when = datetime.now(timezone.utc) + timedelta(seconds=30)
        retry_after = email.utils.format_datetime(when, usegmt=True)
    server.route("GET", "/busy")(
        script(Reply(429, {"Retry-After": retry_after}), Reply.json({"ok": True}))
    )
    clock = FakeClock()
    client = Client(base_url=server.url, retry=fast_retry(clock), clock=clock)
    assert client.get_json("/busy") == {"ok": True}
    if retry_after in {"2", "0.5"}:
        assert clock.sleeps == [float(retry_after)]
    else:  # the date, seen from now (read twice: by the policy, then by the cooldown)
        assert 27 <= sum(clock.sleeps) <= 30


def test_503_dropped_connections_and_read_timeouts_are_retried(server: LoopbackServer):
    """Transient failures are retried by the policy, then the answer comes through."""
    server.route("GET", "/flaky")(
        script(Reply(503), Reply(drop=True), Reply(delay=0.5), Reply.json([1, 2]))
    )
    clock = FakeClock()
    client = Client(base_url=server.url, retry=fast_retry(clock), timeout=0.2, clock=clock)
    assert client.get_json("/flaky") == [1, 2]
    assert clock.sleeps == [1.0, 1.0, 1.0]
    assert len(server.hits("/flaky")) == 4
    assert client.statistics() == ClientStatistics(requests=4, throttled=0, retries=3, failures=2)


def test_statistics_count_429s_and_401_resends(server: LoopbackServer):
    """A 401 re-send is a request but not a retry; a 429 is throttled and retried."""
    server.route("GET", "/x")(
        script(Reply(401), Reply(429, {"Retry-After": "1"}), Reply.json({"ok": True}))
    )
    clock = FakeClock()
    client = Client(base_url=server.url, auth=Tokens(), retry=fast_retry(clock), clock=clock)
    assert client.statistics() == ClientStatistics()
    assert client.get_json("/x") == {"ok": True}
    assert client.statistics() == ClientStatistics(
        requests=3, throttled=1, retries=1, failures=0, cooled=1.0
    )


def test_cooled_counts_each_second_of_cooldown_once():
    """Overlapping cooldowns add only the time they extend; a past one counts in full."""
    clock = FakeClock()
    client = Client(clock=clock)
    client.cool_down(2.0)
    clock.advance(1.0)
    client.cool_down(2.0)  # until 3.0: one second more
    client.cool_down(0.5)  # inside: nothing more
    assert client.statistics().cooled == pytest.approx(3.0)
    clock.advance(5.0)
    client.cool_down(0.25)
    assert client.statistics().cooled == pytest.approx(3.25)


def test_a_401_refreshes_the_token_once(server: LoopbackServer):
    """401 once: a fresh token and success; 401 twice: AuthError naming the credential."""
    seen: list[str] = []

    def protected(request: Request) -> Reply:
        seen.append(request.headers["authorization"])
        return (
            Reply(401) if request.headers["authorization"] == "Bearer tok-1" else Reply.json("ok")
        )

    server.route("GET", "/me")(protected)
    tokens = Tokens()
    client = Client(base_url=server.url, auth=tokens)
    assert client.get_json("/me") == "ok"
    assert seen == ["Bearer tok-1", "Bearer tok-2"]
    server.route("GET", "/never")(lambda _: Reply(401))
    with pytest.raises(AuthError, match="access token was rejected") as info:
        client.get_json("/never")
    assert "tok-" not in str(info.value)
    assert tokens.invalidated == ["tok-1", "tok-2", "tok-3"]


def test_errors_name_the_status_and_url_without_secrets(server: LoopbackServer):
    """Non-2xx and non-JSON answers raise clear errors; query values are masked."""
    server.route("GET", "/missing")(lambda _: Reply(404, body="no such thing"))
    server.route("GET", "/html")(lambda _: Reply(200, body="<html>"))
    server.route("GET", "/empty")(lambda _: Reply(204))
    client = Client(base_url=server.url, retry=None)
    with pytest.raises(HTTPStatusError) as info:
        client.get_json("/missing", params={"api_key": "s3cret"})
    assert info.value.status == 404
    assert "no such thing" in str(info.value)
    assert "s3cret" not in str(info.value)
    assert "api_key=***" in str(info.value)
    with pytest.raises(ResponseError, match="not JSON"):
        client.get_json("/html")
    assert client.get_json("/empty") is None


def test_credentials_are_refused_over_plain_http_to_other_hosts():
    """A bearer token is never sent over http:// except to loopback."""
    with pytest.raises(InsecureTransport, match="use https://"):
        Client(base_url="http://api.example.com", auth=Tokens())
    client = Client(auth=Tokens(), retry=None)
    with pytest.raises(InsecureTransport):
        client.get("http://api.example.com/x?token=abc")


def test_logs_at_debug_hold_no_secret(server: LoopbackServer, caplog: pytest.LogCaptureFixture):
    """Requests are logged with masked URLs and never with tokens."""
    caplog.set_level(logging.DEBUG, logger="ratekit")
    server.route("GET", "/x")(lambda _: Reply.json(1))
    client = Client(base_url=server.url, auth=Tokens())
    client.get_json("/x", params={"key": "hunter2"})
    assert "GET" in caplog.text
    assert "hunter2" not in caplog.text
    assert "tok-1" not in caplog.text


def test_retry_gives_up_with_the_last_response(server: LoopbackServer):
    """When the policy gives up, RetryError carries the last response's status."""
    server.route("GET", "/down")(lambda _: Reply(503))
    clock = FakeClock()
    client = Client(base_url=server.url, retry=RetryPolicy(attempts=2, clock=clock), clock=clock)
    with pytest.raises(RetryError, match="status 503"):
        client.get("/down")


#: When the running thread's request last took its turn at the limiter.
_turn = threading.local()


class Observed:
    """A token bucket whose limiter reports when the client noted a 429 (``observe``).

    It also notes, for the thread, when its request took its turn (``acquire``).
    """

    def __init__(self, bucket: TokenBucket) -> None:
        self.bucket = bucket
        self.noted: list[float] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self.bucket, name)

    def acquire(self, cost: float = 1, **options: Any) -> None:
        self.bucket.acquire(cost, **options)
        _turn.at = time.monotonic()

    def observe(self, status: int, headers: object = None) -> None:
        if status == 429:
            self.noted.append(time.monotonic())


class SendLog(urllib3.PoolManager):
    """A real pool that records each request: when it is handed over, its number, its turn.

    Its turn: when it took its turn at the limiter (see `Observed`).
    """

    def __init__(self) -> None:
        super().__init__(maxsize=8)
        self.sent: list[tuple[float, str, float]] = []
        self.lock = threading.Lock()

    def urlopen(self, method: str, url: str, redirect: bool = True, **kw: Any) -> Any:  # noqa: FBT002 - urllib3's signature
        with self.lock:
            self.sent.append((time.monotonic(), kw["headers"]["X-Seq"], _turn.at))
        return super().urlopen(method, url, redirect=redirect, **kw)


def test_the_shared_cooldown_holds_every_worker(server: LoopbackServer):
    """After a 429 with Retry-After, no request from any of 8 workers reaches the server.

    Requests already on their way when the client noted the 429 (they had taken their
    turn at the limiter) may still be sent and arrive, on a busy machine some time after
    it; every other one waits out the announced second.
    """
    count = 0
    lock = threading.Lock()
    cooled: list[float] = []

    def handler(request: Request) -> Reply:
        nonlocal count
        with lock:
            count += 1
            if count == 10:
                cooled.append(request.at)
                return Reply(429, {"Retry-After": "1"})
        return Reply.json(count)

    server.route("GET", "/work")(handler)
    limiter = Observed(TokenBucket(200.0, 8))
    pool = SendLog()
    client = Client(limiter, base_url=server.url, pool=pool)  # type: ignore[arg-type]

    def work(n: int) -> object:
        return client.get_json("/work", headers={"X-Seq": str(n)})

    with Scheduler(8) as scheduler:  # the client paces its requests itself
        results = list(scheduler.map(work, range(40)))
    assert len(results) == 40
    (at,) = cooled
    (noted,) = limiter.noted
    assert at <= noted
    # The client's side: nothing that took its turn after the client noted the 429 is
    # sent before the announced second has passed (counted from the server's answer, a
    # little earlier).  The cooldown starts just after the note, in the same thread:
    # 50 ms covers that thread losing the processor in between.
    on_the_way = noted + 0.05
    assert [t for t, _, turn in pool.sent if turn > on_the_way and t < at + 1.0 - 0.01] == []
    # The server's side: what arrived during that second was on its way before.
    in_flight = {seq for _, seq, turn in pool.sent if turn <= on_the_way}
    during = [r for r in server.hits("/work") if at < r.at < at + 1.0 - 0.01]
    assert {r.headers["x-seq"] for r in during} <= in_flight
    assert len(in_flight) < 40  # and the cooldown held the others
    assert max(r.at for r in server.hits("/work")) >= at + 1.0 - 0.01  # then traffic resumed


class SlottedLimiter:
    """A limiter that cannot be weakly referenced: it gets a cooldown of its own."""

    __slots__ = ("calls",)

    def __init__(self) -> None:
        self.calls = 0

    def acquire(
        self, cost: float = 1, *, timeout: float | None = None, cancel: object = None
    ) -> None:
        self.calls += 1


def test_bodies_queries_manual_cooldowns_and_any_limiter(server: LoopbackServer):
    """JSON and form bodies, URLs with a query already, cool_down, and a foreign limiter."""
    server.route("POST", "/echo")(
        lambda request: Reply.json(
            {"type": request.headers.get("content-type", ""), "body": request.body.decode()}
        )
    )
    server.route("GET", "/q")(lambda request: Reply.json(sorted(request.query)))
    clock = FakeClock()
    limiter = SlottedLimiter()
    client = Client(limiter, base_url=server.url, clock=clock)  # type: ignore[arg-type]
    sent = client.json("POST", "/echo", json={"a": 1})
    assert sent == {"type": "application/json", "body": '{"a": 1}'}
    sent = client.json("POST", "/echo", fields={"b": "2"})
    assert sent == {"type": "application/x-www-form-urlencoded", "body": "b=2"}
    assert client.post("/echo", body=b"raw").status == 200
    assert client.get_json("/q?x=1", params={"y": 2}) == ["x", "y"]
    client.cool_down(5.0)
    client.get("/q")
    assert clock.sleeps == [5.0]
    assert limiter.calls == 5
