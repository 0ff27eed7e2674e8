"""Paginators: walking an API's pages by page number, offset, next link or cursor.

A paginator is a small immutable value that says how an API pages; its `pages` method
walks the pages of one listing through a `ratekit.http.Client` (so every request is
paced, authenticated and retried by the client), and `records` streams the records of
every page in order.  Memory stays bounded: one page at a time, or, when the pages are
fanned out over a `ratekit.Scheduler`, the scheduler's window of pages.  ``pages_async``
and ``records_async`` do the same from asyncio, through an `httpx.AsyncClient`, an
`aiohttp.ClientSession` or any `ratekit.typing.AsyncHTTPClient`.

Each walk is written once, without I/O: a generator of steps that asks for a page
(`_Fetch`, answered with the decoded `_Answer`), hands out a `Page`, or asks for pages
fetched concurrently (`_FanOut`, then `_Signal.SERVED` for each).  `_walked` runs the
steps through a `Client` and a `Scheduler`, `_walked_async` through an asyncio client
and an `AsyncScheduler`; what a walk checks is the same whichever runs it.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import inspect
import json
import logging
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus, urldefrag, urljoin

import attrs
from urllib3.util import parse_url

from ratekit._cancel import as_cancellation, resolve
from ratekit._errors import HTTPStatusError, IncompleteListing, ResponseError
from ratekit._redact import _BLANK_OR_CONTROL, Origin, origin, redact_url
from ratekit._validate import attribute, text, whole_number
from ratekit.http._client import _excerpt, _header_secrets, _query_values

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Iterator
    from typing import TypeAlias

    from ratekit._async_scheduler import AsyncScheduler
    from ratekit._scheduler import Scheduler
    from ratekit.http._client import Client
    from ratekit.typing import (
        AsyncHTTPClient,
        AsyncPaginator,
        CancelEvent,
        Paginator,
        QueryParams,
    )

log = logging.getLogger("ratekit.http")

#: What `_dig` returns when a path leads nowhere (a JSON ``null`` is ``None``, not this).
_MISSING: Any = object()

# One parameter of a link-value (RFC 8288 section 3): ``; name``, ``; name=token`` or
# ``; name="quoted \"string\""``.  Quoted values may hold commas and semicolons, which is
# why the header is scanned rather than split.
_LINK_PARAM = re.compile(r'\s*;\s*([^\s=;,<>"]+)\s*(?:=\s*("(?:[^"\\]|\\.)*"|[^\s;,]*))?')
_QUOTED_PAIR = re.compile(r"\\(.)")


# --- checks -------------------------------------------------------------------------------


def _check_name(name: str, value: object) -> None:
    """A query parameter's name: a non-empty string."""
    text(name, value)


def _check_path(name: str, value: object) -> None:
    """A key or a dotted path into the JSON body, such as ``"result.items"``."""
    if not isinstance(value, str) or not all(value.split(".")):
        raise ValueError(
            f"{name} must be a key or dotted path such as 'result.items', got {value!r}"
        )


_NAME = attribute(_check_name)
_NAME_OR_NONE = attribute(_check_name, optional=True)
_PATH = attribute(_check_path, optional=True)
_KEY_PATH = attribute(_check_path)


# --- pages --------------------------------------------------------------------------------


def _show_records(records: list[object]) -> str:
    return f"<{len(records)} records>"


@attrs.frozen
class Page:
    """One page of a listing, as a paginator fetched it.

    Attributes:
        number: The index of the page in the walk, counting from 0 (whatever numbering
            the API itself uses).
        records: The records of the page, in the order the API gave them.
        body: The whole decoded JSON body (``None`` for a 204 or an empty body).
        total: The total number of records of the listing, if the body tells it.
        offset: Where the page's first record is in the listing, counting from 0: for
            offset paging the offset asked for (a walk resumes after a page with
            ``OffsetPaginator(..., offset=page.offset + len(page.records))``); for page
            numbers, the records of the pages before it.  ``None`` for next-link and
            cursor paging, which cannot tell.
    """

    number: int
    records: list[object] = attrs.field(repr=_show_records)
    body: object = attrs.field(repr=False)
    total: int | None = None
    offset: int | None = None


@attrs.frozen
class _Answer:
    """A successful response: where it came from, and its decoded body."""

    # Query included: as requested through a `Client` (absolute with a base URL), or
    # as answered to an asyncio client (the response's URL, see `_get_async`).
    url: str
    status: int
    data: bytes
    body: object
    link: str | None  # the Link header
    secrets: list[str] = attrs.field(repr=False)  # what the client masks in excerpts

    def error(self, reason: str) -> ResponseError:
        excerpt = _excerpt(self.data, self.secrets)
        return ResponseError(self.status, redact_url(self.url), excerpt, reason)


def _answered(url: str, status: int, data: bytes, link: str | None, secrets: list[str]) -> _Answer:
    """The `_Answer` of a ``GET`` of *url*, decoded as `Client.json` decodes a body.

    Raises:
        HTTPStatusError: If *status* is not 2xx.
        ResponseError: If the body is neither empty nor JSON.
    """
    if not 200 <= status < 300:
        raise HTTPStatusError(status, "GET", redact_url(url), _excerpt(data, secrets))
    body: object = None
    if status != 204 and data.strip():
        try:
            body = json.loads(data)
        except ValueError as error:  # UnicodeDecodeError included
            reason = f"a body that is not JSON ({error.__class__.__name__})"
            excerpt = _excerpt(data, secrets)
            raise ResponseError(status, redact_url(url), excerpt, reason) from None
    return _Answer(url, status, data, body, link, secrets)


def _get(
    client: Client,
    url: str,
    params: QueryParams | None,
    headers: Mapping[str, str] | None,
    cancel: CancelEvent | None,
) -> _Answer:
    """``GET`` through the client and decode the body as `Client.json` does.

    `Client.json` would hide the ``Link`` header, and next links are resolved against
    the URL the request went to, so the checks are repeated here, with the same errors.
    """
    full = client.url(url, params)
    response = client.request("GET", url, params=params, headers=headers, cancel=cancel)
    secrets = client._secrets(full, headers)
    return _answered(full, response.status, response.data, response.headers.get("Link"), secrets)


async def _get_async(
    client: AsyncHTTPClient,
    url: str,
    params: QueryParams | None,
    headers: Mapping[str, str] | None,
) -> _Answer:
    """``GET`` through an asyncio client, and decode the body as `_get` does.

    The answer's URL is the response's (where the client's base URL, its own query
    parameters and any redirect took the request), which next links resolve against.
    What the excerpt of an error masks: the query values of the URL asked for and of
    the response's, and the credential headers given and sent.
    """
    response = await client.get(url, params=params, headers=headers)
    status, final, link, data, sent = await _read_response(response)
    secrets = [*_query_values(final), *_query_values(url)]
    for given in (headers or {}, sent):
        secrets += _header_secrets(given)
    return _answered(final, status, data, link, secrets)


async def _read_response(
    response: Any,  # noqa: ANN401 - an httpx or aiohttp response, read by duck typing
) -> tuple[int, str, str | None, bytes, Mapping[str, str]]:
    """The status, final URL, ``Link`` header, body and sent headers of *response*.

    An `httpx.Response` has ``status_code``, its body read as ``content`` (bytes) and
    its request as ``request``; an `aiohttp.ClientResponse` has ``status``, a body to
    ``await read()`` and its request as ``request_info``, and it is released here,
    whatever happens, so that its connection goes back to the pool.  Both have
    case-insensitive ``headers`` and a ``url`` to show with ``str()``.
    """
    try:
        status = getattr(response, "status_code", None)
        if status is None:
            status = response.status
        headers = response.headers
        # aiohttp keeps repeated fields apart; urllib3 and httpx join them with commas.
        getall = getattr(headers, "getall", None)
        link = ", ".join(getall("Link", ())) if callable(getall) else headers.get("Link")
        content = getattr(response, "content", None)
        data = content if isinstance(content, bytes) else await response.read()
        request = getattr(response, "request_info", None)
        if request is None:
            with contextlib.suppress(RuntimeError):  # httpx: a response built by hand
                request = response.request
        sent = getattr(request, "headers", None)
        return int(status), str(response.url), link or None, bytes(data), sent or {}
    finally:
        release = getattr(response, "release", None)
        if callable(release):
            released = release()
            if inspect.isawaitable(released):
                await released


def _dig(body: object, path: str) -> Any:  # noqa: ANN401 - any JSON value
    """The value at a dotted *path* of *body*, or `_MISSING`."""
    value = body
    for key in path.split("."):
        if not isinstance(value, Mapping) or key not in value:
            return _MISSING
        value = value[key]
    return value


def _records(answer: _Answer, records_key: str | None) -> list[object]:
    """The records of a page: a 204, an empty body or a ``null`` list have none.

    A missing key is an error, not an empty page: a misspelt *records_key* must not
    look like an empty listing.
    """
    if answer.body is None:
        return []
    value = answer.body if records_key is None else _dig(answer.body, records_key)
    if value is None:
        return []
    if not isinstance(value, list):
        where = "the body" if records_key is None else repr(records_key)
        found = "nothing" if value is _MISSING else f"a {type(value).__name__}"
        raise answer.error(f"{found} where a list of records was expected, at {where}")
    return value


def _total(body: object, total_key: str | None) -> int | None:
    """The total number of records, if the body holds a non-negative integer there."""
    if total_key is None:
        return None
    value = _dig(body, total_key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def _page(number: int, answer: _Answer, records_key: str | None, total_key: str | None) -> Page:
    records = _records(answer, records_key)
    return Page(number, records, answer.body, _total(answer.body, total_key))


def _absent(value: object) -> bool:
    """Whether a "next" marker says there is nothing more: missing, null, false or ""."""
    return value is _MISSING or value is None or value is False or value == ""


# --- walks, and what runs them ------------------------------------------------------------


@attrs.frozen
class _Fetch:
    """A step of a walk: ``GET`` *url* with the query *params*; the `_Answer` is sent back."""

    url: str
    params: QueryParams | None


@attrs.frozen
class _FanOut:
    """A step of a numbered walk: fetch the pages at *places* concurrently, in order.

    Sent back is whether the driver fans out (it has a scheduler); if it does, each
    `_Signal.SERVED` step that follows is sent the next page of the map, in order, or
    ``None`` after the last.  Each call of the map fetches ``request(place)`` and reads
    it with ``read(answer, place)`` in the worker, so that a page that cannot be read
    fails the map at once, as a page that cannot be fetched does.
    """

    places: Iterator[_Place]
    request: Callable[[_Place], _Fetch]
    read: Callable[[_Answer, _Place], Page]


class _Signal(enum.Enum):
    """A step of a fanned-out walk that asks for the next page that the map served."""

    SERVED = "served"


if TYPE_CHECKING:
    #: Where a numbered page starts: its first record (offset) and its index in the walk.
    _Place: TypeAlias = "tuple[int, int]"
    #: What a walk yields; it is sent an `_Answer` for a `_Fetch`, a bool for a
    #: `_FanOut`, a `Page` or ``None`` for `_Signal.SERVED`, and ``None`` for a `Page`.
    _Step: TypeAlias = "Page | _Fetch | _FanOut | _Signal"
    _Steps: TypeAlias = "Generator[_Step, Any, None]"


def _advance(steps: _Steps, reply: object) -> _Step | None:
    """The next step of *steps*, sent *reply* for the last one; ``None`` at the end."""
    try:
        return steps.send(reply)
    except StopIteration:
        return None


def _walked(
    steps: _Steps,
    client: Client,
    headers: Mapping[str, str] | None,
    cancel: CancelEvent | None,
    fan_out: Scheduler | None = None,
) -> Generator[Page, None, None]:
    """Run the walk *steps* through *client*, fanned out over *fan_out* if it asks to.

    *cancel* (or the current one) is the cancellation that the walk's requests share:
    a plain event is linked once for the whole walk, so that each request in flight can
    be aborted when it is set (see `ratekit.http.cancellable_pool`).  Closing the
    generator closes the walk and any fan-out map.
    """
    with as_cancellation(resolve(cancel)) as stop, contextlib.ExitStack() as stack:
        stack.callback(steps.close)
        served: Iterator[Page] | None = None
        reply: object = None
        while (step := _advance(steps, reply)) is not None:
            reply = None
            if isinstance(step, Page):
                yield step
            elif isinstance(step, _Fetch):
                reply = _get(client, step.url, step.params, headers, stop)
            elif isinstance(step, _FanOut):
                if fan_out is not None:
                    call = functools.partial(_fanned, client, headers, step)
                    later = fan_out.map(call, step.places, ordered=True, cancel=stop)
                    served = stack.enter_context(contextlib.closing(later))
                reply = fan_out is not None
            else:
                reply = None if served is None else next(served, None)


def _fanned(
    client: Client, headers: Mapping[str, str] | None, fan_out: _FanOut, place: _Place
) -> Page:
    """One call of a fan-out map: the page at *place*."""
    fetch = fan_out.request(place)
    # No explicit event: the map's own, which the walk's cancel and a failure both set,
    # is the current one in its workers.
    return fan_out.read(_get(client, fetch.url, fetch.params, headers, None), place)


async def _walked_async(
    steps: _Steps,
    client: AsyncHTTPClient,
    headers: Mapping[str, str] | None,
    fan_out: AsyncScheduler | None = None,
) -> AsyncGenerator[Page, None]:
    """Run the walk *steps* through an asyncio *client*, fanned out over *fan_out*.

    Cancelling the task that iterates it ends the request in flight; that, or closing
    the generator (``aclose``), closes the walk and any fan-out map, whose tasks are
    cancelled and awaited.
    """
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(steps.close)
        served: AsyncIterator[Page] | None = None
        reply: object = None
        while (step := _advance(steps, reply)) is not None:
            reply = None
            if isinstance(step, Page):
                yield step
            elif isinstance(step, _Fetch):
                reply = await _get_async(client, step.url, step.params, headers)
            elif isinstance(step, _FanOut):
                if fan_out is not None:
                    call = functools.partial(_fanned_async, client, headers, step)
                    later = fan_out.map(call, step.places, ordered=True)
                    served = await stack.enter_async_context(contextlib.aclosing(later))
                reply = fan_out is not None
            else:
                reply = None if served is None else await anext(served, None)


async def _fanned_async(
    client: AsyncHTTPClient, headers: Mapping[str, str] | None, fan_out: _FanOut, place: _Place
) -> Page:
    """One call of an asyncio fan-out map: the page at *place*."""
    fetch = fan_out.request(place)
    return fan_out.read(await _get_async(client, fetch.url, fetch.params, headers), place)


def _records_of(pages: Generator[Page, None, None]) -> Generator[object, None, None]:
    # closing(): a consumer that stops early stops the walk (and any fan-out) at once.
    with contextlib.closing(pages):
        for page in pages:
            yield from page.records


async def _records_of_async(pages: AsyncGenerator[Page, None]) -> AsyncGenerator[object, None]:
    # aclosing(): a consumer that stops early stops the walk (and any fan-out) at once.
    async with contextlib.aclosing(pages):
        async for page in pages:
            for record in page.records:
                yield record


# --- page numbers and offsets -------------------------------------------------------------


class _NumberedPaginator:
    """What page-number and offset paging share: pages known by their index or offset.

    As these say what to ask for, pages past the first can be fetched concurrently
    once the total is known.  A walk is complete or it raises `IncompleteListing`: the
    total, when the API gives one, is checked at the end, never assumed.
    """

    __slots__ = ()

    page_size: int
    total_key: str | None
    records_key: str | None

    #: Whether a page can start at any record (offsets), so that a gap can be filled.
    _by_offset = False

    def _query(self, position: int, index: int) -> dict[str, str | int | float]:
        """The query that asks for page *index* (from 0), starting at record *position*."""
        raise NotImplementedError

    def _more(self, page: Page) -> bool:  # noqa: ARG002 - offsets have no marker
        """Whether the body says that another page follows."""
        return True

    def _marked(self) -> bool:
        """Whether bodies say if a page follows (then a short page does not end a walk)."""
        return False

    def _skipped(self) -> int:
        """Records of the listing before page 0 (an offset's resume point), not walked."""
        return 0

    def _request(self, url: str, params: QueryParams | None, place: _Place) -> _Fetch:
        """The request for the page at *place*: the caller's *params*, then the paging ones."""
        position, index = place
        return _Fetch(url, {**(params or {}), **self._query(position, index)})

    def _read(self, answer: _Answer, place: _Place) -> Page:
        """The page of index ``place[1]`` that starts at the record ``place[0]``."""
        position, index = place
        records = _records(answer, self.records_key)
        if len(records) > self.page_size:
            # Offsets would then repeat records, and neither a short page nor the total
            # could be trusted to end the walk.
            raise answer.error(
                f"{len(records)} records in a page of at most {self.page_size}: "
                "does the API ignore the page size parameter?"
            )
        total = _total(answer.body, self.total_key)
        return Page(index, records, answer.body, total, position)

    def _listing(self, url: str) -> str:
        """The listing as messages show it: a page's *url* without the paging parameters."""
        own = set(self._query(0, 0))
        base, _, query = redact_url(url).partition("?")
        kept = [
            pair
            for pair in query.split("&")
            if pair and unquote_plus(pair.partition("=")[0]) not in own
        ]
        return f"{base}?{'&'.join(kept)}" if kept else base

    def pages(  # noqa: PLR0913 - the parts of a walk, all keyword-only
        self,
        client: Client,
        url: str,
        *,
        params: QueryParams | None = None,
        headers: Mapping[str, str] | None = None,
        fan_out: Scheduler | None = None,
        start: int = 0,
        cancel: CancelEvent | None = None,
    ) -> Generator[Page, None, None]:
        """Fetch the pages of a listing, in order, one after another or fanned out.

        The walk ends after an empty page (a 204 too), or, for page numbers, a page
        whose ``next_key`` is missing, ``null``, ``false`` or ``""``.  When the API
        tells the total (``total_key``), the walk ends once the records walked reach
        the total the last page told, and a page shorter than ``page_size`` before that
        (an API that caps its pages below what was asked) does not end it: the walk
        goes on after the records that page had.  Without a total, a short page ends
        the walk: that is at most one request past the last record.

        **Complete or an error.**  A walk that ends before the total its last page
        told raises `IncompleteListing`, naming how many records are missing.  Records
        added at the end of the listing while it is walked are walked too.  Offset
        paging is exact for a listing that only grows at its end; one whose records
        move (inserted, deleted or reordered before the walk's position) may show a
        record twice or miss one, which only a key and a count can tell (as the CXone
        export does).

        **Fan-out.**  With *fan_out*, when the first page tells the total, the other
        pages are fetched concurrently through ``fan_out.map(..., ordered=True)`` and
        still come out in order, with at most the scheduler's window of pages held in
        memory.  They are counted from the total on the first page, by the size the
        API served the first page with.  With offsets, a page served shorter than the
        others is completed by the pages that follow it, and a longer one is cut, so
        that each record comes once; then the end of the listing is read again, and
        the walk goes on one page after another while there are more records.
        Without a total, pages cannot be counted ahead, and they are fetched one after
        another, however *fan_out* is set.  The scheduler's limiter, if any, paces the
        pages on top of the client's own.

        Args:
            client: The client that sends the requests.
            url: The listing's URL, absolute or relative to the client's base URL.
            params: Query parameters sent with every page (the paginator's own
                parameters take precedence).
            headers: Extra headers sent with every page.
            fan_out: A scheduler to fetch pages concurrently, when the total is known.
            start: The index of the first page to fetch, counting from 0 whatever the
                API's numbering: to resume a walk after the pages already processed
                (`Page.number` of the last one, plus one).  With offsets, resume at
                any record with the paginator's ``offset`` instead.
            cancel: An event that stops the walk: every request waiting or in flight
                ends at once with `ratekit.Cancelled`, and a fan-out stops too (see
                `ratekit.Scheduler.map`); ``None``: the `ratekit.current_cancel`.

        Returns:
            A generator of `Page` values; close it to stop early (closing also stops
            a fan-out and waits for its threads).

        Raises:
            TypeError, ValueError: At once, if *start* is not a whole number from 0.
            ratekit.http.IncompleteListing: If the walk ends before the total.
            ratekit.http.HTTPStatusError: If a page answers with a status that is not 2xx.
            ratekit.http.ResponseError: If a body is not JSON, has no list of records at
                ``records_key``, or has more than ``page_size`` records.
            BaseException: Whatever `Client.request` raises (`ratekit.retry.RetryError`
                when its retry policy gives up, for instance).
        """
        return _walked(self._steps(url, params, start), client, headers, cancel, fan_out)

    def pages_async(  # noqa: PLR0913 - the parts of a walk, all keyword-only
        self,
        client: AsyncHTTPClient,
        url: str,
        *,
        params: QueryParams | None = None,
        headers: Mapping[str, str] | None = None,
        fan_out: AsyncScheduler | None = None,
        start: int = 0,
    ) -> AsyncGenerator[Page, None]:
        """`pages` from asyncio: the same walk, the same checks, through an asyncio client.

        The walk ends, checks its total and fans out exactly as `pages` does; only the
        requests differ.  *client* is an `httpx.AsyncClient`, an
        `aiohttp.ClientSession` or any `ratekit.typing.AsyncHTTPClient`, with or
        without a base URL of its own; its own settings (timeouts, retries, auth,
        redirects) apply, and no limiter paces it but the *fan_out*'s.  Relative next
        pages and messages use the URL of each response.

        To stop the walk, cancel the task that iterates it, or close the iterator
        (``aclose``, or leave an ``async with contextlib.aclosing(...)`` block): the
        request in flight ends, no other one starts, and a fan-out's tasks are
        cancelled.  There is no ``cancel`` argument.

        Args:
            client: The asyncio client that sends the requests.
            url: The listing's URL, absolute or relative to the client's base URL.
            params: Query parameters sent with every page (the paginator's own
                parameters take precedence).
            headers: Extra headers sent with every page.
            fan_out: An `ratekit.AsyncScheduler` to fetch pages concurrently, when the
                total is known (see `pages`).
            start: The index of the first page to fetch (see `pages`).

        Returns:
            An async generator of `Page` values.

        Raises:
            TypeError, ValueError: At once, if *start* is not a whole number from 0.
            ratekit.http.IncompleteListing: If the walk ends before the total.
            ratekit.http.HTTPStatusError: If a page answers with a status that is not 2xx.
            ratekit.http.ResponseError: If a page cannot be read (see `pages`).
            BaseException: Whatever the client raises.
        """
        return _walked_async(self._steps(url, params, start), client, headers, fan_out)

    def _steps(self, url: str, params: QueryParams | None, start: int) -> _Steps:
        """The walk, one page after another and fanned out where it may be.

        Raises:
            TypeError, ValueError: At once, if *start* is not a whole number from 0.
        """
        whole_number("start", start, 0)
        return self._walk(functools.partial(self._request, url, params), start)

    def _walk(self, request: Callable[[_Place], _Fetch], start: int) -> _Steps:
        place = (self._skipped() + start * self.page_size, start)
        answer = yield request(place)
        walk = _Walk(self, self._listing(answer.url))
        page = self._read(answer, place)
        yield walk.took(page)
        if walk.ended(page):
            return
        if page.total is not None and page.records:
            yield from walk.fanned(page, request, self._read)
            if walk.done:
                return
        while True:
            place = walk.next_place()
            page = self._read((yield request(place)), place)
            yield walk.took(page)
            if walk.ended(page):
                return

    def records(  # noqa: PLR0913 - the parts of a walk, all keyword-only
        self,
        client: Client,
        url: str,
        *,
        params: QueryParams | None = None,
        headers: Mapping[str, str] | None = None,
        fan_out: Scheduler | None = None,
        cancel: CancelEvent | None = None,
    ) -> Generator[object, None, None]:
        """Stream the records of every page, in order (see `pages`).

        Args:
            client: The client that sends the requests.
            url: The listing's URL, absolute or relative to the client's base URL.
            params: Query parameters sent with every page.
            headers: Extra headers sent with every page.
            fan_out: A scheduler to fetch pages concurrently, when the total is known.
            cancel: An event that stops the walk (see `pages`).

        Returns:
            A generator of records; close it to stop early.

        Raises:
            ratekit.http.HTTPStatusError: If a page answers with a status that is not 2xx.
            ratekit.http.ResponseError: If a page cannot be read (see `pages`).
        """
        pages = self.pages(
            client, url, params=params, headers=headers, fan_out=fan_out, cancel=cancel
        )
        return _records_of(pages)

    def records_async(
        self,
        client: AsyncHTTPClient,
        url: str,
        *,
        params: QueryParams | None = None,
        headers: Mapping[str, str] | None = None,
        fan_out: AsyncScheduler | None = None,
    ) -> AsyncGenerator[object, None]:
        """Stream the records of every page, in order, from asyncio (see `pages_async`).

        Cancelling the task that iterates it, or closing it, stops the walk and any
        fan-out.

        Args:
            client: The asyncio client that sends the requests.
            url: The listing's URL, absolute or relative to the client's base URL.
            params: Query parameters sent with every page.
            headers: Extra headers sent with every page.
            fan_out: An `ratekit.AsyncScheduler` to fetch pages concurrently, when the
                total is known.

        Returns:
            An async generator of records.

        Raises:
            ratekit.http.HTTPStatusError: If a page answers with a status that is not 2xx.
            ratekit.http.ResponseError: If a page cannot be read (see `pages`).
        """
        pages = self.pages_async(client, url, params=params, headers=headers, fan_out=fan_out)
        return _records_of_async(pages)


class _Walk:
    """Where a numbered walk is, what total the API told last, and whether it is whole.

    ``position`` is the record the next page starts at (its offset); ``walked`` the
    records of the listing before it, skipped or handed out, which is what the total is
    checked against.
    """

    __slots__ = (
        "done",
        "index",
        "last",
        "number",
        "paginator",
        "position",
        "shown",
        "total",
        "walked",
    )

    def __init__(self, paginator: _NumberedPaginator, shown: str) -> None:
        self.paginator = paginator
        self.shown = shown  # the listing's URL, without query values
        self.position = self.walked = paginator._skipped()
        self.index = 0
        self.number: int | None = None
        self.total: int | None = None
        self.done = False
        self.last: list[object] | None = None  # the records of the page before

    def took(self, page: Page) -> Page:
        """Count *page* in, and return it numbered in the order of the walk.

        Raises:
            ResponseError: If it repeats the records of the page before: the API
                ignores what the walk asks for, and the walk would never end.
        """
        offset = page.offset or 0
        if page.records and page.records == self.last:
            raise ResponseError(
                200,
                self.shown,
                "",
                f"the same records at record {offset} as on the page before: does the API "
                "ignore the offset or page parameter?",
            )
        self.last = page.records
        if self.number is None:  # the first page: the walk starts where it asked
            self.number = page.number
            self.walked = offset
        self.position = offset + len(page.records)
        self.walked += len(page.records)
        self.index = page.number + 1
        if page.total is not None:
            self.total = page.total
        page = attrs.evolve(page, number=self.number)
        self.number += 1
        return page

    def next_place(self) -> tuple[int, int]:
        """Where the next page starts: its first record, and its index."""
        return self.position, self.index

    def ended(self, page: Page) -> bool:
        """Whether the walk ends after *page*, which it has taken.

        Raises:
            IncompleteListing: If it ends before the total the API told.
        """
        paginator = self.paginator
        count = len(page.records)
        marked = paginator._marked()
        no_more = count == 0 or not paginator._more(page)
        if self.total is not None:
            if self.walked >= self.total:
                self.done = True
                return True
            if no_more:
                raise IncompleteListing(self.shown, self.total, self.walked)
            return False  # a short page (a capped API): go on after its records
        self.done = no_more or (not marked and count < paginator.page_size)
        return self.done

    def fanned(
        self,
        first: Page,
        request: Callable[[_Place], _Fetch],
        read: Callable[[_Answer, _Place], Page],
    ) -> _Steps:
        """Fetch the pages the first page's total counts, concurrently; each record once.

        A driver without a scheduler declines the fan-out, and the walk goes on one
        page after another.
        """
        stride = len(first.records)  # the size the API serves, page_size or its cap
        total = self.total or 0
        count = -(-max(total - self.position, 0) // stride)
        position, index = self.position, self.index
        places = ((position + i * stride, index + i) for i in range(count))
        if not (yield _FanOut(places, request, read)):
            return
        by_offset = self.paginator._by_offset
        while (served := (yield _Signal.SERVED)) is not None:
            page: Page = served
            offset = page.offset or 0
            if by_offset:
                # A page served short leaves a gap before this one: fill it first.
                while self.position < offset:
                    place = (self.position, self.index)
                    fill = read((yield request(place)), place)
                    kept = fill.records[: offset - self.position]
                    if not kept:
                        break  # nothing there: the end check tells what is missing
                    yield self.took(attrs.evolve(fill, records=kept))
                if self.position > offset:  # it overlaps what was handed out
                    page = attrs.evolve(
                        page,
                        records=page.records[self.position - offset :],
                        offset=self.position,
                    )
                if len(page.records) > stride:  # served longer than the first
                    page = attrs.evolve(page, records=page.records[:stride])
            yield self.took(page)
            if not page.records or not self.paginator._more(page):
                # The listing ends here, by what the API says: whole, or it raises.
                self.done = self.ended(page)
                return
        # Read the end again if the listing may have grown since the first page: the
        # total grew, or the last page was full.
        last = self.last or []
        self.done = (
            self.walked >= total and self.walked >= (self.total or 0) and (len(last) < stride)
        )


@attrs.frozen
class PageNumberPaginator(_NumberedPaginator):
    """Paging by page number: ``?pageNumber=1&pageSize=100``, then 2, 3, ...

    The walk ends after a page whose *next_key* is missing, ``null``, ``false`` or
    ``""``, after an empty or short page (fewer than *page_size* records, a 204 too),
    or, with *total_key*, when the pages reach the total.

    Example, for a body like ``{"entities": [...], "nextPage": 2}``:

    ```python
    paginator = PageNumberPaginator(100, records_key="entities")
    for record in paginator.records(client, "/api/v2/interactions"):
        ...
    ```

    Args:
        page_size: Records asked for per page; it must not exceed what the API gives
            per page, as a shorter page ends the walk.
        page_param: The query parameter of the page number.
        size_param: The query parameter of the page size; ``None`` to not send it.
        first: The number of the first page (1, or 0 for APIs that count from 0).
        next_key: Where the body says whether another page follows (a key or dotted
            path); ``None`` for APIs that do not say, which then end at a short page
            or at the total.
        total_key: Where the body gives the total number of records, if it does;
            knowing it saves the last request and allows fan-out.
        records_key: Where the records are: a key such as ``"entities"``, a dotted
            path such as ``"result.items"``, or ``None`` if the body is the list.

    Raises:
        TypeError: If *page_size* or *first* is not an integer.
        ValueError: If *page_size* is below 1, *first* below 0, or a name or path is
            empty.
    """

    page_size: int = attrs.field(validator=attribute(whole_number, 1))
    page_param: str = attrs.field(default="pageNumber", kw_only=True, validator=_NAME)
    size_param: str | None = attrs.field(default="pageSize", kw_only=True, validator=_NAME_OR_NONE)
    first: int = attrs.field(default=1, kw_only=True, validator=attribute(whole_number, 0))
    next_key: str | None = attrs.field(default="nextPage", kw_only=True, validator=_PATH)
    total_key: str | None = attrs.field(default=None, kw_only=True, validator=_PATH)
    records_key: str | None = attrs.field(kw_only=True, validator=_PATH)

    def _query(self, position: int, index: int) -> dict[str, str | int | float]:  # noqa: ARG002
        query: dict[str, str | int | float] = {self.page_param: self.first + index}
        if self.size_param is not None:
            query[self.size_param] = self.page_size
        return query

    def _more(self, page: Page) -> bool:
        return self.next_key is None or not _absent(_dig(page.body, self.next_key))

    def _marked(self) -> bool:
        return self.next_key is not None


@attrs.frozen
class OffsetPaginator(_NumberedPaginator):
    """Paging by offset: ``?skip=0&top=100``, then ``skip=100``, 200, ...

    The walk ends after an empty page (a 204 too), a short one (fewer than
    *page_size* records), or when the offset reaches the total given at *total_key*.

    Example, for the CXone contacts API (``{"completedContacts": [...],
    "totalRecords": n}``, 204 when empty):

    ```python
    paginator = OffsetPaginator(10_000, records_key="completedContacts")
    with Scheduler(4) as scheduler:
        for record in paginator.records(client, url, params=dates, fan_out=scheduler):
            ...
    ```

    Args:
        page_size: Records asked for per page; it must not exceed the API's largest
            page, as a shorter page ends the walk.
        offset_param: The query parameter of the offset (records to skip).
        limit_param: The query parameter of the page size; ``None`` to not send it.
        total_key: Where the body gives the total number of records (a key or dotted
            path), or ``None``; knowing it saves the last request and allows fan-out.
        records_key: Where the records are: a key such as ``"completedContacts"``, a
            dotted path such as ``"result.items"``, or ``None`` if the body is the list.
        offset: Records to skip before the first page: to resume a walk after the
            records already processed, at any offset (``pages(start=...)`` resumes at
            a whole page).  Page 0 then asks for ``skip=offset``, and the total still
            counts the whole listing.

    Raises:
        TypeError: If *page_size* or *offset* is not an integer.
        ValueError: If *page_size* is below 1, *offset* below 0, or a name or path is
            empty.
    """

    page_size: int = attrs.field(validator=attribute(whole_number, 1))
    offset_param: str = attrs.field(default="skip", kw_only=True, validator=_NAME)
    limit_param: str | None = attrs.field(default="top", kw_only=True, validator=_NAME_OR_NONE)
    total_key: str | None = attrs.field(default="totalRecords", kw_only=True, validator=_PATH)
    records_key: str | None = attrs.field(kw_only=True, validator=_PATH)
    offset: int = attrs.field(default=0, kw_only=True, validator=attribute(whole_number, 0))

    def _skipped(self) -> int:
        return self.offset

    _by_offset = True

    def _query(self, position: int, index: int) -> dict[str, str | int | float]:  # noqa: ARG002
        query: dict[str, str | int | float] = {self.offset_param: position}
        if self.limit_param is not None:
            query[self.limit_param] = self.page_size
        return query


# --- next links ---------------------------------------------------------------------------


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return _QUOTED_PAIR.sub(r"\1", value[1:-1])
    return value


def _links(header: str) -> Iterator[tuple[str, dict[str, str]]]:
    """The links of a ``Link`` header: each target with its parameters (names lowercased).

    Lenient, as with any header from a server: text that is not a link-value is
    skipped, and of a parameter given twice the first counts (RFC 8288 section 3.3
    says so for ``rel``).
    """
    position = 0
    while (start := header.find("<", position)) >= 0:
        end = header.find(">", start)
        if end < 0:
            return
        params: dict[str, str] = {}
        position = end + 1
        while match := _LINK_PARAM.match(header, position):
            params.setdefault(match[1].lower(), _unquote(match[2] or ""))
            position = match.end()
        yield header[start + 1 : end].strip(), params


def _next_in_link_header(header: str | None) -> str | None:
    """The target of the first ``rel="next"`` link of a ``Link`` header, if any."""
    for target, params in _links(header or ""):
        # A link with an anchor describes another resource than the page itself.
        if "anchor" not in params and "next" in params.get("rel", "").lower().split():
            return target
    return None


def _next_url(link: str, page: str, *, other_origins: bool) -> tuple[str, str | None]:
    """Where the next link *link* of the page at *page* leads, and why not to follow it.

    Returns:
        The absolute URL, without its fragment (which names a part of a page, not
        another page), and ``None`` or the reason not to follow it.
    """
    try:
        url = urldefrag(urljoin(page, link)).url
    except ValueError:  # such as an IPv6 literal without its "]"
        return link, f"a next link that is not a URL, {redact_url(link)}"
    refusal = _refusal(link, url, page, other_origins=other_origins)
    return url, None if refusal is None else f"a next link {refusal}, {redact_url(url)}"


def _refusal(link: str, url: str, page: str, *, other_origins: bool) -> str | None:
    """Why the next link *link*, which leads to *url*, is not to be followed, if it is not.

    The link is judged as urllib3 will connect by it (`ratekit._redact.origin`),
    and refused, whatever *other_origins* says, where parsers disagree on it: a
    backslash (a slash to browsers, the end of the host to urllib3, part of the host to
    `urllib.parse`), whitespace or a control character (dropped by `urllib.parse`, not
    by urllib3), or user information.  With a credential on every request, a link that
    one parser reads as this server's and another as someone else's would send it to
    the other one.  A URL that `origin` does not judge counts as another origin.
    """
    if "\\" in link:
        return "with a backslash"
    if _BLANK_OR_CONTROL.search(link):
        return "with whitespace or a control character"
    with contextlib.suppress(ValueError):  # not a URL urllib3 parses: judged below
        if parse_url(url).auth != parse_url(page).auth:
            return "with user information"
    if other_origins:
        return None
    try:
        there = origin(url)
    except ValueError as error:
        return f"to another origin ({error})"
    try:
        here: Origin | None = origin(page)
    except ValueError:  # a page urllib3 fetched, at a URL that `origin` does not judge
        here = None
    return None if there == here else "to another origin"


@attrs.frozen(kw_only=True)
class NextLinkPaginator:
    """Paging by following the link to the next page that each page gives.

    The link is read from the body at *link_key* (CXone's ``{"_links": {"next":
    url}}``); when *link_key* is ``None``, or the body has nothing there, from the
    ``Link`` response header's ``rel="next"`` (RFC 8288, as GitHub sends it).  Links
    may be absolute or relative to the page's URL.  The walk ends at a page without a
    next link (a body value of ``null``, ``false`` or ``""`` ends it too, without
    looking at the header).  *params* go with the first request only: next links carry their own.

    **Loop guard.**  A next link to a URL already fetched ends the walk with a logged
    warning, so that a faulty server cannot make it loop forever.  The URLs fetched
    are remembered for that, one string per page.

    **Other origins.**  A next link to another scheme, host or port raises
    `ratekit.http.ResponseError` unless *allow_other_origins*, as the client would send
    its bearer token there.  Hosts are compared as urllib3 connects to them (so
    ``example.com.`` and ``example.com`` are two origins, see `docs/http.md`), and a
    next link with a backslash, whitespace, a control character or user information
    raises whatever *allow_other_origins* says: parsers disagree on where such a link
    leads.

    Args:
        records_key: Where the records are: a key, a dotted path such as
            ``"result.items"``, or ``None`` if the body is the list.
        link_key: Where the body has the next link (a key or dotted path); ``None`` to
            read the ``Link`` header only.
        total_key: Where the body gives the total number of records, if it does (for
            `Page.total`, such as CXone's ``"totalRecords"``).
        allow_other_origins: Follow next links to other origins.

    Raises:
        ValueError: If a path is empty.
    """

    records_key: str | None = attrs.field(validator=_PATH)
    link_key: str | None = attrs.field(default="_links.next", validator=_PATH)
    total_key: str | None = attrs.field(default=None, validator=_PATH)
    allow_other_origins: bool = False

    def _next(self, answer: _Answer) -> str | None:
        if self.link_key is not None:
            value = _dig(answer.body, self.link_key)
            if value is not _MISSING:
                if _absent(value):
                    return None
                if not isinstance(value, str):
                    kind = type(value).__name__
                    raise answer.error(f"a {kind} where a next link was expected")
                return value
        return _next_in_link_header(answer.link)

    def pages(
        self,
        client: Client,
        url: str,
        *,
        params: QueryParams | None = None,
        headers: Mapping[str, str] | None = None,
        cancel: CancelEvent | None = None,
    ) -> Generator[Page, None, None]:
        """Fetch the pages of a listing by following next links.

        Args:
            client: The client that sends the requests.
            url: The first page's URL, absolute or relative to the client's base URL.
            params: Query parameters of the first request.
            headers: Extra headers sent with every page.
            cancel: An event that stops the walk: the request waiting or in flight ends
                at once with `ratekit.Cancelled`; ``None``: the `ratekit.current_cancel`.

        Returns:
            A generator of `Page` values; close it to stop early.

        Raises:
            ratekit.http.HTTPStatusError: If a page answers with a status that is not 2xx.
            ratekit.http.ResponseError: If a body is not JSON or has no list of records at
                ``records_key``, if a next link is not a string, if it leads to
                another origin (unless *allow_other_origins*), or if it is ambiguous.
            BaseException: Whatever `Client.request` raises.
        """
        return _walked(self._walk(url, params), client, headers, cancel)

    def pages_async(
        self,
        client: AsyncHTTPClient,
        url: str,
        *,
        params: QueryParams | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> AsyncGenerator[Page, None]:
        """`pages` from asyncio: the same walk, the same checks, through an asyncio client.

        *client* is an `httpx.AsyncClient`, an `aiohttp.ClientSession` or any
        `ratekit.typing.AsyncHTTPClient`, with or without a base URL of its own.  Next
        links resolve against the URL of the response that gave them (after any
        redirect the client followed), and are judged as `pages` judges them.

        To stop the walk, cancel the task that iterates it, or close the iterator
        (``aclose``): the request in flight ends and no other one starts.  There is no
        ``cancel`` argument.

        Args:
            client: The asyncio client that sends the requests.
            url: The first page's URL, absolute or relative to the client's base URL.
            params: Query parameters of the first request.
            headers: Extra headers sent with every page.

        Returns:
            An async generator of `Page` values.

        Raises:
            ratekit.http.HTTPStatusError: If a page answers with a status that is not 2xx.
            ratekit.http.ResponseError: If a page or its next link cannot be read or
                followed (see `pages`).
            BaseException: Whatever the client raises.
        """
        return _walked_async(self._walk(url, params), client, headers)

    def _walk(self, url: str, params: QueryParams | None) -> _Steps:
        fetched: set[str] = set()
        query = params
        number = 0
        while True:
            answer: _Answer = yield _Fetch(url, query)
            fetched.add(answer.url)
            yield _page(number, answer, self.records_key, self.total_key)
            link = self._next(answer)
            if link is None:
                return
            url, refusal = _next_url(link, answer.url, other_origins=self.allow_other_origins)
            if refusal is not None:
                raise answer.error(refusal)
            if url in fetched:
                log.warning(
                    "%s links to %s, which was already fetched: stopping",
                    redact_url(answer.url),
                    redact_url(url),
                )
                return
            query = None
            number += 1

    def records(
        self,
        client: Client,
        url: str,
        *,
        params: QueryParams | None = None,
        headers: Mapping[str, str] | None = None,
        cancel: CancelEvent | None = None,
    ) -> Generator[object, None, None]:
        """Stream the records of every page, in order (see `pages`).

        Args:
            client: The client that sends the requests.
            url: The first page's URL, absolute or relative to the client's base URL.
            params: Query parameters of the first request.
            headers: Extra headers sent with every page.
            cancel: An event that stops the walk (see `pages`).

        Returns:
            A generator of records; close it to stop early.

        Raises:
            ratekit.http.HTTPStatusError: If a page answers with a status that is not 2xx.
            ratekit.http.ResponseError: If a page cannot be read (see `pages`).
        """
        return _records_of(self.pages(client, url, params=params, headers=headers, cancel=cancel))

    def records_async(
        self,
        client: AsyncHTTPClient,
        url: str,
        *,
        params: QueryParams | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> AsyncGenerator[object, None]:
        """Stream the records of every page, in order, from asyncio (see `pages_async`).

        Cancelling the task that iterates it, or closing it, stops the walk.

        Args:
            client: The asyncio client that sends the requests.
            url: The first page's URL, absolute or relative to the client's base URL.
            params: Query parameters of the first request.
            headers: Extra headers sent with every page.

        Returns:
            An async generator of records.

        Raises:
            ratekit.http.HTTPStatusError: If a page answers with a status that is not 2xx.
            ratekit.http.ResponseError: If a page cannot be read (see `pages`).
        """
        return _records_of_async(self.pages_async(client, url, params=params, headers=headers))


# --- cursors ------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class CursorPaginator:
    """Paging by cursor (or scroll token): each page gives the token of the next.

    The first request goes without a cursor; each next one sends the cursor from the
    page before as the query parameter *cursor_param*.  The walk ends at a page
    without a cursor (missing, ``null`` or ``""``), or at an empty page: scroll APIs
    keep handing out a token after the last page.

    **Loop guard.**  The walk ends, with a logged warning, when a page hands back a
    cursor that was sent for an earlier page, or hands back the cursor just sent
    together with the very records of the page before (a server that ignores the
    cursor).  The same cursor with new records is followed: scroll tokens may stay
    the same from page to page.  The cursors sent are remembered, one per page.

    Args:
        records_key: Where the records are: a key such as ``"data"``, a dotted path
            such as ``"result.items"``, or ``None`` if the body is the list.
        cursor_param: The query parameter that carries the cursor.
        cursor_key: Where the body gives the next cursor (a key or dotted path).
        total_key: Where the body gives the total number of records, if it does (for
            `Page.total`).

    Raises:
        ValueError: If a name or path is empty.
    """

    records_key: str | None = attrs.field(validator=_PATH)
    cursor_param: str = attrs.field(default="cursor", validator=_NAME)
    cursor_key: str = attrs.field(default="next_cursor", validator=_KEY_PATH)
    total_key: str | None = attrs.field(default=None, validator=_PATH)

    def _cursor(self, answer: _Answer) -> str | None:
        value = _dig(answer.body, self.cursor_key)
        if _absent(value):
            return None
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise answer.error(f"a {type(value).__name__} where a cursor was expected")
        return str(value)

    def pages(
        self,
        client: Client,
        url: str,
        *,
        params: QueryParams | None = None,
        headers: Mapping[str, str] | None = None,
        cancel: CancelEvent | None = None,
    ) -> Generator[Page, None, None]:
        """Fetch the pages of a listing, sending each page's cursor for the next.

        Args:
            client: The client that sends the requests.
            url: The listing's URL, absolute or relative to the client's base URL.
            params: Query parameters sent with every page.
            headers: Extra headers sent with every page.
            cancel: An event that stops the walk: the request waiting or in flight ends
                at once with `ratekit.Cancelled`; ``None``: the `ratekit.current_cancel`.

        Returns:
            A generator of `Page` values; close it to stop early.

        Raises:
            ratekit.http.HTTPStatusError: If a page answers with a status that is not 2xx.
            ratekit.http.ResponseError: If a body is not JSON, has no list of records at
                ``records_key``, or has a cursor that is neither a string nor an
                integer.
            BaseException: Whatever `Client.request` raises.
        """
        return _walked(self._walk(url, params), client, headers, cancel)

    def pages_async(
        self,
        client: AsyncHTTPClient,
        url: str,
        *,
        params: QueryParams | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> AsyncGenerator[Page, None]:
        """`pages` from asyncio: the same walk, the same checks, through an asyncio client.

        *client* is an `httpx.AsyncClient`, an `aiohttp.ClientSession` or any
        `ratekit.typing.AsyncHTTPClient`, with or without a base URL of its own.

        To stop the walk, cancel the task that iterates it, or close the iterator
        (``aclose``): the request in flight ends and no other one starts.  There is no
        ``cancel`` argument.

        Args:
            client: The asyncio client that sends the requests.
            url: The listing's URL, absolute or relative to the client's base URL.
            params: Query parameters sent with every page.
            headers: Extra headers sent with every page.

        Returns:
            An async generator of `Page` values.

        Raises:
            ratekit.http.HTTPStatusError: If a page answers with a status that is not 2xx.
            ratekit.http.ResponseError: If a page or its cursor cannot be read (see
                `pages`).
            BaseException: Whatever the client raises.
        """
        return _walked_async(self._walk(url, params), client, headers)

    def _walk(self, url: str, params: QueryParams | None) -> _Steps:
        sent: set[str] = set()
        cursor: str | None = None
        previous: list[object] = []
        number = 0
        while True:
            query = dict(params or {})
            if cursor is not None:
                query[self.cursor_param] = cursor
            answer: _Answer = yield _Fetch(url, query)
            page = _page(number, answer, self.records_key, self.total_key)
            following = self._cursor(answer)
            if cursor is not None and following == cursor and page.records == previous:
                log.warning("%s repeated the page before: stopping", redact_url(answer.url))
                return
            yield page
            if following is None or not page.records:
                return
            if following != cursor and following in sent:
                log.warning("%s sent a cursor already used: stopping", redact_url(answer.url))
                return
            if cursor is not None:
                sent.add(cursor)
            cursor = following
            previous = page.records
            number += 1

    def records(
        self,
        client: Client,
        url: str,
        *,
        params: QueryParams | None = None,
        headers: Mapping[str, str] | None = None,
        cancel: CancelEvent | None = None,
    ) -> Generator[object, None, None]:
        """Stream the records of every page, in order (see `pages`).

        Args:
            client: The client that sends the requests.
            url: The listing's URL, absolute or relative to the client's base URL.
            params: Query parameters sent with every page.
            headers: Extra headers sent with every page.
            cancel: An event that stops the walk (see `pages`).

        Returns:
            A generator of records; close it to stop early.

        Raises:
            ratekit.http.HTTPStatusError: If a page answers with a status that is not 2xx.
            ratekit.http.ResponseError: If a page cannot be read (see `pages`).
        """
        return _records_of(self.pages(client, url, params=params, headers=headers, cancel=cancel))

    def records_async(
        self,
        client: AsyncHTTPClient,
        url: str,
        *,
        params: QueryParams | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> AsyncGenerator[object, None]:
        """Stream the records of every page, in order, from asyncio (see `pages_async`).

        Cancelling the task that iterates it, or closing it, stops the walk.

        Args:
            client: The asyncio client that sends the requests.
            url: The listing's URL, absolute or relative to the client's base URL.
            params: Query parameters sent with every page.
            headers: Extra headers sent with every page.

        Returns:
            An async generator of records.

        Raises:
            ratekit.http.HTTPStatusError: If a page answers with a status that is not 2xx.
            ratekit.http.ResponseError: If a page cannot be read (see `pages`).
        """
        return _records_of_async(self.pages_async(client, url, params=params, headers=headers))


if TYPE_CHECKING:  # every paginator is a `ratekit.typing.Paginator` and an `AsyncPaginator`

    def _conforms(
        a: PageNumberPaginator, b: OffsetPaginator, c: NextLinkPaginator, d: CursorPaginator
    ) -> tuple[list[Paginator], list[AsyncPaginator]]:
        return [a, b, c, d], [a, b, c, d]
