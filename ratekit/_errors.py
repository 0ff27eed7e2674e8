"""The exceptions that ratekit raises; they all derive from `RateKitError`."""

from __future__ import annotations


class RateKitError(Exception):
    """Base class of every exception that ratekit raises on purpose."""

    #: The attributes that rebuild the exception; errors cross process boundaries
    #: (``multiprocessing``, ``concurrent.futures``) by pickling, which calls the class
    #: with ``args``, and ``args`` holds only the message.
    _fields: tuple[str, ...] = ()

    def __reduce__(self) -> str | tuple[object, ...]:
        if not self._fields:
            return super().__reduce__()
        return (_rebuild, (type(self), {name: getattr(self, name) for name in self._fields}))


def _rebuild(cls: type[RateKitError], fields: dict[str, object]) -> RateKitError:
    """Unpickle a `RateKitError` by calling its class with the attributes it kept."""
    return cls(**fields)


class CostTooLarge(RateKitError, ValueError):
    """A cost can never be granted because it exceeds what the limiter can ever hold.

    Raised at once by every method (never a wait that cannot end). It is also a
    `ValueError`, since the cost is a bad argument for that limiter.

    Attributes:
        cost: The cost that was asked for.
        capacity: The most the limiter can ever grant at once.
    """

    _fields = ("cost", "capacity")

    def __init__(self, cost: float, capacity: float) -> None:
        self.cost = cost
        self.capacity = capacity
        super().__init__(
            f"cost={cost!r} can never be granted: it exceeds the limiter's capacity of {capacity!r}"
        )


class AcquireTimeout(RateKitError, TimeoutError):
    """A blocking acquire could not be granted within its timeout.

    Raised at once, before sleeping, as soon as the limiter knows the wait would not
    fit: nothing is consumed and nothing is slept.

    Attributes:
        cost: The cost that was asked for.
        timeout: The timeout that was given, in seconds.
        retry_after: The wait that would have been needed, in seconds.
    """

    _fields = ("cost", "timeout", "retry_after")

    def __init__(self, cost: float, timeout: float, retry_after: float) -> None:
        self.cost = cost
        self.timeout = timeout
        self.retry_after = retry_after
        super().__init__(
            f"cost={cost!r} needs a wait of {retry_after:.6g} s, "
            f"longer than timeout={timeout!r} s; nothing was consumed"
        )


class QueueFull(AcquireTimeout):
    """A blocking acquire was refused because it would wait longer than a queue holds.

    `LeakyBucket` queues at most its capacity: a caller that would wait longer than
    ``capacity / rate`` is refused at once instead of queueing without bound.  In an
    `all_of` composition that bound applies to every wait, whichever member causes it,
    since the wait is booked in the leaky bucket's queue too.  It is an `AcquireTimeout`, so
    code that handles waits that cannot be served handles this one too.

    Attributes:
        cost: The cost that was asked for.
        timeout: The longest wait the queue allows, in seconds.
        retry_after: The wait that would have been needed, in seconds.
    """

    def __init__(self, cost: float, timeout: float, retry_after: float) -> None:
        super().__init__(cost, timeout, retry_after)
        message = (
            f"cost={cost!r} was refused: it would wait {retry_after:.6g} s, longer than the "
            f"{timeout:.6g} s that a LeakyBucket queue holds; nothing was consumed"
        )
        self.args = (message,)


class TooManyKeys(RateKitError):
    """`Keyed` cannot take a new key: every key it holds still limits something.

    Forgetting a key that is not back at rest would reset its limit, so `Keyed` refuses
    the new key instead.  Raise ``max_keys``, or retry after `retry_after` seconds.

    Attributes:
        max_keys: How many keys the `Keyed` may hold.
        retry_after: Seconds until the first key may come back to rest (a lower bound).
    """

    _fields = ("max_keys", "retry_after")

    def __init__(self, max_keys: int, retry_after: float) -> None:
        self.max_keys = max_keys
        self.retry_after = retry_after
        super().__init__(
            f"cannot add a key: all max_keys={max_keys} keys still limit something and none "
            f"can be forgotten for {retry_after:.6g} s; raise max_keys or retry later"
        )


class MapTimeout(RateKitError, TimeoutError):
    """A `Scheduler.map` did not finish within its timeout; what was pending is cancelled.

    Attributes:
        timeout: The timeout that was given, in seconds.
    """

    _fields = ("timeout",)

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        super().__init__(f"the map did not finish within timeout={timeout!r} s; it was stopped")


class SchedulerClosed(RateKitError, RuntimeError):
    """A scheduler that was shut down was asked to start more calls."""


class Cancelled(RateKitError):
    """A blocking call was stopped through its cancel event, or its map was stopped.

    Raised by every wait that a cancel event (see `ratekit.current_cancel`) wakes: a
    retry loop's sleep, a client's shared cooldown, a request in flight, a map whose
    event was set from outside.  Whatever the call had booked was given back first,
    and no retry follows it.

    Attributes:
        what: What was cancelled, as the message says it.
    """

    _fields = ("what",)

    def __init__(self, what: str = "the call") -> None:
        self.what = what
        super().__init__(f"{what} was cancelled")


class AcquireCancelled(Cancelled):
    """A blocking acquire was cancelled through its ``cancel`` event.

    What the wait had reserved was given back before this was raised.

    Attributes:
        cost: The cost that was asked for.
    """

    _fields = ("cost",)

    def __init__(self, cost: float) -> None:
        self.cost = cost
        super().__init__(f"acquire of cost={cost!r}")
        self.args = (f"acquire of cost={cost!r} was cancelled; its reservation was returned",)


class RetryError(RateKitError):
    """A retry loop gave up: attempts ran out, the deadline would pass, or the budget did.

    The last exception, if the last attempt raised one, is also the ``__cause__``.

    Attributes:
        attempts: How many attempts were made.
        reason: ``"attempts"``, ``"deadline"`` or ``"budget"``.
        last_exception: What the last attempt raised, or ``None``.
        last_result: What the last attempt returned (a response whose status asks for a
            retry), or ``None``.
    """

    _fields = ("attempts", "reason", "last_exception", "last_result", "detail")

    def __init__(
        self,
        attempts: int,
        reason: str,
        *,
        last_exception: BaseException | None = None,
        last_result: object = None,
        detail: str = "",
    ) -> None:
        self.attempts = attempts
        self.reason = reason
        self.last_exception = last_exception
        self.last_result = last_result
        self.detail = detail
        if last_exception is not None:
            last = f"; the last one: {type(last_exception).__name__}: {last_exception}"
        elif last_result is not None:
            last = f"; the last one: {_describe(last_result)}"
        else:  # none made, or given up on before it was (a cooldown past the deadline)
            last = ""
        plural = "" if attempts == 1 else "s"
        head = "before the first attempt" if attempts == 0 else f"after {attempts} attempt{plural}"
        why = f" ({detail})" if detail else ""
        super().__init__(f"gave up {head}{why}{last}")


class RetryBudgetExhausted(RetryError):
    """A retry was refused because the shared `RetryBudget` had none left.

    Raised at once, without waiting, so that an outage does not turn into a retry storm.
    """


def _describe(result: object) -> str:
    """Name a result without printing it (it may hold secrets): its status if it has one."""
    for name in ("status", "status_code"):
        status = getattr(result, name, None)
        if isinstance(status, int):
            return f"status {status}"
    return f"a {type(result).__name__} that asked for a retry"


class HTTPError(RateKitError):
    """Base class of the errors of `ratekit.http`.

    Their messages never contain secrets: URLs are shown without their query values and
    user information, and bodies only as short excerpts of error responses.
    """


class HTTPStatusError(HTTPError):
    """A response had a status that the caller asked to treat as an error.

    Attributes:
        status: The HTTP status.
        method: The request method.
        url: The URL, without query values or user information.
        excerpt: The first characters of the response body, for diagnosis.
    """

    _fields = ("status", "method", "url", "excerpt")

    def __init__(self, status: int, method: str, url: str, excerpt: str = "") -> None:
        self.status = status
        self.method = method
        self.url = url
        self.excerpt = excerpt
        body = f": {excerpt}" if excerpt else ""
        super().__init__(f"{method} {url} answered {status}{body}")


class ResponseError(HTTPError):
    """A response body could not be read as what was expected (JSON, for instance).

    Attributes:
        status: The HTTP status.
        url: The URL, without query values or user information.
        excerpt: The first characters of the body.
        reason: What was wrong with it.
    """

    _fields = ("status", "url", "excerpt", "reason")

    def __init__(self, status: int, url: str, excerpt: str, reason: str) -> None:
        self.status = status
        self.url = url
        self.excerpt = excerpt
        self.reason = reason
        super().__init__(f"{url} answered {status} with {reason}: {excerpt!r}")


class IncompleteListing(HTTPError):
    """A paged walk ended before the total the API told: records are missing.

    Raised instead of ending quietly, so that an export never marks itself complete
    without every record.  Walk again (or resume) to fetch the rest.

    Attributes:
        url: The listing's URL, without query values or user information.
        total: The total the API told last.
        walked: The records of the listing the walk reached (those skipped included).
    """

    _fields = ("url", "total", "walked")

    def __init__(self, url: str, total: int, walked: int) -> None:
        self.url = url
        self.total = total
        self.walked = walked
        super().__init__(
            f"{url} ended after {walked} records of the {total} it reports: "
            f"{total - walked} missing"
        )


class TooManyRedirects(HTTPError):
    """A request was redirected more times than its client follows.

    Attributes:
        status: The status of the last redirect.
        url: The URL first asked for, without query values or user information.
        max_redirects: How many redirects the client follows.
    """

    _fields = ("status", "url", "max_redirects")

    def __init__(self, status: int, url: str, max_redirects: int) -> None:
        self.status = status
        self.url = url
        self.max_redirects = max_redirects
        super().__init__(
            f"{url} was redirected more than max_redirects={max_redirects} times "
            f"(the last answer: {status})"
        )


class AuthError(HTTPError):
    """The server rejected the credentials, even with a freshly fetched token.

    Attributes:
        status: The HTTP status (401).
        url: The URL, without query values or user information.
        credential: Which credential was rejected, named but never shown.
    """

    _fields = ("status", "url", "credential")

    def __init__(self, status: int, url: str, credential: str) -> None:
        self.status = status
        self.url = url
        self.credential = credential
        super().__init__(
            f"{url} answered {status} again with a fresh token: the {credential} was rejected"
        )


#: What each OAuth2 error code says was rejected, for the messages of `TokenError`.
_TOKEN_ERROR_HINTS = {
    "invalid_client": "the client id or client secret was rejected",
    "invalid_grant": "the grant was rejected (for the password grant: the username or password)",
    "invalid_scope": "a requested scope was refused",
    "unauthorized_client": "this client may not use this grant type",
    "unsupported_grant_type": "the server does not support this grant type",
    "invalid_request": "the request lacks a field or is malformed",
}


class TokenError(HTTPError):
    """The token endpoint refused to issue a token (RFC 6749 section 5.2).

    Attributes:
        error: The OAuth2 error code (``invalid_client``, ``invalid_grant``,
            ``invalid_scope``, ``unsupported_grant_type``, ...), or ``"invalid_response"``
            when the answer could not be read.
        description: The server's ``error_description``, if any.
        status: The HTTP status of the answer.
    """

    _fields = ("error", "description", "status")

    def __init__(self, error: str, description: str = "", status: int = 400) -> None:
        self.error = error
        self.description = description
        self.status = status
        hint = _TOKEN_ERROR_HINTS.get(error)
        detail = f" ({description})" if description else ""
        what = f"{error}: {hint}" if hint else error
        super().__init__(f"the token endpoint refused a token: {what}{detail} [{status}]")


class InsecureTransport(HTTPError, ValueError):
    """Credentials would travel over plain ``http://`` to a host that is not loopback."""


class TransportError(HTTPError):
    """A request could not be carried out: no connection, no whole answer, no trust.

    The base of `ConnectionFailed`, `ReadTimeout` and `TLSError`, and raised itself for
    the rare failures of the transport that are none of them.  Its message is one line:
    the method, the URL without query values, and what failed.  The transport's own
    exception (urllib3's) is the ``__cause__``.
    """


class ConnectionFailed(TransportError, ConnectionError):
    """A request's connection could not be made, or dropped before a whole response.

    Refused, reset, closed without an answer, a host name that does not resolve, a
    connect timeout, a TLS handshake cut short.  A `ConnectionError`, so that retry
    policies retry it by default.
    """


class ReadTimeout(TransportError, TimeoutError):
    """A response did not come within the read timeout.

    A `TimeoutError`: the server may have acted on the request, so policies retry it only
    when asked (the `ratekit.http.Client`'s default policy does, for idempotent requests).
    """


class TLSError(TransportError):
    """The server's TLS certificate was not accepted (untrusted, expired, another host's).

    Permanent: no retry policy retries it by default, as the same certificate would be
    refused again.  Give the client a pool that trusts the server's certificate
    authority (``cancellable_pool(ca_certs=...)``) if it is a private one.
    """


class StoreUnavailable(RateKitError, ConnectionError):
    """The store that holds a shared limit (Redis, SQLite) could not be used in time.

    It could not be reached, or it refused the call (a Redis over its memory limit, a
    read-only replica, a failed save, a permission the user lacks).  Raised instead of
    granting or denying: by default a shared limiter fails closed, since
    it cannot know what the other processes have used.  A `ConnectionError`, so that
    retry policies retry it by default.  The store client's own exception is the
    ``__cause__``.

    Attributes:
        store: What the store is, for the message (``"Redis at 127.0.0.1:6379"``), with
            no credentials.
        reason: What went wrong (``"timed out after 1.0 s"``, ``"connection refused"``,
            ``"refused writes: OOM command not allowed ..."``).
    """

    _fields = ("store", "reason")

    def __init__(self, store: str, reason: str) -> None:
        self.store = store
        self.reason = reason
        super().__init__(f"{store} is unavailable: {reason}")
