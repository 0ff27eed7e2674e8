"""A local simulator of the NICE CXone REST API: a real HTTP server on loopback.

It serves both contracts the adapter speaks: the real platform (issuer discovery, the
``password`` grant, API base discovery and ``contacts/completed`` paged by ``top`` and
``skip``) and the tutorial's (``client_credentials`` with scopes, ``interactions`` paged by
page number).  A server-side limit, expiring tokens, 429 and 503 answers with
``Retry-After``, dropped connections and slow answers can be switched on, so that clients
can be tested offline against everything a real tenant does to them.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import contextlib
import hmac
import itertools
import json
import math
import random
import re
import secrets
import selectors
import socket
import threading
from collections import Counter
from datetime import datetime, timedelta, timezone
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from typing import TYPE_CHECKING, Any, Literal, cast, final
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit

import attrs

from ratekit._clock import MONOTONIC, wall_time
from ratekit._composite import limiter as _make_limiter
from ratekit.http._redact import redact_url

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import TracebackType

    from ratekit._limiter import LimiterBase
    from ratekit.typing import Clock

_UTC = timezone.utc

#: The API versions of ``contacts/completed`` that the simulator serves.
SUPPORTED_VERSIONS = range(21, 35)

#: The first version whose records use the newer field names (``contactStartDate`` ...).
_RENAMED_IN = 33

#: The largest ``top`` the platform accepts, and its default.
MAX_TOP = 10_000

#: The largest ``pageSize`` of the tutorial's interactions call, and its default.
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100

#: What every completed-contacts page reports as its business unit.
BUSINESS_UNIT_ID = 4_600_001

#: The default first contact start: 2026-01-01T00:00:00Z.
DEFAULT_FIRST_DATE = datetime(2026, 1, 1, tzinfo=_UTC)

#: The default span of the contacts' start dates: 30 days.
DEFAULT_SPAN = timedelta(days=30)

#: Request bodies larger than this are refused (token requests are a few hundred bytes).
_MAX_BODY = 1 << 20

#: The paths served, besides ``contacts/completed``, and the method each accepts.
_ROUTES = {
    "/.well-known/openid-configuration": "GET",
    "/.well-known/cxone-configuration": "GET",
    "/auth/token": "POST",
    "/oauth/token": "POST",
    "/api/v2/ic/interactions": "GET",
}

#: Tokens kept before the expired ones are forgotten.
_MAX_TOKENS = 10_000

#: Query parameters that carry secrets: never acceptable in a URL.
_SECRET_PARAMETERS = frozenset(
    {"client_secret", "password", "access_token", "refresh_token", "assertion", "client_id"}
)

_CONTACTS_PATH = re.compile(
    r"/incontactapi/services/v(?P<major>\d+)\.0/contacts/completed", re.IGNORECASE | re.ASCII
)
_Z_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?Z", re.ASCII)
_DIGITS = re.compile(r"\d{1,18}", re.ASCII)
_VERSION = re.compile(r"v?(\d+)(?:\.0)?", re.ASCII)

_CONTACT_FIELDS_NEW = (
    "contactId",
    "masterContactId",
    "contactStartDate",
    "fromAddress",
    "toAddress",
    "mediaTypeId",
    "mediaTypeName",
    "skillId",
    "skillName",
    "agentId",
    "totalDurationSeconds",
    "conferenceSeconds",
    "acwSeconds",
    "lastUpdateTime",
)
_CONTACT_FIELDS_OLD = (
    "contactId",
    "masterContactId",
    "contactStart",
    "fromAddr",
    "toAddr",
    "mediaType",
    "mediaTypeName",
    "skillId",
    "skillName",
    "agentId",
    "totalDurationSeconds",
    "confSeconds",
    "ACWSeconds",
    "lastUpdateTime",
)

# (media type id, name, skills as (id, name), weight)
_MEDIA: tuple[tuple[int, str, tuple[tuple[int, str], ...], int], ...] = (
    (4, "Phone Call", ((4_100_001, "Sales Inbound"), (4_100_002, "Support Inbound")), 60),
    (3, "Chat", ((4_100_011, "Web Chat"),), 20),
    (1, "Email", ((4_100_021, "Email Support"),), 15),
    (7, "SMS", ((4_100_031, "SMS Support"),), 5),
)
_STATUSES = ("closed", "open", "pending", "abandoned")
_STATUS_WEIGHTS = (80, 8, 7, 5)
_CHANNELS = ("voice", "chat", "email")
_CHANNEL_WEIGHTS = (60, 25, 15)


# --- values ------------------------------------------------------------------------------


@attrs.frozen
class SimulatorStatistics:
    """A snapshot of a simulator's counters, for tests and for the ``simulate`` command.

    Attributes:
        requests: Every request received, on any path.
        api_requests: Requests to the two list calls (``contacts/completed`` of a served
            version, and ``interactions``).
        throttled: Answers 429 (over the server-side limit).
        faults: Answers 503 injected by ``fault_rate``.
        drops: Connections closed without an answer (``drop_rate``, or a slow answer cut
            short by `Simulator.close`).
        slow: Answers delayed by ``slow_seconds``.
        tokens_issued: Access tokens handed out by either token endpoint.
        token_errors: Token requests refused (any 400 or 401 from a token endpoint).
        unauthorized: List calls answered 401 (a missing, unknown or expired token).
        credentials_in_url: Requests that carried a credential (``client_secret``,
            ``password``, ``access_token`` ...) in the URL query; each was refused.
        errors: Answers 500: a fault in the simulator itself (none, in a correct run).
    """

    requests: int
    api_requests: int
    throttled: int
    faults: int
    drops: int
    slow: int
    tokens_issued: int
    token_errors: int
    unauthorized: int
    credentials_in_url: int
    errors: int


def _show_target(target: str) -> str:
    return repr(redact_url(target))


def _show_headers(headers: tuple[tuple[str, str], ...]) -> str:
    return "(" + ", ".join(repr(name) for name, _ in headers) + ")"


@attrs.frozen
class SeenRequest:
    """One request the simulator received, as it arrived.

    Its ``repr`` shows the target with query values masked and only the names of the
    headers, since they may hold credentials; the fields themselves are exact.

    Attributes:
        method: The HTTP method, such as ``"GET"``.
        target: The request target as received: path and query.
        headers: The header fields as received, in order, as ``(name, value)`` pairs.
        body: The request body (empty for a ``GET``).
        at: The simulator's clock reading when the request arrived, in seconds.
        status: The status answered, or ``None`` if the connection was dropped (or the
            answer is still being made).
    """

    method: str
    target: str = attrs.field(repr=_show_target)
    headers: tuple[tuple[str, str], ...] = attrs.field(repr=_show_headers)
    body: bytes = attrs.field(repr=False)
    at: float
    status: int | None = None

    def header(self, name: str) -> str | None:
        """The value of the header *name* (any case), or ``None`` if it was not sent."""
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None

    @property
    def path(self) -> str:
        """The target's path, without the query."""
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, str]:
        """The target's query parameters, decoded (the last value of each)."""
        return dict(parse_qsl(urlsplit(self.target).query, keep_blank_values=True))


#: One record's values, in the order of its field names (`_CONTACT_FIELDS_NEW` ...):
#: plain tuples, as a tenant may hold a great many of them.
_Row = tuple[Any, ...]

_INTERACTION_FIELDS = ("id", "status", "channel", "createdTime")


@attrs.frozen
class _Answer:
    """What to send back: a status, a JSON body (``None``: no body) and headers."""

    status: int
    body: object = None
    headers: tuple[tuple[str, str], ...] = ()
    drop: bool = False


_DROP = _Answer(0, drop=True)


def _error(status: int, error: str, description: str | None = None, **headers: str) -> _Answer:
    body = {"error": error}
    if description is not None:
        body["error_description"] = description
    return _Answer(status, body, tuple(headers.items()))


def _token_error(status: int, error: str, description: str, **headers: str) -> _Answer:
    answer = _error(status, error, description, **headers)
    return attrs.evolve(answer, headers=(*answer.headers, *_NO_STORE))


_NO_STORE = (("Cache-Control", "no-store"), ("Pragma", "no-cache"))


# --- helpers -----------------------------------------------------------------------------


def _format_z(moment: datetime) -> str:
    """UTC with a literal ``Z``, in milliseconds (microseconds when they are not whole)."""
    moment = moment.astimezone(_UTC).replace(tzinfo=None)
    precision = "microseconds" if moment.microsecond % 1000 else "milliseconds"
    return moment.isoformat(timespec=precision) + "Z"


def _parse_z(text: str) -> datetime | None:
    """A UTC date and time ending in a literal ``Z``, or ``None`` for anything else."""
    match = _Z_DATE.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction = match.groups()
    micro = int((fraction or "0").ljust(6, "0")[:6])
    try:
        return datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), micro, _UTC
        )
    except ValueError:  # month 13, February 30 ...
        return None


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _jwt(claims: dict[str, object]) -> str:
    """A JSON Web Token of the right shape; its signature is random, not a real one."""
    header = {"alg": "RS256", "typ": "JWT", "kid": "simulator"}
    parts = (
        _b64url(json.dumps(header, separators=(",", ":")).encode()),
        _b64url(json.dumps(claims, separators=(",", ":")).encode()),
        _b64url(secrets.token_bytes(32)),
    )
    return ".".join(parts)


def _acceptable(accept: str | None) -> bool:
    """Whether an ``Accept`` header admits ``application/json`` (RFC 9110 section 12.5.1).

    The most specific media range that matches decides, by its ``q`` value.
    """
    if accept is None or not accept.strip():
        return True
    best_rank, best_q = 0, 0.0
    for item in accept.split(","):
        media_range, *parameters = (part.strip() for part in item.split(";"))
        rank = {"application/json": 3, "application/*": 2, "*/*": 1}.get(media_range.lower(), 0)
        if rank <= best_rank:
            continue
        quality = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value.strip())
                except ValueError:
                    quality = -1.0
        if 0.0 <= quality <= 1.0:
            best_rank, best_q = rank, quality
    return best_rank > 0 and best_q > 0


def _seconds_text(seconds: float, style: str) -> str:
    """*seconds* as a ``Retry-After`` value in *style*, never earlier than *seconds*."""
    if style == "integer":
        return str(max(1, math.ceil(seconds)))
    if style == "fraction":
        return f"{max(1, math.ceil(seconds * 1000)) / 1000:.3f}"
    return formatdate(math.ceil(wall_time() + seconds), usegmt=True)


_RETRY_AFTER_STYLES = ("integer", "fraction", "http-date")


def _check_integer(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    return value


def _check_port(value: object) -> int:
    port = _check_integer("port", value)
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be from 0 to 65535, got {port!r}")
    return port


def _build_limiter(rate: object, clock: Clock) -> LimiterBase | None:
    if rate is None:
        return None
    if not isinstance(rate, str):
        raise TypeError(f"rate must be text such as '50/second', or None; got {rate!r}")
    try:
        return _make_limiter(rate, clock=clock)
    except ValueError as error:
        raise ValueError(f"rate {rate!r} is not a limit: {error}") from error


def _check_shares(**shares: object) -> tuple[float, ...]:
    values = tuple(_check_share(name, value) for name, value in shares.items())
    if sum(values) > 1.0:
        names = " + ".join(shares)
        raise ValueError(f"{names} must not exceed 1, got {' + '.join(map(str, values))}")
    return values


def _check_scopes(scopes: object) -> tuple[str, ...]:
    if isinstance(scopes, str) or not isinstance(scopes, (list, tuple)):
        raise TypeError(f"scopes_supported must be a list or tuple of names, got {scopes!r}")
    for scope in scopes:
        if not isinstance(scope, str) or not scope or any(c.isspace() for c in scope):
            raise ValueError(
                f"scopes_supported must hold non-empty names without spaces, got {scope!r}"
            )
    return tuple(scopes)


def _check_span(span: object) -> timedelta:
    if not isinstance(span, timedelta) or span <= timedelta(0):
        raise ValueError(f"span must be a positive timedelta, got {span!r}")
    return span


def _check_share(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number from 0 to 1, got {value!r}")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be from 0 to 1, got {value!r}")
    return float(value)


def _check_seconds(name: str, value: object, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        wanted = "a positive" if positive else "a non-negative"
        raise ValueError(f"{name} must be {wanted} finite number of seconds, got {value!r}")
    return float(value)


def _check_count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must not be negative, got {value!r}")
    return value


def _check_text(name: str, value: object) -> str:
    if not isinstance(value, str) or not value or value != value.strip():
        raise ValueError(f"{name} must be a non-empty string without surrounding spaces")
    return value


def _check_moment(name: str, value: object) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, got {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (UTC), got {value!r}")
    return value.astimezone(_UTC)


def _major(version: object) -> int:
    """The major version from ``"34.0"``, ``"v34.0"``, ``"34"`` or ``34``."""
    text = str(version) if isinstance(version, (str, int)) and version is not True else ""
    match = _VERSION.fullmatch(text)
    major = int(match.group(1)) if match else 0
    if major not in SUPPORTED_VERSIONS:
        raise ValueError(f"version must be one of 21.0 to 34.0 (such as '34.0'), got {version!r}")
    return major


def _spread(first: datetime, span: timedelta, count: int) -> list[datetime]:
    """*count* instants spread evenly over ``[first, first + span)``, in whole milliseconds."""
    span_ms = span // timedelta(milliseconds=1)
    return [first + timedelta(milliseconds=span_ms * index // count) for index in range(count)]


def _generate_contacts(
    seed: int, count: int, first: datetime, span: timedelta
) -> tuple[list[datetime], list[_Row]]:
    """The start instants and the rows of *count* contacts, made up from *seed*."""
    rng = random.Random(seed)  # noqa: S311 - sample data, not secrets
    draw = rng.random

    def below(limit: int) -> int:  # like rng.randrange(limit), with less overhead
        return int(draw() * limit)

    media_weights = list(itertools.accumulate(media[3] for media in _MEDIA))
    starts = _spread(first, span, count)
    rows: list[_Row] = []
    contact_id = 700_000_000 + below(1_000_000)
    master = contact_id
    for start in starts:
        contact_id += 1 + below(9)
        media_id, media_name, skills, _ = rng.choices(_MEDIA, cum_weights=media_weights)[0]
        skill_id, skill_name = skills[below(len(skills))]
        if not rows or draw() >= 0.1:  # else a transfer: part of the contact before
            master = contact_id
        number = below(10**9)
        if media_id == 1:
            from_address, to_address = f"customer{number}@example.com", "support@example.com"
        elif media_id == 3:
            from_address, to_address = f"visitor-{number}", "WebChat"
        else:
            from_address, to_address = f"1{number:010d}", "18005550100"
        total = 20 + below(1781)
        conference = 10 + below(total // 2 - 9) if draw() < 0.05 else 0
        acw = below(121)
        rows.append(
            (
                contact_id,
                master,
                _format_z(start),
                from_address,
                to_address,
                media_id,
                media_name,
                skill_id,
                skill_name,
                5_000_001 + below(50),
                total,
                conference,
                acw,
                _format_z(start + timedelta(seconds=total + acw)),
            )
        )
    return starts, rows


def _generate_interactions(seed: int, count: int, first: datetime, span: timedelta) -> list[_Row]:
    """The rows of *count* interactions, made up from *seed*."""
    rng = random.Random(f"interactions:{seed}")  # noqa: S311 - sample data, not secrets
    width = max(6, len(str(count)))
    status_weights = list(itertools.accumulate(_STATUS_WEIGHTS))
    channel_weights = list(itertools.accumulate(_CHANNEL_WEIGHTS))
    return [
        (
            f"int-{index + 1:0{width}d}",
            rng.choices(_STATUSES, cum_weights=status_weights)[0],
            rng.choices(_CHANNELS, cum_weights=channel_weights)[0],
            _format_z(created),
        )
        for index, created in enumerate(_spread(first, span, count))
    ]


def _render(rows: Sequence[_Row], names: tuple[str, ...]) -> list[dict[str, Any]]:
    """Rows as the JSON objects the API serves (fresh dictionaries)."""
    return [dict(zip(names, row, strict=True)) for row in rows]


def _with_paging(path: str, query: list[tuple[str, str]], **values: int) -> str:
    """*path* with *query*, the parameters in *values* set (replaced or appended)."""
    pairs = [(name, value) for name, value in query if name not in values]
    pairs += [(name, str(value)) for name, value in values.items()]
    return f"{path}?{urlencode(pairs, safe=':,')}"


class _Refused(Exception):
    """Raised on the way to an answer when the request is refused: carries the answer."""

    def __init__(self, answer: _Answer) -> None:
        super().__init__(answer.status)
        self.answer = answer


def _bad_request(description: str) -> _Refused:
    return _Refused(_error(400, "invalid_request", description))


def _form(content_type: str | None, body: bytes) -> dict[str, str]:
    """A token request's form fields (each at most once), or raise the refusal."""
    media_type = (content_type or "").partition(";")[0].strip().lower()
    if body and media_type != "application/x-www-form-urlencoded":
        description = "the body must be application/x-www-form-urlencoded"
        raise _Refused(_token_error(400, "invalid_request", description))
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        raise _Refused(_token_error(400, "invalid_request", "the body is not UTF-8")) from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            description = f"{name} is given more than once"
            raise _Refused(_token_error(400, "invalid_request", description))
        form[name] = value
    return form


def _z_parameter(values: dict[str, str], name: str) -> datetime:
    text = values.get(name)
    if text is None:
        raise _bad_request(f"{name} is required")
    moment = _parse_z(text)
    if moment is None:
        raise _bad_request(
            f"{name} must be a UTC date and time ending in Z, such as 2026-01-01T00:00:00Z "
            f"or 2026-01-01T00:00:00.000Z; got {text!r}"
        )
    return moment


def _integer_parameter(
    values: dict[str, str], name: str, default: int, least: int, most: int | None
) -> int:
    text = values.get(name)
    if text is None:
        return default
    value = int(text) if _DIGITS.fullmatch(text) else None
    if value is None or value < least or (most is not None and value > most):
        limits = f"from {least} to {most}" if most is not None else f"at least {least}"
        raise _bad_request(f"{name} must be an integer {limits}; got {text!r}")
    return value


def _fields_parameter(values: dict[str, str], major: int, modern: bool) -> frozenset[str]:
    """The field names asked for by ``fields`` (empty: all of them)."""
    names = _CONTACT_FIELDS_NEW if modern else _CONTACT_FIELDS_OLD
    wanted = [name.strip() for name in values.get("fields", "").split(",") if name.strip()]
    unknown = [name for name in wanted if name not in names]
    if unknown:
        raise _bad_request(
            f"fields names unknown fields for v{major}.0: {', '.join(unknown)} "
            f"(known: {', '.join(names)})"
        )
    return frozenset(wanted)


# --- the server --------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    simulator: Simulator

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks the host name up (socket.getfqdn), which can take
        # seconds on a machine without DNS; the simulator has no use for it.
        TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def handle_error(self, request: object, client_address: object) -> None:
        """Stay quiet: a client that went away is not news, and errors answer 500."""


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "CXoneSimulator"
    # Headers and body leave in one write: two small writes on a kept-alive connection
    # wait out the client's delayed acknowledgement (about 40 ms).
    wbufsize = 1 << 16
    # An idle kept-alive connection is closed after this long, in seconds.
    timeout = 120.0

    def setup(self) -> None:
        super().setup()
        self._simulator()._connections_opened(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self._simulator()._connections_closed(self.connection)

    def _simulator(self) -> Simulator:
        return cast("_Server", self.server).simulator

    def version_string(self) -> str:
        """The ``Server`` header: the name alone, not the Python version."""
        return self.server_version

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Stay quiet: the simulator prints nothing."""

    def _serve(self) -> None:
        simulator = self._simulator()
        headers = tuple((name, value) for name, value in self.headers.items())
        answer: _Answer | None = None
        body = b""
        length_text = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding"):
            answer = _error(411, "length_required", "send the body with a Content-Length")
        elif length_text is not None:
            if not _DIGITS.fullmatch(length_text.strip()):
                answer = _error(400, "invalid_request", "Content-Length is not a number")
            elif int(length_text) > _MAX_BODY:
                answer = _error(413, "request_too_large", "the body is too large")
            else:
                body = self.rfile.read(int(length_text))
        if answer is not None:
            self.close_connection = True  # the rest of the stream cannot be trusted
        index = simulator._arrive(self.command, self.path, headers, body)
        if answer is None:
            answer = simulator._answer(self.command, self.path, dict(self.headers.items()), body)
        simulator._answered(index, None if answer.drop else answer.status)
        if answer.drop:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._send(answer)

    def _send(self, answer: _Answer) -> None:
        data = b""
        if answer.body is not None:
            data = json.dumps(answer.body, separators=(",", ":")).encode()
        self.send_response(answer.status)
        for name, value in answer.headers:
            self.send_header(name, value)
        if answer.body is not None:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        if answer.status != 204:
            self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if data:
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _serve  # noqa: N815


_Fault = Literal["drop", "fault", "slow"]


@final
class Simulator:
    """A NICE CXone tenant on loopback: a real HTTP server for offline tests and demos.

    It implements both contracts of the adapter on one server, whose `url` is at once
    the issuer, the API base and the tenant URL:

    - ``GET /.well-known/openid-configuration`` and
      ``GET /.well-known/cxone-configuration?tenantId=...`` (discovery);
    - ``POST /auth/token``: the platform's ``password`` grant (access key id and secret
      as username and password; the client by HTTP Basic or form fields), answering a
      JWT whose ``tenantId`` claim names the tenant;
    - ``POST /oauth/token``: the tutorial's ``client_credentials`` grant with scopes;
    - ``GET /inContactAPI/services/v{21..34}.0/contacts/completed`` with ``startDate``,
      ``endDate`` (UTC with a literal ``Z``), ``top`` (at most 10,000), ``skip`` and
      ``fields``; pages link to the next one by ``_links.next`` and nothing matching is
      a 204;
    - ``GET /api/v2/ic/interactions`` with ``pageSize`` and ``pageNumber``.

    The two list calls need a bearer token from either token endpoint and share one
    server-side limit, *rate*.  Over it they answer 429 with ``Retry-After`` set to the
    exact wait the limiter computed, and a throttled request uses none of the limit.
    Faults are drawn per list call from a random generator seeded with *seed*: a
    dropped connection (*drop_rate*), a 503 (*fault_rate*) or a slow answer
    (*slow_rate*); the shares add up, so at most one fault hits a request.

    The records are made up, and the same *seed* makes the same ones: contacts
    (their ``contactId`` grows with their start date, spread evenly over
    ``[first_date, first_date + span)``) and interactions.  `contacts` and
    `interactions` return what the API serves, for comparing with what a client got.

    Secrets never appear in the simulator's ``repr``; the simulator prints nothing.

    Args:
        records: How many completed contacts the tenant holds.
        interactions: How many interactions it holds (default: as many as *records*).
        seed: Seeds the records and the fault draws.
        host: The address to listen on.
        port: The port to listen on (``0``: any free one).
        rate: The server-side limit of the list calls, as `ratekit.limiter` reads it
            (``"50/second"``, ``"10/second, 100/minute"``); ``None``: unlimited.
        retry_after: How ``Retry-After`` is written on 429 and 503 answers:
            ``"integer"`` (whole seconds, rounded up, at least 1), ``"fraction"``
            (seconds with three decimals, rounded up) or ``"http-date"``.
        token_ttl: Seconds a token stays valid after it is issued, on *clock*.
        fault_rate: The share of list calls answered 503.
        fault_retry_after: Seconds announced in ``Retry-After`` on those 503 answers
            (``None``: no header).
        drop_rate: The share of list calls whose connection is closed without an answer.
        slow_rate: The share of list calls answered only after *slow_seconds*.
        slow_seconds: How long a slow answer takes, in seconds, on *clock*.
        client_id: The registered application's client id.
        client_secret: Its client secret.
        access_key_id: The access key id (the ``password`` grant's username).
        access_key_secret: The access key secret (its password).
        tenant_id: The tenant id, in tokens and in API base discovery.
        scopes_supported: The scopes the tutorial's token endpoint grants.
        first_date: The start of the first contact (timezone-aware).
        span: The time over which the contacts' start dates are spread.
        clock: Where token lifetimes, the limit and slow answers read time (default:
            the real monotonic clock); a `ratekit.testing.FakeClock` makes them
            deterministic.

    Raises:
        ValueError: If an argument is out of range (the message names it).
        TypeError: If an argument has the wrong type.

    Example::

        with Simulator(records=100, rate="50/second") as simulator:
            os.environ.update(simulator.env("contacts"))
            ...  # run the client against simulator.url
    """

    def __init__(  # noqa: PLR0913 - a tenant has many knobs, all keyword-only
        self,
        *,
        records: int = 5000,
        interactions: int | None = None,
        seed: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
        rate: str | None = None,
        retry_after: Literal["integer", "fraction", "http-date"] = "integer",
        token_ttl: float = 3600.0,
        fault_rate: float = 0.0,
        fault_retry_after: float | None = 1.0,
        drop_rate: float = 0.0,
        slow_rate: float = 0.0,
        slow_seconds: float = 2.0,
        client_id: str = "sim-client-id",
        client_secret: str = "sim-client-secret",  # noqa: S107 - a fake tenant's secret
        access_key_id: str = "sim-access-key",
        access_key_secret: str = "sim-access-secret",  # noqa: S107 - likewise
        tenant_id: str = "11111111-2222-3333-4444-555555555555",
        scopes_supported: Sequence[str] = ("ic:read", "analytics:read"),
        first_date: datetime = DEFAULT_FIRST_DATE,
        span: timedelta = DEFAULT_SPAN,
        clock: Clock | None = None,
    ) -> None:
        self._records = _check_count("records", records)
        self._interaction_count = (
            self._records if interactions is None else _check_count("interactions", interactions)
        )
        self._seed = _check_integer("seed", seed)
        self._host = _check_text("host", host)
        self._port = _check_port(port)
        self._clock: Clock = MONOTONIC if clock is None else clock
        self._rate = rate
        self._limiter = _build_limiter(rate, self._clock)
        if retry_after not in _RETRY_AFTER_STYLES:
            raise ValueError(
                f"retry_after must be 'integer', 'fraction' or 'http-date', got {retry_after!r}"
            )
        self._retry_after_style: str = retry_after
        self._token_ttl = _check_seconds("token_ttl", token_ttl, positive=True)
        self._drop_rate, self._fault_rate, self._slow_rate = _check_shares(
            drop_rate=drop_rate, fault_rate=fault_rate, slow_rate=slow_rate
        )
        self._fault_retry_after = (
            None
            if fault_retry_after is None
            else _check_seconds("fault_retry_after", fault_retry_after)
        )
        self._slow_seconds = _check_seconds("slow_seconds", slow_seconds)
        self._client_id = _check_text("client_id", client_id)
        self._client_secret = _check_text("client_secret", client_secret)
        self._access_key_id = _check_text("access_key_id", access_key_id)
        self._access_key_secret = _check_text("access_key_secret", access_key_secret)
        self._tenant_id = _check_text("tenant_id", tenant_id)
        self._scopes = _check_scopes(scopes_supported)
        self._first_date = _check_moment("first_date", first_date)
        self._span = _check_span(span)

        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._seen: list[SeenRequest] = []
        self._tokens: dict[str, float] = {}  # token -> clock reading at which it expires
        self._faults = random.Random(f"faults:{seed}")  # noqa: S311 - fault draws
        self._data_lock = threading.Lock()
        self._contact_data: tuple[list[datetime], list[_Row]] | None = None
        self._interaction_data: list[_Row] | None = None

        self._state_lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self._stopping = threading.Event()
        self._wake: tuple[socket.socket, socket.socket] | None = None
        self._connections: set[socket.socket] = set()
        self._url: str | None = None

    # --- life cycle ----------------------------------------------------------------------

    def start(self) -> Simulator:
        """Bind the port and serve in a daemon thread; return the simulator.

        Starting a running simulator does nothing.

        Raises:
            RuntimeError: If the simulator was closed.
            OSError: If the address cannot be bound.
        """
        with self._state_lock:
            if self._closed:
                raise RuntimeError("this Simulator was closed; make a new one")
            if self._server is not None:
                return self
            server_class = _Server6 if ":" in self._host else _Server
            server = server_class((self._host, self._port), _Handler)
            server.simulator = self
            self._wake = socket.socketpair()
            host = f"[{self._host}]" if ":" in self._host else self._host
            self._url = f"http://{host}:{server.server_address[1]}"
            self._server = server
            self._thread = threading.Thread(
                target=self._serve, name=f"cxone-simulator-{self._url}", daemon=True
            )
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving, close the port and every open connection, and join the thread.

        Slow answers under way are cut short (their connections are dropped).  Closing
        twice does nothing.
        """
        with self._state_lock:
            if self._closed:
                return
            self._closed = True
            self._stopping.set()
            server, thread, wake = self._server, self._thread, self._wake
        if server is None or thread is None or wake is None:
            return
        with contextlib.suppress(OSError):
            wake[1].send(b"x")
        thread.join()
        server.server_close()
        for end in wake:
            end.close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        where = self._url or "not started"
        return (
            f"Simulator({where}, records={self._records}, "
            f"interactions={self._interaction_count}, rate={self._rate!r})"
        )

    def _serve(self) -> None:
        server, wake = self._server, self._wake
        if server is None or wake is None:  # only start() runs this, after setting both
            return
        with selectors.DefaultSelector() as selector:
            selector.register(server.socket, selectors.EVENT_READ)
            selector.register(wake[0], selectors.EVENT_READ)
            while not self._stopping.is_set():
                for key, _ in selector.select():
                    if key.fileobj is not server.socket or self._stopping.is_set():
                        continue
                    try:
                        request, address = server.get_request()
                    except OSError:
                        continue
                    try:
                        server.process_request(request, address)
                    except Exception:  # noqa: BLE001 - e.g. no thread could be started
                        server.shutdown_request(request)

    def _connections_opened(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.add(connection)
        if self._stopping.is_set():  # accepted just as close() shut the others
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def _connections_closed(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.discard(connection)

    # --- what tests read -----------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://HOST:PORT``: the issuer, the API base and the tenant URL at once.

        Raises:
            RuntimeError: If the simulator was never started.
        """
        if self._url is None:
            raise RuntimeError("the Simulator has no URL until start() binds its port")
        return self._url

    @property
    def tenant_id(self) -> str:
        """The tenant id, as the tokens' ``tenantId`` claim carries it."""
        return self._tenant_id

    @property
    def clock(self) -> Clock:
        """The clock that token lifetimes, the limit and slow answers read."""
        return self._clock

    def env(self, api: Literal["contacts", "interactions"] = "contacts") -> dict[str, str]:
        """The environment variables that point the ``ratekit_cxone`` adapter here.

        Args:
            api: ``"contacts"`` for the platform contract (``CXONE_ISSUER``, the client
                id and secret, and the access key id and secret); ``"interactions"`` for
                the tutorial's (``CXONE_TENANT_URL``, the client id and secret, and
                ``CXONE_SCOPES``, the supported scopes joined by spaces).

        Raises:
            ValueError: If *api* is neither.
            RuntimeError: If the simulator was never started.
        """
        common = {"CXONE_CLIENT_ID": self._client_id, "CXONE_CLIENT_SECRET": self._client_secret}
        if api == "contacts":
            return {
                "CXONE_ISSUER": self.url,
                **common,
                "CXONE_ACCESS_KEY_ID": self._access_key_id,
                "CXONE_ACCESS_KEY_SECRET": self._access_key_secret,
            }
        if api == "interactions":
            return {
                "CXONE_TENANT_URL": self.url,
                **common,
                "CXONE_SCOPES": " ".join(self._scopes),
            }
        raise ValueError(f"api must be 'contacts' or 'interactions', got {api!r}")

    def contacts(
        self,
        start: datetime | None = None,
        end: datetime | None = None,
        *,
        version: str = "34.0",
    ) -> list[dict[str, Any]]:
        """The completed contacts the API serves for a window, in the API's order.

        Args:
            start: The window's start, included (timezone-aware); ``None``: from the first.
            end: The window's end, excluded (timezone-aware); ``None``: to the last.
            version: The API version whose field names the records use (``"21.0"`` to
                ``"34.0"``).

        Returns:
            Fresh dictionaries, as ``completedContacts`` holds them, ordered by their
            start (and so by ``contactId``, unless `add_contacts` added late ones).

        Raises:
            ValueError: If *version* is not served, a bound is naive, or *end* is
                earlier than *start*.
        """
        modern = _major(version) >= _RENAMED_IN
        low = None if start is None else _check_moment("start", start)
        high = None if end is None else _check_moment("end", end)
        if low is not None and high is not None and high < low:
            raise ValueError(f"end must not be earlier than start, got {start!r} and {end!r}")
        rows, first, stop = self._window(low, high)
        return _render(rows[first:stop], _CONTACT_FIELDS_NEW if modern else _CONTACT_FIELDS_OLD)

    def add_contacts(self, count: int, *, first: datetime, span: timedelta) -> None:
        """Add *count* completed contacts, starting over ``[first, first + span)``.

        As a tenant's new contacts arrive: their ids come after every id held, and they
        take their place in the listing by their start, which may be before contacts
        already there (a long call completes after shorter ones that began later).  The
        API serves them, and counts them in its totals, from the next request on.

        Raises:
            ValueError: If *count* is negative, *first* is naive, or *span* is not
                positive.
        """
        count = _check_count("count", count)
        low = _check_moment("first", first)
        if span <= timedelta(0):
            raise ValueError(f"span must be positive, got {span!r}")
        starts, rows = self._contacts()
        with self._data_lock:
            new_starts, new_rows = _generate_contacts(
                self._seed * 1_000_003 + len(rows), count, low, span
            )
            shift = 0
            if rows and new_rows:  # every new id after every id held
                shift = max(max(row[0] for row in rows) + 1 - new_rows[0][0], 0)
            merged = sorted(
                [*zip(starts, rows, strict=True)]
                + [
                    (start, (row[0] + shift, row[1] + shift, *row[2:]))
                    for start, row in zip(new_starts, new_rows, strict=True)
                ],
                key=lambda pair: pair[0],
            )
            self._contact_data = ([start for start, _ in merged], [row for _, row in merged])
            self._records += count

    def interactions(self) -> list[dict[str, Any]]:
        """Every interaction the tutorial's API serves, in its order (fresh dictionaries)."""
        return _render(self._interactions(), _INTERACTION_FIELDS)

    def expire_tokens(self) -> None:
        """Make every token issued so far invalid now: the API answers 401 to it."""
        with self._lock:
            for token in self._tokens:
                self._tokens[token] = -math.inf

    def statistics(self) -> SimulatorStatistics:
        """A snapshot of the counters (see `SimulatorStatistics`)."""
        with self._lock:
            counts = self._counts.copy()
        return SimulatorStatistics(
            **{field.name: counts[field.name] for field in attrs.fields(SimulatorStatistics)}
        )

    @property
    def seen(self) -> list[tuple[str, str]]:
        """``(method, target)`` of every request received, in arrival order (a copy).

        The target is the path and query exactly as received, so tests can check that
        no secret ever went into a URL.
        """
        with self._lock:
            return [(request.method, request.target) for request in self._seen]

    @property
    def seen_requests(self) -> list[SeenRequest]:
        """Every request received, with its headers, body and status, in arrival order."""
        with self._lock:
            return list(self._seen)

    # --- data ----------------------------------------------------------------------------

    def _contacts(self) -> tuple[list[datetime], list[_Row]]:
        with self._data_lock:
            if self._contact_data is None:
                self._contact_data = _generate_contacts(
                    self._seed, self._records, self._first_date, self._span
                )
            return self._contact_data

    def _interactions(self) -> list[_Row]:
        with self._data_lock:
            if self._interaction_data is None:
                self._interaction_data = _generate_interactions(
                    self._seed, self._interaction_count, self._first_date, self._span
                )
            return self._interaction_data

    def _window(self, start: datetime | None, end: datetime | None) -> tuple[list[_Row], int, int]:
        """The rows, and the slice of them that starts in ``[start, end)``."""
        starts, rows = self._contacts()
        first = 0 if start is None else bisect.bisect_left(starts, start)
        stop = len(rows) if end is None else bisect.bisect_left(starts, end)
        return rows, first, max(first, stop)

    # --- bookkeeping ---------------------------------------------------------------------

    def _count(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._counts[name] += amount

    def _arrive(
        self, method: str, target: str, headers: tuple[tuple[str, str], ...], body: bytes
    ) -> int:
        request = SeenRequest(method, target, headers, body, self._clock.now())
        with self._lock:
            self._counts["requests"] += 1
            self._seen.append(request)
            return len(self._seen) - 1

    def _answered(self, index: int, status: int | None) -> None:
        with self._lock:
            self._seen[index] = attrs.evolve(self._seen[index], status=status)
            if status == 500:
                self._counts["errors"] += 1

    # --- answers -------------------------------------------------------------------------

    def _answer(self, method: str, target: str, headers: dict[str, str], body: bytes) -> _Answer:
        """The answer to one request (headers keyed by their names as received)."""
        lowered = {name.lower(): value for name, value in headers.items()}
        try:
            return self._route(method, target, lowered, body)
        except _Refused as refusal:
            return refusal.answer
        except Exception as error:  # noqa: BLE001 - a bug answers 500, not a hang
            return _error(500, "server_error", f"the simulator failed: {type(error).__name__}")

    def _route(self, method: str, target: str, headers: dict[str, str], body: bytes) -> _Answer:
        parts = urlsplit(target)
        path = parts.path
        query = parse_qsl(parts.query, keep_blank_values=True)
        contacts = _CONTACTS_PATH.fullmatch(path)
        allowed = "GET" if contacts else _ROUTES.get(path)
        if allowed is None:
            raise _Refused(_error(404, "not_found", f"no such resource: {path}"))
        if contacts and int(contacts["major"]) not in SUPPORTED_VERSIONS:
            description = f"API version v{contacts['major']}.0 is not served (v21.0 to v34.0 are)"
            raise _Refused(_error(404, "not_found", description))
        if method != allowed:
            description = f"{path} accepts only {allowed}"
            raise _Refused(_error(405, "method_not_allowed", description, Allow=allowed))
        token_path = path in {"/auth/token", "/oauth/token"}
        if any(name.lower() in _SECRET_PARAMETERS for name, _ in query):
            self._count("credentials_in_url")
            self._count("token_errors", int(token_path))
            description = "credentials must never be sent in the URL query"
            raise _Refused(_token_error(400, "invalid_request", description))
        if path == "/.well-known/openid-configuration":
            return self._openid_configuration()
        if path == "/.well-known/cxone-configuration":
            return self._cxone_configuration(query)
        if token_path:
            try:
                answer = self._token(path, headers, body)
            except _Refused:
                self._count("token_errors")
                raise
            self._count("tokens_issued")
            return answer
        self._count("api_requests")
        self._admit(headers)
        if contacts:
            return self._completed(int(contacts["major"]), path, query)
        return self._page_of_interactions(query)

    def _openid_configuration(self) -> _Answer:
        url = self.url
        return _Answer(
            200,
            {
                "issuer": url,
                "authorization_endpoint": f"{url}/auth/authorize",
                "token_endpoint": f"{url}/auth/token",
                "jwks_uri": f"{url}/.well-known/jwks",
                "scopes_supported": ["openid"],
                "response_types_supported": ["code", "token", "id_token"],
                "grant_types_supported": ["password", "authorization_code", "refresh_token"],
                "token_endpoint_auth_methods_supported": [
                    "client_secret_basic",
                    "client_secret_post",
                ],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
            },
        )

    def _cxone_configuration(self, query: list[tuple[str, str]]) -> _Answer:
        tenant = dict(query).get("tenantId")
        if tenant is None or tenant.lower() != self._tenant_id.lower():
            raise _Refused(_error(404, "not_found", "no such tenant"))
        url = self.url
        return _Answer(
            200,
            {
                "private": False,
                "area": "na1",
                "cluster": "C1",
                "domain": "niceincontact.com",
                "api_endpoint": url,
                "auth_endpoint": url,
                "ui_endpoint": url,
                "tenantId": tenant,
            },
        )

    # --- tokens --------------------------------------------------------------------------

    def _token(self, path: str, headers: dict[str, str], body: bytes) -> _Answer:
        """Either token endpoint: ``password`` at /auth/token, client credentials at /oauth."""
        form = _form(headers.get("content-type"), body)
        grant = form.get("grant_type")
        if not grant:
            raise _Refused(_token_error(400, "invalid_request", "grant_type is missing"))
        self._authenticate_client(headers.get("authorization"), form)
        if path == "/auth/token":
            return self._password_grant(grant, form)
        return self._client_credentials_grant(grant, form)

    def _authenticate_client(self, authorization: str | None, form: dict[str, str]) -> None:
        """Return if the client proved who it is; else raise the refusal to send."""
        if authorization is None:
            client_id, client_secret = form.get("client_id"), form.get("client_secret")
            if client_id is None or client_secret is None:
                description = (
                    "client authentication is missing (HTTP Basic, or client_id and "
                    "client_secret in the body)"
                )
                raise _Refused(_token_error(401, "invalid_client", description))
            if not self._client_matches(client_id, client_secret):
                description = "unknown client or wrong client secret"
                raise _Refused(_token_error(401, "invalid_client", description))
            return
        challenge = {"WWW-Authenticate": 'Basic realm="cxone"'}
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() != "basic":
            description = "client authentication must use HTTP Basic"
            raise _Refused(_token_error(401, "invalid_client", description, **challenge))
        if "client_secret" in form:
            description = "use one client authentication method, not two"
            raise _Refused(_token_error(400, "invalid_request", description))
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        user, colon, password = decoded.partition(":")
        # RFC 6749 section 2.3.1 form-encodes both before joining them; some clients do
        # not, so either spelling is accepted.
        if not colon or not (
            self._client_matches(user, password)
            or self._client_matches(unquote_plus(user), unquote_plus(password))
        ):
            description = "unknown client, wrong client secret or malformed Basic credentials"
            raise _Refused(_token_error(401, "invalid_client", description, **challenge))

    def _client_matches(self, client_id: str, client_secret: str) -> bool:
        same_id = hmac.compare_digest(client_id.encode(), self._client_id.encode())
        same_secret = hmac.compare_digest(client_secret.encode(), self._client_secret.encode())
        return same_id and same_secret

    def _password_grant(self, grant: str, form: dict[str, str]) -> _Answer:
        if grant != "password":
            description = "this endpoint grants only grant_type=password"
            raise _Refused(_token_error(400, "unsupported_grant_type", description))
        for name in ("username", "password"):
            if not form.get(name):
                raise _Refused(_token_error(400, "invalid_request", f"{name} is missing"))
        good_key = hmac.compare_digest(form["username"].encode(), self._access_key_id.encode())
        good_secret = hmac.compare_digest(
            form["password"].encode(), self._access_key_secret.encode()
        )
        if not (good_key and good_secret):
            description = "wrong access key id or secret"
            raise _Refused(_token_error(400, "invalid_grant", description))
        issued = int(wall_time())
        expires = issued + math.ceil(self._token_ttl)
        subject = "user:11111111-aaaa-bbbb-cccc-000000000001"
        claims: dict[str, object] = {
            "iss": self.url,
            "sub": subject,
            "tenantId": self._tenant_id,
            "iat": issued,
            "exp": expires,
            "jti": secrets.token_hex(8),
        }
        token = _jwt(claims)
        self._register(token)
        id_claims = {"iss": self.url, "sub": subject, "iat": issued, "exp": expires}
        return _Answer(
            200,
            {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": self._expires_in(),
                "refresh_token": secrets.token_urlsafe(32),
                "id_token": _jwt({**id_claims, "tenantId": self._tenant_id}),
                "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
            },
            _NO_STORE,
        )

    def _client_credentials_grant(self, grant: str, form: dict[str, str]) -> _Answer:
        if grant != "client_credentials":
            description = "this endpoint grants only grant_type=client_credentials"
            raise _Refused(_token_error(400, "unsupported_grant_type", description))
        requested = form.get("scope", "").split()
        for scope in requested:
            if scope not in self._scopes:
                supported = " ".join(self._scopes)
                description = f"scope {scope!r} is not supported (supported: {supported})"
                raise _Refused(_token_error(400, "invalid_scope", description))
        token = secrets.token_urlsafe(32)
        self._register(token)
        return _Answer(
            200,
            {
                "access_token": token,
                "expires_in": self._expires_in(),
                "token_type": "Bearer",
                "scope": " ".join(requested or self._scopes),
            },
            _NO_STORE,
        )

    def _expires_in(self) -> float:
        ttl = self._token_ttl
        return int(ttl) if ttl.is_integer() else ttl

    def _register(self, token: str) -> None:
        now = self._clock.now()
        with self._lock:
            if len(self._tokens) >= _MAX_TOKENS:  # forget the dead, so memory stays bounded
                self._tokens = {key: end for key, end in self._tokens.items() if end > now}
            self._tokens[token] = now + self._token_ttl

    def _token_problem(self, authorization: str | None) -> str | None:
        """Why a bearer token is refused, or ``None`` if it is valid now."""
        if authorization is None:
            return "the Authorization header is missing"
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return "the Authorization header must be 'Bearer <access token>'"
        now = self._clock.now()
        with self._lock:
            expires = self._tokens.get(token.strip())
        if expires is None:
            return "the access token is not one this tenant issued"
        if now >= expires:
            return "the access token has expired"
        return None

    # --- the list calls ------------------------------------------------------------------

    def _admit(self, headers: dict[str, str]) -> None:
        """Authorize, inject faults, apply the limit and check Accept, in that order.

        Raises:
            _Refused: With the answer to send instead of the page.
        """
        problem = self._token_problem(headers.get("authorization"))
        if problem is not None:
            self._count("unauthorized")
            challenge = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
            raise _Refused(_error(401, "invalid_token", problem, **challenge))
        fault = self._draw_fault()
        if fault == "drop":
            self._count("drops")
            raise _Refused(_DROP)
        if fault == "fault":
            self._count("faults")
            extra = {}
            if self._fault_retry_after is not None:
                extra["Retry-After"] = self._retry_after_text(self._fault_retry_after)
            description = "the service is unavailable"
            raise _Refused(_error(503, "service_unavailable", description, **extra))
        if fault == "slow":
            self._count("slow")
            if not self._clock.sleep(self._slow_seconds, cancel=self._stopping):
                self._count("drops")  # closed while waiting: nobody will read the answer
                raise _Refused(_DROP)
        if self._limiter is not None:
            decision = self._limiter.try_acquire()
            if not decision:
                self._count("throttled")
                wait = {"Retry-After": self._retry_after_text(decision.retry_after)}
                description = "the tenant's rate limit is reached"
                raise _Refused(_error(429, "too_many_requests", description, **wait))
        if not _acceptable(headers.get("accept")):
            description = "this API answers only application/json"
            raise _Refused(_error(406, "not_acceptable", description))

    def _draw_fault(self) -> _Fault | None:
        if not (self._drop_rate or self._fault_rate or self._slow_rate):
            return None
        with self._lock:
            draw = self._faults.random()
        if draw < self._drop_rate:
            return "drop"
        if draw < self._drop_rate + self._fault_rate:
            return "fault"
        if draw < self._drop_rate + self._fault_rate + self._slow_rate:
            return "slow"
        return None

    def _retry_after_text(self, seconds: float) -> str:
        return _seconds_text(seconds, self._retry_after_style)

    def _completed(self, major: int, path: str, query: list[tuple[str, str]]) -> _Answer:
        values = dict(query)
        start, end = _z_parameter(values, "startDate"), _z_parameter(values, "endDate")
        if end < start:
            description = "endDate must not be earlier than startDate"
            raise _Refused(_error(400, "invalid_request", description))
        top = _integer_parameter(values, "top", MAX_TOP, 1, MAX_TOP)
        skip = _integer_parameter(values, "skip", 0, 0, None)
        modern = major >= _RENAMED_IN
        wanted = _fields_parameter(values, major, modern)
        data, first, stop = self._window(start, end)
        total = stop - first
        if skip >= total:
            return _Answer(204)
        page = data[first + skip : first + min(total, skip + top)]
        records = _render(page, _CONTACT_FIELDS_NEW if modern else _CONTACT_FIELDS_OLD)
        if wanted:
            records = [{k: v for k, v in record.items() if k in wanted} for record in records]
        url = self.url
        links = {"self": url + _with_paging(path, query)}
        if skip + top < total:
            links["next"] = url + _with_paging(path, query, top=top, skip=skip + top)
        if skip > 0:
            links["previous"] = url + _with_paging(path, query, top=top, skip=max(0, skip - top))
        return _Answer(
            200,
            {
                "_links": links,
                "businessUnitId": BUSINESS_UNIT_ID,
                "completedContacts": records,
                "lastPollTime": _format_z(datetime.fromtimestamp(wall_time(), _UTC)),
                "totalRecords": total,
            },
        )

    def _page_of_interactions(self, query: list[tuple[str, str]]) -> _Answer:
        values = dict(query)
        size = _integer_parameter(values, "pageSize", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
        number = _integer_parameter(values, "pageNumber", 1, 1, None)
        data = self._interactions()
        begin = (number - 1) * size
        entities = _render(data[begin : begin + size], _INTERACTION_FIELDS)
        return _Answer(
            200,
            {
                "entities": entities,
                "pageSize": size,
                "pageNumber": number,
                "nextPage": None if begin + size >= len(data) else number + 1,
            },
        )
