"""What urllib3 raises, as ratekit's own errors: one line each, transient or not.

`transport_error` is the one place that classifies them, for `ratekit.http.Client` and
`ratekit.http.OAuth2Token` alike:

- ``ReadTimeoutError``: `ReadTimeout`, retried by the client for idempotent requests;
- ``NewConnectionError``, ``ConnectTimeoutError``, ``ProtocolError``, ``IncompleteRead``,
  ``ProxyError``, and an ``SSLError`` of a handshake cut short: `ConnectionFailed`,
  retried by default;
- an ``SSLError`` of certificate verification: `TLSError`, not retried;
- anything else: `TransportError`, not retried.

A body that cannot be decoded is the answer's fault, not the transport's: the client
reports it as `ResponseError`.

`send` sends one request and reads its whole answer, within a deadline for all of it
and a bound on the body's size.
"""

from __future__ import annotations

import io
import math
import socket
import ssl
from http.client import RemoteDisconnected
from typing import TYPE_CHECKING

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    DecodeError,
    HTTPError,
    IncompleteRead,
    InvalidChunkLength,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ProxyError,
    ReadTimeoutError,
    SSLError,
)

from ratekit._cancel import Cancellation, abort_socket, cancelled_by
from ratekit._clock import MONOTONIC
from ratekit._errors import Cancelled, ConnectionFailed, ReadTimeout, TLSError, TransportError
from ratekit._redact import redact_url
from ratekit.http._pool import DEADLINES

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ratekit.typing import CancelEvent

#: The most bytes a response body may have unless a client says otherwise: far more
#: than any page of an API, far less than what would exhaust a worker's memory.
DEFAULT_MAX_BODY = 64 * 1024 * 1024

#: Bytes read from the socket at a time.
_CHUNK = 64 * 1024

#: What each kind of socket failure is called in a message.
_OS_REASONS: tuple[tuple[type[BaseException], str], ...] = (
    (RemoteDisconnected, "the server closed the connection without answering"),
    (ConnectionRefusedError, "connection refused"),
    (ConnectionResetError, "connection reset by the server"),
    (ConnectionAbortedError, "connection aborted"),
    (BrokenPipeError, "the server stopped reading the request"),
    (socket.gaierror, "the host name could not be resolved"),
    (TimeoutError, "no connection in time"),
)


def _chain(error: BaseException) -> list[BaseException]:
    """*error*, its causes and contexts, and the exceptions among its arguments."""
    seen: list[BaseException] = []
    pending = [error]
    while pending:
        current = pending.pop()
        if any(current is other for other in seen):
            continue
        seen.append(current)
        pending.extend(arg for arg in current.args if isinstance(arg, BaseException))
        pending.extend(
            linked for linked in (current.__cause__, current.__context__) if linked is not None
        )
    return seen


def _certificate_problem(error: SSLError) -> str | None:
    """Why a certificate was refused, if *error* is a refusal (not a cut handshake)."""
    for cause in _chain(error):
        if isinstance(cause, ssl.SSLCertVerificationError):
            return cause.verify_message or "certificate verify failed"
        if isinstance(cause, ssl.CertificateError):  # a host name mismatch, before 3.7's
            return "the certificate is for another host"  # pragma: no cover
    text = str(error)
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        return "certificate verify failed"
    return None


def _reason(error: HTTPError) -> str:
    """A short, secret-free phrase for what went wrong on the connection."""
    if isinstance(error, NameResolutionError):
        return "the host name could not be resolved"
    for cause in _chain(error):
        for kind, phrase in _OS_REASONS:
            if isinstance(cause, kind):
                return phrase
    if isinstance(error, (IncompleteRead, InvalidChunkLength)):
        return "the connection closed before the whole answer came"
    if isinstance(error, ConnectTimeoutError) and not isinstance(error, NewConnectionError):
        return "no connection in time"
    # Not str(error): urllib3's messages may quote the URL, query secrets included.
    return type(error).__name__


def transport_error(error: HTTPError, shown: str) -> TransportError:
    """Return the ratekit error for *error*, raised by urllib3 while *shown* was sent.

    Args:
        error: What urllib3 raised.
        shown: The request as messages show it: the method and the redacted URL.
    """
    if isinstance(error, ReadTimeoutError):
        return ReadTimeout(f"{shown}: no response in time")
    if isinstance(error, SSLError):
        problem = _certificate_problem(error)
        if problem is not None:
            return TLSError(f"{shown}: the server's TLS certificate was refused: {problem}")
        return ConnectionFailed(f"{shown}: the TLS handshake failed ({_reason(error)})")
    if isinstance(
        error,
        (ConnectTimeoutError, ProtocolError, IncompleteRead, InvalidChunkLength, ProxyError),
    ):
        return ConnectionFailed(f"{shown}: {_reason(error)}")
    return TransportError(f"{shown}: the request failed ({type(error).__name__})")


class BodyTooLarge(Exception):
    """The body went past the size allowed (*head* is its beginning, for the message)."""

    def __init__(self, status: int, head: bytes) -> None:
        super().__init__(status)
        self.status = status
        self.head = head


class Undecodable(Exception):
    """The body claims a content coding (gzip, deflate...) that it does not have."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def whole_request(timeout: urllib3.Timeout) -> float:
    """The seconds a whole request may take under *timeout*: its total, else connect + read.

    urllib3 bounds each wait for a read by the read timeout, not their sum: a server
    that sends a byte now and then would hold a request for ever.
    """
    total = timeout.total
    if isinstance(total, (int, float)):
        return float(total)
    parts = (timeout.connect_timeout, timeout.read_timeout)
    if all(isinstance(part, (int, float)) for part in parts):
        return float(sum(parts))  # type: ignore[arg-type]
    return math.inf


def send(  # noqa: PLR0913 - one request, and its bounds
    pool: urllib3.PoolManager,
    method: str,
    url: str,
    *,
    body: bytes | str | None,
    headers: Mapping[str, str],
    timeout: urllib3.Timeout,
    max_body: int,
    cancel: CancelEvent | None,
) -> urllib3.HTTPResponse:
    """Send one request and read its whole body, within bounds of time and size.

    The request, its answer's headers and its whole body must come within
    `whole_request` seconds: past that instant, or once *cancel* is set (a `Cancellation`
    only), the socket is shut down (on a `cancellable_pool`; the body's reads are
    watched on any pool).  The body is read in chunks, and never past *max_body* bytes.
    The returned response holds the body, decoded (gzip, deflate...), as its ``data``;
    its connection is back in the pool.

    Raises:
        ratekit.Cancelled: If *cancel* was set meanwhile.
        ReadTimeout: If the whole request did not fit in its time.
        TransportError: What urllib3 raised, as `transport_error` classifies it (its
            ``__cause__``).
        BodyTooLarge: If the body has more than *max_body* bytes.
        Undecodable: If the body does not have the content coding it claims.
    """
    trigger = Cancellation()
    unlink = cancel.on_set(trigger.set) if isinstance(cancel, Cancellation) else None
    whole = whole_request(timeout)
    unschedule = None
    if whole < math.inf:
        unschedule = DEADLINES.schedule(MONOTONIC.now() + whole, trigger.set)
    try:
        with cancelled_by(trigger):
            response = pool.request(
                method,
                url,
                body=body,
                headers=dict(headers),
                timeout=timeout,
                # No retries (the client's policy decides), no redirects (the client
                # follows them, keeping credentials to their origin), the body read here.
                retries=False,
                redirect=False,
                preload_content=False,
            )
        data = _read_whole(response, trigger, max_body)
    except HTTPError as error:
        shown = f"{method} {redact_url(url)}"
        if cancel is not None and cancel.is_set():  # aborted by the cancellation
            raise Cancelled(shown) from error
        if trigger.is_set():  # aborted at the deadline
            raise ReadTimeout(f"{shown}: no whole answer within {whole:g} s") from error
        raise transport_error(error, shown) from error
    finally:
        if unschedule is not None:
            unschedule()
        if unlink is not None:
            unlink()
    return urllib3.HTTPResponse(
        body=io.BytesIO(data),
        headers=response.headers,
        status=response.status,
        version=response.version,
        reason=response.reason,
        preload_content=True,
        decode_content=False,  # decoded already
        request_method=method,
        request_url=url,
    )


def _read_whole(response: urllib3.BaseHTTPResponse, trigger: Cancellation, max_body: int) -> bytes:
    """Read *response*'s body whole, unless *trigger* is set or it is too large."""
    connection = response.connection
    sock = getattr(connection, "sock", None)
    remove = trigger.on_set(lambda: abort_socket(sock))
    chunks: list[bytes] = []
    size = 0
    whole = False
    try:
        while True:
            try:
                chunk = response.read(_CHUNK)
            except DecodeError:
                raise Undecodable(response.status) from None
            if not chunk:
                whole = True
                return b"".join(chunks)
            size += len(chunk)
            chunks.append(chunk)
            if size > max_body:
                raise BodyTooLarge(response.status, b"".join(chunks)[:1024])
    finally:
        remove()
        if not whole:
            response.close()  # not drained: the connection is not reused
        response.release_conn()


def sent_nothing(error: BaseException) -> bool:
    """Whether *error*, raised by `send`, came before any byte of the request left.

    Only then can a request that must not be repeated be sent again: its connection
    could not even be made.
    """
    cause = error.__cause__
    return isinstance(cause, ConnectTimeoutError) and not isinstance(cause, ReadTimeoutError)
