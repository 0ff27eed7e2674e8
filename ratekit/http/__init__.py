"""Calling rate-limited HTTP APIs: a client over urllib3, OAuth2 tokens, and paging."""

from __future__ import annotations

from ratekit._adaptive import AdaptiveLimiter
from ratekit._errors import (
    AuthError,
    ConnectionFailed,
    HTTPError,
    HTTPStatusError,
    IncompleteListing,
    InsecureTransport,
    ReadTimeout,
    ResponseError,
    TLSError,
    TokenError,
    TooManyRedirects,
    TransportError,
)
from ratekit._redact import MASK, redact_url
from ratekit.http._client import DEFAULT_RETRY, DEFAULT_TIMEOUT, TRANSIENT_ERRORS, Client
from ratekit.http._gate import IDEMPOTENT_METHODS, ClientStatistics
from ratekit.http._oauth import OAuth2Token
from ratekit.http._pagination import (
    CursorPaginator,
    NextLinkPaginator,
    OffsetPaginator,
    Page,
    PageNumberPaginator,
)
from ratekit.http._pool import cancellable_pool
from ratekit.http._redirects import DEFAULT_MAX_REDIRECTS
from ratekit.http._transport import DEFAULT_MAX_BODY
from ratekit.typing import TokenProvider

__all__ = [
    "DEFAULT_MAX_BODY",
    "DEFAULT_MAX_REDIRECTS",
    "DEFAULT_RETRY",
    "DEFAULT_TIMEOUT",
    "IDEMPOTENT_METHODS",
    "MASK",
    "TRANSIENT_ERRORS",
    "AdaptiveLimiter",
    "AuthError",
    "Client",
    "ClientStatistics",
    "ConnectionFailed",
    "CursorPaginator",
    "HTTPError",
    "HTTPStatusError",
    "IncompleteListing",
    "InsecureTransport",
    "NextLinkPaginator",
    "OAuth2Token",
    "OffsetPaginator",
    "Page",
    "PageNumberPaginator",
    "ReadTimeout",
    "ResponseError",
    "TLSError",
    "TokenError",
    "TokenProvider",
    "TooManyRedirects",
    "TransportError",
    "cancellable_pool",
    "redact_url",
]
