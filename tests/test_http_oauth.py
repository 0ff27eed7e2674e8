"""OAuth2Token against a real token endpoint on loopback, with expiry on a FakeClock."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import logging
import re
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import unquote_plus

import attrs
import pytest
import trustme
import urllib3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from loopback import LoopbackServer, Reply

import ratekit
from ratekit import Cancelled
from ratekit._cancel import Cancellation, cancelled_by
from ratekit.http import (
    Client,
    ConnectionFailed,
    InsecureTransport,
    OAuth2Token,
    ReadTimeout,
    TLSError,
    TokenError,
    cancellable_pool,
)
from ratekit.retry import RetryError
from ratekit.testing import FakeClock
from ratekit.typing import AsyncTokenProvider, TokenProvider

# Multiprocessing locks are made here: their finalizers run between tests (conftest).
pytestmark = pytest.mark.usefixtures("collect_garbage")

SECRET = "s3cr&t:pa ss+word"  # noqa: S105 - a made-up secret, to look for in what is shown
PASSWORD = "hunter2-is-my-password"  # noqa: S105 - the same, for the password grant
ACCESS = "eyJ-the-access-token"
#: A loopback token URL for the tests that never send a request.
NOWHERE = "http://127.0.0.1:9/token"


def granted(
    token: str = ACCESS, expires_in: object = 3600, headers: dict[str, str] | None = None, **fields
) -> Reply:
    """A successful token response."""
    body: dict[str, object] = {"access_token": token, "token_type": "Bearer", **fields}
    if expires_in is not None:
        body["expires_in"] = expires_in
    return Reply.json(body, **(headers or {}))


def tokens(server, *replies: Reply):
    """Answer the token requests with *replies* in turn, the last one from then on."""
    queue = list(replies)

    @server.route("POST", "/token")
    def _(request):
        return queue.pop(0) if len(queue) > 1 else queue[0]


def make(server=None, **options) -> OAuth2Token:
    """An OAuth2Token for the loopback endpoint, on a FakeClock unless given a clock."""
    options.setdefault("client_id", "the-client")
    options.setdefault("client_secret", SECRET)
    options.setdefault("clock", FakeClock())
    return OAuth2Token(f"{server.url}/token" if server else NOWHERE, **options)


class CountingClock:
    """A FakeClock that counts its readings, so that a test can wait for callers to look."""

    def __init__(self) -> None:
        self.fake = FakeClock()
        self.reads = 0
        self._cond = threading.Condition()

    def now(self) -> float:
        with self._cond:
            self.reads += 1
            self._cond.notify_all()
        return self.fake.now()

    def sleep(self, seconds, cancel=None):
        return self.fake.sleep(seconds, cancel)

    async def sleep_async(self, seconds):
        await self.fake.sleep_async(seconds)

    def wait_for_reads(self, count: int) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self.reads >= count, timeout=10)


def crowd(target, count: int = 16) -> list[object]:
    """Run *target* in *count* threads at once; return what each returned or raised."""
    barrier = threading.Barrier(count)
    outcomes: list[object] = [None] * count

    def run(index: int) -> None:
        barrier.wait()
        try:
            outcomes[index] = target()
        except Exception as error:  # noqa: BLE001 - the outcome is what is checked
            outcomes[index] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


# The request


def test_basic_auth_sends_the_client_in_the_header_and_the_grant_in_the_form(server):
    """Basic auth: Authorization decodes to id:secret, the form holds grant and scopes."""
    tokens(server, granted())
    oauth = make(server, client_id="the client:1", scopes=["read", "write"])
    assert oauth.token() == ACCESS
    (request,) = server.hits("/token")
    assert request.method == "POST"
    assert request.query == {}
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.headers["accept"] == "application/json"
    scheme, _, encoded = request.headers["authorization"].partition(" ")
    assert scheme == "Basic"
    client, _, secret = base64.b64decode(encoded).decode().partition(":")
    assert (unquote_plus(client), unquote_plus(secret)) == ("the client:1", SECRET)
    assert request.form() == {"grant_type": "client_credentials", "scope": "read write"}


def test_body_auth_sends_the_client_in_the_form(server):
    """Body auth: client_id and client_secret are form fields, no Authorization header."""
    tokens(server, granted())
    oauth = make(server, client_auth="body", scopes="read  write", extra={"audience": "api"})
    oauth.token()
    (request,) = server.hits("/token")
    assert "authorization" not in request.headers
    assert request.query == {}
    assert request.form() == {
        "grant_type": "client_credentials",
        "scope": "read write",
        "client_id": "the-client",
        "client_secret": SECRET,
        "audience": "api",
    }


def test_without_scopes_the_scope_field_is_left_out(server):
    """No scopes (or only blanks): no scope field at all."""
    tokens(server, granted())
    make(server).token()
    make(server, scopes=" ").token()
    make(server, scopes=[]).token()
    assert [r.form() for r in server.hits("/token")] == [{"grant_type": "client_credentials"}] * 3


def test_password_grant_sends_username_and_password(server):
    """The password grant puts username and password in the form."""
    tokens(server, granted())
    oauth = make(server, grant="password", username="key-id", password=PASSWORD)
    oauth.token()
    (request,) = server.hits("/token")
    assert request.form() == {"grant_type": "password", "username": "key-id", "password": PASSWORD}


@pytest.mark.parametrize(
    ("options", "name"),
    [
        ({"username": "key-id"}, "password"),
        ({"password": PASSWORD}, "username"),
        ({"username": "", "password": PASSWORD}, "username"),
    ],
)
def test_password_grant_needs_username_and_password(options, name):
    """The password grant without a username or password is refused, naming it."""
    with pytest.raises(ValueError, match=f"^{name} must be a non-empty string") as caught:
        make(grant="password", **options)
    assert PASSWORD not in str(caught.value)


@pytest.mark.parametrize("name", ["username", "password"])
def test_client_credentials_refuses_a_username_or_password(name):
    """A username or password given with client_credentials is a mistake, not ignored."""
    with pytest.raises(ValueError, match=f"^{name} is only used by the password grant"):
        make(**{name: "x"})


@pytest.mark.parametrize(
    ("options", "name"),
    [
        ({"client_id": ""}, "client_id"),
        ({"client_secret": ""}, "client_secret"),
        ({"client_secret": None}, "client_secret"),
        ({"grant": "implicit"}, "grant"),
        ({"client_auth": "jwt"}, "client_auth"),
        ({"margin": -1}, "margin"),
        ({"margin": float("nan")}, "margin"),
        ({"timeout": 0}, "timeout"),
        ({"scopes": ["read", "a b"]}, "scopes"),
        ({"scopes": ["read", ""]}, "scopes"),
        ({"extra": {"grant_type": "password"}}, "extra"),
        ({"client_auth": "body", "extra": {"client_secret": "x"}}, "extra"),
    ],
)
def test_bad_arguments_are_refused_naming_them(options, name):
    """Empty credentials and out-of-range options raise ValueError naming the argument."""
    with pytest.raises(ValueError, match=f"^{name} ") as caught:
        make(**options)
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize("margin", ["60", True, None])
def test_margin_must_be_a_number(margin):
    """A margin that is not a number is a TypeError."""
    with pytest.raises(TypeError, match=r"^margin "):
        make(margin=margin)


def test_empty_token_url_is_refused():
    """An empty token_url is refused, naming it."""
    with pytest.raises(ValueError, match=r"^token_url "):
        OAuth2Token("", client_id="c", client_secret=SECRET)


def test_basic_auth_may_carry_the_client_id_in_the_form_too(server):
    """With Basic auth, extra may add client_id to the form (some servers want both)."""
    tokens(server, granted())
    make(server, extra={"client_id": "the-client"}).token()
    assert server.hits("/token")[0].form()["client_id"] == "the-client"


def test_is_a_token_provider():
    """OAuth2Token satisfies the TokenProvider and AsyncTokenProvider protocols."""
    assert isinstance(make(), TokenProvider)
    assert isinstance(make(), AsyncTokenProvider)
    assert not isinstance(object(), AsyncTokenProvider)


def test_a_given_pool_is_used(server):
    """A PoolManager passed in sends the requests."""
    pool = urllib3.PoolManager()
    tokens(server, granted())
    assert make(server, pool=pool).token() == ACCESS
    assert pool.pools  # a connection pool for the loopback host was opened in it


# Transport


@pytest.mark.parametrize(
    "url", ["http://example.com/token", "http://10.0.0.1/token", "ftp://example.com/token"]
)
def test_plain_http_to_other_hosts_is_refused(url):
    """Credentials are not sent over plain http to a host that is not loopback."""
    with pytest.raises(InsecureTransport, match="use https://"):
        OAuth2Token(url, client_id="c", client_secret=SECRET)


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/token",
        "http://127.0.0.1:8080/token",
        "http://localhost/token",
        "http://[::1]/token",
    ],
)
def test_https_and_loopback_are_accepted(url):
    """https:// anywhere and plain http:// to loopback are accepted (nothing is sent yet)."""
    assert "client_secret='***'" in repr(OAuth2Token(url, client_id="c", client_secret=SECRET))


# Caching and refresh


def test_the_token_is_cached_until_a_margin_before_expiry(server):
    """Reused until expires_in - margin after the request started, then fetched again."""
    clock = FakeClock(100)
    tokens(server, granted("first", 3600), granted("second", 3600))
    oauth = make(server, clock=clock, margin=60)
    assert oauth.token() == "first"
    assert oauth.expires_at == 3700
    clock.advance_to(3639.999)
    assert oauth.token() == "first"
    assert len(server.hits("/token")) == 1
    clock.advance_to(3640)
    assert oauth.token() == "second"
    assert oauth.token() == "second"
    assert len(server.hits("/token")) == 2
    assert oauth.expires_at == 3640 + 3600


def test_short_lived_tokens_are_reused_for_half_their_life(server):
    """A token shorter-lived than twice the margin is reused for half its life."""
    clock = FakeClock()
    tokens(server, granted("first", 60), granted("second", 60))
    oauth = make(server, clock=clock, margin=60)
    assert oauth.token() == "first"
    clock.advance_to(29.999)
    assert oauth.token() == "first"
    clock.advance_to(30)
    assert oauth.token() == "second"
    assert len(server.hits("/token")) == 2


def test_a_token_without_expiry_is_kept_until_invalidated(server):
    """No expires_in: the token is kept however much time passes."""
    clock = FakeClock()
    tokens(server, granted("first", None), granted("second", None))
    oauth = make(server, clock=clock)
    assert oauth.token() == "first"
    assert oauth.expires_at is None
    clock.advance(10**9)
    assert oauth.token() == "first"
    oauth.invalidate("first")
    assert oauth.token() == "second"
    assert len(server.hits("/token")) == 2


def test_expires_in_as_a_string_is_read(server):
    """Some servers send expires_in as a string of digits; it counts all the same."""
    clock = FakeClock()
    tokens(server, granted(expires_in="120"))
    oauth = make(server, clock=clock)
    oauth.token()
    assert oauth.expires_at == 120


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    lifetime=st.floats(0, 10**6, allow_subnormal=False),
    margin=st.floats(0, 10**4, allow_subnormal=False),
)
def test_refresh_comes_at_the_lifetime_less_the_smaller_of_margin_and_half(
    server, lifetime, margin
):
    """Whatever the lifetime and margin, the refetch is due at start + life - min(m, life/2)."""
    # Connection: close, as a reused loopback connection is slow to answer (delayed ACKs).
    tokens(server, granted(expires_in=lifetime, headers={"Connection": "close"}))
    clock = FakeClock(1000)
    oauth = make(server, clock=clock, margin=margin)
    before = len(server.hits("/token"))
    oauth.token()
    due = 1000 + lifetime - min(margin, lifetime / 2)
    slack = 1e-6 * due
    if due - slack > 1000:
        clock.advance_to(due - slack)
        oauth.token()
        assert len(server.hits("/token")) == before + 1
    clock.advance_to(due + slack)
    oauth.token()
    assert len(server.hits("/token")) == before + 2


# Many threads


def test_a_crowd_on_an_expired_token_causes_one_request(server):
    """16 threads asking at once for an expired token cause exactly one token request."""
    clock = CountingClock()
    tokens(server, granted("first", 100), granted("second", 100))
    oauth = make(server, clock=clock)
    oauth.token()
    clock.fake.advance(100)
    clock.reads = 0

    @server.route("POST", "/token")
    def _(request):
        # Answer once every caller has looked at the cache (16 looks, and the read at the
        # start of the fetch), so that all of them find the fetch in flight; slow anyway.
        clock.wait_for_reads(17)
        return Reply(
            200, {"Content-Type": "application/json"}, {"access_token": "second"}, delay=0.2
        )

    assert crowd(oauth.token) == ["second"] * 16
    assert len(server.hits("/token")) == 2


def test_a_failed_fetch_fails_every_waiter_and_the_next_call_retries(server):
    """When the one fetch fails, every waiting thread gets its error; then a retry works."""
    clock = CountingClock()
    tokens(server, granted("first", 100))
    oauth = make(server, clock=clock)
    oauth.token()
    clock.fake.advance(100)
    clock.reads = 0

    @server.route("POST", "/token")
    def _(request):
        clock.wait_for_reads(17)
        return Reply(503, {"Content-Type": "application/json"}, {"error": "busy"}, delay=0.2)

    outcomes = crowd(oauth.token)
    assert all(isinstance(outcome, TokenError) for outcome in outcomes)
    assert len({id(outcome) for outcome in outcomes}) == 1
    assert len(server.hits("/token")) == 2
    tokens(server, granted("second"))
    assert oauth.token() == "second"
    assert len(server.hits("/token")) == 3


def test_a_dropped_connection_is_connection_failed_and_the_next_call_retries(server):
    """A dropped connection raises ConnectionFailed (urllib3's as its cause), not cached."""
    tokens(server, Reply(drop=True), granted())
    oauth = make(server)
    with pytest.raises(ConnectionFailed, match="closed the connection") as caught:
        oauth.token()
    assert isinstance(caught.value.__cause__, urllib3.exceptions.ProtocolError)
    assert oauth.token() == ACCESS


def test_the_timeout_bounds_the_request(server):
    """A token endpoint slower than the timeout raises ReadTimeout, naming the URL."""
    # Dropped rather than answered late, so that the server writes to no closed socket.
    tokens(server, Reply(drop=True, delay=0.5))
    with pytest.raises(ReadTimeout) as caught:
        make(server, timeout=0.05).token()
    # Whichever comes first: urllib3's read timeout, or the deadline of the whole request.
    assert re.fullmatch(
        rf"POST {re.escape(server.url)}/token: no (response in time|whole answer within 0.05 s)",
        str(caught.value),
    )


@pytest.fixture
def down():
    """A loopback token endpoint that refuses connections until it is revived."""
    endpoint = Down()
    try:
        yield endpoint
    finally:
        endpoint.close()


class Down:
    """A `LoopbackServer` whose port is bound but not listening (refused) until `revive`."""

    def __init__(self) -> None:
        self.server = LoopbackServer()
        self.server._httpd.socket.close()
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self.server._httpd.socket = self._socket
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        self._up = False

    def revive(self) -> None:
        """Listen, and answer token requests from now on."""
        tokens(self.server, granted())
        self._socket.listen()
        self.server.start()
        self._up = True

    def close(self) -> None:
        if self._up:
            self.server.stop()
        else:
            self._socket.close()


class OnSleep:
    """A fake clock that runs *action* when slept on the *count*-th time (between attempts)."""

    def __init__(self, action, count: int) -> None:
        self.fake = FakeClock()
        self._action = action
        self._count = count
        self.sleeps = 0

    def now(self) -> float:
        return self.fake.now()

    def sleep(self, seconds, cancel=None):
        self.sleeps += 1
        if self.sleeps == self._count:
            self._action()
        return self.fake.sleep(seconds, cancel)

    async def sleep_async(self, seconds):
        await self.fake.sleep_async(seconds)


def test_a_refused_connection_is_connection_failed_naming_the_url(down):
    """A closed port: ConnectionFailed, a ratekit error naming the URL, no query value."""
    oauth = OAuth2Token(f"{down.url}/token?tenant=t-9", client_id="c", client_secret=SECRET)
    with pytest.raises(ConnectionFailed) as caught:
        oauth.token()
    assert isinstance(caught.value, ratekit.RateKitError)
    assert str(caught.value) == f"POST {down.url}/token?tenant=***: connection refused"
    assert isinstance(caught.value.__cause__, urllib3.exceptions.NewConnectionError)


def test_a_client_retries_a_refused_token_endpoint_until_it_comes_back(server, down):
    """Client's default policy retries ConnectionFailed from the token; it then succeeds."""
    server.route("GET", "/items")(lambda request: Reply.json(request.headers["authorization"]))
    clock = OnSleep(down.revive, count=2)
    oauth = OAuth2Token(f"{down.url}/token", client_id="c", client_secret=SECRET, clock=clock)
    with Client(None, base_url=server.url, auth=oauth, clock=clock) as client:
        assert client.get_json("/items") == f"Bearer {ACCESS}"
        assert client.statistics().retries == 2
    assert clock.sleeps == 2
    assert len(down.server.hits("/token")) == 1


def test_a_client_gives_up_on_a_token_endpoint_that_stays_down(server, down):
    """A token endpoint that stays down: RetryError after 5 attempts, ConnectionFailed cause."""
    clock = FakeClock()
    oauth = OAuth2Token(f"{down.url}/token", client_id="c", client_secret=SECRET, clock=clock)
    client = Client(None, base_url=server.url, auth=oauth, clock=clock)
    with client, pytest.raises(RetryError) as caught:
        client.get_json("/items")
    assert caught.value.attempts == 5
    assert isinstance(caught.value.__cause__, ConnectionFailed)
    assert server.hits("/items") == []


def test_an_untrusted_certificate_is_a_tls_error_never_retried(server, tls_server):
    """A certificate from a CA the pool does not trust: TLSError, one connection per call."""
    endpoint, _ = tls_server  # its CA is not given to the pool
    tokens(endpoint, granted())
    trust = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    trustme.CA().configure_trust(trust)  # another CA: the server's is not trusted
    pool = cancellable_pool(ssl_context=trust)
    url = f"{endpoint.url}/token?tenant=t-9"
    oauth = OAuth2Token(url, client_id="c", client_secret=SECRET, pool=pool, clock=FakeClock())
    with pytest.raises(TLSError) as caught:
        oauth.token()
    message = str(caught.value)
    assert message.startswith(f"POST {endpoint.url}/token?tenant=***: ")
    assert "the server's TLS certificate was refused" in message
    assert SECRET not in message
    connections = pool.connection_from_url(url)
    assert connections.num_connections == 1
    with Client(None, base_url=server.url, auth=oauth, clock=FakeClock()) as client:
        with pytest.raises(TLSError):
            client.get_json("/items")
        assert client.statistics().retries == 0
    assert connections.num_connections == 2
    assert endpoint.requests == []


@pytest.mark.parametrize("status", [200, 503])
def test_a_body_that_is_not_the_gzip_it_claims_is_an_invalid_response(server, status):
    """A body in the gzip it claims is read; one that is not: invalid_response, its status."""
    gzipped = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    body = json.dumps({"access_token": "first", "expires_in": 3600}).encode()
    tokens(server, Reply(200, gzipped, gzip.compress(body)), Reply(status, gzipped, b"{oops"))
    oauth = make(server)
    assert oauth.token() == "first"
    oauth.invalidate("first")
    with pytest.raises(TokenError, match="Content-Encoding") as caught:
        oauth.token()
    assert (caught.value.error, caught.value.status) == ("invalid_response", status)


# A failed early refresh


#: A refresh that fails: the endpoint is overloaded, drops the connection, or is too slow.
FAILURES = {
    "503": Reply.json({"error": "temporarily_unavailable"}, status=503),
    "dropped": Reply(drop=True),
    "timeout": Reply(drop=True, delay=2.0),
}


@pytest.mark.parametrize("failure", FAILURES.values(), ids=FAILURES.keys())
def test_a_failed_early_refresh_keeps_the_valid_token(server, failure):
    """Within the margin, a refresh that fails returns the cached token, which still lives."""
    clock = FakeClock()
    tokens(server, granted("first", 3600), failure)
    oauth = make(server, clock=clock, margin=60, timeout=0.5)
    assert oauth.token() == "first"
    clock.advance_to(3550)  # 50 s to live
    assert oauth.token() == "first"
    assert len(server.hits("/token")) == 2
    assert oauth.expires_at == 3600


@pytest.mark.parametrize(
    ("failure", "error"),
    [(FAILURES["503"], TokenError), (FAILURES["dropped"], ConnectionFailed)],
    ids=["503", "dropped"],
)
def test_a_failed_refresh_raises_once_the_token_has_expired(server, failure, error):
    """The cached token is kept until it expires; from then on, the failure raises."""
    clock = FakeClock()
    tokens(server, granted("first", 3600), failure)
    oauth = make(server, clock=clock, margin=60)
    oauth.token()
    clock.advance_to(3590)
    assert oauth.token() == "first"
    clock.advance_to(3600)
    with pytest.raises(error):
        oauth.token()
    with pytest.raises(error):
        oauth.token()
    assert len(server.hits("/token")) == 4


def test_a_failed_early_refresh_is_tried_again_after_a_pause(server, caplog):
    """After a failed refresh, calls use the cached token for 10 s, then one tries again."""
    caplog.set_level(logging.DEBUG, logger="ratekit.http")
    clock = FakeClock()
    tokens(server, granted("first", 3600), FAILURES["503"], granted("second", 3600))
    oauth = make(server, clock=clock, margin=60)
    oauth.token()
    clock.advance_to(3540)
    assert [oauth.token() for _ in range(5)] == ["first"] * 5
    clock.advance_to(3549.999)
    assert oauth.token() == "first"
    assert len(server.hits("/token")) == 2
    clock.advance_to(3550)
    assert oauth.token() == "second"
    assert len(server.hits("/token")) == 3
    assert oauth.expires_at == 3550 + 3600
    (record,) = [r for r in caplog.records if "refresh failed" in r.getMessage()]
    assert record.levelno == logging.DEBUG
    assert "expires in 60 s" in record.getMessage()
    assert "tried again in 10 s" in record.getMessage()


def test_a_failing_endpoint_sees_at_most_six_refreshes_before_expiry(server):
    """Called every 0.5 s through the margin, a failing endpoint gets 6 requests, not 120."""
    clock = FakeClock()
    tokens(server, granted("first", 3600), FAILURES["503"])
    oauth = make(server, clock=clock, margin=60)
    oauth.token()
    clock.advance_to(3540)
    while clock.now() < 3600:
        assert oauth.token() == "first"
        clock.advance(0.5)
    assert len(server.hits("/token")) == 1 + 6


def test_waiters_get_the_cached_token_when_the_early_refresh_fails(server):
    """A crowd inside the margin: one refresh fails, and every thread gets the cached token."""
    clock = CountingClock()
    tokens(server, granted("first", 100))
    oauth = make(server, clock=clock, margin=60)
    oauth.token()
    clock.fake.advance(50)
    clock.reads = 0

    @server.route("POST", "/token")
    def _(request):
        clock.wait_for_reads(17)  # every caller looked, and found the refresh in flight
        return delayed(Reply.json({"error": "busy"}, status=503), 0.2)

    assert crowd(oauth.token) == ["first"] * 16
    assert len(server.hits("/token")) == 2


@pytest.mark.parametrize(("error", "status"), [("invalid_client", 401), ("invalid_grant", 400)])
def test_refused_credentials_keep_the_valid_token_with_a_warning(server, caplog, error, status):
    """A refresh refused for bad credentials keeps the token until expiry, and warns."""
    caplog.set_level(logging.DEBUG, logger="ratekit.http")
    clock = FakeClock()
    echo = f"no such secret: {SECRET}"
    refusal = Reply.json({"error": error, "error_description": echo}, status=status)
    tokens(server, granted("first", 3600), refusal)
    oauth = make(server, clock=clock, margin=60)
    oauth.token()
    clock.advance_to(3545)
    assert oauth.token() == "first"
    (record,) = [r for r in caplog.records if "refresh failed" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert error in record.getMessage()
    assert SECRET not in caplog.text
    assert ACCESS not in caplog.text
    clock.advance_to(3600)
    with pytest.raises(TokenError) as caught:
        oauth.token()
    assert (caught.value.error, caught.value.status) == (error, status)


def test_an_invalidated_token_is_not_kept_when_the_refresh_fails(server):
    """After a 401 invalidated the cached token, a failing refresh raises: none is left."""
    clock = FakeClock()
    tokens(server, granted("first", 3600), FAILURES["503"])
    oauth = make(server, clock=clock, margin=60)
    oauth.token()
    clock.advance_to(3550)
    assert oauth.token() == "first"
    oauth.invalidate("first")
    with pytest.raises(TokenError) as caught:
        oauth.token()
    assert caught.value.status == 503


# Invalidation


def test_invalidating_the_current_token_causes_one_refetch(server):
    """invalidate(current) makes the next call fetch a new token, once."""
    tokens(server, granted("first"), granted("second"))
    oauth = make(server)
    assert oauth.token() == "first"
    oauth.invalidate("first")
    assert oauth.expires_at is None
    assert oauth.token() == "second"
    assert oauth.token() == "second"
    assert len(server.hits("/token")) == 2


def test_invalidating_a_stale_token_does_nothing(server):
    """invalidate(old) after a new token came changes nothing; so does one before any fetch."""
    tokens(server, granted("first"), granted("second"), granted("third"))
    oauth = make(server)
    oauth.invalidate("first")
    assert oauth.token() == "first"
    oauth.invalidate("first")
    assert oauth.token() == "second"
    oauth.invalidate("first")
    assert oauth.token() == "second"
    assert len(server.hits("/token")) == 2


def test_a_crowd_that_saw_the_same_rejection_causes_one_refetch(server):
    """16 threads invalidating the same token and asking again cause one request."""
    tokens(server, granted("first"), granted("second"))
    oauth = make(server)
    oauth.token()

    def rejected() -> str:
        oauth.invalidate("first")
        return oauth.token()

    assert crowd(rejected) == ["second"] * 16
    assert len(server.hits("/token")) == 2


# Errors


@pytest.mark.parametrize(
    ("error", "status"),
    [
        ("invalid_request", 400),
        ("invalid_client", 401),
        ("invalid_grant", 400),
        ("unauthorized_client", 400),
        ("unsupported_grant_type", 400),
        ("invalid_scope", 400),
    ],
)
def test_oauth2_errors_become_token_errors(server, error, status):
    """Each RFC 6749 error code comes back as TokenError with code, description, status."""
    description = f"why: {error}"
    tokens(server, Reply.json({"error": error, "error_description": description}, status=status))
    with pytest.raises(TokenError) as caught:
        make(server).token()
    assert (caught.value.error, caught.value.description, caught.value.status) == (
        error,
        description,
        status,
    )
    # The message says what was rejected, in words, besides the code.
    rejected = {
        "invalid_request": "lacks a field",
        "invalid_client": "client id or client secret",
        "invalid_grant": "username or password",
        "unauthorized_client": "may not use this grant type",
        "unsupported_grant_type": "does not support this grant type",
        "invalid_scope": "scope was refused",
    }
    assert f"{error}: " in str(caught.value)
    assert rejected[error] in str(caught.value)


def test_an_error_without_description_has_an_empty_one(server):
    """An error code alone (or a description that is not text) gives description ''."""
    tokens(server, Reply.json({"error": "invalid_grant", "error_description": 7}, status=400))
    with pytest.raises(TokenError) as caught:
        make(server).token()
    assert (caught.value.error, caught.value.description) == ("invalid_grant", "")


def test_a_long_description_is_cut_short(server):
    """The server's description is shortened in the error."""
    tokens(server, Reply.json({"error": "invalid_grant", "error_description": "x" * 5000}, 400))
    with pytest.raises(TokenError) as caught:
        make(server).token()
    assert len(caught.value.description) == 300
    assert caught.value.description.endswith("...")


@pytest.mark.parametrize(
    ("reply", "status", "reason"),
    [
        (Reply(500, body="<html>oops</html>"), 500, "holds no OAuth2 error"),
        (Reply.json({"message": "no"}, status=400), 400, "holds no OAuth2 error"),
        (Reply.json({"error": ""}, status=400), 400, "holds no OAuth2 error"),
        (Reply.json(["error"], status=400), 400, "holds no OAuth2 error"),
        (Reply(302, {"Location": "/elsewhere"}), 302, "redirect"),
        (Reply(200, body="<html>login</html>"), 200, "not a JSON object"),
        (Reply(200, body=b"\xff\xfe"), 200, "not a JSON object"),
        (Reply.json([ACCESS]), 200, "not a JSON object"),
        (Reply.json({"token_type": "Bearer"}), 200, "no access_token"),
        (Reply.json({"access_token": ""}), 200, "no access_token"),
        (Reply.json({"access_token": 12}), 200, "no access_token"),
        (granted(expires_in="soon"), 200, "expires_in"),
        (granted(expires_in=-1), 200, "expires_in"),
        (granted(expires_in=True), 200, "expires_in"),
        (granted(expires_in=[1]), 200, "expires_in"),
        (granted(expires_in="inf"), 200, "expires_in"),
    ],
)
def test_unreadable_answers_are_invalid_responses(server, reply, status, reason):
    """Answers that are not OAuth2 raise TokenError('invalid_response'), never follow."""
    tokens(server, reply)
    oauth = make(server)
    with pytest.raises(TokenError, match=reason) as caught:
        oauth.token()
    assert (caught.value.error, caught.value.status) == ("invalid_response", status)
    assert [r.path for r in server.requests] == ["/token"]
    assert oauth.last_response == {}


# What is shown


def test_last_response_holds_everything_but_the_tokens(server):
    """last_response keeps the other fields (a tenant id) and drops the three tokens."""
    other_tokens = {"refresh_token": "a-refresh-token", "id_token": "an-id-token"}
    tokens(server, granted(tenantId="t-1", **other_tokens))
    oauth = make(server)
    assert oauth.last_response == {}
    oauth.token()
    assert oauth.last_response == {"token_type": "Bearer", "expires_in": 3600, "tenantId": "t-1"}
    with pytest.raises(TypeError):
        oauth.last_response["tenantId"] = "other"  # type: ignore[index]


def test_repr_masks_the_secrets():
    """Repr shows the redacted URL and the client id, never the secret or the password."""
    oauth = OAuth2Token(
        "https://idp.example.com/token?key=abc",
        client_id="the-client",
        client_secret=SECRET,
        grant="password",
        username="key-id",
        password=PASSWORD,
        scopes=["read", "write"],
    )
    assert repr(oauth) == (
        "OAuth2Token('https://idp.example.com/token?key=***', client_id='the-client', "
        "client_secret='***', grant='password', username='key-id', password='***', "
        "scopes='read write')"
    )


def test_secrets_appear_in_no_log_message_or_repr(server, caplog):
    """At DEBUG, logs, exception messages and repr hold no secret, password or token."""
    caplog.set_level(logging.DEBUG)
    echo = f"bad secret {SECRET} or password {PASSWORD}"
    tokens(
        server,
        granted(),
        Reply.json({"error": f"invalid_grant {PASSWORD}", "error_description": echo}, 400),
        Reply.json({"message": SECRET}, status=500),
        Reply(drop=True),
    )
    oauth = make(server, grant="password", username="key-id", password=PASSWORD)
    shown = [repr(oauth)]
    assert oauth.token() == ACCESS
    shown.append(repr(oauth))
    oauth.invalidate(ACCESS)
    for _ in range(3):
        with pytest.raises(Exception) as caught:
            oauth.token()
        shown += [str(caught.value), repr(caught.value), str(caught.value.args)]
    assert "fetching a token from" in caplog.text
    assert "token fetched, expires in 3600 s" in caplog.text
    header = server.hits("/token")[0].headers["authorization"].partition(" ")[2]
    for text in [caplog.text, *shown]:
        for secret in (SECRET, PASSWORD, ACCESS, header):
            assert secret not in text
    assert "***" in shown[2]


def test_a_cancelled_wait_for_another_threads_fetch_stops_at_once(server):
    """A waiter on a slow fetch stops when its event is set; the fetch lands its token."""
    tokens(server, delayed(granted(), 0.6))
    provider = make(server, clock=None)
    fetched = []
    fetcher = threading.Thread(target=lambda: fetched.append(provider.token()))
    fetcher.start()
    while not server.hits("/token"):  # the fetch is in flight
        time.sleep(0.005)
    stop = Cancellation()
    threading.Timer(0.1, stop.set).start()
    started = time.monotonic()
    with cancelled_by(stop), pytest.raises(Cancelled, match="another thread's token request"):
        provider.token()
    assert time.monotonic() - started < 0.5
    fetcher.join(timeout=10)
    assert fetched == [ACCESS]
    assert len(server.hits("/token")) == 1


def test_a_fetch_aborted_by_its_cancellation_makes_the_waiters_fetch_anew(server):
    """A fetch aborted by its caller's cancellation makes an uncancelled waiter fetch anew."""
    replies = [delayed(granted("first"), 10), granted("second")]

    @server.route("POST", "/token")
    def _(request):
        return replies.pop(0)

    provider = make(server, clock=None)
    stop = Cancellation()
    outcome: list[object] = []

    def fetch_under_cancel() -> None:
        with cancelled_by(stop):
            try:
                provider.token()
            except Cancelled as error:
                outcome.append(error)

    fetcher = threading.Thread(target=fetch_under_cancel)
    fetcher.start()
    while not server.hits("/token"):
        time.sleep(0.005)
    waiter_got: list[str] = []
    waiter = threading.Thread(target=lambda: waiter_got.append(provider.token()))
    waiter.start()
    time.sleep(0.05)  # the waiter waits on the flight
    started = time.monotonic()
    stop.set()
    fetcher.join(timeout=10)
    waiter.join(timeout=10)
    assert time.monotonic() - started < 1.0
    assert len(outcome) == 1
    assert isinstance(outcome[0], Cancelled)
    assert waiter_got == ["second"]
    assert len(server.hits("/token")) == 2


def delayed(reply: Reply, delay: float) -> Reply:
    """*reply*, answered after *delay* seconds."""
    return attrs.evolve(reply, delay=delay)


# From asyncio


class Executor(ThreadPoolExecutor):
    """A loop's default executor that counts the calls it is given, or refuses them all."""

    def __init__(self, *, workers: int = 4, refuse: bool = False) -> None:
        super().__init__(max_workers=workers)
        self.submitted = 0
        self.refuse = refuse

    def submit(self, fn, /, *args, **kwargs):
        """Count the call, or refuse it."""
        if self.refuse:
            raise AssertionError("a worker thread was asked for")
        self.submitted += 1
        return super().submit(fn, *args, **kwargs)


def run_with(executor: Executor, main):
    """Run the coroutine function *main* on a new loop whose default executor is *executor*."""

    async def wrapped():
        asyncio.get_running_loop().set_default_executor(executor)
        return await main()

    return asyncio.run(wrapped())


async def arrived(server: LoopbackServer) -> None:
    """Wait until the token endpoint has received a request."""
    while not server.hits("/token"):  # noqa: ASYNC110 - the server is another thread's
        await asyncio.sleep(0.005)


def test_token_async_gives_a_cached_token_at_once_without_a_thread(server):
    """A valid cached token comes at once, to 50 tasks: no thread, no wait, no request."""
    tokens(server, granted())
    oauth = make(server)
    assert oauth.token() == ACCESS

    async def main():
        coroutine = oauth.token_async()
        with pytest.raises(StopIteration) as finished:  # done without suspending once
            coroutine.send(None)
        assert finished.value.value == ACCESS
        return await asyncio.gather(*(oauth.token_async() for _ in range(50)))

    assert run_with(Executor(refuse=True), main) == [ACCESS] * 50
    assert len(server.hits("/token")) == 1


def test_token_async_fetches_a_token_due_for_refresh(server):
    """A token past its refresh instant is fetched anew, as `token` would."""
    clock = FakeClock()
    tokens(server, granted("first", 100), granted("second", 100))
    oauth = make(server, clock=clock)

    async def main():
        first = await oauth.token_async()
        clock.advance(100)
        return first, await oauth.token_async(), await oauth.token_async()

    assert asyncio.run(main()) == ("first", "second", "second")
    assert len(server.hits("/token")) == 2


def test_tasks_asking_at_once_share_one_fetch_in_one_thread(server):
    """50 tasks on an empty cache cause one request, sent from one worker thread."""
    tokens(server, delayed(granted(), 0.3))
    oauth = make(server)
    executor = Executor()

    async def main():
        return await asyncio.gather(*(oauth.token_async() for _ in range(50)))

    assert run_with(executor, main) == [ACCESS] * 50
    assert len(server.hits("/token")) == 1
    assert executor.submitted == 1


def test_tasks_and_threads_share_one_fetch(server):
    """Tasks wait for a thread's request without a thread; threads wait for a task's."""
    tokens(server, delayed(granted("first", 100), 0.3), delayed(granted("second", 100), 0.3))
    clock = FakeClock()
    oauth = make(server, clock=clock)
    fetched: list[str] = []
    fetcher = threading.Thread(target=lambda: fetched.append(oauth.token()))
    fetcher.start()

    async def tasks_wait_for_a_thread():
        await arrived(server)
        return await asyncio.gather(*(oauth.token_async() for _ in range(20)))

    assert run_with(Executor(refuse=True), tasks_wait_for_a_thread) == ["first"] * 20
    fetcher.join(timeout=10)
    assert fetched == ["first"]
    assert len(server.hits("/token")) == 1
    clock.advance(100)

    async def threads_wait_for_a_task():
        fetching = asyncio.create_task(oauth.token_async())
        while len(server.hits("/token")) < 2:  # noqa: ASYNC110 - the server's own thread
            await asyncio.sleep(0.005)
        threads = [asyncio.to_thread(oauth.token) for _ in range(4)]
        return await asyncio.gather(fetching, *threads)

    assert asyncio.run(threads_wait_for_a_task()) == ["second"] * 5
    assert len(server.hits("/token")) == 2


def test_the_loop_keeps_running_while_a_slow_endpoint_answers(server):
    """A ticker task keeps ticking while a token is fetched from an endpoint that takes 0.5 s."""
    tokens(server, delayed(granted(), 0.5))
    oauth = make(server)
    ticks = [0]

    async def ticker():
        while True:
            await asyncio.sleep(0.01)
            ticks[0] += 1

    async def main():
        ticking = asyncio.create_task(ticker())
        await asyncio.sleep(0)  # the ticker starts
        token = await oauth.token_async()
        ticking.cancel()
        return token, ticks[0]

    token, during = asyncio.run(main())
    assert token == ACCESS
    # About 50 ticks; a loop blocked by the request would tick once at most.
    assert during >= 10


def test_a_cancelled_task_leaves_its_fetch_to_the_others(server):
    """The fetching task is cancelled mid-request: the fetch lands for the waiter and the cache."""
    tokens(server, delayed(granted(), 0.4))
    oauth = make(server)

    async def main():
        first = asyncio.create_task(oauth.token_async())
        await arrived(server)
        second = asyncio.create_task(oauth.token_async())
        await asyncio.sleep(0.05)  # the second waits for the first's request
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        got = await asyncio.wait_for(second, 10)
        return got, await oauth.token_async()

    assert run_with(Executor(), main) == (ACCESS, ACCESS)
    assert len(server.hits("/token")) == 1


def test_a_fetch_queued_for_a_thread_survives_its_cancelled_task(server):
    """With every worker busy, the fetching task is cancelled: its fetch still runs, for others."""
    tokens(server, granted())
    oauth = make(server)
    release = threading.Event()

    async def main():
        busy = asyncio.get_running_loop().run_in_executor(None, release.wait, 10)
        first = asyncio.create_task(oauth.token_async())
        second = asyncio.create_task(oauth.token_async())
        await asyncio.sleep(0.05)  # the first's fetch is queued; the second waits for it
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        release.set()
        await busy
        return await asyncio.wait_for(second, 10)

    assert run_with(Executor(workers=1), main) == ACCESS
    assert len(server.hits("/token")) == 1


def test_a_refusal_reaches_every_waiting_task(server):
    """When the one request is refused, every task that waited for it gets the TokenError."""
    tokens(server, delayed(Reply.json({"error": "invalid_client"}, status=401), 0.2))
    oauth = make(server)

    async def main():
        asked = (oauth.token_async() for _ in range(10))
        return await asyncio.gather(*asked, return_exceptions=True)

    outcomes = asyncio.run(main())
    assert [getattr(outcome, "error", outcome) for outcome in outcomes] == ["invalid_client"] * 10
    assert all(isinstance(outcome, TokenError) for outcome in outcomes)
    assert len(server.hits("/token")) == 1
