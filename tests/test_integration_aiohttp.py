"""ratekit.integrations.aiohttp: the middlewares on a real aiohttp ClientSession, on loopback."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

import aiohttp
import attrs
import pytest
from loopback import LoopbackServer, Reply, Request, free_port, script, serve

from ratekit import TokenBucket
from ratekit.http import (
    DEFAULT_RETRY,
    AdaptiveLimiter,
    Client,
    ClientStatistics,
    ConnectionFailed,
    InsecureTransport,
    OAuth2Token,
)
from ratekit.integrations.aiohttp import BearerMiddleware, RateLimitMiddleware
from ratekit.retry import ConstantBackoff, RetryError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

#: Quick retries, so that the tests do not sleep the default backoff.
QUICK = attrs.evolve(DEFAULT_RETRY, backoff=ConstantBackoff(0.01))


def run(main: Callable[[], Awaitable[Any]]) -> Any:
    """Run *main* on a new event loop, failing (rather than hanging) after 30 s."""

    async def bounded() -> Any:
        return await asyncio.wait_for(main(), 30)

    return asyncio.run(bounded())


def session(*middlewares: Any, **options: Any) -> aiohttp.ClientSession:
    """A session with *middlewares* (call it inside the event loop)."""
    return aiohttp.ClientSession(middlewares=middlewares, **options)


async def status_of(response_context: Any) -> int:
    """Send a request, read its body whole, and return its status."""
    async with response_context as response:
        await response.read()
        return int(response.status)


def handlers() -> set[threading.Thread]:
    """The loopback servers' handler threads alive now."""
    return {thread for thread in threading.enumerate() if "process_request" in thread.name}


def settle(before: set[threading.Thread]) -> None:
    """Wait (5 s at most) for the handler threads started since *before* to end.

    A handler writing a body that the client let go fails: let it end within the test,
    so that what it prints goes with the test's output.  Threads of earlier tests (idle
    keep-alive connections of their servers) are not waited for.
    """
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and handlers() - before:
        time.sleep(0.01)


@pytest.fixture
def other() -> Iterator[LoopbackServer]:
    """A second loopback server: another origin (same host, another port)."""
    yield from serve()


class Tokens:
    """A token provider with token, token_async and invalidate; numbered tokens."""

    def __init__(self, prefix: str = "tok") -> None:
        self.prefix = prefix
        self.issued = 0
        self.current = ""
        self.invalidated: list[str] = []
        self.calls: list[str] = []

    def _next(self) -> str:
        if not self.current:
            self.issued += 1
            self.current = f"{self.prefix}-{self.issued}"
        return self.current

    def token(self) -> str:
        self.calls.append("token")
        return self._next()

    async def token_async(self) -> str:
        self.calls.append("token_async")
        await asyncio.sleep(0)
        return self._next()

    def invalidate(self, token: str) -> None:
        self.invalidated.append(token)
        if token == self.current:
            self.current = ""


class SyncTokens:
    """A token provider with only the blocking side: token and invalidate."""

    def __init__(self) -> None:
        self.inner = Tokens()

    def token(self) -> str:
        return self.inner.token()

    def invalidate(self, token: str) -> None:
        self.inner.invalidate(token)


# -- the limit and the shared cooldown --------------------------------------------------


def test_the_limit_holds_across_tasks(server: LoopbackServer):
    """Twenty tasks, 40 requests, 20/s with no burst: arrivals spaced by the rate."""
    server.route("GET", "/items")(lambda _: Reply.json([1]))
    limiter = TokenBucket("20/s", capacity=1)

    async def main() -> list[list[int]]:
        async with session(RateLimitMiddleware(limiter)) as client:

            async def fetch() -> list[int]:
                return [await status_of(client.get(server.url + "/items")) for _ in range(2)]

            return list(await asyncio.gather(*(fetch() for _ in range(20))))

    assert run(main) == [[200, 200]] * 20
    arrivals = sorted(r.at for r in server.hits("/items"))
    assert len(arrivals) == 40
    # 40 grants at 20/s with no burst take at least 39 slots of 50 ms.
    assert arrivals[-1] - arrivals[0] >= 39 * 0.05 - 0.05
    # The server sees each request a scheduling delay after its grant (under load, up
    # to a fraction of a second), so grants of a 1-second span can arrive closer
    # together: no 0.75 s span holds more than a second's grants allow (20, plus the
    # one at its start) unless one delivery took over 0.25 s.
    assert max(sum(1 for b in arrivals if a <= b < a + 0.75) for a in arrivals) <= 21


def test_a_429_pauses_every_task_of_both_sessions_on_the_limiter(server: LoopbackServer):
    """After a 429 with Retry-After: 1, no task of either session sends for a second.

    What arrives at the server during that second was handed to aiohttp before the 429
    was seen; the refused request is retried after it and succeeds.
    """
    count = 0
    lock = threading.Lock()
    refused: list[float] = []

    def handler(request: Request) -> Reply:
        nonlocal count
        with lock:
            count += 1
            if count == 6:
                refused.append(request.at)
                return Reply(429, {"Retry-After": "1"})
        return Reply.json(count)

    server.route("GET", "/work")(handler)
    sent: list[tuple[float, str]] = []
    noted: list[float] = []

    async def recorder(request: Any, handler: Any) -> Any:
        """Inside the rate limit: note when a request is handed on, and a 429's return."""
        sent.append((time.monotonic(), request.headers["X-Seq"]))
        response = await handler(request)
        if response.status == 429:
            noted.append(time.monotonic())  # the limit notes it before the loop runs again
        return response

    limiter = TokenBucket("100/s", capacity=1)
    first = RateLimitMiddleware(limiter, retry=QUICK)
    second = RateLimitMiddleware(limiter, retry=QUICK)

    async def main() -> list[int]:
        async with session(first, recorder) as one, session(second, recorder) as two:
            sends = [
                status_of(
                    (one if n % 2 else two).get(server.url + "/work", headers={"X-Seq": str(n)})
                )
                for n in range(20)
            ]
            return list(await asyncio.gather(*sends))

    assert run(main) == [200] * 20  # the refused one was retried after the cooldown
    (at,) = refused
    (seen,) = noted
    hits = server.hits("/work")
    assert len(hits) == 21
    # The client's side: nothing is handed on from the 429 until the second is over.
    assert [when for when, _ in sent if seen < when < at + 1.0 - 0.02] == []
    # The server's side: what arrived during that second had been sent before.
    in_flight = {seq for when, seq in sent if when <= seen}
    during = [r for r in hits if at < r.at < at + 1.0 - 0.02]
    assert {r.headers["x-seq"] for r in during} <= in_flight
    assert max(r.at for r in hits) >= at + 1.0 - 0.02
    assert first.statistics().throttled + second.statistics().throttled == 1
    assert first.statistics().cooled == pytest.approx(1.0, abs=0.05)
    assert second.statistics().cooled == pytest.approx(1.0, abs=0.05)


def test_middlewares_and_a_client_on_one_limiter_share_the_cooldown(server: LoopbackServer):
    """A 429 seen through one session holds another session and a ratekit Client too."""
    server.route("GET", "/busy")(lambda _: Reply(429, {"Retry-After": "1"}))
    server.route("GET", "/ok")(lambda _: Reply.json("ok"))
    limiter = TokenBucket("100/s", capacity=5)

    def with_client() -> object:
        with Client(limiter, base_url=server.url, retry=None) as client:
            return client.get_json("/ok")

    async def main() -> float:
        async with (
            session(RateLimitMiddleware(limiter, retry=None)) as one,
            session(RateLimitMiddleware(limiter, retry=None)) as two,
        ):
            assert await status_of(one.get(server.url + "/busy")) == 429
            started = time.monotonic()
            assert await status_of(two.get(server.url + "/ok")) == 200
            assert await asyncio.to_thread(with_client) == "ok"
            return started

    started = run(main)
    assert time.monotonic() - started >= 1.0 - 0.05
    (busy,) = server.hits("/busy")
    assert all(ok.at - busy.at >= 1.0 - 0.05 for ok in server.hits("/ok"))
    assert len(server.hits("/ok")) == 2


# -- retries by method ------------------------------------------------------------------


def test_a_get_is_retried_until_it_succeeds_and_retried_answers_are_released(
    server: LoopbackServer,
):
    """A GET answered 503 twice is sent a third time on a one-connection pool.

    The 503s have bodies too large to be taken in whole unread: were a retried
    response kept, the next attempt would wait for the pool's only connection.
    """
    before = handlers()
    large = Reply(503, body=b"x" * (8 << 20))
    server.route("GET", "/flaky")(script(large, large, Reply.json("done")))
    middleware = RateLimitMiddleware(None, retry=QUICK)

    async def fetch(client: aiohttp.ClientSession) -> object:
        async with client.get(server.url + "/flaky") as response:
            assert response.status == 200
            return await response.json()  # the final response, untouched: unread

    async def main() -> object:
        connector = aiohttp.TCPConnector(limit=1)
        async with session(middleware, connector=connector) as client:
            return await asyncio.wait_for(fetch(client), 10)

    assert run(main) == "done"
    settle(before)
    assert len(server.hits("/flaky")) == 3
    assert middleware.statistics() == ClientStatistics(
        requests=3, throttled=0, retries=2, failures=0
    )


def test_a_post_is_not_repeated_after_a_502(server: LoopbackServer):
    """The server may have acted on it: the 502 is returned, sent once."""
    server.route("POST", "/orders")(script(Reply(502), Reply.json("created")))

    async def main() -> int:
        async with session(RateLimitMiddleware(None, retry=QUICK)) as client:
            return await status_of(client.post(server.url + "/orders", json={"n": 1}))

    assert run(main) == 502
    assert len(server.hits("/orders")) == 1


def test_a_post_is_retried_after_a_429_and_with_an_idempotency_key(server: LoopbackServer):
    """A 429 turned the POST away; an Idempotency-Key makes a 502 safe to repeat."""
    server.route("POST", "/orders")(script(Reply(429), Reply.json("created")))
    server.route("POST", "/keyed")(script(Reply(502), Reply.json("created")))

    async def main() -> tuple[int, int]:
        async with session(RateLimitMiddleware(None, retry=QUICK)) as client:
            plain = await status_of(client.post(server.url + "/orders", json={}))
            keyed = await status_of(
                client.post(server.url + "/keyed", json={}, headers={"Idempotency-Key": "k1"})
            )
            return plain, keyed

    assert run(main) == (200, 200)
    assert len(server.hits("/orders")) == 2
    assert len(server.hits("/keyed")) == 2
    assert [r.json() for r in server.hits("/orders")] == [{}, {}]  # the body, sent again


def test_a_streamed_body_is_not_sent_twice_but_bytes_are(server: LoopbackServer):
    """An async iterator is spent once sent: its 502, even its 429, is returned as is."""
    server.route("PUT", "/upload")(script(Reply(502), Reply.json("stored")))
    server.route("PUT", "/busy")(script(Reply(429), Reply.json("stored")))
    server.route("PUT", "/bytes")(script(Reply(503), Reply.json("stored")))

    async def chunks() -> AsyncIterator[bytes]:
        yield b"ab"
        yield b"cd"

    async def main() -> list[int]:
        async with session(RateLimitMiddleware(None, retry=QUICK)) as client:
            length = {"Content-Length": "4"}
            return [
                await status_of(client.put(server.url + "/upload", data=chunks(), headers=length)),
                await status_of(client.put(server.url + "/busy", data=chunks(), headers=length)),
                await status_of(client.put(server.url + "/bytes", data=b"abcd")),
            ]

    assert run(main) == [502, 429, 200]
    assert [r.body for r in server.hits("/upload")] == [b"abcd"]
    assert [r.body for r in server.hits("/busy")] == [b"abcd"]
    assert [r.body for r in server.hits("/bytes")] == [b"abcd", b"abcd"]


def test_a_refused_connection_is_retried_even_for_a_post_then_raised_as_aiohttp_does():
    """Nothing reached the server, so a POST is tried again; at the end, aiohttp's error."""
    url = f"http://127.0.0.1:{free_port()}"
    middleware = RateLimitMiddleware(None, retry=attrs.evolve(QUICK, attempts=3))

    async def main() -> None:
        async with session(middleware) as client:
            await status_of(client.post(url + "/orders", json={}))

    with pytest.raises(aiohttp.ClientConnectorError):
        run(main)
    assert middleware.statistics() == ClientStatistics(
        requests=3, throttled=0, retries=2, failures=3
    )


def test_a_policy_in_ratekits_terms_or_aiohttps_terms_classifies_the_same():
    """retry_on=ConnectionFailed and retry_on=aiohttp.ClientConnectorError both retry it."""
    url = f"http://127.0.0.1:{free_port()}"

    async def attempts(retry_on: type[BaseException]) -> int:
        middleware = RateLimitMiddleware(None, retry=attrs.evolve(QUICK, retry_on=retry_on))
        async with session(middleware) as client:
            with pytest.raises(aiohttp.ClientConnectorError):
                await status_of(client.get(url + "/x"))
        return middleware.statistics().requests

    async def main() -> list[int]:
        return [
            await attempts(retry_on)
            for retry_on in (ConnectionFailed, aiohttp.ClientConnectorError, KeyError)
        ]

    assert run(main) == [5, 5, 1]


def test_read_timeouts_are_retried_for_a_get_but_not_for_a_post(server: LoopbackServer):
    """sock_read passed: the GET is sent again; the POST may have been carried out."""
    server.route("GET", "/slow")(lambda _: Reply(200, body="late", delay=0.6))
    server.route("POST", "/slow")(lambda _: Reply(200, body="late", delay=0.6))
    middleware = RateLimitMiddleware(None, retry=attrs.evolve(QUICK, attempts=2))

    async def main() -> None:
        timeout = aiohttp.ClientTimeout(sock_read=0.2)
        async with session(middleware, timeout=timeout) as client:
            with pytest.raises(aiohttp.ServerTimeoutError):
                await status_of(client.get(server.url + "/slow"))
            with pytest.raises(aiohttp.ServerTimeoutError):
                await status_of(client.post(server.url + "/slow"))

    run(main)
    assert [r.method for r in server.hits("/slow")] == ["GET", "GET", "POST"]


def test_a_dropped_connection_is_retried_for_a_get_but_not_for_a_post(server: LoopbackServer):
    """A GET is retried by the policy, and once more by aiohttp itself; a POST goes once.

    aiohttp repeats an idempotent request whose connection was dropped once, through
    the middlewares, as a new request: paced and counted like any other.
    """
    server.route("GET", "/drop")(lambda _: Reply(drop=True))
    server.route("POST", "/drop")(lambda _: Reply(drop=True))
    middleware = RateLimitMiddleware(None, retry=attrs.evolve(QUICK, attempts=2))

    async def main() -> None:
        async with session(middleware) as client:
            with pytest.raises(aiohttp.ServerDisconnectedError):
                await status_of(client.get(server.url + "/drop"))
            with pytest.raises(aiohttp.ServerDisconnectedError):
                await status_of(client.post(server.url + "/drop", json={}))

    run(main)
    assert [r.method for r in server.hits("/drop")] == ["GET"] * 4 + ["POST"]
    assert middleware.statistics() == ClientStatistics(
        requests=5, throttled=0, retries=2, failures=5
    )


def test_a_refused_certificate_is_not_retried(tls_server):
    """A TLS certificate the client does not trust fails at once, in aiohttp's terms."""
    server, _authority = tls_server
    middleware = RateLimitMiddleware(None, retry=QUICK)

    async def main() -> None:
        async with session(middleware) as client:
            await status_of(client.get(server.url + "/x"))

    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        run(main)
    assert middleware.statistics().requests == 1


def test_when_attempts_run_out_the_last_response_is_returned(server: LoopbackServer):
    """In aiohttp's terms: the last answer, its body readable, to check as before."""
    server.route("GET", "/down")(lambda _: Reply(503, body="down"))
    middleware = RateLimitMiddleware(None, retry=attrs.evolve(QUICK, attempts=3))

    async def main() -> None:
        async with (
            session(middleware) as client,
            client.get(server.url + "/down") as response,
        ):
            assert response.status == 503
            assert await response.text() == "down"
            with pytest.raises(aiohttp.ClientResponseError):
                response.raise_for_status()

    run(main)
    assert len(server.hits("/down")) == 3


def test_without_a_policy_each_request_is_sent_once(server: LoopbackServer):
    """retry=None: one attempt."""
    server.route("GET", "/down")(lambda _: Reply(503))

    async def main() -> int:
        async with session(RateLimitMiddleware(None, retry=None)) as client:
            return await status_of(client.get(server.url + "/down"))

    assert run(main) == 503
    assert len(server.hits("/down")) == 1


def test_redirects_take_a_turn_at_the_limiter_each(server: LoopbackServer):
    """Each redirect hop passes through the middleware: each is paced."""
    server.route("GET", "/old")(lambda _: Reply(302, {"Location": "/new"}))
    server.route("GET", "/new")(lambda _: Reply.json("here"))
    limiter = TokenBucket("100/s", capacity=5)

    async def main() -> int:
        async with session(RateLimitMiddleware(limiter)) as client:
            return await status_of(client.get(server.url + "/old"))

    assert run(main) == 200
    assert limiter.statistics().granted == 2


# -- the adaptive limiter ---------------------------------------------------------------


def test_the_adaptive_limiter_learns_from_the_answers(server: LoopbackServer):
    """The headers reach the limiter: a quota of 10 per second bounds its rate."""
    server.route("GET", "/quota")(
        lambda _: Reply.json(
            [],
            **{"X-RateLimit-Limit": "10", "X-RateLimit-Remaining": "9", "X-RateLimit-Reset": "1"},
        )
    )
    limiter = AdaptiveLimiter()
    before = limiter.rate

    async def main() -> list[int]:
        async with session(RateLimitMiddleware(limiter)) as client:
            return [await status_of(client.get(server.url + "/quota")) for _ in range(3)]

    assert run(main) == [200] * 3
    assert limiter.rate != before
    assert limiter.rate <= 10.0


def test_a_429_without_retry_after_cuts_the_adaptive_rate_and_is_retried(server: LoopbackServer):
    """Two bare 429s: the limiter cuts its rate, and the request gets through at its pace."""
    server.route("GET", "/api")(script(Reply(429), Reply(429), Reply.json("ok")))
    limiter = AdaptiveLimiter(10.0)
    retry = attrs.evolve(QUICK, backoff=ConstantBackoff(30.0))  # a backoff would show

    async def main() -> int:
        async with session(RateLimitMiddleware(limiter, retry=retry)) as client:
            return await status_of(client.get(server.url + "/api"))

    started = time.monotonic()
    assert run(main) == 200
    assert time.monotonic() - started < 5.0
    assert len(server.hits("/api")) == 3
    assert limiter.rate < 10.0


# -- secrets ----------------------------------------------------------------------------


def test_secrets_stay_out_of_logs_errors_and_reprs(server: LoopbackServer, caplog):
    """Query values, headers and tokens never reach the logs, the errors or the reprs."""
    server.route("GET", "/secret")(lambda _: Reply(401, body="nope"))
    caplog.set_level(logging.DEBUG, logger="ratekit")
    middleware = RateLimitMiddleware(None, retry=attrs.evolve(QUICK, attempts=2))
    tokens = Tokens("SECRET-TOKEN")
    bearer = BearerMiddleware(tokens, origin=server.url)
    refused = f"http://127.0.0.1:{free_port()}"
    headers = {"Authorization": "Bearer SECRET-HEADER", "X-Api-Key": "SECRET-KEY"}

    async def main() -> BaseException:
        async with session(bearer, middleware) as client:
            assert await status_of(client.get(server.url + "/secret?api_key=SECRET-Q")) == 401
            server.route("GET", "/secret")(lambda _: Reply(503, body="nope"))
            assert await status_of(client.get(server.url + "/secret?api_key=SECRET-Q")) == 503
            with pytest.raises(aiohttp.ClientConnectorError) as raised:
                await status_of(client.get(refused + "/s?api_key=SECRET-Q", headers=headers))
            return raised.value

    error = run(main)
    assert len(server.hits("/secret")) == 4  # 401, re-sent; 503, retried
    assert caplog.records  # the attempts were logged
    assert "SECRET" not in caplog.text
    assert "SECRET" not in str(error)
    assert "SECRET" not in repr(error)
    assert "SECRET" not in repr(middleware)
    assert "SECRET" not in repr(bearer)


# -- cancellation, deadlines and aiohttp's own timeout ----------------------------------


def test_cancelling_the_task_ends_a_wait_in_a_long_cooldown_at_once(server: LoopbackServer):
    """Tasks asleep in a 30 s cooldown (and its retry) end as soon as they are cancelled."""
    server.route("GET", "/busy")(lambda _: Reply(429, {"Retry-After": "30"}))
    limiter = TokenBucket("100/s", capacity=5)

    async def main() -> tuple[float, list[object]]:
        retrying = asyncio.Event()  # set before the retry's sleep of 30 s
        retry = attrs.evolve(QUICK, on_retry=lambda _event: retrying.set())
        async with session(RateLimitMiddleware(limiter, retry=retry)) as client:
            first = asyncio.create_task(status_of(client.get(server.url + "/busy")))
            await retrying.wait()
            second = asyncio.create_task(status_of(client.get(server.url + "/busy")))
            await asyncio.sleep(0.2)  # waiting in the cooldown
            started = time.monotonic()
            first.cancel()
            second.cancel()
            ended = await asyncio.gather(first, second, return_exceptions=True)
            return time.monotonic() - started, list(ended)

    elapsed, ended = run(main)
    assert elapsed < 1.0
    assert all(isinstance(outcome, asyncio.CancelledError) for outcome in ended)
    assert len(server.hits("/busy")) == 1


def test_a_cooldown_past_the_deadline_gives_up_at_once(server: LoopbackServer):
    """A 30 s cooldown and a 5 s deadline: the next request gives up without waiting."""
    server.route("GET", "/busy")(lambda _: Reply(429, {"Retry-After": "30"}))
    limiter = TokenBucket("100/s", capacity=5)
    middleware = RateLimitMiddleware(limiter, retry=attrs.evolve(QUICK, deadline=5.0))

    async def main() -> None:
        async with session(middleware) as client:
            # In aiohttp's terms: the last answer.
            assert await status_of(client.get(server.url + "/busy")) == 429
            with pytest.raises(RetryError, match="deadline"):  # no attempt could be made
                await status_of(client.get(server.url + "/busy"))

    started = time.monotonic()
    run(main)
    assert time.monotonic() - started < 2.0
    assert len(server.hits("/busy")) == 1


def test_a_retry_held_past_the_deadline_gives_the_answer_before_it_untouched(
    server: LoopbackServer,
):
    """A 30 s cooldown announced while a retry slept: that retry's last answer, readable."""
    server.route("GET", "/flaky")(lambda _: Reply(503, body="busy"))
    server.route("GET", "/busy")(lambda _: Reply(429, {"Retry-After": "30"}))
    limiter = TokenBucket("100/s", capacity=5)

    async def main() -> tuple[int, str]:
        retrying = asyncio.Event()  # set before the retry's sleep of 0.5 s
        retry = attrs.evolve(
            QUICK,
            deadline=5.0,
            backoff=ConstantBackoff(0.5),
            on_retry=lambda _event: retrying.set(),
        )
        async with (
            session(RateLimitMiddleware(limiter, retry=retry)) as one,
            session(RateLimitMiddleware(limiter, retry=None)) as two,
        ):
            flaky = asyncio.create_task(one.get(server.url + "/flaky"))
            await retrying.wait()
            assert await status_of(two.get(server.url + "/busy")) == 429
            async with await flaky as response:
                return response.status, await response.text()

    started = time.monotonic()
    assert run(main) == (503, "busy")
    assert time.monotonic() - started < 3.0
    assert len(server.hits("/flaky")) == 1


def test_a_sessions_total_timeout_spans_the_middlewares_waits(server: LoopbackServer):
    """ClientTimeout(total=0.5) ends a request held by a 30 s Retry-After after 0.5 s."""
    server.route("GET", "/busy")(lambda _: Reply(429, {"Retry-After": "30"}))
    middleware = RateLimitMiddleware(TokenBucket("100/s", capacity=5), retry=QUICK)

    async def main() -> None:
        async with session(middleware, timeout=aiohttp.ClientTimeout(total=0.5)) as client:
            await status_of(client.get(server.url + "/busy"))

    started = time.monotonic()
    with pytest.raises(asyncio.TimeoutError):
        run(main)
    assert time.monotonic() - started < 3.0
    assert len(server.hits("/busy")) == 1


# -- the bearer token -------------------------------------------------------------------


def test_the_token_goes_to_its_origin_only_even_through_a_redirect(
    server: LoopbackServer, other: LoopbackServer
):
    """A redirect from the API's origin to another sends no token there; nor does a call."""
    server.route("GET", "/home")(lambda _: Reply.json("home"))
    server.route("GET", "/go")(lambda _: Reply(302, {"Location": other.url + "/there"}))
    other.route("GET", "/there")(lambda _: Reply.json("there"))
    other.route("GET", "/direct")(lambda _: Reply.json("direct"))
    tokens = Tokens()

    async def main() -> list[int]:
        async with session(BearerMiddleware(tokens, origin=server.url + "/v1/")) as client:
            return [
                await status_of(client.get(server.url + "/home")),
                await status_of(client.get(server.url + "/go")),
                await status_of(client.get(other.url + "/direct")),
            ]

    assert run(main) == [200, 200, 200]
    assert [r.headers.get("authorization") for r in server.requests] == ["Bearer tok-1"] * 2
    assert [r.headers.get("authorization") for r in other.requests] == [None, None]
    assert [r.path for r in other.requests] == ["/there", "/direct"]
    assert set(tokens.calls) == {"token_async"}  # the asyncio side, when it has one


def test_a_401_invalidates_the_token_and_sends_once_more_with_a_fresh_one(
    server: LoopbackServer,
):
    """401 then 200: two sends, the second with a new token; the 401's token forgotten."""
    server.route("GET", "/api")(script(Reply(401), Reply.json("ok")))
    server.route("GET", "/never")(lambda _: Reply(401, body="no"))
    tokens = Tokens()

    async def main() -> list[int]:
        async with session(BearerMiddleware(tokens, origin=server.url)) as client:
            return [
                await status_of(client.get(server.url + "/api")),
                await status_of(client.get(server.url + "/never")),
            ]

    assert run(main) == [200, 401]  # a second 401 is the answer
    sent = [r.headers["authorization"] for r in server.requests]
    assert sent == ["Bearer tok-1", "Bearer tok-2", "Bearer tok-2", "Bearer tok-3"]
    assert tokens.invalidated == ["tok-1", "tok-2"]


@pytest.mark.parametrize("bearer_first", [False, True], ids=["limit-first", "bearer-first"])
def test_the_resend_after_a_401_takes_a_turn_at_the_limiter_in_either_order(
    server: LoopbackServer, bearer_first: bool
):
    """401, then 429, then 200: three sends, each paced, each answer counted once."""
    server.route("GET", "/api")(
        script(Reply(401), Reply(429, {"Retry-After": "0"}), Reply.json("ok"))
    )
    limiter = TokenBucket("100/s", capacity=5)
    middleware = RateLimitMiddleware(limiter, retry=QUICK)
    tokens = Tokens()
    bearer = BearerMiddleware(tokens, origin=server.url)
    middlewares = (bearer, middleware) if bearer_first else (middleware, bearer)

    async def main() -> int:
        async with session(*middlewares) as client:
            return await status_of(client.get(server.url + "/api"))

    assert run(main) == 200
    assert limiter.statistics().granted == 3
    assert middleware.statistics() == ClientStatistics(
        requests=3, throttled=1, retries=1, failures=0
    )
    sent = [r.headers["authorization"] for r in server.requests]
    assert sent == ["Bearer tok-1", "Bearer tok-2", "Bearer tok-2"]


@pytest.mark.parametrize("bearer_first", [False, True], ids=["limit-first", "bearer-first"])
def test_a_resend_that_fails_is_counted_once_and_retried(
    server: LoopbackServer, bearer_first: bool
):
    """401, then a dropped connection, then 200: one failure counted, one retry."""
    server.route("GET", "/api")(script(Reply(401), Reply(drop=True), Reply.json("ok")))
    middleware = RateLimitMiddleware(None, retry=QUICK)
    bearer = BearerMiddleware(Tokens(), origin=server.url)
    middlewares = (bearer, middleware) if bearer_first else (middleware, bearer)

    async def main() -> int:
        async with session(*middlewares) as client:
            return await status_of(client.get(server.url + "/api"))

    assert run(main) == 200
    assert middleware.statistics() == ClientStatistics(
        requests=3, throttled=0, retries=1, failures=1
    )


@pytest.mark.parametrize(("bearer_first", "asked"), [(False, 3), (True, 1)])
def test_after_the_rate_limit_each_attempt_asks_for_the_token_when_its_turn_came(
    server: LoopbackServer, bearer_first: bool, asked: int
):
    """Placed after the rate limit, the token is asked for at each attempt, after the waits."""
    server.route("GET", "/api")(script(Reply(503), Reply(503), Reply.json("ok")))
    tokens = Tokens()
    bearer = BearerMiddleware(tokens, origin=server.url)
    middleware = RateLimitMiddleware(None, retry=QUICK)
    middlewares = (bearer, middleware) if bearer_first else (middleware, bearer)

    async def main() -> int:
        async with session(*middlewares) as client:
            return await status_of(client.get(server.url + "/api"))

    assert run(main) == 200
    assert len(tokens.calls) == asked


def test_a_spent_stream_is_not_resent_after_a_401(server: LoopbackServer):
    """The 401 is returned, and its token forgotten, when the body cannot be sent again."""
    server.route("PUT", "/upload")(script(Reply(401), Reply.json("stored")))
    tokens = Tokens()

    async def chunks() -> AsyncIterator[bytes]:
        yield b"abcd"

    async def main() -> int:
        async with session(BearerMiddleware(tokens, origin=server.url)) as client:
            return await status_of(
                client.put(server.url + "/upload", data=chunks(), headers={"Content-Length": "4"})
            )

    assert run(main) == 401
    assert len(server.hits("/upload")) == 1
    assert tokens.invalidated == ["tok-1"]


def test_a_provider_without_token_async_is_asked_with_token(server: LoopbackServer):
    """A blocking-only provider works too, and so does its 401 refresh."""
    server.route("GET", "/api")(script(Reply(401), Reply.json("ok")))
    provider = SyncTokens()

    async def main() -> int:
        async with session(BearerMiddleware(provider, origin=[server.url])) as client:
            return await status_of(client.get(server.url + "/api"))

    assert run(main) == 200
    assert [r.headers["authorization"] for r in server.requests] == [
        "Bearer tok-1",
        "Bearer tok-2",
    ]
    assert provider.inner.calls == ["token", "token"]


def test_a_token_that_cannot_be_had_is_not_a_request_sent(server: LoopbackServer):
    """The token endpoint down: the policy retries, and no request is counted as sent."""
    server.route("GET", "/api")(lambda _: Reply.json("ok"))

    class Unreachable(Tokens):
        async def token_async(self) -> str:
            raise ConnectionFailed("POST http://127.0.0.1:9/token: connection refused")

    middleware = RateLimitMiddleware(None, retry=attrs.evolve(QUICK, attempts=3))
    bearer = BearerMiddleware(Unreachable(), origin=server.url)

    async def main() -> None:
        async with session(middleware, bearer) as client:
            await status_of(client.get(server.url + "/api"))

    # aiohttp turns every OSError out of the middlewares into its own ClientOSError.
    with pytest.raises(aiohttp.ClientOSError) as raised:
        run(main)
    assert isinstance(raised.value.__cause__, ConnectionFailed)
    assert middleware.statistics() == ClientStatistics(
        requests=0, throttled=0, retries=2, failures=0
    )
    assert server.hits("/api") == []


def test_an_oauth2_token_is_fetched_once_and_sent(server: LoopbackServer):
    """An OAuth2Token: one token request, its token on every API request."""
    server.route("POST", "/token")(
        lambda _: Reply.json(
            {"access_token": "the-access", "token_type": "Bearer", "expires_in": 3600}
        )
    )
    server.route("GET", "/api")(lambda _: Reply.json("ok"))
    token = OAuth2Token(
        server.url + "/token",
        client_id="app",
        client_secret="s3cret-value",  # noqa: S106 - a made-up secret
    )

    async def main() -> list[int]:
        bearer = BearerMiddleware(token, origin=server.url)
        async with session(bearer, RateLimitMiddleware(None)) as client:
            sends = [status_of(client.get(server.url + "/api")) for _ in range(3)]
            return list(await asyncio.gather(*sends))

    assert run(main) == [200] * 3
    assert len(server.hits("/token")) == 1
    assert {r.headers["authorization"] for r in server.hits("/api")} == {"Bearer the-access"}


# -- arguments --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "name"),
    [
        ({"cost": 0}, ValueError, "cost"),
        ({"cost": "1"}, TypeError, "cost"),
        ({"cooldown": "yes"}, TypeError, "cooldown"),
        ({"retries": 3}, TypeError, "retries"),
    ],
)
def test_bad_arguments_of_the_rate_limit_middleware_are_refused_by_name(options, error, name):
    """Each bad argument is named in the error."""
    with pytest.raises(error, match=name):
        RateLimitMiddleware(None, **options)


@pytest.mark.parametrize(
    ("provider", "options", "error", "name"),
    [
        (object(), {"origin": "https://api.example.com"}, TypeError, "provider"),
        (Tokens(), {}, TypeError, "origin"),
        (Tokens(), {"origin": []}, ValueError, "origin"),
        (Tokens(), {"origin": [b"https://api.example.com"]}, TypeError, "origin"),
        (Tokens(), {"origin": "api.example.com"}, ValueError, "origin"),
        (Tokens(), {"origin": "ftp://api.example.com"}, ValueError, "origin"),
        (Tokens(), {"origin": "http://api.example.com"}, InsecureTransport, "origin"),
    ],
)
def test_bad_arguments_of_the_bearer_middleware_are_refused_by_name(provider, options, error, name):
    """Each bad argument is named in the error; plain http is refused but to loopback."""
    with pytest.raises(error, match=name):
        BearerMiddleware(provider, **options)


def test_with_no_limiter_nothing_is_paced(server: LoopbackServer):
    """limiter=None: retries and the cooldown only."""
    server.route("GET", "/x")(lambda _: Reply.json(1))

    async def main() -> list[int]:
        async with session(RateLimitMiddleware(None)) as client:
            return [await status_of(client.get(server.url + "/x")) for _ in range(20)]

    started = time.monotonic()
    assert run(main) == [200] * 20
    assert time.monotonic() - started < 5.0
    assert "RateLimitMiddleware(None" in repr(RateLimitMiddleware(None))
