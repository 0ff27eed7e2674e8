"""ratekit.integrations.httpx: the transports and BearerAuth on real httpx clients, on loopback."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import attrs
import httpx
import pytest
from loopback import LoopbackServer, Reply, Request, free_port, script, serve

import ratekit
from ratekit import Scheduler, TokenBucket
from ratekit.http import (
    DEFAULT_RETRY,
    AdaptiveLimiter,
    Client,
    ClientStatistics,
    ConnectionFailed,
    InsecureTransport,
    OAuth2Token,
    TLSError,
)
from ratekit.integrations.httpx import (
    COST_EXTENSION,
    AsyncRateLimitedTransport,
    BearerAuth,
    RateLimitedTransport,
)
from ratekit.retry import ConstantBackoff, RetryError, RetryPolicy
from ratekit.testing import FakeClock

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

    import trustme

#: Quick retries, so that the tests do not sleep the default backoff.
QUICK = attrs.evolve(DEFAULT_RETRY, backoff=ConstantBackoff(0.01))

#: Each test that reads well for both transports runs for both.
FLAVORS = ["sync", "async"]

Transport = RateLimitedTransport | AsyncRateLimitedTransport

#: A request to send: its method, its URL and httpx's keyword arguments.
Call = tuple[str, str, dict[str, Any]]


def transport_for(flavor: str, limiter: object = None, **options: Any) -> Transport:
    """The transport of *flavor* ("sync" or "async") on *limiter*."""
    kind = RateLimitedTransport if flavor == "sync" else AsyncRateLimitedTransport
    return kind(limiter, **options)  # type: ignore[arg-type]


def call(method: str, url: str, **options: Any) -> Call:
    """A request for `send`."""
    return (method, url, options)


def send(transport: Transport, *calls: Call, **client_options: Any) -> list[Any]:
    """Send *calls* in turn through a client on *transport*: each response, or what it raised.

    An ``httpx.Client`` for a `RateLimitedTransport`, an ``httpx.AsyncClient`` in a new
    event loop for an `AsyncRateLimitedTransport`; responses are read whole.
    """
    if isinstance(transport, RateLimitedTransport):
        with httpx.Client(transport=transport, **client_options) as client:
            return [caught(client.request, *request) for request in calls]

    async def main() -> list[Any]:
        async with httpx.AsyncClient(transport=transport, **client_options) as client:
            return [await caught_async(client.request, *request) for request in calls]

    return asyncio.run(main())


def caught(send_one: Callable[..., Any], method: str, url: str, options: dict[str, Any]) -> Any:
    """``send_one(method, url, **options)``, or the exception it raised."""
    try:
        return send_one(method, url, **options)
    except Exception as error:  # noqa: BLE001 - the test looks at it
        return error


async def caught_async(
    send_one: Callable[..., Awaitable[Any]], method: str, url: str, options: dict[str, Any]
) -> Any:
    """`caught` for a coroutine function."""
    try:
        return await send_one(method, url, **options)
    except Exception as error:  # noqa: BLE001 - the test looks at it
        return error


def busiest_second(arrivals: list[float]) -> int:
    """The most arrivals within 0.75 s, starting at any arrival.

    The server sees each request a scheduling delay after its grant (under load, up to
    a fraction of a second), so grants of a 1-second span can arrive closer together:
    no 0.75 s span holds more than a second's grants unless one delivery took 0.25 s.
    """
    return max(sum(1 for b in arrivals if a <= b < a + 0.75) for a in arrivals)


class Recording(httpx.HTTPTransport):
    """httpx's own transport, which also keeps what it was handed and what it answered."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[float, str | None]] = []  # (when, X-Seq)
        self.responses: list[tuple[float, httpx.Response]] = []  # (when, response)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append((time.monotonic(), request.headers.get("X-Seq")))
        response = super().handle_request(request)
        self.responses.append((time.monotonic(), response))
        return response


class AsyncRecording(httpx.AsyncHTTPTransport):
    """`Recording` for asyncio."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[float, str | None]] = []
        self.responses: list[tuple[float, httpx.Response]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append((time.monotonic(), request.headers.get("X-Seq")))
        response = await super().handle_async_request(request)
        self.responses.append((time.monotonic(), response))
        return response


class PlainTokens:
    """A token provider that hands out numbered tokens and notes what it invalidated."""

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


class Tokens(PlainTokens):
    """`PlainTokens` with ``token_async``, which counts its calls."""

    def __init__(self) -> None:
        super().__init__()
        self.awaited = 0

    async def token_async(self) -> str:
        self.awaited += 1
        await asyncio.sleep(0)
        return self.token()


@pytest.fixture
def other_server() -> Iterator[LoopbackServer]:
    """A second loopback server: another origin."""
    yield from serve()


# -- the limit and the shared cooldown --------------------------------------------------


def test_the_limit_holds_across_threads(server: LoopbackServer):
    """Four threads, one httpx.Client, 30 requests at 20/s with no burst: spaced by the rate."""
    server.route("GET", "/items")(lambda _: Reply.json([1]))
    limiter = TokenBucket("20/s", capacity=1)
    with (
        httpx.Client(transport=RateLimitedTransport(limiter)) as client,
        ThreadPoolExecutor(4) as pool,
    ):
        statuses = list(
            pool.map(lambda _: client.get(server.url + "/items").status_code, range(30))
        )
    assert statuses == [200] * 30
    arrivals = sorted(r.at for r in server.hits("/items"))
    # 30 grants at 20/s with no burst take at least 29 slots of 50 ms.
    assert arrivals[-1] - arrivals[0] >= 29 * 0.05 - 0.05
    # No 1-second span holds more than the limit allows (20, plus the one at its start).
    assert busiest_second(arrivals) <= 21


def test_the_limit_holds_across_tasks(server: LoopbackServer):
    """Twenty tasks, one httpx.AsyncClient, 40 requests at 20/s with no burst."""
    server.route("GET", "/items")(lambda _: Reply.json([1]))
    limiter = TokenBucket("20/s", capacity=1)

    async def main() -> list[int]:
        async with httpx.AsyncClient(transport=AsyncRateLimitedTransport(limiter)) as client:

            async def task() -> list[int]:
                return [(await client.get(server.url + "/items")).status_code for _ in range(2)]

            done = await asyncio.gather(*(task() for _ in range(20)))
        return [status for statuses in done for status in statuses]

    assert asyncio.run(main()) == [200] * 40
    arrivals = sorted(r.at for r in server.hits("/items"))
    assert arrivals[-1] - arrivals[0] >= 39 * 0.05 - 0.05
    assert busiest_second(arrivals) <= 21


def refuse_the_sixth(server: LoopbackServer, path: str) -> list[float]:
    """Route *path*: the sixth request is answered 429 with Retry-After: 1; its arrival noted."""
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

    server.route("GET", path)(handler)
    return refused


def test_a_429_pauses_every_thread_that_shares_the_limiter(server: LoopbackServer):
    """After a 429 with Retry-After: 1, no request from any thread arrives for a second."""
    refused = refuse_the_sixth(server, "/work")
    transport = RateLimitedTransport(TokenBucket("100/s", capacity=1), retry=QUICK)
    with httpx.Client(transport=transport) as client, ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(lambda _: client.get(server.url + "/work").status_code, range(20)))
    assert statuses == [200] * 20  # the refused one was retried after the cooldown
    (at,) = refused
    hits = server.hits("/work")
    assert len(hits) == 21
    # Requests in flight when the 429 came (4 threads: at most 3 others) may still arrive.
    assert len([r for r in hits if at < r.at < at + 1.0 - 0.02]) <= 3
    assert max(r.at for r in hits) >= at + 1.0 - 0.02  # then traffic resumed
    assert transport.statistics().throttled == 1


def test_a_429_pauses_every_task_that_shares_the_limiter(server: LoopbackServer):
    """After a 429 with Retry-After: 1, none of 20 tasks sends anything for a second.

    What arrives at the server during that second was handed to httpx before the 429
    was seen; the refused request is retried after it and succeeds.
    """
    refused = refuse_the_sixth(server, "/work")
    inner = AsyncRecording()
    transport = AsyncRateLimitedTransport(
        TokenBucket("100/s", capacity=1), transport=inner, retry=QUICK
    )

    async def main() -> list[int]:
        async with httpx.AsyncClient(transport=transport) as client:

            async def task(n: int) -> int:
                headers = {"X-Seq": str(n)}
                return (await client.get(server.url + "/work", headers=headers)).status_code

            return list(await asyncio.gather(*(task(n) for n in range(20))))

    assert asyncio.run(main()) == [200] * 20
    (at,) = refused
    (noted,) = [when for when, response in inner.responses if response.status_code == 429]
    # The client's side: nothing handed to httpx from the 429 until the second is over.
    assert [when for when, _ in inner.sent if noted < when < at + 1.0 - 0.01] == []
    # The server's side: what arrived during that second had been sent before.
    in_flight = {seq for when, seq in inner.sent if when <= noted}
    during = [r for r in server.hits("/work") if at < r.at < at + 1.0 - 0.01]
    assert {r.headers["x-seq"] for r in during} <= in_flight
    assert max(r.at for r in server.hits("/work")) >= at + 1.0 - 0.01
    assert len(server.hits("/work")) == 21


def test_transports_and_a_client_on_one_limiter_share_the_cooldown(server: LoopbackServer):
    """A 429 seen through a sync transport holds an async transport and a ratekit Client."""
    server.route("GET", "/busy")(lambda _: Reply(429, {"Retry-After": "1"}))
    server.route("GET", "/ok")(lambda _: Reply.json("ok"))
    limiter = TokenBucket("100/s", capacity=5)
    first = RateLimitedTransport(limiter, retry=None)
    second = AsyncRateLimitedTransport(limiter, retry=None)
    client = Client(limiter, base_url=server.url, retry=None)
    (busy,) = send(first, call("GET", server.url + "/busy"))
    assert busy.status_code == 429
    started = time.monotonic()
    (ok,) = send(second, call("GET", server.url + "/ok"))
    assert ok.status_code == 200
    assert client.get_json("/ok") == "ok"
    assert time.monotonic() - started >= 1.0 - 0.05
    (refused,) = server.hits("/busy")
    assert min(r.at for r in server.hits("/ok")) - refused.at >= 1.0 - 0.05
    assert first.statistics().cooled == pytest.approx(1.0, abs=0.05)


# -- retries -------------------------------------------------------------------------


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_get_is_retried_until_it_succeeds(flavor: str, server: LoopbackServer):
    """A GET answered 503 twice is sent a third time, and its answer returned."""
    server.route("GET", "/flaky")(script(Reply(503), Reply(503), Reply.json("done")))
    transport = transport_for(flavor, retry=QUICK)
    (response,) = send(transport, call("GET", server.url + "/flaky"))
    assert response.json() == "done"
    assert len(server.hits("/flaky")) == 3
    assert transport.statistics() == ClientStatistics(
        requests=3, throttled=0, retries=2, failures=0
    )


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_post_is_not_repeated_after_a_502(flavor: str, server: LoopbackServer):
    """The server may have acted on it: the 502 is returned, sent once."""
    server.route("POST", "/orders")(script(Reply(502), Reply.json("created")))
    transport = transport_for(flavor, retry=QUICK)
    (response,) = send(transport, call("POST", server.url + "/orders", json={"n": 1}))
    assert response.status_code == 502
    assert len(server.hits("/orders")) == 1


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_post_is_retried_after_a_429_and_with_an_idempotency_key(
    flavor: str, server: LoopbackServer
):
    """A 429 turned the POST away; an Idempotency-Key makes a 502 safe to repeat."""
    server.route("POST", "/orders")(script(Reply(429), Reply.json("created")))
    server.route("POST", "/keyed")(script(Reply(502), Reply.json("created")))
    refused, keyed = send(
        transport_for(flavor, retry=QUICK),
        call("POST", server.url + "/orders", json={"n": 1}),
        call("POST", server.url + "/keyed", json={}, headers={"Idempotency-Key": "k1"}),
    )
    assert refused.json() == keyed.json() == "created"
    assert [r.json() for r in server.hits("/orders")] == [{"n": 1}, {"n": 1}]  # the same body
    assert len(server.hits("/keyed")) == 2


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_refused_connection_is_retried_even_for_a_post_then_raised_as_httpx_does(flavor: str):
    """Nothing reached the server, so a POST is tried again; at the end, httpx's own error."""
    url = f"http://127.0.0.1:{free_port()}"
    transport = transport_for(flavor, retry=attrs.evolve(QUICK, attempts=3))
    (error,) = send(transport, call("POST", url + "/orders", json={}))
    assert isinstance(error, httpx.ConnectError)
    assert transport.statistics() == ClientStatistics(
        requests=3, throttled=0, retries=2, failures=3
    )


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_read_timeout_is_retried_for_a_get_but_not_for_a_post(
    flavor: str, server: LoopbackServer
):
    """The server may have acted on a POST that timed out: httpx.ReadTimeout, sent once."""
    server.route("GET", "/slow")(script(Reply(delay=0.5), Reply.json("late")))
    server.route("POST", "/slow")(script(Reply(delay=0.5), Reply.json("late")))
    transport = transport_for(flavor, retry=QUICK)
    got, posted = send(
        transport,
        call("GET", server.url + "/slow", timeout=0.2),
        call("POST", server.url + "/slow", json={}, timeout=0.2),
    )
    assert got.json() == "late"
    assert isinstance(posted, httpx.ReadTimeout)
    assert [r.method for r in server.hits("/slow")] == ["GET", "GET", "POST"]


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_refused_certificate_is_a_tls_error_not_retried_by_default(
    flavor: str, tls_server: tuple[LoopbackServer, trustme.CA]
):
    """A ConnectError from certificate verification counts as TLSError: not retried.

    A policy that names TLSError retries it, which shows how it was classified.
    """
    server, _ = tls_server
    by_default = transport_for(flavor, retry=QUICK)
    (error,) = send(by_default, call("GET", server.url + "/x"))
    assert isinstance(error, httpx.ConnectError)
    assert by_default.statistics().requests == 1
    naming_it = transport_for(flavor, retry=attrs.evolve(QUICK, attempts=2, retry_on=TLSError))
    (error,) = send(naming_it, call("GET", server.url + "/x"))
    assert isinstance(error, httpx.ConnectError)
    assert naming_it.statistics().requests == 2
    assert server.requests == []  # no handshake ever completed


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_policy_in_ratekits_terms_or_httpxs_terms_classifies_the_same(flavor: str):
    """retry_on=ConnectionFailed and retry_on=httpx.ConnectError both retry a refusal."""
    url = f"http://127.0.0.1:{free_port()}/x"
    for retry_on in (ConnectionFailed, httpx.ConnectError):
        transport = transport_for(flavor, retry=attrs.evolve(QUICK, attempts=2, retry_on=retry_on))
        (error,) = send(transport, call("GET", url))
        assert isinstance(error, httpx.ConnectError)
        assert transport.statistics().requests == 2
    never = transport_for(flavor, retry=attrs.evolve(QUICK, retry_on=KeyError))
    (error,) = send(never, call("GET", url))
    assert isinstance(error, httpx.ConnectError)
    assert never.statistics().requests == 1


@pytest.mark.parametrize("flavor", FLAVORS)
def test_when_attempts_run_out_the_last_response_is_returned(flavor: str, server: LoopbackServer):
    """In httpx's terms: the last answer, whole, to check as before."""
    server.route("GET", "/down")(lambda _: Reply(503, body="down"))
    transport = transport_for(flavor, retry=attrs.evolve(QUICK, attempts=3))
    (response,) = send(transport, call("GET", server.url + "/down"))
    assert response.status_code == 503
    assert response.text == "down"
    assert len(server.hits("/down")) == 3
    with pytest.raises(httpx.HTTPStatusError):
        response.raise_for_status()


@pytest.mark.parametrize("flavor", FLAVORS)
def test_without_a_policy_each_request_is_sent_once(flavor: str, server: LoopbackServer):
    """retry=None: one attempt, whatever the answer or the error."""
    server.route("GET", "/down")(lambda _: Reply(503))
    refused = f"http://127.0.0.1:{free_port()}/x"
    transport = transport_for(flavor, retry=None)
    response, error = send(transport, call("GET", server.url + "/down"), call("GET", refused))
    assert response.status_code == 503
    assert isinstance(error, httpx.ConnectError)
    assert len(server.hits("/down")) == 1
    assert transport.statistics().requests == 2


#: The headers of a request whose body is `chunks`.
STREAMED = {"Content-Length": "2"}


def chunks(flavor: str) -> object:
    """A streamed body of two chunks: a generator, or an async one.

    Sent with `STREAMED`'s Content-Length: the loopback server reads no chunked bodies.
    """
    if flavor == "sync":
        return iter([b"a", b"b"])

    async def produce() -> AsyncIterator[bytes]:
        for chunk in (b"a", b"b"):
            yield chunk

    return produce()


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_streamed_body_is_sent_once_and_retried_only_if_none_of_it_went(
    flavor: str, server: LoopbackServer
):
    """A PUT with a generator body is not repeated after a 503; a refused connection is."""
    server.route("PUT", "/upload")(script(Reply(503), Reply.json("stored")))
    transport = transport_for(flavor, retry=QUICK)
    (response,) = send(
        transport, call("PUT", server.url + "/upload", content=chunks(flavor), headers=STREAMED)
    )
    assert response.status_code == 503
    assert [r.body for r in server.hits("/upload")] == [b"ab"]
    refused = f"http://127.0.0.1:{free_port()}/upload"
    transport = transport_for(flavor, retry=attrs.evolve(QUICK, attempts=3))
    (error,) = send(transport, call("PUT", refused, content=chunks(flavor), headers=STREAMED))
    assert isinstance(error, httpx.ConnectError)
    assert transport.statistics().requests == 3  # nothing of the body was sent


@pytest.mark.parametrize("flavor", FLAVORS)
def test_retried_responses_are_closed_and_the_last_one_streams(flavor: str, server: LoopbackServer):
    """Each retried response is read and closed before the next attempt; the last streams."""
    server.route("GET", "/flaky")(script(Reply(503), Reply(502), Reply.json(list(range(100)))))
    if flavor == "sync":
        recording = Recording()
        transport = RateLimitedTransport(None, transport=recording, retry=QUICK)
        with (
            httpx.Client(transport=transport) as client,
            client.stream("GET", server.url + "/flaky") as response,
        ):
            open_while_streaming = not response.is_closed
            body = response.read()
        responses = recording.responses
    else:
        async_recording = AsyncRecording()
        async_transport = AsyncRateLimitedTransport(None, transport=async_recording, retry=QUICK)

        async def main() -> tuple[bool, bytes]:
            async with (
                httpx.AsyncClient(transport=async_transport) as client,
                client.stream("GET", server.url + "/flaky") as response,
            ):
                return not response.is_closed, await response.aread()

        open_while_streaming, body = asyncio.run(main())
        responses = async_recording.responses
    assert open_while_streaming
    assert body.startswith(b"[0, 1, 2")
    retried, final = [r for _, r in responses[:-1]], responses[-1][1]
    assert [r.status_code for r in retried] == [503, 502]
    assert all(r.is_closed for r in retried)
    assert final.status_code == 200


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_cooldown_past_the_deadline_gives_up_at_once(flavor: str, server: LoopbackServer):
    """A 30 s cooldown and a 5 s deadline: the 429 is returned, then the next gives up."""
    server.route("GET", "/busy")(lambda _: Reply(429, {"Retry-After": "30"}))
    clock = FakeClock()
    limiter = TokenBucket(100, 5, clock=clock)
    transport = transport_for(flavor, limiter, retry=attrs.evolve(QUICK, deadline=5.0))
    response, error = send(
        transport, call("GET", server.url + "/busy"), call("GET", server.url + "/busy")
    )
    assert response.status_code == 429  # in httpx's terms: the last answer
    assert isinstance(error, RetryError)  # no attempt could be made
    assert error.reason == "deadline"
    assert error.attempts == 0
    assert clock.sleeps == []
    assert len(server.hits("/busy")) == 1


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_cooldown_that_holds_a_retry_past_the_deadline_returns_the_last_answer(
    flavor: str, server: LoopbackServer
):
    """A 503 waits for its retry, another user of the limiter announces 300 s: the 503.

    The retry cannot be sent before the deadline; the caller gets the answer it would
    have got without retries, read whole.
    """
    server.route("GET", "/flaky")(lambda _: Reply(503, body="later"))
    clock = FakeClock()
    limiter = TokenBucket(100, 5, clock=clock)
    other = Client(limiter, retry=None)
    policy = attrs.evolve(QUICK, deadline=60.0, on_retry=lambda _: other.cool_down(300))
    transport = transport_for(flavor, limiter, retry=policy)
    (response,) = send(transport, call("GET", server.url + "/flaky"))
    assert response.status_code == 503
    assert response.text == "later"
    assert len(server.hits("/flaky")) == 1
    assert clock.now() < 1.0  # nothing waited out the cooldown


# -- what each request takes from the limiter -------------------------------------------


@pytest.mark.parametrize("flavor", FLAVORS)
def test_redirect_hops_take_a_turn_each_and_extensions_set_the_cost(
    flavor: str, server: LoopbackServer
):
    """Each redirect hop goes through the transport; ratekit.cost=3 takes 3."""
    server.route("GET", "/old")(lambda _: Reply(302, {"Location": "/new"}))
    server.route("GET", "/new")(lambda _: Reply.json("here"))
    limiter = TokenBucket(1, 10, clock=FakeClock())
    moved, costly = send(
        transport_for(flavor, limiter),
        call("GET", server.url + "/old"),
        call("GET", server.url + "/new", extensions={COST_EXTENSION: 3}),
        follow_redirects=True,
    )
    assert moved.json() == costly.json() == "here"
    assert limiter.statistics().granted == 3
    assert limiter.statistics().level == 10 - 2 - 3
    (error,) = send(
        transport_for(flavor, limiter),
        call("GET", server.url + "/new", extensions={COST_EXTENSION: -1}),
    )
    assert isinstance(error, ValueError)
    assert "ratekit.cost" in str(error)


def test_a_mounted_transport_paces_only_its_prefix(
    server: LoopbackServer, other_server: LoopbackServer
):
    """mounts={prefix: transport}: requests elsewhere do not touch the limiter."""
    server.route("GET", "/x")(lambda _: Reply.json(1))
    other_server.route("GET", "/x")(lambda _: Reply.json(2))
    limiter = TokenBucket(1, 10, clock=FakeClock())
    with httpx.Client(mounts={server.url: RateLimitedTransport(limiter)}) as client:
        assert client.get(server.url + "/x").json() == 1
        assert client.get(other_server.url + "/x").json() == 2
    assert limiter.statistics().granted == 1


@pytest.mark.parametrize("flavor", FLAVORS)
def test_the_adaptive_limiter_learns_from_the_answers(flavor: str, server: LoopbackServer):
    """The answers reach the limiter: a quota of 10 per second is its estimate; a 429 cuts it.

    The 429 says no Retry-After: it is retried at once, at the limiter's new pace.
    """
    headers = {"X-RateLimit-Limit": "10", "X-RateLimit-Remaining": "9", "X-RateLimit-Reset": "1"}
    server.route("GET", "/quota")(lambda _: Reply.json([], **headers))
    server.route("GET", "/cut")(script(Reply(429), Reply.json("after")))
    quota = AdaptiveLimiter()
    assert quota.estimate is None
    responses = send(transport_for(flavor, quota), *[call("GET", server.url + "/quota")] * 3)
    assert [r.status_code for r in responses] == [200] * 3
    assert quota.estimate == 10.0
    assert quota.rate <= 10.0
    cut = AdaptiveLimiter(50.0)
    transport = transport_for(flavor, cut)
    (response,) = send(transport, call("GET", server.url + "/cut"))
    assert response.json() == "after"
    assert cut.rate < 50.0
    assert transport.statistics().throttled == 1


# -- secrets, cancellation, arguments ----------------------------------------------------


@pytest.mark.parametrize("flavor", FLAVORS)
def test_secrets_stay_out_of_logs_errors_and_reprs(
    flavor: str, server: LoopbackServer, caplog: pytest.LogCaptureFixture
):
    """Query values and headers reach neither the logs nor the errors nor the reprs."""
    server.route("GET", "/secret")(lambda _: Reply(503, body="nope"))
    caplog.set_level(logging.DEBUG, logger="ratekit")
    transport = transport_for(flavor, retry=attrs.evolve(QUICK, attempts=2))
    headers = {"Authorization": "Bearer SECRET-TOKEN"}
    refused = f"http://127.0.0.1:{free_port()}/secret?api_key=SECRET-KEY"
    response, error = send(
        transport,
        call("GET", server.url + "/secret?api_key=SECRET-KEY", headers=headers),
        call("GET", refused, headers=headers),
    )
    assert response.status_code == 503
    assert isinstance(error, httpx.ConnectError)
    assert len(caplog.records) == 4  # the attempts were logged
    assert "SECRET" not in caplog.text
    assert "SECRET" not in f"{error} {error!r} {transport!r}"
    assert "SECRET" not in repr(BearerAuth(PlainTokens()))


def test_a_scheduler_map_stops_requests_waiting_in_a_cooldown(server: LoopbackServer):
    """A failing call stops the map: its siblings asleep in a 30 s cooldown wake at once."""
    server.route("GET", "/busy")(lambda _: Reply(429, {"Retry-After": "30"}))
    limiter = TokenBucket("100/s", capacity=5)
    with httpx.Client(transport=RateLimitedTransport(limiter, retry=QUICK)) as client:

        def work(n: int) -> int:
            if n == 3:
                time.sleep(0.3)
                raise KeyError(n)
            return client.get(server.url + "/busy").status_code

        started = time.monotonic()
        with Scheduler(4) as scheduler, pytest.raises(KeyError):
            list(scheduler.map(work, range(4)))
        assert time.monotonic() - started < 5.0
    assert 1 <= len(server.hits("/busy")) <= 3  # none sent after the cooldown began


def test_an_event_stops_a_request_waiting_in_the_cooldown(server: LoopbackServer):
    """A request held by a 30 s cooldown ends when the current cancel event is set."""
    server.route("GET", "/busy")(lambda _: Reply(429, {"Retry-After": "30"}))
    limiter = TokenBucket("100/s", capacity=5)
    with httpx.Client(transport=RateLimitedTransport(limiter, retry=None)) as client:
        assert client.get(server.url + "/busy").status_code == 429
        stop = threading.Event()
        threading.Timer(0.2, stop.set).start()
        started = time.monotonic()
        # An event given to a ratekit call is the current one for what runs inside it.
        with pytest.raises(ratekit.Cancelled):
            RetryPolicy(attempts=1).call(lambda: client.get(server.url + "/busy"), cancel=stop)
        assert time.monotonic() - started < 0.2 + 1.0
    assert len(server.hits("/busy")) == 1


def test_cancelling_the_task_stops_a_request_waiting_in_the_cooldown(server: LoopbackServer):
    """An async request held by a 30 s cooldown ends when its task is cancelled."""
    server.route("GET", "/busy")(lambda _: Reply(429, {"Retry-After": "30"}))
    limiter = TokenBucket("100/s", capacity=5)

    async def main() -> float:
        transport = AsyncRateLimitedTransport(limiter, retry=QUICK)
        async with httpx.AsyncClient(transport=transport) as client:
            first = asyncio.create_task(client.get(server.url + "/busy"))
            await asyncio.sleep(0.2)  # the first got its 429 and sleeps on it
            second = asyncio.create_task(client.get(server.url + "/busy"))
            await asyncio.sleep(0.2)
            started = time.monotonic()
            first.cancel()
            second.cancel()
            for task in (first, second):
                with pytest.raises(asyncio.CancelledError):
                    await task
            return time.monotonic() - started

    assert asyncio.run(main()) < 1.0
    assert len(server.hits("/busy")) == 1


@pytest.mark.parametrize("kind", [RateLimitedTransport, AsyncRateLimitedTransport])
@pytest.mark.parametrize(
    ("options", "error", "name"),
    [
        ({"cost": 0}, ValueError, "cost"),
        ({"cost": "1"}, TypeError, "cost"),
        ({"cooldown": "yes"}, TypeError, "cooldown"),
        ({"retry": 3}, TypeError, "retry"),
        ({"budget": 1.0}, TypeError, "budget"),
        ({"clock": "now"}, TypeError, "clock"),
        ({"limiter": object()}, TypeError, "limiter"),
        ({"transport": "http"}, TypeError, "transport"),
    ],
)
def test_bad_arguments_are_refused_by_name(kind: type, options: dict, error: type, name: str):
    """Each bad argument is named in the error."""
    with pytest.raises(error, match=name):
        kind(**options)


def test_a_transport_of_the_other_kind_is_refused():
    """A sync transport cannot send for an AsyncClient, nor an async one for a Client."""
    with pytest.raises(TypeError, match="AsyncRateLimitedTransport"):
        RateLimitedTransport(transport=httpx.AsyncHTTPTransport())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="use RateLimitedTransport"):
        AsyncRateLimitedTransport(transport=httpx.HTTPTransport())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="provider"):
        BearerAuth(object())  # type: ignore[arg-type]


# -- BearerAuth ----------------------------------------------------------------------------


def expired_first(request: Request) -> Reply:
    """401 for tok-1, 200 (echoing the header) for any other token."""
    header = request.headers.get("authorization", "")
    if header == "Bearer tok-1":
        return Reply(401)
    return Reply.json(header)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_bearer_auth_refreshes_once_on_a_401(flavor: str, server: LoopbackServer):
    """A 401 invalidates the token; the request goes once more, with a fresh one.

    Both sends go through the transport: each takes a turn at the limiter.
    """
    server.route("POST", "/me")(expired_first)
    tokens = Tokens()
    limiter = TokenBucket(1, 10, clock=FakeClock())
    (response,) = send(
        transport_for(flavor, limiter),
        call("POST", server.url + "/me", json={"n": 1}),
        auth=BearerAuth(tokens),
    )
    assert response.json() == "Bearer tok-2"
    assert [r.headers["authorization"] for r in server.hits("/me")] == [
        "Bearer tok-1",
        "Bearer tok-2",
    ]
    assert [r.json() for r in server.hits("/me")] == [{"n": 1}, {"n": 1}]
    assert tokens.invalidated == ["tok-1"]
    assert limiter.statistics().granted == 2
    assert tokens.awaited == (2 if flavor == "async" else 0)  # token_async in asyncio


@pytest.mark.parametrize("flavor", FLAVORS)
def test_bearer_auth_with_an_oauth2_token(flavor: str, server: LoopbackServer):
    """OAuth2Token's tokens, through token_async in asyncio: a 401 fetches the next one."""
    issued = 0

    def endpoint(_: Request) -> Reply:
        nonlocal issued
        issued += 1
        return Reply.json({"access_token": f"tok-{issued}", "token_type": "Bearer"})

    server.route("POST", "/token")(endpoint)
    server.route("GET", "/me")(expired_first)
    secret = "app-secret"  # noqa: S105 - a test credential
    tokens = OAuth2Token(server.url + "/token", client_id="app", client_secret=secret)
    (response,) = send(
        transport_for(flavor), call("GET", server.url + "/me"), auth=BearerAuth(tokens)
    )
    assert response.json() == "Bearer tok-2"
    assert len(server.hits("/token")) == 2


@pytest.mark.parametrize("flavor", FLAVORS)
def test_bearer_auth_returns_a_second_401(flavor: str, server: LoopbackServer):
    """A fresh token refused too: the 401 is returned, after one re-send."""
    server.route("GET", "/forbidden")(lambda _: Reply(401))
    tokens = PlainTokens()  # no token_async: token() serves asyncio too
    (response,) = send(
        transport_for(flavor), call("GET", server.url + "/forbidden"), auth=BearerAuth(tokens)
    )
    assert response.status_code == 401
    assert len(server.hits("/forbidden")) == 2
    assert tokens.invalidated == ["tok-1", "tok-2"]


@pytest.mark.parametrize("flavor", FLAVORS)
def test_bearer_auth_does_not_resend_a_streamed_body(flavor: str, server: LoopbackServer):
    """A body that cannot be replayed is sent once: its 401 is returned, the token renewed."""
    server.route("PUT", "/me")(expired_first)
    tokens = Tokens()
    auth = BearerAuth(tokens)
    refused, fresh = send(
        transport_for(flavor),
        call("PUT", server.url + "/me", content=chunks(flavor), headers=STREAMED),
        call("PUT", server.url + "/me", content=b"ab"),
        auth=auth,
    )
    assert refused.status_code == 401
    assert fresh.json() == "Bearer tok-2"
    assert [r.body for r in server.hits("/me")] == [b"ab", b"ab"]


@pytest.mark.parametrize("flavor", FLAVORS)
def test_the_token_does_not_follow_a_redirect_to_another_origin(
    flavor: str, server: LoopbackServer, other_server: LoopbackServer
):
    """A redirects to B (another port, another origin): B never sees the token."""
    server.route("GET", "/start")(lambda _: Reply(302, {"Location": other_server.url + "/end"}))
    other_server.route("GET", "/end")(lambda request: Reply.json(dict(request.headers)))
    (response,) = send(
        transport_for(flavor),
        call("GET", server.url + "/start"),
        auth=BearerAuth(Tokens()),
        follow_redirects=True,
    )
    assert response.status_code == 200
    (start,) = server.hits("/start")
    (end,) = other_server.hits("/end")
    assert start.headers["authorization"] == "Bearer tok-1"
    assert "authorization" not in end.headers
    assert "tok-1" not in response.text


def test_bearer_auth_refuses_plain_http_to_another_host():
    """No token over http:// except to loopback: nothing is sent."""
    with (
        httpx.Client(auth=BearerAuth(PlainTokens())) as client,
        pytest.raises(InsecureTransport, match="bearer token"),
    ):
        client.get("http://api.example.com/items")
