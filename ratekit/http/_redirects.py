"""Following redirects as browsers, requests and httpx do, with credentials kept home.

A 301, 302, 303, 307 or 308 with a ``Location`` is followed: 303 becomes a ``GET``
without a body, and so does a ``POST`` that gets a 301 or a 302 (what every browser
does, and RFC 9110 section 15.4 allows); 307 and 308 repeat the request as it was.
Credentials (``Authorization``, ``Cookie`` and ``Proxy-Authorization`` headers, and
the bearer token the client adds) go only to the origin (scheme, host, port) the
request was made to; a hop to another origin goes without them, and a hop from
``https`` to ``http`` is refused, as it would show the request in the clear.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urljoin

import attrs

from ratekit._errors import InsecureTransport, ResponseError
from ratekit._redact import origin, redact_url

if TYPE_CHECKING:
    from collections.abc import Mapping

#: How many redirects a request follows unless a client says otherwise (requests allows
#: 30, httpx 20; an API that needs more than a few is misconfigured).
DEFAULT_MAX_REDIRECTS = 5

#: The statuses that redirect.
REDIRECTS = frozenset({301, 302, 303, 307, 308})

#: Headers that carry credentials: sent to the request's own origin only.
_CREDENTIALS = frozenset({"authorization", "cookie", "proxy-authorization"})

#: Headers that describe a body, dropped with it.
_BODY_HEADERS = frozenset({"content-type", "content-length", "content-encoding"})


@attrs.frozen
class Hop:
    """Where a redirect leads, and how the request goes there."""

    method: str
    url: str = attrs.field(repr=False)  # may hold secrets in its query
    body: bytes | str | None = attrs.field(repr=False)
    headers: dict[str, str] = attrs.field(repr=False)
    same_origin: bool


def next_hop(  # noqa: PLR0913 - the request as it stands, and the answer
    status: int,
    location: str | None,
    *,
    method: str,
    url: str,
    body: bytes | str | None,
    headers: Mapping[str, str],
    home: str,
) -> Hop | None:
    """Where the answer *status* with *location* sends the request, or ``None``.

    Args:
        status: The answer's status.
        location: Its ``Location`` header, absolute or relative to *url*.
        method: The request's method.
        url: The URL it went to.
        body: Its body.
        headers: Its headers (the client's own and the caller's, not the token).
        home: The URL the request was first made to: credentials go to its origin only.

    Raises:
        ResponseError: If *location* is not a URL that can be followed.
        InsecureTransport: If it leads from ``https`` to ``http``.
    """
    if status not in REDIRECTS or not location:
        return None
    target = urljoin(url, location.strip())
    try:
        # Judged as urllib3 will connect: a Location that parsers read apart is refused.
        there = origin(target)
    except ValueError as error:
        reason = f"a redirect to {redact_url(target)!r} that cannot be followed ({error})"
        raise ResponseError(status, redact_url(url), "", reason) from None
    if "\\" in target or there.scheme not in {"http", "https"}:
        reason = f"a redirect to {redact_url(target)!r} that cannot be followed"
        raise ResponseError(status, redact_url(url), "", reason)
    if origin(url).scheme == "https" and there.scheme == "http":
        raise InsecureTransport(
            f"refusing to follow a redirect from {redact_url(url)} to {redact_url(target)}: "
            "from https to plain http"
        )
    if status == 303 or (status in {301, 302} and method.upper() == "POST"):
        method = "GET" if method.upper() != "HEAD" else method
        body = None
        headers = {k: v for k, v in headers.items() if k.lower() not in _BODY_HEADERS}
    same = there == origin(home)
    if not same:
        headers = {k: v for k, v in headers.items() if k.lower() not in _CREDENTIALS}
    return Hop(method, target, body, dict(headers), same)
