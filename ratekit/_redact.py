r"""Keeping secrets out of what ratekit shows, and credentials away from other hosts.

Below both `ratekit.http` and `ratekit.stores`, which mask URLs and secrets alike;
urllib3 is imported only by the functions that parse a URL the way it connects.

URLs are judged by the parser that connects, urllib3's `urllib3.util.parse_url`, and not
by `urllib.parse`, which reads some URLs otherwise: in ``http://a:1\@b:2/`` urllib3
(and every WHATWG URL parser, such as a browser's) ends the host at the backslash and
connects to ``a`` port 1, where `urllib.parse` sees user information and host ``b``
port 2.  A check made with one parser and a connection made with the other would send
credentials to a host that was never checked.
"""

from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING
from urllib.parse import quote, quote_plus, urlsplit, urlunsplit

import attrs

if TYPE_CHECKING:
    from collections.abc import Iterable

#: What a secret is shown as.
MASK = "***"

#: Default ports, so that ``https://host`` and ``https://host:443`` are one origin.
_DEFAULT_PORTS = {"http": 80, "https": 443}

# The authority of an absolute URL, read as far as any parser reads it: `urllib.parse`
# ends it at "/", "?" or "#" only, urllib3 and WHATWG parsers at a backslash as well.
_AUTHORITY = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://([^/?#]*)")

# ASCII whitespace and control characters.  `urllib.parse` drops tabs and newlines
# anywhere (bpo-43882) and blanks and controls before the scheme (CVE-2023-24329);
# urllib3 refuses them in a host since urllib3/urllib3#5095, and passed them on before.
_BLANK_OR_CONTROL = re.compile(r"[\x00-\x20\x7f]")

# A host name as urllib3 hands it to the resolver: lower case, IDNA-encoded (``xn--``),
# labels of letters, digits, hyphens and underscores, and perhaps a trailing dot.
_NAME = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*\.?")

# A name of this machine: localhost and the names under it (RFC 6761 section 6.3).
_LOCALHOST = re.compile(r"(?:[a-z0-9_-]+\.)*localhost")


def redact_url(url: str) -> str:
    """Return *url* without user information and with every query value masked.

    Query values can hold keys and tokens (``?api_key=...``), and the user information
    a password, so neither is ever shown; the names of query parameters are kept, as
    they help to diagnose a request.  A URL with a backslash before its path is shown
    as urllib3 reads it, which names the host a request for it goes to.
    """
    try:
        parts = urlsplit(url)
        netloc = parts.netloc.rpartition("@")[2]
        path, query = parts.path, parts.query
        if "\\" in parts.netloc:
            # urllib.parse would show the host after the "@", and hide the one that
            # urllib3 connects to (before the backslash) as user information.
            from urllib3.util import parse_url

            seen = parse_url(url)
            if not seen.host:
                return MASK
            netloc, path, query = seen.netloc or "", seen.path or "", seen.query or ""
    except ValueError:  # urllib3's LocationParseError included
        return MASK
    query = "&".join(
        f"{pair.partition('=')[0]}={MASK}" if "=" in pair else pair
        for pair in query.split("&")
        if pair
    )
    return urlunsplit((parts.scheme, netloc, path, query, ""))


@attrs.frozen
class Origin:
    """Where urllib3 connects for a URL: a scheme, a host and a port (RFC 6454).

    Attributes:
        scheme: The scheme, in lower case.
        host: The host as urllib3 connects to it: a name in lower case and IDNA-encoded
            (``xn--``), with its trailing dot if it has one; an IPv4 address as
            written; an IPv6 address in brackets, in its compressed form, with its zone
            id.
        port: The port, or the scheme's default one (80, 443); ``None`` for another
            scheme without a port.
    """

    scheme: str
    host: str
    port: int | None


def origin(url: str) -> Origin:
    """The origin that urllib3 connects to for the absolute URL *url*.

    Hosts compare as the resolver is asked for them: ``example.com.`` and
    ``example.com`` are two origins, as in browsers (without the dot, a name may be
    completed by the resolver's search list; with it, never), and so are an address
    and a name for it, or ``127.0.0.1`` and ``127.1``.  ``HTTP://Example.COM:80`` and
    ``http://example.com`` are one, and so are ``münchen.de`` and ``xn--mnchen-3ya.de``.

    Raises:
        ValueError: If *url* has no scheme; if its authority holds a backslash,
            whitespace or a control character; if its host is written with
            percent-escapes (urllib3 decodes them since urllib3/urllib3#5095, and
            looked the name up as written before); if urllib3 cannot parse it or finds
            no host; or if the host is neither a name nor an address.  The message
            never holds the URL.
    """
    written = _AUTHORITY.match(url)
    if written is None:
        raise ValueError("no scheme")
    authority = written[1]
    if "\\" in authority:
        raise ValueError("a backslash in its authority")
    if _BLANK_OR_CONTROL.search(authority):
        raise ValueError("whitespace or a control character in its authority")
    host_port = authority.rpartition("@")[2]
    if "%" in host_port and not host_port.startswith("["):
        raise ValueError("a host written with percent-escapes")
    from urllib3.util import parse_url

    try:
        parts = parse_url(url)
    except ValueError:  # LocationParseError, whose message holds the URL
        raise ValueError("a URL that urllib3 cannot parse") from None
    scheme, host = parts.scheme or "", parts.host
    if not host:
        raise ValueError("no host")
    if host.startswith("["):
        host = f"[{ipaddress.IPv6Address(host[1:-1]).compressed}]"
    elif not _NAME.fullmatch(host):
        raise ValueError("a host that is neither a name nor an address")
    port = _DEFAULT_PORTS.get(scheme) if parts.port is None else parts.port
    return Origin(scheme, host, port)


def is_loopback(host: str | None) -> bool:
    """Whether *host* names this machine: ``localhost`` or a loopback address.

    An IPv6 address may be in brackets, and an IPv4 address mapped into IPv6
    (``::ffff:127.0.0.1``) counts as that IPv4 address.  A name with a trailing dot
    does not count (``localhost.`` is asked of the resolver, which may ask DNS).
    """
    if not host:
        return False
    host = host.lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if _LOCALHOST.fullmatch(host):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def check_transport(url: str, *, what: str) -> None:
    """Refuse to send *what* (credentials) over plain HTTP to a host that is not loopback.

    The host is the one urllib3 connects to (see `origin`).

    Raises:
        InsecureTransport: If *url* is ``http://`` to any other host, or not a URL that
            `origin` judges.
    """
    from ratekit._errors import InsecureTransport

    try:
        target = origin(url)
    except ValueError as error:
        raise InsecureTransport(f"refusing to send {what} to {redact_url(url)}: {error}") from None
    if target.scheme == "https" or (target.scheme == "http" and is_loopback(target.host)):
        return
    raise InsecureTransport(
        f"refusing to send {what} to {redact_url(url)}: use https:// "
        "(plain http:// is allowed only to loopback addresses)"
    )


#: Secrets shorter than this are not masked in text: they would mask ordinary words.
SHORTEST_SECRET = 4


def mask_secrets(
    text: str, secrets: Iterable[str | None], *, shortest: int = SHORTEST_SECRET
) -> str:
    """Return *text* with every occurrence of each secret replaced by `MASK`.

    For what servers send back (an error body that echoes the request's headers): the
    secrets a client knows (a bearer token, a client secret, Basic credentials, query
    values) are masked as they were sent, and in the forms they take in a form body or a
    query string.  Longer secrets are masked first, so that one containing another is
    masked whole.

    Args:
        text: The text.
        secrets: The secrets; empty ones and ``None`` are skipped.
        shortest: Secrets shorter than this are left alone (by default
            `SHORTEST_SECRET`); ``1`` masks every secret, for texts where a credential
            of any length must not show (a store's errors, a token endpoint's answer).
    """
    forms = set()
    for secret in secrets:
        if secret and len(secret) >= shortest:
            forms.update({secret, quote_plus(secret), quote(secret, safe="")})
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, MASK)
    return text


# The password of a URL's user information, in free text: ``//user:password@``.
_URL_PASSWORD = re.compile(r"(//[^/\s@]*?):[^@\s/]*@")

# A value after a word that names a credential: ``password=...``, ``token: ...``.
_SECRET_PAIR = re.compile(r"(?i)\b(password|passwd|pwd|secret|token|auth)(\s*[=:]\s*)[^\s,;&]+")


def mask_credentials(text: str) -> str:
    """Return *text* with the credentials it spells out replaced by `MASK`.

    For texts whose secrets are not known, such as the errors of a store's client: the
    password of a URL's user information (``redis://app:***@cache``) and the value
    after a word such as ``password=`` or ``token:`` are masked.
    """
    text = _URL_PASSWORD.sub(rf"\1:{MASK}@", text)
    return _SECRET_PAIR.sub(rf"\1\2{MASK}", text)
