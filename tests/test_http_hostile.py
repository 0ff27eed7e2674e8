"""The HTTP client against broken and hostile servers: what it guarantees, on loopback.

Servers that echo secrets, trickle their answers, send bodies too large or wrongly
encoded, present untrusted certificates, redirect, or turn requests away; each a real
server on 127.0.0.1.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import itertools
import socket
import socketserver
import ssl
import threading
import time
from typing import TYPE_CHECKING

import pytest
from loopback import LoopbackServer, Reply, serve

import ratekit
from ratekit import RateKitError, Scheduler
from ratekit.http import (
    Client,
    ConnectionFailed,
    HTTPStatusError,
    InsecureTransport,
    ReadTimeout,
    ResponseError,
    TLSError,
    TooManyRedirects,
    cancellable_pool,
)
from ratekit.retry import ConstantBackoff, RetryError, RetryPolicy

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

#: A policy that retries at once, so that what is retried shows in request counts.
QUICK = RetryPolicy(attempts=4, backoff=ConstantBackoff(0.0), retry_on=ConnectionError)
QUICK_WITH_TIMEOUTS = RetryPolicy(
    attempts=4, backoff=ConstantBackoff(0.0), retry_on=(ConnectionError, TimeoutError)
)


class Token:
    """A fixed bearer token (a `ratekit.typing.TokenProvider`)."""

    def __init__(self, value: str) -> None:
        self.value = value

    def token(self) -> str:
        return self.value

    def invalidate(self, token: str) -> None:
        """Nothing to forget."""


@pytest.fixture
def other() -> Iterator[LoopbackServer]:
    """A second loopback server: another origin (another port)."""
    yield from serve()


class RawServer:
    """A loopback server whose every connection is handled by *script*, on raw sockets.

    *script* gets the connected socket after the request's head was read.
    """

    def __init__(self, script: Callable[[socket.socket], None]) -> None:
        self.connections = 0
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                outer.connections += 1
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = self.request.recv(4096)
                    if not chunk:
                        return
                    data += chunk
                with contextlib.suppress(OSError):  # the client gave up and closed: fine
                    script(self.request)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def raw() -> Iterator[Callable[[Callable[[socket.socket], None]], RawServer]]:
    """Start raw servers for the test; each is closed at the end."""
    started: list[RawServer] = []

    def start(script: Callable[[socket.socket], None]) -> RawServer:
        started.append(RawServer(script))
        return started[-1]

    yield start
    for server in started:
        server.close()


def trickle(head: bytes, body: bytes, pause: float) -> Callable[[socket.socket], None]:
    """A script that sends *head* at once, then *body* one byte every *pause* seconds."""

    def script(connection: socket.socket) -> None:
        connection.sendall(head)
        for byte in body:
            time.sleep(pause)
            connection.sendall(bytes([byte]))

    return script


# --- 2. secrets in error texts ----------------------------------------------------------------


def test_an_echoed_authorization_header_is_masked_in_error_texts(server):
    """A 400 whose body echoes the token, Basic credentials and a query key masks them all."""

    @server.route("GET", "/echo")
    def echo(request):
        return Reply(400, body=f"bad request: {request.headers} {request.query}")

    basic = base64.b64encode(b"user:hunter2-pass").decode()
    client = Client(
        base_url=server.url,
        auth=Token("tok-SECRET-1234"),
        headers={"X-Proxy-Auth": f"Basic {basic}"},
    )
    with pytest.raises(HTTPStatusError) as raised:
        client.get_json("/echo", params={"api_key": "k-SECRET-99"})
    shown = str(raised.value) + raised.value.excerpt
    for secret in ("tok-SECRET-1234", basic, "hunter2-pass", "k-SECRET-99"):
        assert secret not in shown
    assert "***" in shown
    assert "bad request" in shown


# --- 4. no raw urllib3 exceptions ------------------------------------------------------------


def closed_port() -> int:
    """A loopback port with nothing listening on it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_refused_connection_is_connection_failed_and_retried():
    """Connection refused: ConnectionFailed, a ratekit error, retried by the policy."""
    client = Client(base_url=f"http://127.0.0.1:{closed_port()}", retry=QUICK)
    with pytest.raises(RetryError) as raised:
        client.get("/x")
    assert raised.value.attempts == 4
    assert isinstance(raised.value.last_exception, ConnectionFailed)
    assert "connection refused" in str(raised.value.last_exception)


@pytest.fixture
def untrusted(tls_server) -> LoopbackServer:
    """A TLS server on loopback whose certificate comes from a CA no client trusts."""
    return tls_server[0]


def test_an_untrusted_certificate_is_a_tls_error_not_retried(untrusted):
    """An untrusted certificate: TLSError, named in one line, and tried only once."""
    client = Client(base_url=untrusted.url, retry=QUICK_WITH_TIMEOUTS)
    with pytest.raises(TLSError) as raised:
        client.get("/x?token=t-SECRET")
    message = str(raised.value)
    assert isinstance(raised.value, RateKitError)
    assert "certificate was refused" in message
    assert "t-SECRET" not in message
    assert "\n" not in message
    assert client.statistics().requests == 1


def test_a_body_that_lies_about_its_coding_is_a_response_error(server):
    """A body that claims gzip and is not: ResponseError with the status, not DecodeError."""
    server.route("GET", "/liar")(
        lambda _: Reply(200, {"Content-Encoding": "gzip"}, b"this is not gzip at all")
    )
    server.route("GET", "/honest")(
        lambda _: Reply(200, {"Content-Encoding": "gzip"}, gzip.compress(b'{"ok": true}'))
    )
    client = Client(base_url=server.url, retry=QUICK)
    assert client.get_json("/honest") == {"ok": True}
    with pytest.raises(ResponseError) as raised:
        client.get_json("/liar")
    assert raised.value.status == 200
    assert "content coding" in str(raised.value)
    assert client.statistics().requests == 2


# --- 5. a deadline for the whole request, a bound on the body --------------------------------


def test_a_trickled_body_is_cut_at_the_timeout(raw):
    """A 26-byte body sent a byte every 0.3 s: timeout=1.0 ends it after about 1 s."""
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 26\r\n\r\n"
    slow = raw(trickle(head, b"abcdefghijklmnopqrstuvwxyz", 0.3))
    client = Client(base_url=slow.url, timeout=1.0, retry=None)
    started = time.monotonic()
    with pytest.raises(ReadTimeout, match="no whole answer within 1 s"):
        client.get("/")
    assert time.monotonic() - started < 2.0  # not 7.8 s


def test_trickled_headers_are_cut_at_the_timeout(raw):
    """Headers sent a byte every 0.2 s are cut at the timeout too."""
    slow = raw(trickle(b"", b"HTTP/1.1 200 OK\r\nX-Padding: " + b"x" * 40 + b"\r\n\r\n", 0.2))
    client = Client(base_url=slow.url, timeout=1.0, retry=None)
    started = time.monotonic()
    with pytest.raises(ReadTimeout):
        client.get("/")
    assert time.monotonic() - started < 2.0


def test_a_body_past_max_body_is_refused(server):
    """A body over max_body ends the request with ResponseError naming the bound."""
    server.route("GET", "/big")(lambda _: Reply(200, body=b"x" * 300_000))
    server.route("GET", "/small")(lambda _: Reply(200, body=b"y" * 1_000))
    client = Client(base_url=server.url, max_body=100_000, retry=QUICK)
    assert len(client.get("/small").data) == 1_000
    with pytest.raises(ResponseError, match="max_body=100000"):
        client.get("/big")
    assert client.get("/small").data == b"y" * 1_000  # the client still works


def test_bad_bounds_are_refused_by_name():
    """timeout, max_body and max_redirects are checked at construction."""
    with pytest.raises(ValueError, match="timeout"):
        Client(timeout=0)
    with pytest.raises(ValueError, match="max_body"):
        Client(max_body=0)
    with pytest.raises(TypeError, match="max_redirects"):
        Client(max_redirects=1.5)  # type: ignore[arg-type]


# --- 6. retries by method --------------------------------------------------------------------


def test_a_post_that_timed_out_is_not_sent_again(server):
    """A POST whose answer did not come in time is sent once: it may have been carried out."""
    server.route("POST", "/orders")(lambda _: Reply(200, body="{}", delay=1.0))
    client = Client(base_url=server.url, timeout=0.3, retry=QUICK_WITH_TIMEOUTS)
    with pytest.raises(ReadTimeout):  # a retry would be sent, and time out, before this
        client.post("/orders", json={"item": 1})
    assert len(server.hits("/orders")) == 1


@pytest.mark.parametrize(
    ("reply", "sent"),
    [
        (Reply(502), 1),  # the server may have acted
        (Reply(504), 1),
        (Reply(429, {"Retry-After": "0"}), 4),  # turned away: safe to send again
        (Reply(503, {"Retry-After": "0"}), 4),
    ],
)
def test_a_post_is_retried_only_after_an_answer_that_turned_it_away(server, reply, sent):
    """A POST is retried after 429 or 503 with Retry-After, and not after 502 or 504."""
    server.route("POST", "/orders")(lambda _: reply)
    client = Client(base_url=server.url, retry=QUICK)
    response = client.post("/orders", json={"item": 1}) if sent == 1 else None
    if sent > 1:
        with pytest.raises(RetryError):
            client.post("/orders", json={"item": 1})
    else:
        assert response is not None
        assert response.status == reply.status
    assert len(server.hits("/orders")) == sent


def test_idempotent_requests_and_opt_ins_are_retried(server):
    """PUT, a POST with an Idempotency-Key, and idempotent=True are retried after a 502."""
    server.route("PUT", "/orders/1")(lambda _: Reply(502))
    server.route("POST", "/orders")(lambda _: Reply(502))
    client = Client(base_url=server.url, retry=QUICK)
    with pytest.raises(RetryError):
        client.request("PUT", "/orders/1", json={})
    with pytest.raises(RetryError):
        client.post("/orders", json={}, headers={"Idempotency-Key": "order-1"})
    with pytest.raises(RetryError):
        client.post("/orders", json={}, idempotent=True)
    assert len(server.hits("/orders/1")) == 4
    assert len(server.hits("/orders")) == 8
    assert client.post("/orders", json={}, idempotent=False).status == 502
    assert len(server.hits("/orders")) == 9


# --- 7. after a cooldown, the limiter's pace ------------------------------------------------


def test_traffic_resumes_at_the_limiters_pace_after_a_cooldown(server):
    """Six workers held by a 1 s cooldown resume 200 ms apart, as their LeakyBucket says."""
    first = threading.Event()

    @server.route("GET", "/item")
    def item(request):
        if not first.is_set():
            first.set()
            return Reply(429, {"Retry-After": "1"})
        return Reply.json({"ok": True})

    client = Client(ratekit.LeakyBucket("5/s", capacity=8), base_url=server.url)
    with Scheduler(6) as scheduler:
        list(scheduler.map(lambda _: client.get_json("/item"), range(6)))
    arrivals = [request.at for request in server.hits("/item")]
    cooldown_end = arrivals[0] + 1.0
    after = sorted(at for at in arrivals if at >= cooldown_end - 0.05)
    assert len(after) >= 5  # the requests held, and the retried one
    gaps = [later - earlier for earlier, later in itertools.pairwise(after)]
    assert min(gaps) > 0.15  # not all at once (a strictly spaced server would 429 them)


# --- 11. redirects ----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_followed_with_its_method(server, status):
    """A GET redirected by 301, 302, 307 or 308 reaches the new place, relative or not."""
    server.route("GET", "/old")(lambda _: Reply(status, {"Location": "/new?page=2"}))
    server.route("GET", "/new")(lambda request: Reply.json({"page": request.query["page"]}))
    client = Client(base_url=server.url)
    assert client.get_json("/old") == {"page": ["2"]}


@pytest.mark.parametrize(("status", "method"), [(303, "GET"), (302, "GET"), (307, "POST")])
def test_a_redirected_post_becomes_a_get_except_for_307_and_308(server, status, method):
    """303, and 302 after a POST, turn it into a GET without body; 307 keeps the POST."""
    server.route("POST", "/orders")(lambda _: Reply(status, {"Location": "/orders/1"}))
    server.route(method, "/orders/1")(lambda request: Reply.json({"body": request.body.decode()}))
    client = Client(base_url=server.url)
    answer = client.json("POST", "/orders", json={"item": 1})
    landed = server.hits("/orders/1")[0]
    assert landed.method == method
    if method == "GET":
        assert answer == {"body": ""}
        assert "content-type" not in landed.headers
    else:
        assert answer == {"body": '{"item": 1}'}
        assert landed.headers["content-type"] == "application/json"


def test_credentials_go_to_the_same_origin_only(server, other):
    """Across origins the token, Authorization and Cookie headers are left behind."""
    server.route("GET", "/here")(lambda _: Reply(302, {"Location": "/there"}))
    server.route("GET", "/there")(lambda _: Reply(302, {"Location": f"{other.url}/away"}))
    other.route("GET", "/away")(lambda _: Reply.json({"ok": True}))
    client = Client(base_url=server.url, auth=Token("tok-1"), headers={"Cookie": "session=s-1"})
    assert client.get_json("/here") == {"ok": True}
    assert server.hits("/there")[0].headers["authorization"] == "Bearer tok-1"
    away = other.hits("/away")[0].headers
    assert "authorization" not in away
    assert "cookie" not in away


def test_a_redirect_from_https_to_http_is_refused(tls_server, other):
    """From https to plain http: InsecureTransport, and nothing reaches the http server."""
    secure, authority = tls_server
    trust = ssl.create_default_context()
    authority.configure_trust(trust)
    secure.route("GET", "/x")(lambda _: Reply(302, {"Location": f"{other.url}/clear"}))
    client = Client(base_url=secure.url, pool=cancellable_pool(ssl_context=trust))
    with pytest.raises(InsecureTransport, match="from https to plain http"):
        client.get("/x")
    assert len(secure.hits("/x")) == 1
    assert other.hits("/clear") == []


def test_redirects_are_bounded_and_can_be_turned_off(server):
    """A loop ends with TooManyRedirects; max_redirects=0 hands the 3xx back."""
    server.route("GET", "/loop")(lambda _: Reply(302, {"Location": "/loop"}))
    client = Client(base_url=server.url, max_redirects=3)
    with pytest.raises(TooManyRedirects, match="more than max_redirects=3"):
        client.get("/loop")
    assert len(server.hits("/loop")) == 4
    assert Client(base_url=server.url, max_redirects=0).get("/loop").status == 302


def test_an_oauth2_providers_secrets_are_masked_and_pages_too(server):
    """What an OAuth2Token knows is masked in API errors, and in a paginator's errors too."""
    secret = "cl1ent-SECRET-value"  # noqa: S105 - made up, to look for in messages
    server.route("POST", "/token")(
        lambda _: Reply.json({"access_token": "at-SECRET-42", "expires_in": 3600})
    )

    @server.route("GET", "/items")
    def items(request):
        return Reply(200, body=f"not json: {request.headers} {secret}")

    auth = ratekit.http.OAuth2Token(
        f"{server.url}/token", client_id="c", client_secret=secret, client_auth="body"
    )
    client = Client(base_url=server.url, auth=auth)
    with pytest.raises(ResponseError) as direct:
        client.get_json("/items")
    with pytest.raises(ResponseError) as paged:
        list(ratekit.http.OffsetPaginator(10, records_key="items").records(client, "/items"))
    for error in (direct.value, paged.value):
        shown = str(error)
        assert "not json" in shown
        assert secret not in shown
        assert "at-SECRET-42" not in shown
