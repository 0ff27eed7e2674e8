"""ratekit for requests: `RateLimitedAdapter`, mounted on a ``requests.Session``.

From:

```python
session = requests.Session()
```

to:

```python
session = requests.Session()
session.mount("https://api.example.com/", RateLimitedAdapter(limiter))
```

and every request the session sends to that prefix waits out the shared cooldown,
takes its turn at *limiter*, reports its answer to a limiter that learns, and is
retried by ratekit's policy (only when repeating it is safe), as `ratekit.http.Client`
does.  Needs the ``requests`` extra (``pip install 'ratekit[requests]'``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, cast

import attrs
import requests
from requests.adapters import HTTPAdapter
from requests.utils import rewind_body
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, ReadTimeoutError
from urllib3.exceptions import HTTPError as Urllib3Error

from ratekit import _hooks
from ratekit._cancel import resolve
from ratekit._errors import RetryError
from ratekit._redact import redact_url
from ratekit.http._client import DEFAULT_RETRY
from ratekit.http._gate import idempotent_request, in_library_terms
from ratekit.http._transport import transport_error
from ratekit.integrations._common import make_gate

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ratekit.http import ClientStatistics
    from ratekit.retry import RetryBudget, RetryPolicy
    from ratekit.typing import Clock, Limiter

__all__ = ["RateLimitedAdapter"]

log = logging.getLogger("ratekit.http")


def _urllib3_error(error: BaseException) -> Urllib3Error | None:
    """The urllib3 error that requests wrapped in *error*, if it wrapped one."""
    inner = error.args[0] if error.args else None
    if isinstance(inner, MaxRetryError) and inner.reason is not None:
        inner = inner.reason
    return inner if isinstance(inner, Urllib3Error) else None


def _kind(error: BaseException) -> BaseException | None:
    """Ratekit's name for a failure of requests' transport (`ratekit.http.ConnectionFailed`...)."""
    if not isinstance(error, requests.RequestException):
        return None
    inner = _urllib3_error(error)
    if inner is None:
        return None
    request = error.request
    url = getattr(request, "url", None) or ""
    shown = f"{getattr(request, 'method', None) or 'GET'} {redact_url(url)}"
    return transport_error(inner, shown)


def _unsent(error: BaseException) -> bool:
    """Whether a request that raised *error* never reached the server: no connection."""
    if isinstance(error, requests.ConnectTimeout):
        return True
    inner = _urllib3_error(error) if isinstance(error, requests.ConnectionError) else None
    return isinstance(inner, ConnectTimeoutError) and not isinstance(inner, ReadTimeoutError)


#: The largest body of a retried answer that is read to its end before the next attempt,
#: so that its connection goes back to the pool; a larger one is dropped with it.
_DRAIN = 1 << 16


def _discard(response: requests.Response) -> None:
    """Free the connection of an answer that will be retried, before the next attempt."""
    try:
        if int(response.headers.get("Content-Length", _DRAIN + 1)) <= _DRAIN:
            _ = response.content  # read whole: closing then keeps the connection
    except (requests.RequestException, ValueError):
        pass  # a broken body or length: the connection is dropped below
    response.close()


class _Shown:
    """A request as logs show it: its method and redacted URL, formatted only if logged."""

    __slots__ = ("method", "url")

    def __init__(self, method: str, url: str | None) -> None:
        self.method = method
        self.url = url or ""

    def __str__(self) -> str:
        return f"{self.method} {redact_url(self.url)}"


def _never(_: object) -> bool:
    return False


def _rewindable(request: requests.PreparedRequest) -> bool:
    """Whether requests can put a file body back to where it started (as for redirects)."""
    position = getattr(request, "_body_position", None)
    return isinstance(position, int)


class RateLimitedAdapter(HTTPAdapter):
    """A requests transport adapter that sends under a ratekit limiter and retry policy.

    Mount it on a session for the prefix of the rate-limited API:

    ```python
    import requests
    import ratekit
    from ratekit.integrations.requests import RateLimitedAdapter

    limiter = ratekit.limiter("10/second")
    session = requests.Session()
    session.mount("https://api.example.com/", RateLimitedAdapter(limiter))
    session.get("https://api.example.com/items").raise_for_status()
    ```

    Each request, and each retry and redirect hop (requests sends each through the
    adapter), in turn: waits out the cooldown that a server announced to any user of
    *limiter*, takes *cost* from *limiter*, is sent by requests' own `HTTPAdapter`, and
    has its answer reported: to a limiter that learns (`ratekit.http.AdaptiveLimiter`),
    and, for a 429 or a 503 with ``Retry-After``, as a cooldown that pauses every
    session, thread, `ratekit.http.Client` and integration that shares *limiter*.

    **Retries** follow *retry* (`ratekit.http.DEFAULT_RETRY`: 5 attempts in 2 minutes,
    429, 502, 503, 504, failed connections and read timeouts; ``Retry-After`` obeyed),
    for requests that can be repeated without harm: idempotent methods (``GET``,
    ``PUT``, ``DELETE``, ...) or an ``Idempotency-Key`` header.  A ``POST`` or a
    ``PATCH`` is retried only when the server cannot have acted on it: a 429, a 503
    with ``Retry-After``, a connection that could not be made.  A body read from a
    file is rewound for each attempt, as requests rewinds it for a redirect; a body
    from a generator is spent once sent, so such a request is sent again only when
    its connection could not be made.  The policy's ``retry_on``
    may name ratekit's errors (`ratekit.http.ConnectionFailed`, `ReadTimeout`,
    `TLSError`) or requests' own; requests' errors are classified as the client's.

    **What comes back** is what requests gives: when the policy gives up, the last
    response (check its status as before: ``raise_for_status()``), or the last
    exception raised again (``requests.ConnectionError``, ...).  Only a request held by
    a cooldown past the policy's deadline before any attempt raises
    `ratekit.retry.RetryError`.  Responses that were retried are closed.

    **Cancellation.**  The waits (cooldown, limiter, sleeps between attempts) end at
    once when the `ratekit.current_cancel` is set, such as the event of the
    `ratekit.Scheduler` map whose worker sends the request (`ratekit.Cancelled`).  A
    request in flight runs until requests' own *timeout*.

    Give every request a ``timeout=`` as requests advises: the adapter's waits come
    before it and do not count in it.  URLs are logged (``ratekit.http``, DEBUG)
    without their query values; headers never are.

    Args:
        limiter: Paces the requests (any `ratekit.typing.Limiter`); ``None``: retries
            and the cooldown only.
        retry: The retry policy; ``None`` to send each request once.
        cooldown: Whether a 429 or 503 ``Retry-After`` pauses every user of *limiter*
            (``False``: only the request that saw it waits, by its policy).
        cost: What each request takes from *limiter*.
        budget: A `ratekit.retry.RetryBudget` shared with other clients, or ``None``.
        clock: Where time comes from (default: the limiter's clock).
        **adapter_options: requests' own `HTTPAdapter` options (``pool_connections``,
            ``pool_maxsize``, ``pool_block``); not ``max_retries``: retries are
            ratekit's.

    Raises:
        TypeError: If ``max_retries`` is given, or an argument has the wrong type.
        ValueError: If *cost* is not a positive finite number.
    """

    def __init__(  # noqa: PLR0913 - the settings of an adapter, all keyword-only
        self,
        limiter: Limiter | None = None,
        *,
        retry: RetryPolicy | None = DEFAULT_RETRY,
        cooldown: bool = True,
        cost: float = 1,
        budget: RetryBudget | None = None,
        clock: Clock | None = None,
        **adapter_options: Any,  # noqa: ANN401 - HTTPAdapter's own keywords
    ) -> None:
        if "max_retries" in adapter_options:
            raise TypeError(
                "max_retries is not an option of RateLimitedAdapter: retries are "
                "ratekit's, pass retry=RetryPolicy(...)"
            )
        self._gate = make_gate(
            limiter, retry, cooldown=cooldown, cost=cost, clock=clock, budget=budget
        )
        self._limiter = limiter
        self._cost = cost
        # The policy for each kind of request, made once: (idempotent, replayable body).
        gate = self._gate
        once = gate.policy(idempotent=False, unsent=_unsent, kind=_kind)
        if once is not None:
            # A stream (a generator) is spent once sent: only a request that never
            # left, whose body was never read, can go again.
            once = attrs.evolve(once, retry_result=_never)
        self._policies = {
            (True, True): gate.policy(idempotent=True, unsent=_unsent, kind=_kind),
            (False, True): gate.policy(idempotent=False, unsent=_unsent, kind=_kind),
            (False, False): once,
        }
        super().__init__(**adapter_options)
        _hooks.made(self)

    def __repr__(self) -> str:
        return f"RateLimitedAdapter({self._limiter!r}, cost={self._cost!r})"

    def statistics(self) -> ClientStatistics:
        """Counts of requests, 429s, retries and failures since the adapter was made."""
        return self._gate.statistics()

    def send(  # noqa: PLR0913, PLR0917 - requests' signature
        self,
        request: requests.PreparedRequest,
        stream: bool = False,  # noqa: FBT002 - requests' signature
        timeout: float | tuple[float, float] | tuple[float, None] | None = None,
        verify: bool | str = True,  # noqa: FBT002 - requests' signature
        cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """Send *request* under the limiter and the retry policy (see the class)."""
        gate = self._gate
        method = request.method or "GET"
        body = request.body
        in_memory = body is None or isinstance(body, (bytes, str))
        rewind = not in_memory and _rewindable(request)
        replayable = in_memory or rewind
        idempotent = replayable and idempotent_request(method, request.headers, None)
        policy = self._policies[idempotent, replayable]
        deadline = gate.deadline()
        cancel = resolve(None)
        shown = _Shown(method, request.url)
        sent_one: list[requests.Response] = []

        def attempt(number: int) -> requests.Response:
            if sent_one:  # retried: free its connection before the next attempt
                _discard(sent_one.pop())
            if rewind and number > 1:
                rewind_body(request)
            gate.admit(self._cost, cancel, deadline)
            sent = gate.sending()
            try:
                response = super(RateLimitedAdapter, self).send(
                    request, stream=stream, timeout=timeout, verify=verify, cert=cert,
                    proxies=proxies,
                )  # fmt: skip
            except Exception as error:
                gate.counts.sent(None, method, error)
                log.debug("%s (attempt %d) failed", shown, number)
                raise
            gate.counts.sent(response.status_code, method)
            log.debug("%s (attempt %d) -> %s", shown, number, response.status_code)
            gate.answered(response.status_code, response.headers, sent)
            sent_one.append(response)
            return response

        try:
            return gate.run(attempt, policy, cancel=None, explicit=False)
        except RetryError as error:
            give_up = error
        except BaseException:  # cancelled, or an error while a retried answer waited
            for response in sent_one:
                response.close()
            raise
        return cast("requests.Response", in_library_terms(give_up))
