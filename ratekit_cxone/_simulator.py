"""A local simulator of the NICE CXone REST API: a real HTTP server on loopback.

It serves both contracts the adapter speaks: the real platform (issuer discovery, the
``password`` grant, API base discovery and ``contacts/completed`` paged by ``top`` and
``skip``) and the tutorial's (``client_credentials`` with scopes, ``interactions`` paged by
page number).  A server-side limit, expiring tokens, 429 and 503 answers with
``Retry-After``, dropped connections and slow answers can be switched on, so that clients
can be tested offline against everything a real tenant does to them.

This module holds `Simulator` and the values it reports; what it is made of (the
records, the token endpoints, the faults, the routes, the HTTP server ...) is in the
modules of `ratekit_cxone._sim`.
"""

from __future__ import annotations

import bisect
import contextlib
import math
import random
import selectors
import socket
import threading
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Literal, final
from urllib.parse import parse_qsl, urlsplit

import attrs

from ratekit._clock import MONOTONIC
from ratekit._redact import redact_url
from ratekit_cxone._sim._answers import _RETRY_AFTER_STYLES
from ratekit_cxone._sim._checks import (
    _build_limiter,
    _check_count,
    _check_integer,
    _check_moment,
    _check_port,
    _check_scopes,
    _check_seconds,
    _check_shares,
    _check_span,
    _check_text,
    _major,
)
from ratekit_cxone._sim._data import (
    _CONTACT_FIELDS_NEW,
    _CONTACT_FIELDS_OLD,
    _INTERACTION_FIELDS,
    _RENAMED_IN,
    _generate_contacts,
    _generate_interactions,
    _render,
    _Row,
)
from ratekit_cxone._sim._endpoints import _Endpoints
from ratekit_cxone._sim._server import _Handler, _Server, _Server6

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import TracebackType

    from ratekit.typing import Clock

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


@final
class Simulator(_Endpoints):
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

    For example:

    ```python
    with Simulator(records=100, rate="50/second") as simulator:
        os.environ.update(simulator.env("contacts"))
        ...  # run the client against simulator.url
    ```
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
        first_date: datetime = datetime(2026, 1, 1, tzinfo=timezone.utc),
        span: timedelta = timedelta(days=30),
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
