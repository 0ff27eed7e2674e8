"""Keeping secrets out of what ratekit shows: URLs, reprs and messages."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit, urlunsplit

#: What a secret is shown as.
MASK = "***"


def redact_url(url: str) -> str:
    """Return *url* without user information and with every query value masked.

    Query values can hold keys and tokens (``?api_key=...``), and the user information
    a password, so neither is ever shown; the names of query parameters are kept, as
    they help to diagnose a request.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    netloc = parts.netloc.rpartition("@")[2]
    query = "&".join(
        f"{pair.partition('=')[0]}={MASK}" if "=" in pair else pair
        for pair in parts.query.split("&")
        if pair
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def is_loopback(host: str | None) -> bool:
    """Whether *host* names this machine: ``localhost`` or a loopback address."""
    if not host:
        return False
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_transport(url: str, *, what: str) -> None:
    """Refuse to send *what* (credentials) over plain HTTP to a host that is not loopback.

    Raises:
        InsecureTransport: If *url* is ``http://`` to any other host.
    """
    from ratekit._errors import InsecureTransport

    parts = urlsplit(url)
    if parts.scheme == "https" or (parts.scheme == "http" and is_loopback(parts.hostname)):
        return
    raise InsecureTransport(
        f"refusing to send {what} to {redact_url(url)}: use https:// "
        "(plain http:// is allowed only to loopback addresses)"
    )
