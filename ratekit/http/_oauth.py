"""`OAuth2Token`: a cached OAuth2 access token, fetched by one thread at a time."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import contextvars
import functools
import json
import logging
import math
import threading
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal, cast, final
from urllib.parse import quote_plus, urlencode

import attrs
import urllib3

from ratekit import _hooks
from ratekit._cancel import current_cancel, waking
from ratekit._clock import MONOTONIC
from ratekit._errors import (
    Cancelled,
    ConnectionFailed,
    ReadTimeout,
    TokenError,
    TransportError,
)
from ratekit._redact import MASK, check_transport, mask_secrets, redact_url
from ratekit._validate import at_least, positive, text
from ratekit.http._pool import cancellable_pool
from ratekit.http._transport import BodyTooLarge, Undecodable, send

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from ratekit.typing import Clock

log = logging.getLogger("ratekit.http")

#: Fields of a token response that are credentials themselves: never kept in
#: `OAuth2Token.last_response`, so that it can be shown and logged freely.
_SECRET_FIELDS = frozenset({"access_token", "refresh_token", "id_token"})

#: The longest piece of server text (an error code or description) that a message shows.
_MAX_TEXT = 300

#: The most bytes a token response may have: a token, an id token, a few fields.
_MAX_TOKEN_BODY = 1024 * 1024

#: A failing early refresh is tried at most this many times before the cached token
#: expires: after a failure, the next try waits this fraction of the refresh window.
_REFRESH_TRIES = 6

_GRANTS = ("client_credentials", "password")
_CLIENT_AUTHS = ("basic", "body")


@attrs.define(eq=False)
class _Flight:
    """One fetch in progress; the threads and tasks that wait for it read its outcome here.

    Threads wait on the provider's condition; tasks are woken by their *wakers*, called
    (with the lock held) when the flight ends.
    """

    done: bool = False
    token: str | None = None
    error: BaseException | None = None
    wakers: list[Callable[[], object]] = attrs.Factory(list)


@attrs.frozen
class _Fetched:
    """A token the endpoint issued, with the instants that govern its reuse."""

    token: str = attrs.field(repr=False)
    expires_at: float | None
    refresh_at: float | None
    response: Mapping[str, object]


@final
class OAuth2Token:
    """An OAuth2 access token from a token endpoint, cached and refreshed before it expires.

    A thread-safe `ratekit.typing.TokenProvider` for `ratekit.http.Client`.  It supports the
    ``client_credentials`` and ``password`` grants (RFC 6749 sections 4.4 and 4.3), with
    the client authenticated by HTTP Basic or by form fields (section 2.3.1).

    The token is reused until *margin* seconds before it expires (by the response's
    ``expires_in``, counted from the start of the request on *clock*); a token that lives
    less than ``2 * margin`` is reused for half its life instead, so short-lived tokens
    are still cached.  Without ``expires_in`` the token is kept until `invalidate`.
    When a new token is needed, exactly one thread fetches it while the others wait for
    its outcome, so a crowd of threads causes one request, not one each.

    A failed early refresh does not discard a token that is still valid.  When the
    refresh that is due in the last *margin* seconds fails (no connection, a timeout, a
    429 or 5xx, an unreadable answer, a refused certificate, even refused credentials),
    the cached token is returned, to the caller and to the waiting threads, and the
    failure is logged: at WARNING when it will not pass by itself (refused credentials,
    an unreadable answer, a refused certificate), at DEBUG otherwise.  The refresh is
    tried again by the first call a sixth of the refresh window later (the window runs
    from when the refresh is due to expiry: 10 s later with the default margin), so a
    failing endpoint sees at most six requests before the token expires, not one per
    call.  A failure raises only when no valid token is left: the token has expired, or
    it was invalidated (after a 401).  Refused credentials (``invalid_client``,
    ``invalid_grant``) keep the token too: the server that issued it decides whether it
    is still good, and says so with a 401 that invalidates it.

    Secrets stay out of sight: the client secret and the password are shown as ``***``
    in ``repr``, the token URL without query values, and none of them, nor the token,
    appears in log records (logger ``ratekit.http``) or in exception messages.
    Credentials are refused over plain ``http://`` except to loopback.

    Args:
        token_url: The token endpoint.
        client_id: The client identifier.
        client_secret: The client secret.
        grant: ``"client_credentials"`` or ``"password"``.
        username: The resource owner's name, for the ``password`` grant only.
        password: The resource owner's password, for the ``password`` grant only.
        scopes: The scopes to ask for: a sequence of scope names or one space-separated
            string; none by default (the server's default scopes).
        client_auth: ``"basic"`` for an HTTP Basic ``Authorization`` header, ``"body"``
            for ``client_id`` and ``client_secret`` form fields.
        margin: Seconds before expiry at which a token stops being reused.
        timeout: Seconds that one token request may take in all (connect and read).
        pool: The `urllib3.PoolManager` to send with (default: one of its own, made at
            the first fetch).
        clock: Where time comes from (default: the real monotonic clock).
        extra: More form fields for the token request (``audience``, ``resource``, ...);
            they cannot replace the fields set from the other arguments.

    Raises:
        ValueError: If an argument is empty or out of range, or the ``password`` grant
            lacks its *username* or *password* (the message names which).
        TypeError: If *margin* or *timeout* is not a number.
        InsecureTransport: If *token_url* is plain ``http://`` to a host that is not
            loopback.
    """

    __slots__ = (
        "__weakref__",  # for ratekit.telemetry, which must not keep a token alive
        "_body",
        "_client_id",
        "_clock",
        "_cond",
        "_expires_at",
        "_fetch_failures",
        "_fetches",
        "_flight",
        "_grant",
        "_headers",
        "_margin",
        "_pause",
        "_pool",
        "_refresh_at",
        "_response",
        "_scope",
        "_secrets",
        "_shown_url",
        "_timeout",
        "_token",
        "_token_url",
        "_username",
    )

    def __init__(  # noqa: PLR0913 - the grant's parameters are keyword-only options
        self,
        token_url: str,
        *,
        client_id: str,
        client_secret: str,
        grant: Literal["client_credentials", "password"] = "client_credentials",
        username: str | None = None,
        password: str | None = None,
        scopes: Sequence[str] | str | None = None,
        client_auth: Literal["basic", "body"] = "basic",
        margin: float = 60.0,
        timeout: float = 10.0,
        pool: urllib3.PoolManager | None = None,
        clock: Clock | None = None,
        extra: Mapping[str, str] | None = None,
    ) -> None:
        text("token_url", token_url, secret=True)
        text("client_id", client_id, secret=True)
        text("client_secret", client_secret, secret=True)
        _check_grant(grant, username, password)
        if client_auth not in _CLIENT_AUTHS:
            raise ValueError(f"client_auth must be one of {_CLIENT_AUTHS}, got {client_auth!r}")
        self._margin = _margin(margin)
        self._timeout = urllib3.Timeout(total=positive("timeout", timeout))
        check_transport(token_url, what="credentials")

        self._token_url = token_url
        self._shown_url = redact_url(token_url)
        self._client_id = client_id
        self._grant = grant
        self._username = username
        self._scope = _scope(scopes)
        self._pool = pool
        self._clock = MONOTONIC if clock is None else clock
        # A server may echo what it was sent in an error description; these are masked.
        self._secrets = tuple(s for s in (client_secret, password) if s)
        self._body, self._headers = self._encode(client_auth, client_secret, password, extra or {})

        self._cond = threading.Condition(threading.Lock())
        self._token: str | None = None
        self._expires_at: float | None = None
        self._refresh_at: float | None = None
        # How long a failed early refresh holds back the next one (see the class).
        self._pause = 0.0
        self._response: Mapping[str, object] = MappingProxyType({})
        self._flight: _Flight | None = None
        # Token requests that ended, and those of them that failed (`ratekit.telemetry`).
        self._fetches = 0
        self._fetch_failures = 0
        _hooks.made(self)

    def _encode(
        self,
        client_auth: str,
        client_secret: str,
        password: str | None,
        extra: Mapping[str, str],
    ) -> tuple[bytes, dict[str, str]]:
        """The body and headers of every token request (they never change)."""
        fields: dict[str, str] = {"grant_type": self._grant}
        if self._scope:
            fields["scope"] = self._scope
        if self._username is not None and password is not None:
            fields["username"] = self._username
            fields["password"] = password
        headers = {
            "Accept": "application/json",
            "Content-Type": "application/x-www-form-urlencoded",
        }
        if client_auth == "basic":
            # RFC 6749 2.3.1: each part is form-urlencoded before the Basic encoding, so a
            # colon in the id or the secret cannot shift the split.
            pair = f"{quote_plus(self._client_id)}:{quote_plus(client_secret)}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        else:
            fields["client_id"] = self._client_id
            fields["client_secret"] = client_secret
        for name, value in extra.items():
            if name in fields:
                raise ValueError(f"extra cannot set {name!r}: it comes from the other arguments")
            fields[name] = value
        # Form-encoded in the body, never in the URL, where proxies and logs would see it.
        return urlencode(fields).encode("ascii"), headers

    def __repr__(self) -> str:
        parts = [repr(self._shown_url), f"client_id={self._client_id!r}", f"client_secret={MASK!r}"]
        if self._grant == "password":
            parts += ["grant='password'", f"username={self._username!r}", f"password={MASK!r}"]
        if self._scope:
            parts.append(f"scopes={self._scope!r}")
        return f"OAuth2Token({', '.join(parts)})"

    def secrets(self) -> tuple[str, ...]:
        """The secrets this provider knows: its client secret, password and token.

        For `ratekit.http.Client`, which masks them in the excerpts of error bodies (a
        server may echo what it was sent); never shown, logged or put in a message.
        """
        with self._cond:
            token = () if self._token is None else (self._token,)
        return (*self._secrets, *token)

    @property
    def expires_at(self) -> float | None:
        """When the cached token expires, as a reading of the clock; ``None`` if unknown.

        ``None`` before the first fetch, after `invalidate`, and when the endpoint gave no
        ``expires_in``.
        """
        with self._cond:
            return self._expires_at

    @property
    def last_response(self) -> Mapping[str, object]:
        """The last successful token response, without its tokens (read-only).

        For adapters that need other fields the endpoint returns (a tenant id, the
        granted ``scope``, ``token_type``, ``expires_in``, ...); ``access_token``,
        ``refresh_token`` and ``id_token`` are left out.  Empty before the first fetch.
        """
        with self._cond:
            return self._response

    def token(self) -> str:
        """Return the cached access token, or fetch a new one if it is due.

        If another thread is already fetching, wait for its outcome instead of sending a
        second request: its token is returned, or its error raised, in every waiting
        thread.  A failure is not remembered; the next call tries again.  An early
        refresh that fails returns the cached token while it is valid (see the class).

        Raises:
            TokenError: If the endpoint refused (its RFC 6749 ``error`` code, description
                and HTTP status), or its answer could not be read (``"invalid_response"``:
                no token in it, or a body not in the ``Content-Encoding`` it claims).
            ratekit.http.ConnectionFailed: If no connection could be made, or it was
                lost before the whole answer came; `ratekit.http.Client` retries it by
                its default policy.
            ratekit.http.ReadTimeout: If the answer did not come within *timeout*.
            ratekit.http.TLSError: If the endpoint's TLS certificate was refused.
            ratekit.http.TransportError: The base of the three above, raised itself for
                the transport's rarer failures.  Its message names the token URL without
                query values; urllib3's exception is the ``__cause__``.
            ratekit.Cancelled: If the `ratekit.current_cancel` was set while this
                call waited for another thread's request, or aborted its own.
        """
        while True:
            with self._cond:
                token = self._cached()
                if token is not None:
                    return token
                flight = self._flight
                if flight is None:
                    flight = self._flight = _Flight()
                    break
            token = self._await(flight)
            if token is not None:
                return token
        return self._fly(flight)

    async def token_async(self) -> str:
        """`token` for asyncio: the cached token at once, or a fetch that does not block.

        A valid cached token is returned at once, without a thread and without waiting.
        Otherwise the request is sent from a worker thread of the loop's default
        executor (as `asyncio.to_thread` does) while the event loop goes on, and it is
        the same single flight as `token`'s: many tasks and threads that ask at once
        cause one request, and the tasks that wait for another's request take no
        thread.

        Cancelling the task cancels its wait, not the request: a request under way, or
        queued for a worker thread, still completes (within the endpoint's *timeout*)
        and its token is cached and handed to every other task and thread that waits
        for it.

        Raises:
            TokenError: If the endpoint refused, or its answer could not be read (see
                `token`).
            ratekit.http.TransportError: If the request failed (see `token`).
        """
        loop = asyncio.get_running_loop()
        while True:
            with self._cond:
                token = self._cached()
                if token is not None:
                    return token
                flight = self._flight
                if flight is None:
                    flight = self._flight = _Flight()
                    break
                ended: asyncio.Future[None] = loop.create_future()
                flight.wakers.append(functools.partial(_wake_soon, loop, ended))
            await ended
            token = self._outcome(flight)
            if token is not None:
                return token
        fly = functools.partial(contextvars.copy_context().run, self._fly, flight)
        try:
            fetching = loop.run_in_executor(None, fly)
        except BaseException as error:  # the executor is shut down: no fetch will end it
            self._fail(flight, error)
            raise
        # Shielded: cancelling this task must not cancel a fetch still queued for a
        # thread, which every other waiter awaits (asyncio.to_thread would).
        return await asyncio.shield(fetching)

    def _cached(self) -> str | None:
        """The cached token, if it is not due for a refresh (with the lock held)."""
        if self._token is not None and (
            self._refresh_at is None or self._clock.now() < self._refresh_at
        ):
            return self._token
        return None

    def _fly(self, flight: _Flight) -> str:
        """Fetch a token for *flight*, which this caller holds, and end the flight."""
        try:
            fetched = self._fetch()
        except BaseException as error:
            # Whatever ends the fetch must also end every wait for it.
            kept = self._fail(flight, error)
            if kept is None:
                raise
            return kept
        self._land(flight, fetched)
        return fetched.token

    def _await(self, flight: _Flight) -> str | None:
        """Wait for another thread's fetch: its token, or ``None`` to fetch anew.

        The wait ends early, with `ratekit.Cancelled`, when the `ratekit.current_cancel`
        is set (woken at once if it is a ratekit cancellation; a plain event is seen when
        the fetch ends, within its timeouts).
        """
        cancel = current_cancel()
        with waking(cancel, self._wake), self._cond:
            # Condition.wait blocks on the fetch, not on time: the request's own
            # timeout bounds it, and a cancellation wakes it.
            while not flight.done:
                if cancel is not None and cancel.is_set():
                    raise Cancelled("the wait for another thread's token request")
                self._cond.wait()
        return self._outcome(flight)

    @staticmethod
    def _outcome(flight: _Flight) -> str | None:
        """What an ended *flight* gives its waiters: a token, ``None`` to fetch anew, or its error.

        A fetch that was itself cancelled tells nothing about the token: a caller that
        was not cancelled fetches anew.
        """
        if isinstance(flight.error, Cancelled):
            return None
        if flight.error is not None:
            raise flight.error
        # Without an error, the fetch landed a token.
        return cast("str", flight.token)

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def invalidate(self, token: str) -> None:
        """Forget *token* if it is the cached one, so that the next `token` fetches anew.

        Call it when the server rejects the token (a 401).  A token that was already
        replaced is ignored: many threads that saw the same rejection cause one fetch.
        """
        with self._cond:
            if self._token is not None and token == self._token:
                self._token = self._expires_at = self._refresh_at = None

    def _land(self, flight: _Flight, fetched: _Fetched) -> None:
        """Cache the *fetched* token and hand it to the threads that wait for *flight*."""
        with self._cond:
            self._fetches += 1
            self._token = fetched.token
            self._expires_at = fetched.expires_at
            self._refresh_at = fetched.refresh_at
            if fetched.expires_at is not None and fetched.refresh_at is not None:
                self._pause = (fetched.expires_at - fetched.refresh_at) / _REFRESH_TRIES
            self._response = fetched.response
            flight.token = fetched.token
            self._end(flight)

    def _fail(self, flight: _Flight, error: BaseException) -> str | None:
        """End *flight*, which failed with *error*: the cached token if still valid, else None.

        Only the endpoint's failures and refusals keep the token: a cancellation, or an
        error of the program, is raised as it is.
        """
        now = self._clock.now()
        with self._cond:
            self._fetches += 1
            self._fetch_failures += 1
            token, expires_at = self._token, self._expires_at
            if not (
                isinstance(error, (TransportError, TokenError))
                and token is not None
                and expires_at is not None
                and now < expires_at
            ):
                flight.error = error
                self._end(flight)
                return None
            # Held back for a while, not retried by every call: that would hammer an
            # endpoint that is down, once per request, until the token expires.
            self._refresh_at = min(now + self._pause, expires_at)
            retry_in = self._refresh_at - now
            flight.token = token
            self._end(flight)
        level = logging.DEBUG if is_transient(error) else logging.WARNING
        log.log(
            level,
            "the token refresh failed; the cached token, which expires in %.6g s, is kept "
            "and the refresh tried again in %.6g s: %s",
            expires_at - now,
            retry_in,
            error,
        )
        return token

    def _end(self, flight: _Flight) -> None:
        """Mark *flight* done and wake its waiters (with the lock held)."""
        flight.done = True
        self._flight = None
        self._cond.notify_all()
        for wake in flight.wakers:
            wake()

    def _fetch(self) -> _Fetched:
        log.debug("fetching a token from %s (grant %s)", self._shown_url, self._grant)
        # Expiry counts from before the request: the server's clock started during it.
        started = self._clock.now()
        if self._pool is None:
            # Only the thread that holds the flight gets here, so one pool is made.
            self._pool = cancellable_pool()
        try:
            response = send(
                self._pool,
                "POST",
                self._token_url,
                body=self._body,
                headers=self._headers,
                timeout=self._timeout,
                max_body=_MAX_TOKEN_BODY,
                cancel=current_cancel(),
            )
        except Cancelled as error:
            # Aborted by a cancellation: say so, to this caller and to the waiters.
            raise Cancelled("the token request") from error.__cause__
        except Undecodable as bad:
            reason = "the body is not in the coding that its Content-Encoding claims"
            raise TokenError("invalid_response", reason, bad.status) from None
        except BodyTooLarge as large:
            reason = f"the body is larger than {_MAX_TOKEN_BODY} bytes"
            raise TokenError("invalid_response", reason, large.status) from None
        fetched = self._read(response.status, response.data, started)
        if fetched.expires_at is None:
            log.debug("token fetched, no expiry given: kept until invalidated")
        else:
            log.debug("token fetched, expires in %.6g s", fetched.expires_at - started)
        return fetched

    def _read(self, status: int, data: bytes, started: float) -> _Fetched:
        payload = _json_object(data)
        if not 200 <= status < 300:
            raise self._refusal(payload, status)
        if payload is None:
            raise TokenError("invalid_response", "the answer is not a JSON object", status)
        token = payload.get("access_token")
        if not isinstance(token, str) or not token:
            raise TokenError("invalid_response", "the answer has no access_token", status)
        lifetime = _lifetime(payload.get("expires_in"), status)
        response = MappingProxyType({k: v for k, v in payload.items() if k not in _SECRET_FIELDS})
        if lifetime is None:
            return _Fetched(token, None, None, response)
        # min(): a token shorter-lived than twice the margin is reused for half its life.
        refresh_at = started + (lifetime - min(self._margin, lifetime / 2))
        return _Fetched(token, started + lifetime, refresh_at, response)

    def _refusal(self, payload: Mapping[str, object] | None, status: int) -> TokenError:
        """The error for an answer that is not a success (RFC 6749 section 5.2)."""
        payload = payload or {}
        error = payload.get("error")
        if isinstance(error, str) and error:
            description = payload.get("error_description")
            return TokenError(
                self._scrub(error),
                self._scrub(description) if isinstance(description, str) else "",
                status,
            )
        if 300 <= status < 400:
            return TokenError("invalid_response", "the answer is a redirect (not followed)", status)
        return TokenError("invalid_response", "the answer holds no OAuth2 error", status)

    def _scrub(self, text: str) -> str:
        """Server text fit for a message: any secret masked, and cut short."""
        text = mask_secrets(text, self._secrets, shortest=1)
        return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 3] + "..."


def _wake_soon(loop: asyncio.AbstractEventLoop, ended: asyncio.Future[None]) -> None:
    """Resolve *ended* in its *loop*, from whichever thread ended the flight."""
    with contextlib.suppress(RuntimeError):  # the loop is closed: no task waits any more
        loop.call_soon_threadsafe(_resolve, ended)


def _resolve(ended: asyncio.Future[None]) -> None:
    if not ended.done():  # a waiter that was cancelled has cancelled it
        ended.set_result(None)


def _check_grant(grant: str, username: str | None, password: str | None) -> None:
    if grant not in _GRANTS:
        raise ValueError(f"grant must be one of {_GRANTS}, got {grant!r}")
    if grant == "password":
        text("username", username, secret=True)
        text("password", password, secret=True)
        return
    # Silently dropping a password would hide a mistake in the configuration.
    for name, value in (("username", username), ("password", password)):
        if value is not None:
            raise ValueError(f"{name} is only used by the password grant")


def _margin(value: object) -> float:
    return at_least("margin", value, 0)


def _scope(scopes: Sequence[str] | str | None) -> str:
    """The ``scope`` field: scope names joined by single spaces (RFC 6749 3.3)."""
    if scopes is None:
        return ""
    if isinstance(scopes, str):
        return " ".join(scopes.split())
    names: list[object] = list(scopes)
    for name in names:
        if not isinstance(name, str) or name.split() != [name]:
            raise ValueError(f"scopes must be non-empty names without spaces, got {name!r}")
    return " ".join(cast("list[str]", names))


def is_transient(error: BaseException) -> bool:
    """Whether a failed token request may well succeed if sent again.

    A lost connection, a timeout, or an overloaded endpoint (429, 5xx); what retry
    policies around a token request retry.
    """
    if isinstance(error, (ConnectionFailed, ReadTimeout)):
        return True
    return isinstance(error, TokenError) and (error.status == 429 or error.status >= 500)


def _json_object(data: bytes) -> dict[str, object] | None:
    """The body as a JSON object, or ``None`` if it is not one."""
    try:
        value: object = json.loads(data)
    except ValueError:  # also bad UTF-8: UnicodeDecodeError is a ValueError
        return None
    return value if isinstance(value, dict) else None


def _lifetime(value: object, status: int) -> float | None:
    """``expires_in`` in seconds; some servers send it as a string of digits."""
    if value is None:
        return None
    seconds = math.nan
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        with contextlib.suppress(ValueError):
            seconds = float(value)
    if not (seconds >= 0 and math.isfinite(seconds)):
        raise TokenError("invalid_response", "expires_in is not a number of seconds", status)
    return seconds
