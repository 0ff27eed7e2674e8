"""What ratekit.http shows of a URL, and which hosts count as loopback."""

from __future__ import annotations

import pytest

from ratekit.http import MASK, InsecureTransport, redact_url
from ratekit.http._redact import check_transport, is_loopback


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "https://user:pw@api.example.com/v1/x?key=abc&page=2",
            "https://api.example.com/v1/x?key=***&page=***",
        ),
        ("https://api.example.com/path", "https://api.example.com/path"),
        ("https://api.example.com/x?flag", "https://api.example.com/x?flag"),
        ("http://[::1", MASK),  # unparseable: nothing of it is shown
    ],
)
def test_redact_url_hides_user_information_and_query_values(url, shown):
    """User information goes, query values are masked, parameter names stay."""
    assert redact_url(url) == shown


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("api.localhost", True),
        ("127.0.0.1", True),
        ("127.3.4.5", True),
        ("[::1]", True),
        ("10.0.0.1", False),
        ("example.com", False),
        ("", False),
        (None, False),
    ],
)
def test_is_loopback(host, loopback):
    """Only localhost names and loopback addresses count."""
    assert is_loopback(host) is loopback


def test_check_transport_allows_https_and_loopback_http_only():
    """Credentials may go over https anywhere, and over http only to loopback."""
    check_transport("https://api.example.com/token", what="credentials")
    check_transport("http://localhost:8080/token", what="credentials")
    with pytest.raises(
        InsecureTransport,
        match=r"refusing to send credentials to http://example\.com/t\?secret=\*\*\*",
    ):
        check_transport("http://example.com/t?secret=1", what="credentials")
