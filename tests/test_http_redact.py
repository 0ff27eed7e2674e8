"""What ratekit.http shows of a URL, and which hosts count as loopback."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from loopback import LoopbackServer, Reply

from ratekit._redact import check_transport, is_loopback, origin
from ratekit.http import MASK, Client, InsecureTransport, redact_url

#: The bearer token of the logging test.
TOKEN = "t-bearer-secret"  # noqa: S105


class Tokens:
    """A token provider with one token."""

    def token(self) -> str:
        return TOKEN

    def invalidate(self, token: str) -> None:
        """A fixed token cannot be renewed."""


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


# --- judged by the parser that connects ---------------------------------------------------


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        # Loopback, however urllib3 is given it.
        ("http://127.0.0.1/token", True),
        ("http://localhost/token", True),
        ("http://[::1]:8080/token", True),
        ("http://[::1]:80/token", True),
        ("http://[0:0:0:0:0:0:0:1]/token", True),
        ("http://[::ffff:127.0.0.1]/token", True),  # IPv4-mapped: 127.0.0.1 itself
        ("http://[::1%25lo]/token", True),  # a zone id
        ("HTTP://LocalHost:8080/token", True),
        ("http://evil.example;@127.0.0.1/token", True),  # user information to both parsers
        # Loopback to urllib.parse, another host to urllib3.
        ("http://evil.example\\@127.0.0.1/token", False),
        ("http://evil.example\\.127.0.0.1/token", False),
        # Loopback to urllib3 but not to urllib.parse: refused too, as parsers disagree.
        ("http://localhost\\@evil.example/token", False),
        # Whitespace and controls: urllib.parse drops them (bpo-43882, CVE-2023-24329).
        ("http://127.0.0.1\t/token", False),
        ("http://127.0.\n0.1/token", False),
        ("http://127.0.0.1\r.evil.example/token", False),
        (" http://127.0.0.1/token", False),
        ("\x00http://127.0.0.1/token", False),
        # Hosts that look like loopback.
        ("http://127.0.0.1:8080@evil.example/token", False),
        ("http://127.0.0.1%2f@evil.example/token", False),
        ("http://127.0.0.1.evil.example/token", False),
        ("http://localhost.evil.example/token", False),
        ("http://%31%32%37.0.0.1/token", False),  # percent-escapes: refused, whatever urllib3
        ("http://localhost%2eevil.example/token", False),
        ("http://127.0.0.1./token", False),  # a trailing dot: asked of the resolver as is
        ("http://localhost./token", False),
        ("http://127\u30020\u30020\u30021/token", False),  # ideographic full stops
        ("http://\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54/token", False),  # fullwidth
        ("http://0x7f.1/token", False),  # inet_aton forms: not judged as addresses
        ("http://2130706433/token", False),
        ("http://0.0.0.0/token", False),
        ("http://[fe80::1%25eth0]/token", False),
        ("http:/\\localhost/token", False),
        ("//localhost/token", False),
        ("http://localhost:99999/token", False),
    ],
)
def test_check_transport_judges_the_host_urllib3_connects_to(url, allowed):
    """Plain http is allowed to the loopback host urllib3 connects to, and nowhere else."""
    if allowed:
        check_transport(url, what="credentials")
    else:
        with pytest.raises(InsecureTransport, match="refusing to send credentials to "):
            check_transport(url, what="credentials")


@pytest.mark.parametrize(
    ("first", "second", "same"),
    [
        ("https://api.example.com/a", "https://api.example.com:443/b", True),
        ("http://api.example.com/a", "http://api.example.com:80/b", True),
        ("HTTPS://API.Example.COM/a", "https://api.example.com/b", True),
        ("https://münchen.example/a", "https://xn--mnchen-3ya.example/b", True),
        ("https://MÜNCHEN.example/a", "https://münchen.example/b", True),
        ("http://[::1]:8080/a", "http://[0:0:0:0:0:0:0:1]:8080/b", True),
        ("http://[FE80::1%25eth0]/a", "http://[fe80::1%eth0]/b", True),
        ("http://127.0.0.1:08080/a", "http://127.0.0.1:8080/b", True),
        ("https://api.example.com/a", "http://api.example.com/b", False),
        ("https://api.example.com/a", "https://api.example.com:8443/b", False),
        ("https://api.example.com/a", "https://api.example.com./b", False),  # a trailing dot
        ("http://127.0.0.1/a", "http://127.1/b", False),
        ("http://127.0.0.1/a", "http://[::ffff:127.0.0.1]/b", False),
        ("http://127.0.0.1/a", "http://localhost/b", False),
        ("http://[fe80::1%25eth0]/a", "http://[fe80::1%25eth1]/b", False),
        ("http://127.0.0.1:0/a", "http://127.0.0.1/b", False),  # urllib3 keeps port 0
    ],
)
def test_origins_compare_hosts_as_urllib3_connects_to_them(first, second, same):
    """Case, IDNA, IPv6 forms and default ports are one origin; a trailing dot is another."""
    assert (origin(first) == origin(second)) is same


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:1\\@127.0.0.1:2/", "a backslash in its authority"),
        ("http://127.0.0.1\t/", "whitespace or a control character in its authority"),
        ("http://%31%32%37.0.0.1/", "a host written with percent-escapes"),
        ("http://127.0.0.1%00.evil.example/", "a host written with percent-escapes"),
        ("http://127\u30020\u30020\u30021/", "a URL that urllib3 cannot parse"),
        ("http://localhost:99999/?key=s3cret", "a URL that urllib3 cannot parse"),
        ("http://evil.example!/", "a host that is neither a name nor an address"),
        ("http:///path", "no host"),
        (" http://127.0.0.1/", "no scheme"),
        ("/relative", "no scheme"),
    ],
)
def test_origin_refuses_urls_that_parsers_read_apart(url, reason):
    """Where urllib.parse, urllib3's releases and browsers disagree, there is no origin."""
    with pytest.raises(ValueError, match=reason) as info:
        origin(url)
    assert "s3cret" not in str(info.value)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("[::ffff:127.0.0.1]", True),
        ("::FFFF:127.0.0.2", True),
        ("[::1%lo]", True),
        ("localhost.", False),
        ("127.0.0.1.", False),
        ("evil.example\\.localhost", False),
        ("evil.example/.localhost", False),
        ("[::ffff:10.0.0.1]", False),
    ],
)
def test_is_loopback_takes_mapped_addresses_and_refuses_odd_names(host, loopback):
    """IPv4-mapped loopback counts; a trailing dot or a character outside a name does not."""
    assert is_loopback(host) is loopback


def test_redact_url_names_the_host_urllib3_connects_to():
    """With a backslash in the authority, the URL is shown as urllib3 requests it."""
    shown = redact_url("http://127.0.0.1:8081\\@127.0.0.1:8080/page2?token=t-1#x")
    assert shown == "http://127.0.0.1:8081/%5C@127.0.0.1:8080/page2?token=***"
    assert redact_url("http://user:pw\\@example.com/") == MASK  # no port urllib3 can read


# --- what urllib3 logs --------------------------------------------------------------------


def secrets_section() -> str:
    """The "Keeping secrets secret" section of docs/http.md."""
    page = (Path(__file__).resolve().parent.parent / "docs" / "http.md").read_text()
    return page.split("## Keeping secrets secret", 1)[1].split("\n## ", 1)[0]


def test_urllib3_logs_the_query_values_that_ratekit_masks(
    server: LoopbackServer, caplog: pytest.LogCaptureFixture
):
    """As the docs say: urllib3 logs a query secret, ratekit never, urllib3 at ERROR not."""
    section = " ".join(secrets_section().split())
    for claim in ["`urllib3.connectionpool`", "`urllib3.connection`", "logging.ERROR"]:
        assert claim in section
    server.route("GET", "/items")(lambda _: Reply.json([1]))
    # A header line without a colon: headers urllib3 cannot parse.
    garbled = {"Connection": "close", "X-Garbled\r\nrest": "1"}
    server.route("GET", "/garbled")(lambda _: Reply(200, garbled, b"[1]"))
    server.route("POST", "/form")(lambda _: Reply.json(1))
    query = {"api_key": "k-query-secret"}

    def walk() -> list[logging.LogRecord]:
        caplog.clear()
        with Client(base_url=server.url, auth=Tokens(), retry=None) as client:
            assert client.get_json("/items", params=query) == [1]
            assert client.get("/garbled", params=query).status == 200
            assert client.post("/form", fields={"client_secret": "c-form-secret"}).status == 200
        return caplog.records

    caplog.set_level(logging.DEBUG, logger="urllib3")
    caplog.set_level(logging.DEBUG, logger="ratekit")
    records = walk()
    ours = [r.getMessage() for r in records if r.name == "ratekit.http"]
    assert any("/items?api_key=***" in message for message in ours)
    assert any("/garbled?api_key=***" in message for message in ours)
    assert not any("k-query-secret" in message for message in ours)
    assert any(
        r.name == "urllib3.connectionpool"
        and r.levelno == logging.DEBUG
        and "GET /items?api_key=k-query-secret HTTP/1.1" in r.getMessage()
        for r in records
    )
    assert any(
        r.name == "urllib3.connection"
        and r.levelno == logging.WARNING
        and "/garbled?api_key=k-query-secret" in r.getMessage()
        for r in records
    )
    assert TOKEN not in caplog.text
    assert "c-form-secret" not in caplog.text

    caplog.set_level(logging.ERROR, logger="urllib3")
    caplog.set_level(logging.DEBUG, logger="ratekit")  # the handler still takes DEBUG
    records = walk()
    assert any("/garbled?api_key=***" in r.getMessage() for r in records)
    assert not [r for r in records if r.name.startswith("urllib3")]
    assert "k-query-secret" not in caplog.text
