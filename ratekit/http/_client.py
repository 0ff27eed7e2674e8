"""`Client`: one urllib3 pool, paced by a limiter, authenticated, retried, cooled down."""

from __future__ import annotations

import base64
import contextlib
import functools
import json as jsonlib
import logging
import re
from collections import deque
from typing import TYPE_CHECKING, Any, TypedDict, final
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit

import attrs
import urllib3

from ratekit import _hooks
from ratekit._cancel import resolve
from ratekit._clock import MONOTONIC
from ratekit._errors import (
    AuthError,
    Cancelled,
    ConnectionFailed,
    HTTPStatusError,
    ReadTimeout,
    ResponseError,
    TooManyRedirects,
    TransportError,
)
from ratekit._priority import at_priority, check_priority
from ratekit._redact import check_transport, mask_secrets, redact_url
from ratekit._validate import positive, whole_number
from ratekit.http._gate import ClientStatistics, Gate, idempotent_request
from ratekit.http._pool import cancellable_pool
from ratekit.http._redirects import DEFAULT_MAX_REDIRECTS, next_hop
from ratekit.http._transport import (
    DEFAULT_MAX_BODY,
    BodyTooLarge,
    Undecodable,
    send,
    sent_nothing,
)
from ratekit.retry import RetryPolicy

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from typing_extensions import Unpack

    from ratekit.retry import RetryBudget
    from ratekit.typing import CancelEvent, Clock, Limiter, QueryParams, TokenProvider

    class _RequestOptions(TypedDict, total=False):
        """The keyword arguments of `Client.request` that its shortcuts pass on."""

        params: QueryParams | None
        json: object
        fields: Mapping[str, str] | None
        body: bytes | str | None
        headers: Mapping[str, str] | None
        cost: float
        idempotent: bool | None
        priority: int | None


log = logging.getLogger("ratekit.http")

#: Connect and read timeouts, in seconds, unless a client is given others; a whole
#: request may take their sum, 40 s.
DEFAULT_TIMEOUT = urllib3.Timeout(connect=10.0, read=30.0)

#: How many characters of an error response a message shows.
_EXCERPT = 200

#: Characters past the excerpt that are masked with it, for a secret across the cut.
_EXCERPT_MARGIN = 512

#: Header names whose values are credentials, to mask where a server echoes them.
_SECRET_HEADER = re.compile(r"auth|cookie|key|token|secret|password|session", re.IGNORECASE)

#: What the client's default policy retries: failed or dropped connections, and read
#: timeouts (the server may have acted on a timed-out request: derive a policy without
#: `ReadTimeout` for calls that must not be repeated).
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (ConnectionFailed, ReadTimeout)

#: The client's default retry policy: five attempts within two minutes, retrying 429,
#: 502, 503, 504 and `TRANSIENT_ERRORS`, with ``Retry-After`` obeyed up to 5 minutes.
#: Derive variants with ``attrs.evolve(DEFAULT_RETRY, ...)`` to keep its classification.
DEFAULT_RETRY = RetryPolicy(attempts=5, deadline=120.0, retry_on=TRANSIENT_ERRORS)


@attrs.frozen
class _Prepared:
    """A request as `Client.request` prepared it, for each of its attempts."""

    method: str
    url: str = attrs.field(repr=False)  # may hold secrets in its query
    body: bytes | str | None = attrs.field(repr=False)
    headers: dict[str, str] = attrs.field(repr=False)
    cost: float
    cancel: CancelEvent | None
    deadline: float  # the instant after which no attempt starts (the retry policy's)
    sent: list[bool] = attrs.field(factory=lambda: [False], repr=False)  # may have reached it


def _encode_body(
    json: object,
    fields: Mapping[str, str] | None,
    body: bytes | str | None,
    headers: dict[str, str],
) -> bytes | str | None:
    """The body to send: *json* encoded, else *fields* as a form, else *body* as is."""
    if json is not None:
        headers.setdefault("Content-Type", "application/json")
        return jsonlib.dumps(json)
    if fields is not None:
        headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        return urlencode(fields)
    return body


def _excerpt(data: bytes, secrets: Iterable[str | None] = ()) -> str:
    """The beginning of a body, for a message, with every secret in *secrets* masked.

    Masked before it is cut, so that a secret across the cut is masked too.
    """
    text = data[: _EXCERPT + _EXCERPT_MARGIN].decode("utf-8", "replace")
    return mask_secrets(text, secrets)[:_EXCERPT]


def _query_values(url: str) -> list[str]:
    """The values of *url*'s query: they may be keys and tokens."""
    return [value for _, value in parse_qsl(urlsplit(url).query, keep_blank_values=False)]


def _header_secrets(headers: Mapping[str, str]) -> list[str]:
    """The values of headers that carry credentials, and what a Basic one encodes."""
    found: list[str] = []
    for name, value in headers.items():
        if not _SECRET_HEADER.search(name):
            continue
        found.append(value)
        scheme, _, credentials = value.partition(" ")
        if credentials:
            found.append(credentials)
        if scheme.lower() == "basic":
            with contextlib.suppress(ValueError, UnicodeDecodeError):
                decoded = base64.b64decode(credentials, validate=True).decode()
                found.extend([decoded, *decoded.split(":", 1)])
    return found


@final
class Client:
    """An HTTP client for a rate-limited API, over one thread-safe `urllib3.PoolManager`.

    Each request, in turn: waits out any cooldown the server announced, acquires its
    cost from *limiter*, attaches a bearer token from *auth*, is sent and read whole
    within *timeout*, follows redirects, and is retried by *retry* when its outcome asks
    for it (429, 502, 503, 504 and failed connections, by default) and when retrying it
    is safe (below).

    **Shared cooldown.**  A 429, or a 503 with ``Retry-After``, pauses every request of
    every client that shares the limiter until the announced instant, not only the
    request that saw it: a server that says "wait 30 s" means the whole client.  Then
    traffic resumes at the limiter's pace: a request whose turn at the limiter came
    during the cooldown takes another turn after it, so that the requests held do not
    all leave at once (the turn it had is spent).  Per-request backoff, by contrast,
    only delays the request that failed, while its siblings go on tripping the limit.

    **Retries by method.**  Only requests that can be repeated without harm are retried
    whatever the failure: ``GET``, ``HEAD``, ``OPTIONS``, ``PUT``, ``DELETE`` and
    ``TRACE`` (idempotent, RFC 9110 section 9.2.2), and any request with an
    ``Idempotency-Key`` header or ``idempotent=True``.  Others (``POST``, ``PATCH``)
    are retried only when the server cannot have acted on them: a 429, a 503 with
    ``Retry-After``, a connection that could not be made.  A ``POST`` that timed out
    or got a 502 is not sent again: the server may have carried it out.

    **Timeouts and size.**  A request, its answer's headers and its whole body must
    come within *timeout* (its ``total``, or connect plus read, for a `urllib3.Timeout`),
    however slowly the server sends: past it, the request ends with
    `ratekit.http.ReadTimeout` (its socket shut down, on a `cancellable_pool`).  A body
    larger than *max_body* bytes ends it with `ratekit.http.ResponseError`.

    **Redirects.**  Up to *max_redirects* are followed (``0``: none, the 3xx is
    returned); a 303, and a ``POST`` redirected by 301 or 302, becomes a ``GET``.  The
    bearer token, and ``Authorization`` and ``Cookie`` headers, go only to the origin
    of the URL asked for; a redirect from ``https`` to ``http`` is refused.

    **Cancellation.**  Each request takes a *cancel* event (by default the
    `ratekit.current_cancel`, such as the event a `ratekit.Scheduler` map hands its
    calls).  Once it is set, every wait of the request ends at once (the cooldown, the
    limiter, the sleep between attempts, another thread's token request), a request
    in flight is aborted (on a `cancellable_pool`, the default), no attempt starts,
    and `ratekit.Cancelled` is raised (`ratekit.AcquireCancelled` from the limiter).
    A cooldown never holds a request past its retry policy's *deadline*: the request
    gives up at once with `ratekit.retry.RetryError` (reason ``"deadline"``), as the
    request that saw the 429 does.

    **Auth and secrets.**  A 401 invalidates the token and the request is sent once
    more with a fresh one; a second 401 raises `ratekit.http.AuthError`.  Credentials
    never travel over plain ``http://`` except to loopback
    (`ratekit.http.InsecureTransport`).  URLs in logs and errors are shown without
    query values, and excerpts of error bodies are shown with every secret the client
    knows masked (the tokens it sent, credentials in its headers, query values, and
    what *auth* lists in a ``secrets()`` method, as `OAuth2Token` does).

    Args:
        limiter: Paces the requests (any `ratekit.typing.Limiter`); ``None``: no pacing.
        base_url: Prefixed to relative URLs.
        auth: Gives bearer tokens (`OAuth2Token` or any `ratekit.typing.TokenProvider`).
        retry: The retry policy (default `DEFAULT_RETRY`); ``None`` to never retry.
        budget: A `ratekit.retry.RetryBudget` shared with other clients, if any.
        pool: The `urllib3.PoolManager` to use (default: a `cancellable_pool` of its
            own); make it with `cancellable_pool` so that cancelled requests stop.
        timeout: Seconds for a whole request, or a `urllib3.Timeout` (default
            `DEFAULT_TIMEOUT`: 10 s to connect, 30 s for each read, 40 s in all).
        headers: Sent with every request.
        clock: Where cooldowns are read and slept (default: the limiter's, or real).
        max_redirects: The most redirects one request follows (``0``: none).
        max_body: The most bytes a response body may have.

    Raises:
        ValueError: If *timeout*, *max_redirects* or *max_body* is out of range.
    """

    __slots__ = (
        "__weakref__",  # for ratekit.telemetry, which must not keep a client alive
        "_auth",
        "_base_url",
        "_clock",
        "_counts",
        "_gate",
        "_headers",
        "_limiter",
        "_max_body",
        "_max_redirects",
        "_own_pool",
        "_pool",
        "_timeout",
        "_tokens",
    )

    def __init__(  # noqa: PLR0913 - the settings of a client, all keyword-only
        self,
        limiter: Limiter | None = None,
        *,
        base_url: str = "",
        auth: TokenProvider | None = None,
        retry: RetryPolicy | None = DEFAULT_RETRY,
        budget: RetryBudget | None = None,
        pool: urllib3.PoolManager | None = None,
        timeout: float | urllib3.Timeout = DEFAULT_TIMEOUT,
        headers: Mapping[str, str] | None = None,
        clock: Clock | None = None,
        max_redirects: int = DEFAULT_MAX_REDIRECTS,
        max_body: int = DEFAULT_MAX_BODY,
    ) -> None:
        self._limiter = limiter
        self._base_url = base_url
        self._auth = auth
        if clock is None:
            clock = getattr(limiter, "clock", None) or MONOTONIC
        self._clock: Clock = clock
        if retry is not None:
            changes: dict[str, Any] = {"clock": clock}
            if budget is not None:
                changes["budget"] = budget
            retry = attrs.evolve(retry, **changes)
        self._gate = Gate(limiter, retry, clock=clock)
        self._own_pool = pool is None
        self._pool = cancellable_pool() if pool is None else pool
        if isinstance(timeout, urllib3.Timeout):
            self._timeout = timeout
        else:
            self._timeout = urllib3.Timeout(total=positive("timeout", timeout))
        self._headers = dict(headers or {})
        self._max_redirects = whole_number("max_redirects", max_redirects, 0)
        self._max_body = whole_number("max_body", max_body, 1)
        self._counts = self._gate.counts
        # The last bearer tokens sent, to mask them in what servers echo back.
        self._tokens: deque[str] = deque(maxlen=4)
        if auth is not None and base_url:
            check_transport(base_url, what="a bearer token")
        _hooks.made(self)

    def __repr__(self) -> str:
        return f"Client(base_url={redact_url(self._base_url)!r}, limiter={self._limiter!r})"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections of the client's own pool."""
        if self._own_pool:
            self._pool.clear()

    def statistics(self) -> ClientStatistics:
        """Counts of requests, 429s, retries and failures since the client was made."""
        return self._gate.statistics()

    def cool_down(self, seconds: float) -> None:
        """Pause every request that shares this client's limiter for *seconds*."""
        self._gate.cool_down(seconds)

    def request(  # noqa: PLR0913 - the parts of a request, all keyword-only
        self,
        method: str,
        url: str,
        *,
        params: QueryParams | None = None,
        json: object = None,
        fields: Mapping[str, str] | None = None,
        body: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        cost: float = 1,
        cancel: CancelEvent | None = None,
        idempotent: bool | None = None,
        priority: int | None = None,
    ) -> urllib3.BaseHTTPResponse:
        """Send a request under the limiter, auth and retry policy; return the response.

        The response is returned whatever its status, once the retry policy no longer
        retries it, with its whole body read (``response.data``, decoded).  Use
        `get_json` for status checks and decoding.

        Args:
            method: The HTTP method.
            url: Absolute, or relative to *base_url*.
            params: Query parameters, encoded into the URL.
            json: A value sent as a JSON body.
            fields: A form, sent form-encoded in the body.
            body: A raw body.
            headers: Extra headers for this request.
            cost: What the request acquires from the limiter.
            cancel: An event that stops the request (see the class docstring);
                ``None``: the `ratekit.current_cancel`, if any.
            idempotent: Whether the request may be repeated whatever happened to it;
                ``None``: by its method, or an ``Idempotency-Key`` header (see the
                class docstring).
            priority: The priority the request waits for the limiter at (every
                attempt), which a `ratekit.Prioritized` limiter serves first (other
                limiters ignore it); ``None``: the `ratekit.current_priority`, if any.

        Raises:
            ratekit.retry.RetryError: When the retry policy gives up (reason
                ``"deadline"`` too when a shared cooldown would outlast its deadline).
            ratekit.Cancelled: When *cancel* is set (`ratekit.AcquireCancelled` if it
                was during the wait for the limiter).
            ratekit.http.AuthError: On a second 401 with a fresh token.
            ratekit.http.TransportError: A failure of the transport that the policy did
                not retry: `ConnectionFailed`, `ReadTimeout` (the whole request took
                too long), `TLSError` (the certificate was refused).
            ratekit.http.ResponseError: A body past *max_body*, or one that is not in
                the content coding it claims; a redirect that cannot be followed.
            ratekit.http.TooManyRedirects: Past *max_redirects*.
            ratekit.http.InsecureTransport: If a token would go over plain http, or a
                redirect leads from https to http.
            ValueError: If *priority* is negative, or out of range for the limiter.
            TypeError: If *priority* is not an integer.
        """
        full = self.url(url, params)
        send_headers = {**self._headers, **(headers or {})}
        data = _encode_body(json, fields, body, send_headers)
        if self._auth is not None:
            check_transport(full, what="a bearer token")
        idempotent = idempotent_request(method, send_headers, idempotent)
        level = None if priority is None else check_priority(priority)
        explicit = cancel is not None
        cancel = resolve(cancel)
        gate = self._gate
        prepared = _Prepared(method, full, data, send_headers, cost, cancel, gate.deadline())
        policy = gate.policy(idempotent=idempotent, unsent=lambda _: not prepared.sent[0])
        with at_priority(level):  # what the limiter's acquire reads, if it is Prioritized
            return gate.run(
                functools.partial(self._attempt, prepared), policy, cancel=cancel, explicit=explicit
            )

    def url(self, url: str, params: QueryParams | None = None) -> str:
        """The URL a request for *url* goes to: joined to *base_url*, *params* encoded.

        Shown as is, it may hold secrets in its query: log ``redact_url(client.url(...))``.
        """
        full = urljoin(self._base_url, url) if self._base_url else url
        if params:
            full = f"{full}{'&' if '?' in full else '?'}{urlencode(params)}"
        return full

    def _secrets(self, url: str, headers: Mapping[str, str] | None = None) -> list[str]:
        """Every secret the client knows that a request to *url* may have carried."""
        found = [*self._tokens, *_query_values(url)]
        found += _header_secrets({**self._headers, **(headers or {})})
        listed = getattr(self._auth, "secrets", None)
        if callable(listed):
            found += [secret for secret in listed() if isinstance(secret, str)]
        return found

    def _attempt(self, request: _Prepared, number: int) -> urllib3.BaseHTTPResponse:
        """One attempt: cooldown, limiter, auth (with one retry on 401), send, redirects."""
        method, url, body, headers = request.method, request.url, request.body, request.headers
        home = url
        same_origin = True
        fresh = redirects = 0
        gate = self._gate
        while True:
            gate.admit(request.cost, request.cancel, request.deadline)
            token = None
            send = headers
            if self._auth is not None and same_origin:
                token = self._auth.token()
                if token not in self._tokens:
                    self._tokens.append(token)
                send = {**headers, "Authorization": f"Bearer {token}"}
            sent = gate.sending()
            response = self._send(
                request, method=method, url=url, body=body, headers=send, number=number
            )
            if response.status == 401 and token is not None and self._auth is not None:
                self._auth.invalidate(token)
                if fresh:
                    raise AuthError(401, redact_url(url), "access token")
                fresh += 1
                continue
            gate.answered(response.status, response.headers, sent)
            hop = None
            if self._max_redirects:
                location = response.headers.get("Location")
                hop = next_hop(
                    response.status,
                    location,
                    method=method,
                    url=url,
                    body=body,
                    headers=headers,
                    home=home,
                )
            if hop is None:
                return response
            redirects += 1
            if redirects > self._max_redirects:
                raise TooManyRedirects(response.status, redact_url(home), self._max_redirects)
            log.debug("%s %s redirects to %s", method, redact_url(url), redact_url(hop.url))
            method, url, body, headers = hop.method, hop.url, hop.body, hop.headers
            same_origin = hop.same_origin
            fresh = 0

    def _send(  # noqa: PLR0913 - one hop of an attempt
        self,
        request: _Prepared,
        *,
        method: str,
        url: str,
        body: bytes | str | None,
        headers: dict[str, str],
        number: int,
    ) -> urllib3.BaseHTTPResponse:
        """Send once; the transport's errors become ratekit's (`Cancelled` if aborted)."""
        cancel = request.cancel
        shown = f"{method} {redact_url(url)}"
        if cancel is not None and cancel.is_set():
            raise Cancelled(f"{shown} (attempt {number})")
        request.sent[0] = True
        try:
            response = send(
                self._pool,
                method,
                url,
                body=body,
                headers=headers,
                timeout=self._timeout,
                max_body=self._max_body,
                cancel=cancel,
            )
        except (TransportError, Cancelled) as error:
            self._counts.sent(None, method, error)
            if sent_nothing(error):
                request.sent[0] = False
            if isinstance(error, Cancelled):
                raise Cancelled(f"{shown} (attempt {number})") from error.__cause__
            raise
        except BodyTooLarge as large:
            self._counts.sent(large.status, method)
            excerpt = _excerpt(large.head, self._secrets(url, headers))
            reason = f"a body of more than max_body={self._max_body} bytes"
            raise ResponseError(large.status, redact_url(url), excerpt, reason) from None
        except Undecodable as bad:
            self._counts.sent(bad.status, method)
            reason = "a body that is not in the content coding it claims"
            raise ResponseError(bad.status, redact_url(url), "", reason) from None
        self._counts.sent(response.status, method)
        log.debug("%s -> %s", shown, response.status)
        return response

    def get(
        self,
        url: str,
        *,
        cancel: CancelEvent | None = None,
        **kwargs: Unpack[_RequestOptions],
    ) -> urllib3.BaseHTTPResponse:
        """`request` with ``GET``."""
        return self.request("GET", url, cancel=cancel, **kwargs)

    def post(
        self,
        url: str,
        *,
        cancel: CancelEvent | None = None,
        **kwargs: Unpack[_RequestOptions],
    ) -> urllib3.BaseHTTPResponse:
        """`request` with ``POST``."""
        return self.request("POST", url, cancel=cancel, **kwargs)

    def get_json(
        self,
        url: str,
        *,
        cancel: CancelEvent | None = None,
        **kwargs: Unpack[_RequestOptions],
    ) -> Any:  # noqa: ANN401 - JSON is any value
        """``GET`` *url* and decode its JSON body (``None`` for 204 No Content).

        Raises:
            ratekit.http.HTTPStatusError: If the final status is not 2xx.
            ratekit.http.ResponseError: If the body is not JSON.
        """
        return self.json("GET", url, cancel=cancel, **kwargs)

    def json(
        self,
        method: str,
        url: str,
        *,
        cancel: CancelEvent | None = None,
        **kwargs: Unpack[_RequestOptions],
    ) -> Any:  # noqa: ANN401 - JSON is any value
        """`request`, then check the status and decode the JSON body, as `get_json`."""
        response = self.request(method, url, cancel=cancel, **kwargs)
        full = self.url(url, kwargs.get("params"))
        shown = redact_url(full)
        data = response.data
        if not 200 <= response.status < 300:
            excerpt = _excerpt(data, self._secrets(full, kwargs.get("headers")))
            raise HTTPStatusError(response.status, method, shown, excerpt)
        if response.status == 204 or not data.strip():
            return None
        try:
            return jsonlib.loads(data)
        except (ValueError, UnicodeDecodeError) as error:
            reason = f"a body that is not JSON ({error.__class__.__name__})"
            excerpt = _excerpt(data, self._secrets(full, kwargs.get("headers")))
            raise ResponseError(response.status, shown, excerpt, reason) from None
