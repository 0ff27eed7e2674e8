"""`CXoneClient`: completed contacts and interactions, paged, paced and typed."""

from __future__ import annotations

import contextlib
import json
import threading
from datetime import datetime, timezone
from typing import TYPE_CHECKING, TypeVar, cast, final

from ratekit import Scheduler
from ratekit._cancel import cancelled_by
from ratekit._clock import MONOTONIC
from ratekit._priority import at_priority, check_priority
from ratekit._validate import positive, whole_number
from ratekit.http import (
    DEFAULT_RETRY,
    Client,
    OffsetPaginator,
    Page,
    PageNumberPaginator,
    ResponseError,
    cancellable_pool,
    redact_url,
)
from ratekit_cxone._auth import make_auth
from ratekit_cxone._config import ConfigError
from ratekit_cxone._limits import adaptive_limiter
from ratekit_cxone._models import Contact, CXoneStatistics, Interaction, RecordPage

if TYPE_CHECKING:
    from collections.abc import Callable, Generator, Iterator, Mapping, Sequence

    import urllib3

    from ratekit.retry import RetryPolicy
    from ratekit.typing import CancelEvent, Clock, Limiter, QueryParams
    from ratekit_cxone._config import CXoneConfig

R = TypeVar("R", Contact, Interaction)

#: The most records the completed contacts API gives per page (its ``top``).
MAX_CONTACTS_PAGE = 10_000

#: The most records asked for per page of interactions.
MAX_INTERACTIONS_PAGE = 1_000

_ACCEPT_JSON = {"Accept": "application/json"}


def _utc(name: str, value: object) -> str:
    """An aware datetime as UTC with a literal ``Z``, as the API wants it."""
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(
            f"{name} must be an aware datetime (with a tzinfo, such as timezone.utc), "
            f"got the naive {value.isoformat()}"
        )
    utc = value.astimezone(timezone.utc)
    if utc.microsecond == 0:
        spec = "seconds"
    elif utc.microsecond % 1000 == 0:
        spec = "milliseconds"
    else:
        spec = "microseconds"
    return utc.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def _fields(fields: Sequence[str] | None) -> str | None:
    if fields is None:
        return None
    if isinstance(fields, str):
        fields = [fields]
    names: list[object] = list(fields)
    if not names:
        raise ValueError("fields must name at least one field, or be None for all")
    for name in names:
        if not isinstance(name, str) or not name.strip() or "," in name:
            raise ValueError(f"fields must be field names without commas, got {name!r}")
    chosen = [str(name).strip() for name in names]
    if "contactId" not in chosen:  # the key of every record: always asked for
        chosen.insert(0, "contactId")
    return ",".join(chosen)


@final
class CXoneClient:
    """A client for the CXone API that walks listings as fast as the tenant allows.

    Every request is paced by *limiter*, authenticated (see `CXoneConfig` for the two
    contracts), retried by *retry* (429, 502, 503, 504, failed connections; a 429 or
    503 ``Retry-After`` pauses every worker), and sent over one shared connection
    pool.  A 401 fetches a fresh token and retries once.

    Pages come out in the API's order, each record exactly once.  When the API tells
    the total (completed contacts do), the pages after the first are fetched by
    *concurrency* threads at once, still handed out in order, with at most a few pages
    per thread held in memory.

    **Stopping.**  Every walk takes a *cancel* event (by default the
    `ratekit.current_cancel`): once it is set, the walk's waits (the limiter, a
    ``Retry-After``, a token request) and its requests in flight end at once, and
    iterating raises `ratekit.Cancelled`.  Closing the iterator, or the client, stops a
    walk too.

    Use it as a context manager, or call `close`.

    Args:
        config: Which tenant and contract; checked at once.
        limiter: Paces the requests (default: `adaptive_limiter`, which learns the
            tenant's limit).  Share one limiter between clients to share a limit.
        concurrency: Threads fetching pages at once (at least 1).
        retry: The retry policy (default `ratekit.http.DEFAULT_RETRY`); ``None`` to
            never retry.
        timeout: Seconds one request may take in all (connect and read).
        clock: Where time comes from (default: the limiter's, else the real clock).
        pool: A `urllib3.PoolManager` to send with (default: a
            `ratekit.http.cancellable_pool` of its own that keeps *concurrency*
            connections per host, closed by `close`); give it a ``maxsize`` of at least
            *concurrency*, and make it with `ratekit.http.cancellable_pool` so that a
            stopped walk also stops its requests in flight.
        on_page: Called with each `RecordPage` before it is handed out, in the thread
            that walks the listing.

    Raises:
        ConfigError: If *config* is incomplete or invalid (every field at fault named).
        ValueError: If *concurrency* or *timeout* is out of range.
    """

    __slots__ = (
        "_auth",
        "_config",
        "_counts",
        "_http",
        "_limiter",
        "_lock",
        "_on_page",
        "_own_pool",
        "_pool",
        "_scheduler",
        "_total",
    )

    def __init__(  # noqa: PLR0913 - the settings of a client, all keyword-only
        self,
        config: CXoneConfig,
        *,
        limiter: Limiter | None = None,
        concurrency: int = 4,
        retry: RetryPolicy | None = DEFAULT_RETRY,
        timeout: float = 30.0,
        clock: Clock | None = None,
        pool: urllib3.PoolManager | None = None,
        on_page: Callable[[RecordPage], object] | None = None,
    ) -> None:
        config.check()
        concurrency = whole_number("concurrency", concurrency, 1)
        timeout = positive("timeout", timeout)
        self._config = config
        self._limiter: Limiter = adaptive_limiter(clock=clock) if limiter is None else limiter
        if clock is None:
            clock = getattr(self._limiter, "clock", None) or MONOTONIC
        self._own_pool = pool is None
        # One kept-alive connection per worker (urllib3 keeps one per host by default).
        self._pool = cancellable_pool(maxsize=concurrency) if pool is None else pool
        self._auth = make_auth(config, pool=self._pool, retry=retry, timeout=timeout, clock=clock)
        self._http = Client(
            self._limiter,
            auth=self._auth,
            retry=retry,
            pool=self._pool,
            timeout=timeout,
            headers=_ACCEPT_JSON,
            clock=clock,
        )
        self._scheduler = Scheduler(concurrency) if concurrency > 1 else None
        self._on_page = on_page
        self._lock = threading.Lock()
        self._counts = [0, 0]  # pages, records
        self._total: int | None = None

    def __repr__(self) -> str:
        return f"CXoneClient({self._config!r}, limiter={self._limiter!r})"

    def __enter__(self) -> CXoneClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop any fan-out still running, and close the client's own connections."""
        if self._scheduler is not None:
            self._scheduler.shutdown()
        if self._own_pool:
            self._pool.clear()

    @property
    def config(self) -> CXoneConfig:
        """The configuration."""
        return self._config

    @property
    def limiter(self) -> Limiter:
        """The limiter that paces the requests."""
        return self._limiter

    @property
    def total(self) -> int | None:
        """The total of the listing being walked, once its first page told it."""
        with self._lock:
            return self._total

    def tenant_id(self) -> str | None:
        """The tenant: configured, or, for the platform, read from the token it issues.

        Needs a token when the tenant is not configured (one request, after discovery);
        ``None`` for the tutorial's contract, which knows no tenant id.

        Raises:
            ConfigError: If the token names no tenant.
            ratekit.http.TokenError: If the credentials are rejected.
        """
        if self._config.tenant_id is not None or self._config.api != "contacts":
            return self._config.tenant_id
        tenant_of = getattr(self._auth, "tenant_id", None)
        return None if tenant_of is None else str(tenant_of())

    def statistics(self) -> CXoneStatistics:
        """Counts of requests, 429s, retries, failures, pages and records so far."""
        api = self._http.statistics()
        discovery = self._auth.statistics()
        with self._lock:
            pages, records = self._counts
        return CXoneStatistics(
            requests=api.requests + discovery.requests,
            throttled=api.throttled + discovery.throttled,
            retries=api.retries + discovery.retries,
            failures=api.failures + discovery.failures,
            pages=pages,
            records=records,
            cooled=api.cooled,
        )

    # --- completed contacts (the platform) ------------------------------------------------

    def completed_contact_pages(  # noqa: PLR0913 - a window and the options of a walk
        self,
        start: datetime,
        end: datetime,
        *,
        page_size: int = 1000,
        fields: Sequence[str] | None = None,
        skip: int = 0,
        cancel: CancelEvent | None = None,
        priority: int | None = None,
    ) -> Iterator[RecordPage]:
        """Walk the contacts completed from *start* to *end*, a page at a time.

        ``GET {api}/inContactAPI/services/v{version}/contacts/completed`` with
        ``startDate`` and ``endDate`` in UTC with a literal ``Z``, ``top`` and ``skip``.
        A 204 (nothing matches) gives no pages; empty pages are not handed out.

        Args:
            start: The start of the window: an aware datetime.
            end: Its end: an aware datetime after *start*.
            page_size: Records per page (``top``), from 1 to 10,000.
            fields: The fields to ask for (``fields=a,b``); ``None`` for all.
                ``contactId``, every record's key, is asked for in any case.
            skip: Records to skip first: resume a walk with the ``position`` plus the
                number of records of the last page it handled.
            cancel: An event that stops the walk (see the class docstring).
            priority: The priority of the walk's requests (see `ratekit.Prioritized`);
                ``None``: the `ratekit.current_priority` where the iterator is advanced.

        Returns:
            An iterator of `RecordPage` values of `Contact` records; the requests start
            when it is first advanced.  Close it to stop early.

        Raises:
            ValueError: At once, if *start* or *end* is naive, *end* is not after
                *start*, or *page_size*, *skip* or *fields* is out of range (the message
                names it).
            TypeError: At once, if an argument has the wrong type.
            ConfigError: If the configuration is for the interactions contract, or
                discovery finds it wrong.
            ratekit.http.TokenError: If the credentials are rejected.
            ratekit.AuthError: If the API rejects a fresh token.
            ratekit.http.HTTPError: If the API answers an error, or a page cannot be
                read.
            ratekit.retry.RetryError: If the retry policy gives up.
            ratekit.Cancelled: If *cancel* is set.
        """
        return self._contact_pages(start, end, page_size, fields, skip, cancel, priority)

    def _contact_pages(  # noqa: PLR0913, PLR0917 - the arguments of the public method
        self,
        start: datetime,
        end: datetime,
        page_size: int,
        fields: Sequence[str] | None,
        skip: int,
        cancel: CancelEvent | None,
        priority: int | None = None,
    ) -> Generator[RecordPage, None, None]:
        level = None if priority is None else check_priority(priority)
        params = self._window(start, end)
        page_size = whole_number("page_size", page_size, 1, MAX_CONTACTS_PAGE)
        skip = whole_number("skip", skip, 0)
        names = _fields(fields)
        if names is not None:
            params["fields"] = names
        paginator = OffsetPaginator(
            page_size, records_key="completedContacts", total_key="totalRecords", offset=skip
        )

        def position(page: Page) -> int:
            return page.offset if page.offset is not None else skip + page.number * page_size

        return self._walk(
            paginator,
            self._completed_url,
            params,
            position,
            Contact.from_raw,
            fan_out=True,
            cancel=cancel,
            priority=level,
        )

    def _completed_url(self) -> str:
        """The URL of the completed contacts listing (discovering the API base once)."""
        base = self._auth.api_base()
        return f"{base}/inContactAPI/services/v{self._config.version}/contacts/completed"

    def _window(self, start: datetime, end: datetime) -> dict[str, str | int | float]:
        """The query of the contacts completed from *start* to *end*, both checked."""
        if self._config.api != "contacts":
            raise ConfigError(
                "completed contacts need api='contacts' (the platform); "
                f"this client is configured for api={self._config.api!r}"
            )
        params: dict[str, str | int | float] = {
            "startDate": _utc("start", start),
            "endDate": _utc("end", end),
        }
        if end <= start:
            raise ValueError(f"start must be before end, got start={start!r}, end={end!r}")
        return params

    def completed_contacts_total(
        self,
        start: datetime,
        end: datetime,
        *,
        cancel: CancelEvent | None = None,
        priority: int | None = None,
    ) -> int:
        """How many contacts completed from *start* to *end* the API reports now.

        One request for a single record (``top=1``), read for its ``totalRecords``; a
        204 means none.  For checking, after a walk, that the records kept are all the
        API has.  *priority* is the request's (see `completed_contact_pages`).

        Raises:
            ValueError: If *start* or *end* is naive, or *end* is not after *start*.
            ConfigError: If the configuration is for the interactions contract.
            ratekit.http.ResponseError: If the answer tells no total.
            ratekit.http.HTTPError: If the API answers an error.
        """
        params = {**self._window(start, end), "top": 1, "skip": 0, "fields": "contactId"}
        level = None if priority is None else check_priority(priority)
        with cancelled_by(cancel), at_priority(level):
            url = self._completed_url()
            body = self._http.get_json(url, params=params, headers=_ACCEPT_JSON)
        if body is None:  # 204 No Content: nothing matches
            return 0
        total = _total(body, "totalRecords")
        if total is None:
            excerpt = json.dumps(body, default=str)[:200]
            raise ResponseError(200, redact_url(url), excerpt, "no totalRecords to count by")
        return total

    def completed_contacts(  # noqa: PLR0913 - a window and the options of a walk
        self,
        start: datetime,
        end: datetime,
        *,
        page_size: int = 1000,
        fields: Sequence[str] | None = None,
        skip: int = 0,
        cancel: CancelEvent | None = None,
        priority: int | None = None,
    ) -> Iterator[Contact]:
        """Stream the contacts completed from *start* to *end*, in the API's order.

        See `completed_contact_pages` for the arguments and errors.
        """
        pages = self._contact_pages(start, end, page_size, fields, skip, cancel, priority)
        return cast("Iterator[Contact]", _records(pages))

    # --- interactions (the tutorial's contract) -------------------------------------------

    def interaction_pages(
        self,
        *,
        page_size: int = 100,
        first_page: int = 1,
        cancel: CancelEvent | None = None,
        priority: int | None = None,
    ) -> Iterator[RecordPage]:
        """Walk the interactions, a page at a time (the tutorial's contract).

        ``GET {tenant_url}/api/v2/ic/interactions?pageSize=N&pageNumber=P`` from
        *first_page* until a page says ``nextPage: null`` (or is short or empty).

        Args:
            page_size: Records per page, from 1 to 1,000.
            first_page: The page number to start at (the first is 1): resume a walk
                with the ``position`` of the last page it handled, plus one.
            cancel: An event that stops the walk (see the class docstring).
            priority: The priority of the walk's requests (see `ratekit.Prioritized`);
                ``None``: the `ratekit.current_priority` where the iterator is advanced.

        Returns:
            An iterator of `RecordPage` values of `Interaction` records; close it to
            stop early.

        Raises:
            ValueError: At once, if *page_size* or *first_page* is out of range.
            ConfigError: If the configuration is for the contacts contract.
            ratekit.http.TokenError: If the credentials are rejected.
            ratekit.http.HTTPError: If the API answers an error, or a page cannot be
                read.
            ratekit.retry.RetryError: If the retry policy gives up.
            ratekit.Cancelled: If *cancel* is set.
        """
        return self._interaction_pages(page_size, first_page, cancel, priority)

    def _interaction_pages(
        self,
        page_size: int,
        first_page: int,
        cancel: CancelEvent | None,
        priority: int | None = None,
    ) -> Generator[RecordPage, None, None]:
        if self._config.api != "interactions":
            raise ConfigError(
                "interactions need api='interactions' (the tutorial's contract); "
                f"this client is configured for api={self._config.api!r}"
            )
        page_size = whole_number("page_size", page_size, 1, MAX_INTERACTIONS_PAGE)
        first_page = whole_number("first_page", first_page, 1)
        level = None if priority is None else check_priority(priority)
        paginator = PageNumberPaginator(
            page_size, first=first_page, records_key="entities", next_key="nextPage"
        )

        def url() -> str:
            return f"{self._auth.api_base()}/api/v2/ic/interactions"

        def position(page: Page) -> int:
            return first_page + page.number

        return self._walk(
            paginator,
            url,
            {},
            position,
            Interaction.from_raw,
            fan_out=False,
            cancel=cancel,
            priority=level,
        )

    def interactions(
        self,
        *,
        page_size: int = 100,
        first_page: int = 1,
        cancel: CancelEvent | None = None,
        priority: int | None = None,
    ) -> Iterator[Interaction]:
        """Stream the interactions, in the API's order (see `interaction_pages`)."""
        pages = self._interaction_pages(page_size, first_page, cancel, priority)
        return cast("Iterator[Interaction]", _records(pages))

    # --- walking --------------------------------------------------------------------------

    def _walk(  # noqa: PLR0913 - what differs between the listings
        self,
        paginator: OffsetPaginator | PageNumberPaginator,
        url: Callable[[], str],
        params: QueryParams,
        position: Callable[[Page], int],
        parse: Callable[[Mapping[str, object]], R],
        *,
        fan_out: bool,
        cancel: CancelEvent | None,
        priority: int | None = None,
    ) -> Generator[RecordPage, None, None]:
        """Fetch the pages through *paginator*, type their records, count and hand out.

        Each step of the walk runs at *priority* (when given), which its requests and
        the fan-out map it starts take on; never around a ``yield``.
        """
        with self._lock:
            self._total = None
        with cancelled_by(cancel), at_priority(priority):  # not around a yield: they would leak
            where = url()  # discovery, if need be, when the walk starts
        scheduler = self._scheduler if fan_out else None
        pages = paginator.pages(
            self._http,
            where,
            params=params,
            headers=_ACCEPT_JSON,
            fan_out=scheduler,
            cancel=cancel,
        )
        with contextlib.closing(pages):
            while True:
                with at_priority(priority):
                    page = next(pages, None)
                if page is None:
                    break
                total = _total(page.body, paginator.total_key)
                records = [_parse(parse, record, where) for record in page.records]
                with self._lock:
                    if page.number == 0:
                        self._total = total
                    if records:
                        self._counts[0] += 1
                        self._counts[1] += len(records)
                if not records:
                    continue
                result = RecordPage(position(page), records, total)
                if self._on_page is not None:
                    self._on_page(result)
                yield result


def _total(body: object, key: str | None) -> int | None:
    value = body.get(key) if key is not None and isinstance(body, dict) else None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def _parse(parse: Callable[[Mapping[str, object]], R], record: object, url: str) -> R:
    """A record as a model; a record that is not one is the API's error, not the caller's."""
    try:
        return parse(cast("Mapping[str, object]", record))
    except (TypeError, ValueError) as error:
        excerpt = json.dumps(record, default=str)[:200]
        raise ResponseError(200, redact_url(url), excerpt, f"a bad record ({error})") from None


def _records(
    pages: Generator[RecordPage, None, None],
) -> Generator[Contact | Interaction, None, None]:
    with contextlib.closing(pages):
        for page in pages:
            yield from page.records
