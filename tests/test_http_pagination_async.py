"""Paginators from asyncio, through httpx and aiohttp, against real servers on loopback.

Every test runs with an `httpx.AsyncClient` and with an `aiohttp.ClientSession`; the
servers and listings are those of `test_http_pagination`, so that both walks are held to
the same answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from typing import TYPE_CHECKING

import aiohttp
import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from loopback import LoopbackServer, Reply, Request, serve
from test_http_pagination import (
    arg,
    changing_api,
    counts,
    cursor_api,
    dataset,
    mount,
    next_link_api,
    offset_api,
    page_count,
    page_number_api,
    route,
    sizes,
)

from ratekit import AsyncScheduler
from ratekit.http import (
    CursorPaginator,
    HTTPStatusError,
    IncompleteListing,
    NextLinkPaginator,
    OffsetPaginator,
    Page,
    PageNumberPaginator,
    ResponseError,
)
from ratekit.typing import AsyncHTTPClient, AsyncPaginator

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

LIBRARIES = ["httpx", "aiohttp"]

#: One TLS context for every httpx client: making one per client takes most of its start.
#: The servers here speak plain HTTP; the context is only ever built, never used.
TLS = ssl.create_default_context()

#: A value that must never be shown: sent as a query value and in a credential header.
SECRET = "q-s3cret-value-77"  # noqa: S105 - made up, to look for in messages


#: The walks are the sync ones, whose properties tests/test_http_pagination.py checks
#: with the full count of examples; here each example only drives them through a real
#: asyncio client (a new event loop and connection each), so a few examples suffice.
DRIVER = settings(max_examples=12)


@pytest.fixture(scope="module")
def api() -> Iterator[LoopbackServer]:
    """One server for every example of a module: each example mounts its own path."""
    yield from serve()


@pytest.fixture
def other() -> Iterator[LoopbackServer]:
    """A second loopback server: where a next link to another origin leads."""
    yield from serve()


@contextlib.asynccontextmanager
async def connect(
    library: str, base: str | None = None, headers: dict[str, str] | None = None
) -> AsyncIterator[AsyncHTTPClient]:
    """An asyncio client of *library*, with the base URL *base* if given, closed after."""
    if library == "httpx":
        async with httpx.AsyncClient(base_url=base or "", headers=headers, verify=TLS) as client:
            yield client
    else:
        # aiohttp wants a base URL that ends with a slash.
        based = None if base is None else f"{base}/"
        async with aiohttp.ClientSession(base_url=based, headers=headers) as session:
            yield session


def run(main: Callable[[], Awaitable[object]]) -> object:
    """Run *main* in a new loop, and check that it leaves no task behind."""

    async def checked() -> object:
        result = await main()
        assert asyncio.all_tasks() == {asyncio.current_task()}
        return result

    return asyncio.run(checked())


def where(server: LoopbackServer, path: str, based: bool) -> tuple[str | None, str]:
    """The client's base URL and the URL to walk: relative to the base, or absolute."""
    return (server.url, path) if based else (None, f"{server.url}{path}")


async def walk(
    library: str,
    base: str | None,
    walked: Callable[[AsyncHTTPClient], AsyncIterator[object]],
) -> list[object]:
    """Everything *walked* yields through a new client of *library*."""
    async with connect(library, base) as client:
        return [item async for item in walked(client)]


async def drain(stream: AsyncIterator[object], into: list[object]) -> None:
    """Append what *stream* yields to *into* as it comes: kept when the stream raises."""
    async for item in stream:
        into.append(item)  # noqa: PERF401 - one at a time, for a stream that raises


def walk_all(
    library: str,
    base: str | None,
    walked: Callable[[AsyncHTTPClient], AsyncIterator[object]],
) -> list[object]:
    """`walk` in a loop of its own."""
    result = run(lambda: walk(library, base, walked))
    assert isinstance(result, list)
    return result


# --- every record exactly once, in order --------------------------------------------------


@pytest.mark.parametrize("library", LIBRARIES)
@DRIVER
@given(
    n=counts,
    size=sizes,
    variant=st.sampled_from(["next", "short", "total"]),
    first=st.sampled_from([0, 1]),
    based=st.booleans(),
)
def test_page_numbers_give_every_record_once_in_order(  # noqa: PLR0913, PLR0917
    api, library, n, size, variant, first, based
):
    """Page-number paging from asyncio gives the N records in order, as the sync walk does."""
    records = dataset(n)
    path = mount(
        api,
        page_number_api(
            records, first=first, next_page=variant == "next", total=variant == "total"
        ),
    )
    paginator = PageNumberPaginator(
        size,
        first=first,
        next_key="nextPage" if variant == "next" else None,
        total_key="total" if variant == "total" else None,
        records_key="entities",
    )
    base, url = where(api, path, based)
    assert walk_all(library, base, lambda client: paginator.records_async(client, url)) == records
    hits = api.hits(path)
    numbers = [int(arg(hit, "pageNumber")) for hit in hits]
    assert numbers == list(range(first, first + len(hits)))
    if variant == "short":  # only a short page can tell the end
        assert len(hits) <= page_count(n, size) + 1
    else:
        assert len(hits) == page_count(n, size)


@pytest.mark.parametrize("library", LIBRARIES)
@DRIVER
@given(n=counts, size=sizes, knows_total=st.booleans(), based=st.booleans())
def test_offsets_give_every_record_once_in_order(api, library, n, size, knows_total, based):  # noqa: PLR0913, PLR0917
    """Offset paging from asyncio gives the N records in order, numbered, with their offsets."""
    records = dataset(n)
    path = mount(api, offset_api(records))
    total_key = "totalRecords" if knows_total else None
    paginator = OffsetPaginator(size, total_key=total_key, records_key="completedContacts")
    base, url = where(api, path, based)
    pages = walk_all(library, base, lambda client: paginator.pages_async(client, url))
    assert all(isinstance(page, Page) for page in pages)
    assert [record for page in pages for record in page.records] == records
    assert [page.number for page in pages] == list(range(len(pages)))
    assert [page.offset for page in pages] == [i * size for i in range(len(pages))]
    hits = api.hits(path)
    assert [int(arg(hit, "skip")) for hit in hits] == [i * size for i in range(len(hits))]
    if knows_total:
        assert len(hits) == page_count(n, size)
    else:
        assert len(hits) <= page_count(n, size) + 1


@pytest.mark.parametrize("library", LIBRARIES)
@DRIVER
@given(
    n=counts,
    size=sizes,
    style=st.sampled_from(["absolute", "query", "path", "header"]),
    based=st.booleans(),
)
def test_next_links_give_every_record_once_in_order(api, library, n, size, style, based):  # noqa: PLR0913, PLR0917
    """Next links, absolute or relative to the response's URL, or in a Link header, are followed."""
    records = dataset(n)
    path = next_link_api(api, records, size, style)
    if style == "header":
        paginator = NextLinkPaginator(link_key=None, records_key=None)
    else:
        paginator = NextLinkPaginator(records_key="data")
    base, url = where(api, path, based)
    walked = walk_all(
        library, base, lambda client: paginator.records_async(client, url, params={"after": 0})
    )
    assert walked == records
    hits = api.hits(path)
    assert len(hits) == page_count(n, size)
    assert [int(arg(hit, "after")) for hit in hits] == [i * size for i in range(len(hits))]


@pytest.mark.parametrize("library", LIBRARIES)
@DRIVER
@given(
    n=counts,
    size=sizes,
    end=st.sampled_from(["missing", "null", "empty", "scroll"]),
    based=st.booleans(),
)
def test_cursors_give_every_record_once_in_order(api, library, n, size, end, based):  # noqa: PLR0913, PLR0917
    """Cursor paging from asyncio gives the N records in order, and ends as the sync walk does."""
    records = dataset(n)
    path = mount(api, cursor_api(records, size, end))
    paginator = CursorPaginator(records_key="result.items")
    base, url = where(api, path, based)
    assert walk_all(library, base, lambda client: paginator.records_async(client, url)) == records
    hits = api.hits(path)
    assert "cursor" not in hits[0].query
    if end == "scroll":
        assert len(hits) <= page_count(n, size) + 1
    else:
        assert len(hits) == page_count(n, size)


@pytest.mark.parametrize("library", LIBRARIES)
def test_parameters_and_headers_go_with_every_page(server: LoopbackServer, library):
    """The caller's params and headers go with each page; the paginator's own params win."""
    route(server, "/items", lambda r: Reply.json([1] if arg(r, "p") == "0" else []))
    paginator = PageNumberPaginator(
        1, page_param="p", size_param=None, first=0, next_key=None, records_key=None
    )
    walked = walk_all(
        library,
        server.url,
        lambda client: paginator.records_async(
            client, "/items", params={"q": "x", "p": 9}, headers={"X-Tenant": "t1"}
        ),
    )
    assert walked == [1]
    hits = server.hits("/items")
    assert [hit.query for hit in hits] == [{"q": ["x"], "p": ["0"]}, {"q": ["x"], "p": ["1"]}]
    assert all(hit.headers["x-tenant"] == "t1" for hit in hits)


@pytest.mark.parametrize("library", LIBRARIES)
def test_a_204_first_page_is_an_empty_listing(server: LoopbackServer, library):
    """A 204 No Content is one empty page, and the walk ends there."""
    route(server, "/contacts", lambda _: Reply(204))
    paginator = OffsetPaginator(100, records_key="completedContacts")
    pages = walk_all(library, server.url, lambda client: paginator.pages_async(client, "/contacts"))
    assert pages == [Page(0, [], None, None, 0)]
    assert len(server.hits("/contacts")) == 1


# --- resuming -----------------------------------------------------------------------------


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("fan_out", [False, True])
def test_a_walk_resumes_from_a_page_index(api: LoopbackServer, library, fan_out):
    """``start`` skips the pages already processed; ``offset`` resumes at any record."""
    records = dataset(47)
    offsets = mount(api, offset_api(records))
    numbers = mount(api, page_number_api(records, total=True))

    async def main() -> None:
        async with connect(library, api.url) as client, AsyncScheduler(3) as scheduler:
            spread = scheduler if fan_out else None
            for paginator, path in [
                (OffsetPaginator(10, records_key="completedContacts"), offsets),
                (PageNumberPaginator(10, records_key="entities", total_key="total"), numbers),
            ]:
                walked = paginator.pages_async(client, path, fan_out=spread, start=2)
                pages = [page async for page in walked]
                assert [page.number for page in pages] == [2, 3, 4]
                assert [page.offset for page in pages] == [20, 30, 40]
                assert [r for page in pages for r in page.records] == records[20:]
            resumed = OffsetPaginator(10, records_key="completedContacts", offset=15)
            walked_records = resumed.records_async(client, offsets, fan_out=spread)
            assert [record async for record in walked_records] == records[15:]

    run(main)


@pytest.mark.parametrize("library", LIBRARIES)
def test_start_must_be_a_page_index(api: LoopbackServer, library):
    """A bad ``start`` is refused at once, before any request, naming it."""
    paginator = OffsetPaginator(10, records_key="completedContacts")
    path = mount(api, offset_api(dataset(3)))

    async def main() -> None:
        async with connect(library, api.url) as client:
            with pytest.raises(ValueError, match="start must be at least 0, got -1"):
                paginator.pages_async(client, path, start=-1)
            with pytest.raises(TypeError, match=r"start must be an integer, got 1\.5"):
                paginator.pages_async(client, path, start=1.5)  # type: ignore[arg-type]

    run(main)
    assert api.hits(path) == []


# --- fan-out ------------------------------------------------------------------------------


@pytest.mark.parametrize("library", LIBRARIES)
@DRIVER
@given(n=counts, size=sizes, kind=st.sampled_from(["page", "offset"]))
def test_fan_out_gives_every_record_once_in_order(api, library, n, size, kind):
    """With a total and an AsyncScheduler(4), every page is fetched once, records in order."""
    records = dataset(n)
    paginator: PageNumberPaginator | OffsetPaginator
    if kind == "page":
        path = mount(api, page_number_api(records, total=True))
        paginator = PageNumberPaginator(size, total_key="total", records_key="entities")
        param = "pageNumber"
    else:
        path = mount(api, offset_api(records))
        paginator = OffsetPaginator(size, records_key="completedContacts")
        param = "skip"

    async def main() -> list[object]:
        async with connect(library, api.url) as client, AsyncScheduler(4) as scheduler:
            walked = paginator.records_async(client, path, fan_out=scheduler)
            return [record async for record in walked]

    assert run(main) == records
    asked = sorted(int(arg(hit, param)) for hit in api.hits(path))
    pages = page_count(n, size)
    expected = range(pages + (kind == "offset" and pages > 1 and n % size == 0))
    assert asked == ([i + 1 for i in expected] if kind == "page" else [i * size for i in expected])


@pytest.mark.parametrize("library", LIBRARIES)
def test_fan_out_sends_pages_concurrently(server: LoopbackServer, library):
    """Pages 1 to 4 are in flight at once: each waits for the three others to arrive."""
    records = dataset(50)
    barrier = threading.Barrier(4, timeout=10)
    broken: list[int] = []
    plain = offset_api(records)

    def handler(request: Request) -> Reply:
        skip = int(arg(request, "skip"))
        if 5 <= skip <= 20:
            try:
                barrier.wait()
            except threading.BrokenBarrierError:
                broken.append(skip)
        return plain(request)

    route(server, "/contacts", handler)
    paginator = OffsetPaginator(5, records_key="completedContacts")

    async def main() -> list[Page]:
        async with connect(library, server.url) as client, AsyncScheduler(4) as scheduler:
            return [
                page async for page in paginator.pages_async(client, "/contacts", fan_out=scheduler)
            ]

    pages = run(main)
    assert broken == []
    assert isinstance(pages, list)
    assert [page.number for page in pages] == list(range(11))
    assert [record for page in pages for record in page.records] == records


@pytest.mark.parametrize("library", LIBRARIES)
def test_without_a_total_nothing_is_fanned_out(server: LoopbackServer, library):
    """Without a total the pages come one after another: the scheduler runs no call."""
    route(server, "/items", page_number_api(dataset(23)))
    paginator = PageNumberPaginator(5, records_key="entities")

    async def main() -> None:
        async with connect(library, server.url) as client, AsyncScheduler(4) as scheduler:
            walked = paginator.records_async(client, "/items", fan_out=scheduler)
            assert [record async for record in walked] == dataset(23)
            assert scheduler.statistics().done == 0

    run(main)
    assert len(server.hits("/items")) == 5


@pytest.mark.parametrize("library", LIBRARIES)
def test_a_page_served_short_in_a_fan_out_is_completed(server: LoopbackServer, library):
    """A page served short before the total leaves no gap: the records after it are fetched."""
    records = dataset(30)

    def handler(request: Request) -> Reply:
        skip = int(arg(request, "skip"))
        chunk = records[skip : skip + 5] if skip != 10 else records[10:12]
        return Reply.json({"completedContacts": chunk, "totalRecords": 30})

    route(server, "/contacts", handler)
    paginator = OffsetPaginator(5, records_key="completedContacts")

    async def main() -> list[object]:
        async with connect(library, server.url) as client, AsyncScheduler(2) as scheduler:
            walked = paginator.records_async(client, "/contacts", fan_out=scheduler)
            return [record async for record in walked]

    assert run(main) == records
    skips = [int(arg(hit, "skip")) for hit in server.hits("/contacts")]
    assert 12 in skips  # the gap after the short page, filled
    assert sorted(set(skips)) == [0, 5, 10, 12, 15, 20, 25, 30]


@pytest.mark.parametrize("library", LIBRARIES)
@DRIVER
@given(
    initial=st.integers(min_value=0, max_value=60),
    grown=st.integers(min_value=0, max_value=30),
    size=st.integers(min_value=1, max_value=12),
    cap=st.integers(min_value=1, max_value=15),
    kind=st.sampled_from(["offset", "page"]),
    salt=st.integers(min_value=0, max_value=4),
)
def test_sequential_and_fanned_out_walks_agree_and_miss_nothing(  # noqa: PLR0913, PLR0917
    api, library, initial, grown, size, cap, kind, salt
):
    """Whatever the growth, the page cap and the order of answers, both walks give it all."""
    paginator: OffsetPaginator | PageNumberPaginator
    if kind == "offset":
        paginator = OffsetPaginator(size, records_key="completedContacts")
    else:
        paginator = PageNumberPaginator(
            size, records_key="entities", next_key=None, total_key="totalRecords"
        )
    final = dataset(initial + grown)

    async def main() -> None:
        async with connect(library, api.url) as client, AsyncScheduler(4) as scheduler:
            for fan_out in (None, scheduler):
                path = mount(api, changing_api(initial, grown, cap, kind, salt))
                walked = paginator.records_async(client, path, fan_out=fan_out)
                got = [record async for record in walked]
                # A listing that the first page holds whole ends there.
                assert got == (dataset(initial) if initial <= min(size, cap) else final)

    run(main)


# --- complete, or an error ----------------------------------------------------------------


@pytest.mark.parametrize("library", LIBRARIES)
def test_an_api_that_caps_its_pages_is_walked_by_what_it_served(server: LoopbackServer, library):
    """Pages capped at 3 when 5 are asked: the walk goes on after each, to the total."""
    records = dataset(50)

    def handler(request: Request) -> Reply:
        skip = int(arg(request, "skip"))
        return Reply.json({"completedContacts": records[skip : skip + 3], "totalRecords": 50})

    route(server, "/contacts", handler)
    paginator = OffsetPaginator(5, records_key="completedContacts")

    async def main() -> None:
        async with connect(library, server.url) as client, AsyncScheduler(3) as scheduler:
            for fan_out in (None, scheduler):
                walked = paginator.records_async(client, "/contacts", fan_out=fan_out)
                assert [record async for record in walked] == records

    run(main)


@pytest.mark.parametrize("library", LIBRARIES)
def test_a_listing_that_ends_before_its_total_raises(server: LoopbackServer, library):
    """Pages that run out before the total raise IncompleteListing, naming what is missing."""

    def handler(request: Request) -> Reply:
        skip = int(arg(request, "skip"))
        return Reply.json({"completedContacts": dataset(12)[skip : skip + 5], "totalRecords": 30})

    route(server, "/contacts", handler)
    paginator = OffsetPaginator(5, records_key="completedContacts")

    async def main() -> None:
        async with connect(library, server.url) as client, AsyncScheduler(2) as scheduler:
            for fan_out in (None, scheduler):
                got: list[object] = []
                walked = paginator.records_async(
                    client, "/contacts", params={"q": "x"}, fan_out=fan_out
                )
                with pytest.raises(IncompleteListing) as raised:
                    await drain(walked, got)
                assert got == dataset(12)
                assert (raised.value.total, raised.value.walked) == (30, 12)
                assert "18 missing" in str(raised.value)
                # The listing, without the paginator's own parameters.
                assert raised.value.url == f"{server.url}/contacts?q=***"

    run(main)


@pytest.mark.parametrize("library", LIBRARIES)
def test_an_api_that_ignores_the_offset_is_an_error_not_a_loop(server: LoopbackServer, library):
    """The same short page whatever the offset: ResponseError, not a walk that repeats it."""
    route(
        server,
        "/contacts",
        lambda _: Reply.json({"completedContacts": dataset(3), "totalRecords": 50}),
    )
    paginator = OffsetPaginator(5, records_key="completedContacts")
    with pytest.raises(ResponseError, match="ignore the offset"):
        walk_all(library, server.url, lambda client: paginator.records_async(client, "/contacts"))
    assert len(server.hits("/contacts")) == 2


@pytest.mark.parametrize("library", LIBRARIES)
def test_a_page_larger_than_asked_is_an_error(server: LoopbackServer, library):
    """An API that ignores the page size would make offsets repeat records: it raises."""
    route(server, "/items", lambda _: Reply.json({"data": dataset(8)}))
    paginator = OffsetPaginator(5, records_key="data")
    with pytest.raises(ResponseError, match="8 records in a page of at most 5"):
        walk_all(library, server.url, lambda client: paginator.records_async(client, "/items"))


@pytest.mark.parametrize("library", LIBRARIES)
def test_errors_mask_secret_query_values_and_headers(server: LoopbackServer, library):
    """A 500 that echoes the request: the query value and the key header are masked."""

    def echo(request: Request) -> Reply:
        body = f"bad key {arg(request, 'key')} with {request.headers.get('x-api-key')}"
        return Reply(500, body=body)

    route(server, "/down", echo)
    route(server, "/html", lambda _: Reply(200, body=f"<html>{SECRET}</html>"))
    paginator = NextLinkPaginator(records_key="data")
    headers = {"X-Api-Key": f"k-{SECRET}"}
    with pytest.raises(HTTPStatusError, match="answered 500: bad key") as caught:
        walk_all(
            library,
            server.url,
            lambda client: paginator.records_async(
                client, "/down", params={"key": SECRET}, headers=headers
            ),
        )
    assert SECRET not in str(caught.value)
    assert caught.value.excerpt == "bad key *** with ***"
    assert caught.value.url == f"{server.url}/down?key=***"
    with pytest.raises(ResponseError, match="not JSON") as unread:
        walk_all(
            library,
            server.url,
            lambda client: paginator.records_async(client, "/html", params={"key": SECRET}),
        )
    assert SECRET not in str(unread.value)


@pytest.mark.parametrize("library", LIBRARIES)
def test_errors_mask_the_credentials_the_client_sends_itself(server: LoopbackServer, library):
    """A token in the client's own headers, echoed by a 401, is masked too."""
    route(server, "/me", lambda r: Reply(401, body=f"who is {r.headers.get('authorization')}?"))
    paginator = CursorPaginator(records_key="data")

    async def main() -> None:
        own = {"Authorization": f"Bearer {SECRET}"}
        async with connect(library, server.url, headers=own) as client:
            await drain(paginator.records_async(client, "/me"), [])

    with pytest.raises(HTTPStatusError) as caught:
        run(main)
    assert caught.value.status == 401
    assert caught.value.excerpt == "who is ***?"


# --- next links ---------------------------------------------------------------------------


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize(
    ("link", "refusal"),
    [
        ("http://localhost:{b}/b", "a next link to another origin"),
        ("http://127.0.0.1:{b}/b", "a next link to another origin"),
        ("http://127.0.0.1:{b}\\@127.0.0.1:{a}/b", "a next link with a backslash"),
        ("http://user@127.0.0.1:{a}/b", "a next link with user information"),
    ],
)
def test_next_links_to_other_origins_are_refused(
    server: LoopbackServer, other: LoopbackServer, library, link, refusal
):
    """A next link that leaves the origin, or that parsers read apart, raises; B sees nothing."""
    target = link.format(a=server.port, b=other.port)
    route(server, "/a", lambda _: Reply.json({"_links": {"next": target}, "data": [1]}))
    route(other, "/b", lambda _: Reply.json({"data": [2]}))
    got: list[object] = []

    async def main() -> None:
        async with connect(library, server.url) as client:
            await drain(NextLinkPaginator(records_key="data").records_async(client, "/a"), got)

    with pytest.raises(ResponseError, match=refusal):
        run(main)
    assert got == [1]
    assert other.requests == []
    assert [hit.path for hit in server.requests] == ["/a"]


@pytest.mark.parametrize("library", LIBRARIES)
def test_other_origins_are_followed_when_allowed(
    server: LoopbackServer, other: LoopbackServer, library
):
    """allow_other_origins=True follows a next link to another server."""
    target = f"http://127.0.0.1:{other.port}/b"
    route(server, "/a", lambda _: Reply.json({"_links": {"next": target}, "data": [1]}))
    route(other, "/b", lambda _: Reply.json({"data": [2]}))
    paginator = NextLinkPaginator(records_key="data", allow_other_origins=True)
    assert walk_all(library, server.url, lambda client: paginator.records_async(client, "/a")) == [
        1,
        2,
    ]


@pytest.mark.parametrize("library", LIBRARIES)
def test_a_cycle_of_next_links_stops_with_a_warning(server: LoopbackServer, library, caplog):
    """Pages a -> b -> a (and a page linking to itself) are fetched once each, then a warning."""
    route(server, "/a", lambda _: Reply.json({"_links": {"next": "/b"}, "data": [1]}))
    route(server, "/b", lambda _: Reply.json({"_links": {"next": "a"}, "data": [2]}))
    route(server, "/c", lambda _: Reply.json({"_links": {"next": "/c?k=v"}, "data": [3]}))
    paginator = NextLinkPaginator(records_key="data")
    assert walk_all(library, server.url, lambda client: paginator.records_async(client, "/a")) == [
        1,
        2,
    ]
    assert (len(server.hits("/a")), len(server.hits("/b"))) == (1, 1)
    self_linked = walk_all(
        library, server.url, lambda client: paginator.records_async(client, "/c", params={"k": "v"})
    )
    assert self_linked == [3]
    assert len(server.hits("/c")) == 1
    assert caplog.text.count("which was already fetched: stopping") == 2
    assert "k=v" not in caplog.text


@pytest.mark.parametrize("library", LIBRARIES)
def test_a_redirected_page_links_relative_to_where_it_was_served(server: LoopbackServer, library):
    """A relative next link resolves against the response's URL, after a redirect."""
    route(server, "/old", lambda _: Reply(307, {"Location": "/new/list"}))
    route(server, "/new/list", lambda _: Reply.json({"_links": {"next": "more"}, "data": [1]}))
    route(server, "/new/more", lambda _: Reply.json({"data": [2]}))
    paginator = NextLinkPaginator(records_key="data")

    async def main() -> list[object]:
        if library == "httpx":  # httpx follows redirects only when asked to
            async with httpx.AsyncClient(base_url=server.url, follow_redirects=True) as client:
                return [record async for record in paginator.records_async(client, "/old")]
        async with aiohttp.ClientSession(base_url=f"{server.url}/") as session:
            return [record async for record in paginator.records_async(session, "/old")]

    assert run(main) == [1, 2]
    assert len(server.hits("/new/more")) == 1


# --- cursors ------------------------------------------------------------------------------


@pytest.mark.parametrize("library", LIBRARIES)
def test_a_cycle_of_cursors_stops_with_a_warning(server: LoopbackServer, library, caplog):
    """c1 -> c2 -> c1: each page is fetched once, then a warning is logged."""
    chain = {None: ("c1", [1]), "c1": ("c2", [2]), "c2": ("c1", [3])}

    def handler(request: Request) -> Reply:
        following, records = chain[request.query.get("after", [None])[0]]
        return Reply.json({"items": records, "next": following})

    route(server, "/items", handler)
    paginator = CursorPaginator(cursor_param="after", cursor_key="next", records_key="items")
    walked = walk_all(library, server.url, lambda client: paginator.records_async(client, "/items"))
    assert walked == [1, 2, 3]
    assert len(server.hits("/items")) == 3
    assert "a cursor already used: stopping" in caplog.text


@pytest.mark.parametrize("library", LIBRARIES)
def test_a_server_that_ignores_the_cursor_stops_without_duplicates(
    server: LoopbackServer, library, caplog
):
    """The same cursor back with the same records is a loop: nothing is repeated."""
    route(server, "/items", lambda _: Reply.json({"data": [1, 2], "next_cursor": 7}))
    paginator = CursorPaginator(records_key="data")
    pages = walk_all(library, server.url, lambda client: paginator.pages_async(client, "/items"))
    assert [page.records for page in pages] == [[1, 2]]
    assert [hit.query for hit in server.hits("/items")] == [{}, {"cursor": ["7"]}]
    assert "repeated the page before: stopping" in caplog.text


@pytest.mark.parametrize("library", LIBRARIES)
def test_a_cursor_of_another_type_is_an_error(server: LoopbackServer, library):
    """A cursor must be a string or an integer."""
    route(server, "/items", lambda _: Reply.json({"data": [1], "next_cursor": {"id": 1}}))
    paginator = CursorPaginator(records_key="data")
    with pytest.raises(ResponseError, match="a dict where a cursor was expected"):
        walk_all(library, server.url, lambda client: paginator.records_async(client, "/items"))


# --- stopping -----------------------------------------------------------------------------


async def arrivals(server: LoopbackServer, path: str, count: int) -> None:
    """Wait until *server* has received *count* requests for *path*."""
    while len(server.hits(path)) < count:  # noqa: ASYNC110 - the server is another thread's
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("fan_out", [False, True])
def test_cancelling_the_consuming_task_stops_the_walk(server: LoopbackServer, library, fan_out):
    """Cancelled mid-walk, with requests in flight: no request starts after, no task is left."""
    records = dataset(100)
    plain = offset_api(records)
    # The pages from here on are held until the walk has been cancelled.
    held_from = 5 if fan_out else 10
    release = threading.Event()

    def handler(request: Request) -> Reply:
        if int(arg(request, "skip")) >= held_from:
            release.wait(10)
        return plain(request)

    route(server, "/contacts", handler)
    paginator = OffsetPaginator(5, records_key="completedContacts")
    got: list[object] = []

    async def main() -> int:
        async with connect(library, server.url) as client, AsyncScheduler(2) as scheduler:

            async def consume() -> None:
                spread = scheduler if fan_out else None
                await drain(paginator.records_async(client, "/contacts", fan_out=spread), got)

            task = asyncio.create_task(consume())
            # Sequentially, pages 0 and 1, then 2 in flight; fanned out, page 0, then
            # pages 1 and 2 in flight on the two workers.
            await asyncio.wait_for(arrivals(server, "/contacts", 3), 10)
            task.cancel()
            await asyncio.wait({task}, timeout=5)
            assert task.cancelled()  # it ended, by the cancellation
            asked = len(server.hits("/contacts"))
            release.set()  # the held pages are answered: a walk going on would ask again
            await asyncio.sleep(0.5)
            assert len(server.hits("/contacts")) == asked
            assert asyncio.all_tasks() == {asyncio.current_task()}
            return asked

    try:
        assert run(main) == 3
    finally:
        release.set()
    assert got == records[: 5 if fan_out else 10]


@pytest.mark.parametrize("library", LIBRARIES)
def test_closing_a_fanned_out_stream_stops_its_tasks(server: LoopbackServer, library):
    """Leaving the records early stops the fan-out: no task is left and few pages were asked."""
    route(server, "/contacts", offset_api(dataset(200)))
    paginator = OffsetPaginator(1, records_key="completedContacts")

    async def main() -> list[object]:
        async with connect(library, server.url) as client, AsyncScheduler(2) as scheduler:
            walked = paginator.records_async(client, "/contacts", fan_out=scheduler)
            async with contextlib.aclosing(walked):
                got = [await anext(walked) for _ in range(3)]
            assert asyncio.all_tasks() == {asyncio.current_task()}
            return got

    assert run(main) == dataset(3)
    assert len(server.hits("/contacts")) < 30


# --- types --------------------------------------------------------------------------------


def test_the_clients_and_paginators_fit_the_protocols():
    """The clients of httpx and aiohttp are AsyncHTTPClients; the paginators AsyncPaginators.

    mypy checks the same of the types, in ``examples/async_pages.py``.
    """
    paginators = [
        PageNumberPaginator(10, records_key="items"),
        OffsetPaginator(10, records_key="items"),
        NextLinkPaginator(records_key="items"),
        CursorPaginator(records_key="items"),
    ]
    assert all(isinstance(paginator, AsyncPaginator) for paginator in paginators)

    async def main() -> None:
        async with connect("httpx") as client, connect("aiohttp") as session:
            assert isinstance(client, AsyncHTTPClient)
            assert isinstance(session, AsyncHTTPClient)
        assert not isinstance(object(), AsyncHTTPClient)

    run(main)
