"""Paginators against a real HTTP server on loopback: every record once, in order."""

from __future__ import annotations

import contextlib
import itertools
import math
import threading
from typing import TYPE_CHECKING

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st
from loopback import LoopbackServer, Reply, Request, serve

from ratekit import Scheduler
from ratekit.http import Client, HTTPStatusError, IncompleteListing, ResponseError
from ratekit.http._pagination import (
    CursorPaginator,
    NextLinkPaginator,
    OffsetPaginator,
    Page,
    PageNumberPaginator,
)
from ratekit.typing import Paginator

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

counts = st.integers(min_value=0, max_value=95)
sizes = st.integers(min_value=1, max_value=20)

_paths = itertools.count()


@pytest.fixture(scope="module")
def api() -> Iterator[LoopbackServer]:
    """One server for every example of a module: each example mounts its own path."""
    yield from serve()


def route(server: LoopbackServer, path: str, handler: Callable[[Request], Reply]) -> None:
    """Answer GET *path* with *handler*, closing each connection after its reply.

    The test server writes headers and body apart, which on a kept-alive connection
    meets delayed ACKs and costs some 40 ms a request; closing flushes the reply.
    """

    def closing(request: Request) -> Reply:
        reply = handler(request)
        return attrs.evolve(reply, headers={**reply.headers, "Connection": "close"})

    server.route("GET", path)(closing)


def mount(server: LoopbackServer, handler: Callable[[Request], Reply]) -> str:
    """Answer GET on a fresh path with *handler*; return the path."""
    path = f"/list/{next(_paths)}"
    route(server, path, handler)
    return path


def dataset(n: int) -> list[object]:
    """N distinct records."""
    return [{"id": i} for i in range(n)]


def page_count(n: int, size: int) -> int:
    """How many pages N records fill (an empty listing is one empty page)."""
    return max(1, math.ceil(n / size))


def arg(request: Request, name: str) -> str:
    """The single value of a query parameter."""
    return request.query[name][0]


def page_number_api(
    records: list[object], *, first: int = 1, next_page: bool = True, total: bool = False
) -> Callable[[Request], Reply]:
    """The tutorial's contract: ``?pageNumber&pageSize`` -> entities and nextPage."""

    def handler(request: Request) -> Reply:
        number, size = int(arg(request, "pageNumber")), int(arg(request, "pageSize"))
        start = (number - first) * size
        body: dict[str, object] = {"entities": records[start : start + size]}
        if next_page:
            body["nextPage"] = number + 1 if start + size < len(records) else None
        if total:
            body["total"] = len(records)
        return Reply.json(body)

    return handler


def offset_api(records: list[object]) -> Callable[[Request], Reply]:
    """CXone's contract: ``?skip&top`` -> completedContacts and totalRecords; 204 if empty."""

    def handler(request: Request) -> Reply:
        skip, top = int(arg(request, "skip")), int(arg(request, "top"))
        chunk = records[skip : skip + top]
        if not chunk:
            return Reply(204)
        return Reply.json({"completedContacts": chunk, "totalRecords": len(records)})

    return handler


# --- every record exactly once, in order --------------------------------------------------


@given(
    n=counts,
    size=sizes,
    variant=st.sampled_from(["next", "short", "total"]),
    first=st.sampled_from([0, 1]),
)
def test_page_numbers_give_every_record_once_in_order(api, n, size, variant, first):
    """Page-number paging returns the N records in order, at most one request past the end."""
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
    with Client(base_url=api.url, retry=None) as client:
        assert list(paginator.records(client, path)) == records
    hits = api.hits(path)
    numbers = [int(arg(hit, "pageNumber")) for hit in hits]
    assert numbers == list(range(first, first + len(hits)))
    if variant == "short":  # only a short page can tell the end
        assert len(hits) <= page_count(n, size) + 1
    else:
        assert len(hits) == page_count(n, size)


@given(n=counts, size=sizes, knows_total=st.booleans())
def test_offsets_give_every_record_once_in_order(api, n, size, knows_total):
    """Offset paging returns the N records in order; with the total, no request past the end."""
    records = dataset(n)
    path = mount(api, offset_api(records))
    total_key = "totalRecords" if knows_total else None
    paginator = OffsetPaginator(size, total_key=total_key, records_key="completedContacts")
    with Client(base_url=api.url, retry=None) as client:
        pages = list(paginator.pages(client, path))
    assert [record for page in pages for record in page.records] == records
    assert [page.number for page in pages] == list(range(len(pages)))
    hits = api.hits(path)
    assert [int(arg(hit, "skip")) for hit in hits] == [i * size for i in range(len(hits))]
    assert all(int(arg(hit, "top")) == size for hit in hits)
    if knows_total:
        assert len(hits) == page_count(n, size)
        assert all(page.total == n for page in pages if page.records)
    else:
        assert len(hits) <= page_count(n, size) + 1


def next_link_api(server: LoopbackServer, records: list[object], size: int, style: str) -> str:
    """Pages linked by ``_links.next`` (absolute or relative) or by a Link header."""
    path = f"/list/{next(_paths)}"

    def link(after: int) -> str:
        query = f"?after={after}"
        return {"absolute": f"{server.url}{path}{query}", "query": query}.get(style, path + query)

    def handler(request: Request) -> Reply:
        after = int(request.query.get("after", ["0"])[0])
        chunk = records[after : after + size]
        more = after + size < len(records)
        if style == "header":
            links = [f'<{path}?after=0>; rel="first"', f'<{path}?after={len(records)}>; rel="last"']
            if more:
                links.insert(1, f'<{link(after + size)}>; rel="next"; title="page, next"')
            return Reply.json(chunk, Link=", ".join(links))
        next_link = link(after + size) if more else None
        return Reply.json({"_links": {"self": link(after), "next": next_link}, "data": chunk})

    route(server, path, handler)
    return path


@given(n=counts, size=sizes, style=st.sampled_from(["absolute", "query", "path", "header"]))
def test_next_links_give_every_record_once_in_order(api, n, size, style):
    """Following next links, from the body or the Link header, returns the N records in order."""
    records = dataset(n)
    path = next_link_api(api, records, size, style)
    if style == "header":
        paginator = NextLinkPaginator(link_key=None, records_key=None)
    else:
        paginator = NextLinkPaginator(records_key="data")
    with Client(base_url=api.url, retry=None) as client:
        assert list(paginator.records(client, path, params={"after": 0})) == records
    hits = api.hits(path)
    assert len(hits) == page_count(n, size)
    assert [int(arg(hit, "after")) for hit in hits] == [i * size for i in range(len(hits))]


def cursor_api(records: list[object], size: int, end: str) -> Callable[[Request], Reply]:
    """Pages chained by an opaque cursor under ``result``; *end* says how the last one ends.

    ``scroll`` hands out one constant token, with the position kept by the server, and
    an empty page after the last one, as scroll APIs do.
    """
    position = [0]

    def handler(request: Request) -> Reply:
        if end == "scroll":
            after = position[0] if request.query.get("cursor") == ["scroll-1"] else 0
            position[0] = after + size
            cursor: object = "scroll-1"
        else:
            after = int(request.query.get("cursor", ["c0"])[0][1:])
            cursor = f"c{after + size}"
        body: dict[str, object] = {"result": {"items": records[after : after + size]}}
        if end == "scroll" or after + size < len(records):
            body["next_cursor"] = cursor
        elif end != "missing":
            body["next_cursor"] = {"null": None, "empty": ""}[end]
        return Reply.json(body)

    return handler


@given(n=counts, size=sizes, end=st.sampled_from(["missing", "null", "empty", "scroll"]))
def test_cursors_give_every_record_once_in_order(api, n, size, end):
    """Cursor paging returns the N records in order, ending without a cursor or at an empty page."""
    records = dataset(n)
    path = mount(api, cursor_api(records, size, end))
    paginator = CursorPaginator(records_key="result.items")
    with Client(base_url=api.url, retry=None) as client:
        assert list(paginator.records(client, path)) == records
    hits = api.hits(path)
    assert "cursor" not in hits[0].query
    if end == "scroll":  # only an empty page tells the end
        assert len(hits) <= page_count(n, size) + 1
    else:
        assert len(hits) == page_count(n, size)


# --- fan-out ------------------------------------------------------------------------------


@given(n=counts, size=sizes, kind=st.sampled_from(["page", "offset"]))
def test_fan_out_gives_every_record_once_in_order(api, n, size, kind):
    """With a total and a Scheduler(4), every page is fetched once and records stay in order."""
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
    with Client(base_url=api.url, retry=None) as client, Scheduler(4) as scheduler:
        assert list(paginator.records(client, path, fan_out=scheduler)) == records
    asked = sorted(int(arg(hit, param)) for hit in api.hits(path))
    pages = page_count(n, size)
    # A fan-out of offsets whose last page was full reads the end again: the listing may
    # have grown (page numbers say on their last page that none follows).
    expected = range(pages + (kind == "offset" and pages > 1 and n % size == 0))
    assert asked == ([i + 1 for i in expected] if kind == "page" else [i * size for i in expected])


def test_fan_out_sends_pages_concurrently(server: LoopbackServer):
    """Pages 1 to 4 are in flight at once: each waits for the three others to arrive."""
    records = dataset(50)
    barrier = threading.Barrier(4, timeout=30)
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
    with Client(base_url=server.url, retry=None) as client, Scheduler(4) as scheduler:
        pages = list(paginator.pages(client, "/contacts", fan_out=scheduler))
    assert broken == []
    assert [page.number for page in pages] == list(range(11))
    assert pages[-1].records == []  # the end, read again after a full last page
    assert [record for page in pages for record in page.records] == records
    assert sorted(int(arg(hit, "skip")) for hit in server.hits("/contacts")) == list(
        range(0, 55, 5)  # the last page was full: the end is read again
    )


def test_fan_out_without_a_total_fetches_one_page_after_another(server: LoopbackServer):
    """Without a total nothing is fanned out: the scheduler runs no call."""
    records = dataset(23)
    route(server, "/items", page_number_api(records))
    paginator = PageNumberPaginator(5, records_key="entities")
    with Client(base_url=server.url, retry=None) as client, Scheduler(4) as scheduler:
        assert list(paginator.records(client, "/items", fan_out=scheduler)) == records
        assert scheduler.statistics().done == 0
    assert len(server.hits("/items")) == 5


def test_a_page_served_short_in_a_fan_out_is_completed(server: LoopbackServer):
    """A page served short before the total leaves no gap: the records after it are fetched."""
    records = dataset(30)

    def handler(request: Request) -> Reply:
        skip = int(arg(request, "skip"))
        chunk = records[skip : skip + 5] if skip != 10 else records[10:12]
        return Reply.json({"completedContacts": chunk, "totalRecords": 30})

    route(server, "/contacts", handler)
    paginator = OffsetPaginator(5, records_key="completedContacts")
    with Client(base_url=server.url, retry=None) as client, Scheduler(2) as scheduler:
        assert list(paginator.records(client, "/contacts", fan_out=scheduler)) == records
    skips = [int(arg(hit, "skip")) for hit in server.hits("/contacts")]
    assert 12 in skips  # the gap after the short page, filled
    assert sorted(set(skips)) == [0, 5, 10, 12, 15, 20, 25, 30]  # 30: the end read again


def test_a_total_that_grows_after_the_first_page_is_walked_to_its_end(server: LoopbackServer):
    """The listing grows from 20 to 35 after the first page: fanned out or not, all 35 come."""
    grown = threading.Event()

    def handler(request: Request) -> Reply:
        skip = int(arg(request, "skip"))
        size = 35 if grown.is_set() else 20
        grown.set()
        body = {"completedContacts": dataset(size)[skip : skip + 5], "totalRecords": size}
        return Reply.json(body)

    route(server, "/contacts", handler)
    paginator = OffsetPaginator(5, records_key="completedContacts")
    with Client(base_url=server.url, retry=None) as client, Scheduler(2) as scheduler:
        assert list(paginator.records(client, "/contacts", fan_out=scheduler)) == dataset(35)
        grown.clear()
        assert list(paginator.records(client, "/contacts")) == dataset(35)


def test_a_listing_that_ends_before_its_total_raises(server: LoopbackServer):
    """Pages that run out before the total raise IncompleteListing, naming what is missing."""

    def handler(request: Request) -> Reply:
        skip = int(arg(request, "skip"))
        chunk = dataset(12)[skip : skip + 5]
        return Reply.json({"completedContacts": chunk, "totalRecords": 30})

    route(server, "/contacts", handler)
    paginator = OffsetPaginator(5, records_key="completedContacts")
    with Client(base_url=server.url, retry=None) as client, Scheduler(2) as scheduler:
        for fan_out in (None, scheduler):
            got: list[object] = []
            with pytest.raises(IncompleteListing) as raised:
                got.extend(paginator.records(client, "/contacts", fan_out=fan_out))
            assert (raised.value.total, raised.value.walked) == (30, 12)
            assert "18 missing" in str(raised.value)


def test_closing_a_fanned_out_stream_stops_its_threads(server: LoopbackServer):
    """Closing the records early stops the fan-out: no worker is left and few pages were asked."""
    route(server, "/contacts", offset_api(dataset(200)))
    paginator = OffsetPaginator(1, records_key="completedContacts")
    with Client(base_url=server.url, retry=None) as client, Scheduler(2) as scheduler:
        stream = paginator.records(client, "/contacts", fan_out=scheduler)
        assert [next(stream) for _ in range(3)] == dataset(3)
        stream.close()
        assert not [t for t in threading.enumerate() if t.name == "ratekit-scheduler"]
    assert len(server.hits("/contacts")) < 20


# --- stop conditions ----------------------------------------------------------------------


def test_a_204_first_page_is_an_empty_listing(server: LoopbackServer):
    """CXone's 204 No Content is one empty page, and the walk ends there."""
    route(server, "/contacts", lambda _: Reply(204))
    paginator = OffsetPaginator(100, records_key="completedContacts")
    with Client(base_url=server.url, retry=None) as client:
        pages = list(paginator.pages(client, "/contacts"))
    assert pages == [Page(0, [], None, None, 0)]
    assert len(server.hits("/contacts")) == 1


def test_an_api_that_caps_its_pages_is_walked_by_what_it_served(server: LoopbackServer):
    """Pages capped at 3 when 5 are asked: the walk goes on after each, to the total."""
    records = dataset(50)

    def handler(request: Request) -> Reply:
        skip = int(arg(request, "skip"))
        return Reply.json({"completedContacts": records[skip : skip + 3], "totalRecords": 50})

    route(server, "/contacts", handler)
    paginator = OffsetPaginator(5, records_key="completedContacts")
    with Client(base_url=server.url, retry=None) as client, Scheduler(3) as scheduler:
        assert list(paginator.records(client, "/contacts")) == records
        assert list(paginator.records(client, "/contacts", fan_out=scheduler)) == records


def test_an_api_that_ignores_the_offset_is_an_error_not_a_loop(server: LoopbackServer):
    """The same short page whatever the offset: ResponseError, not a walk that repeats it."""
    route(
        server,
        "/contacts",
        lambda _: Reply.json({"completedContacts": dataset(3), "totalRecords": 50}),
    )
    paginator = OffsetPaginator(5, records_key="completedContacts")
    with (
        Client(base_url=server.url, retry=None) as client,
        pytest.raises(ResponseError, match="ignore the offset"),
    ):
        list(paginator.records(client, "/contacts"))
    assert len(server.hits("/contacts")) == 2


def test_a_total_that_is_not_a_count_is_unknown(server: LoopbackServer):
    """A total that is not a non-negative integer is ignored: short pages end the walk."""
    totals = iter(["12", -1, True, 12.0])

    def handler(request: Request) -> Reply:
        start = (int(arg(request, "pageNumber")) - 1) * 4
        return Reply.json({"entities": dataset(12)[start : start + 4], "total": next(totals)})

    route(server, "/items", handler)
    paginator = PageNumberPaginator(4, next_key=None, total_key="total", records_key="entities")
    with Client(base_url=server.url, retry=None) as client:
        pages = list(paginator.pages(client, "/items"))
    assert [page.total for page in pages] == [None] * 4
    assert [record for page in pages for record in page.records] == dataset(12)


@pytest.mark.parametrize("marker", [False, "", None, "missing"])
def test_page_numbers_end_when_the_body_says_no_next_page(server: LoopbackServer, marker):
    """A nextPage missing, null, false or "" ends the walk, even after a full page."""

    def handler(_: Request) -> Reply:
        body: dict[str, object] = {"entities": dataset(2)}
        if marker != "missing":
            body["nextPage"] = marker
        return Reply.json(body)

    route(server, "/items", handler)
    with Client(base_url=server.url, retry=None) as client:
        records = list(PageNumberPaginator(2, records_key="entities").records(client, "/items"))
    assert records == dataset(2)
    assert len(server.hits("/items")) == 1


def test_parameters_and_headers_go_with_every_page(server: LoopbackServer):
    """The caller's params and headers go with each page; params named None are not sent."""
    route(server, "/items", lambda r: Reply.json([1] if arg(r, "p") == "0" else []))
    paginator = PageNumberPaginator(
        1, page_param="p", size_param=None, first=0, next_key=None, records_key=None
    )
    with Client(base_url=server.url, retry=None) as client:
        records = list(
            paginator.records(
                client, "/items", params={"q": "x", "p": 9}, headers={"X-Tenant": "t1"}
            )
        )
    assert records == [1]
    hits = server.hits("/items")
    assert [hit.query for hit in hits] == [{"q": ["x"], "p": ["0"]}, {"q": ["x"], "p": ["1"]}]
    assert all(hit.headers["x-tenant"] == "t1" for hit in hits)
    offsets = OffsetPaginator(1, offset_param="p", limit_param=None, records_key=None)
    with Client(base_url=server.url, retry=None) as client:
        assert list(offsets.records(client, "/items")) == [1]
    assert server.hits("/items")[-1].query == {"p": ["1"]}


# --- records_key and bodies ---------------------------------------------------------------


def test_records_key_follows_a_dotted_path(server: LoopbackServer):
    """records_key and total_key may be dotted paths into nested objects."""

    def handler(request: Request) -> Reply:
        start = (int(arg(request, "pageNumber")) - 1) * 3
        result = {"items": dataset(7)[start : start + 3], "meta": {"total": 7}}
        return Reply.json({"result": result})

    route(server, "/items", handler)
    paginator = PageNumberPaginator(
        3, next_key=None, total_key="result.meta.total", records_key="result.items"
    )
    with Client(base_url=server.url, retry=None) as client:
        pages = list(paginator.pages(client, "/items"))
    assert [page.total for page in pages] == [7, 7, 7]
    assert [record for page in pages for record in page.records] == dataset(7)
    assert len(server.hits("/items")) == 3


def test_null_records_are_an_empty_page(server: LoopbackServer):
    """A records key holding null is an empty page: the walk ends."""
    route(server, "/items", lambda _: Reply.json({"data": None, "next_cursor": "c1"}))
    with Client(base_url=server.url, retry=None) as client:
        pages = list(CursorPaginator(records_key="data").pages(client, "/items"))
    assert [page.records for page in pages] == [[]]


@pytest.mark.parametrize(
    ("body", "records_key", "message"),
    [
        ({"entities": []}, "data", "nothing where a list of records was expected, at 'data'"),
        ({"result": [1]}, "result.items", "nothing where a list of records was expected"),
        ({"data": {"id": 1}}, "data", "a dict where a list of records was expected"),
        ({"data": [1]}, None, "a dict where a list of records was expected, at the body"),
    ],
)
def test_records_that_are_not_a_list_are_an_error(
    server: LoopbackServer, body, records_key, message
):
    """A misspelt records_key or a body of another shape raises instead of looking empty."""
    route(server, "/items", lambda _: Reply.json(body))
    with Client(base_url=server.url, retry=None) as client, pytest.raises(ResponseError) as caught:
        list(OffsetPaginator(10, records_key=records_key).records(client, "/items"))
    assert message in str(caught.value)
    assert caught.value.status == 200


def test_a_page_larger_than_asked_is_an_error(server: LoopbackServer):
    """An API that ignores the page size would make offsets repeat records: it raises."""
    route(server, "/items", lambda _: Reply.json({"data": dataset(8)}))
    with (
        Client(base_url=server.url, retry=None) as client,
        pytest.raises(ResponseError, match="8 records in a page of at most 5"),
    ):
        list(OffsetPaginator(5, records_key="data").records(client, "/items"))


def test_errors_and_bodies_that_are_not_json_raise(server: LoopbackServer):
    """A non-2xx page raises HTTPStatusError; a body that is not JSON, ResponseError."""
    route(server, "/down", lambda _: Reply(500, body="boom"))
    route(server, "/html", lambda _: Reply(200, body="<html>"))
    paginator = NextLinkPaginator(records_key="data")
    with Client(base_url=server.url, retry=None) as client:
        with pytest.raises(HTTPStatusError, match="answered 500: boom") as caught:
            list(paginator.records(client, "/down", params={"key": "secret"}))
        assert "secret" not in str(caught.value)
        with pytest.raises(ResponseError, match="not JSON"):
            list(paginator.records(client, "/html"))


def test_an_empty_200_body_is_an_empty_page(server: LoopbackServer):
    """A 200 with no body is read like a 204: no records."""
    route(server, "/items", lambda _: Reply(200, body=" "))
    with Client(base_url=server.url, retry=None) as client:
        pages = list(NextLinkPaginator(records_key="data").pages(client, "/items"))
    assert pages == [Page(0, [], None)]


# --- next links ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ('<https://x.test/a>; rel="first", </b?p=2>; rel="next", </b?p=9>; rel="last"', "/b?p=2"),
        ('<b?p=2>; REL="prev NEXT"', "/b?p=2"),
        ('</x>; rel="prev"; title="a, b; <c>", </b?p=2>; title="x\\"y"; rel=next', "/b?p=2"),
        ('</x>; rel="next"; anchor="#it", </b?p=2>; rel="next"', "/b?p=2"),
        ('</x>; rel="prev"; rel="next", </b?p=2>; rel=next', "/b?p=2"),
        ("garbage, </b?p=2>; crossorigin; rel=next", "/b?p=2"),
        ('</b?p=2,3>; rel="next"', "/b?p=2,3"),
        ('</b?p=2#part>; rel="next"', "/b?p=2"),
        ('</x>; rel="prev"', None),
        ('</x>; rel="next', None),
        ('<http://broken; rel="next"', None),
        ("", None),
    ],
)
def test_link_headers_are_parsed_robustly(server: LoopbackServer, header, expected):
    """The first rel="next" link is followed, relative to the page, whatever else is there."""
    headers = {"Link": header} if header else {}
    route(server, "/a", lambda _: Reply.json({"data": [1]}, **headers))
    route(server, "/b", lambda _: Reply.json({"data": [2]}))
    with Client(base_url=server.url, retry=None) as client:
        records = list(NextLinkPaginator(records_key="data").records(client, "/a"))
    b_hits = server.hits("/b")
    if expected is None:
        assert records == [1]
        assert b_hits == []
    else:
        assert records == [1, 2]
        path, _, query = expected.partition("?")
        assert [(hit.path, hit.query) for hit in b_hits] == [(path, {"p": [query[2:]]})]


@pytest.mark.parametrize("value", [None, False, ""])
def test_a_null_body_link_ends_the_walk_whatever_the_header(server: LoopbackServer, value):
    """A next link that the body gives as null, false or "" ends the walk; no header is read."""
    body = {"_links": {"next": value}, "data": [1]}
    route(server, "/a", lambda _: Reply.json(body, Link='</b>; rel="next"'))
    with Client(base_url=server.url, retry=None) as client:
        assert list(NextLinkPaginator(records_key="data").records(client, "/a")) == [1]
    assert server.hits("/b") == []


def test_a_next_link_that_is_not_a_string_is_an_error(server: LoopbackServer):
    """A next link of another type (a HAL object without link_key pointing at href) raises."""
    route(server, "/a", lambda _: Reply.json({"_links": {"next": {"href": "/b"}}, "data": []}))
    route(server, "/b", lambda _: Reply.json({"data": [2]}))
    with Client(base_url=server.url, retry=None) as client:
        with pytest.raises(ResponseError, match="a dict where a next link was expected"):
            list(NextLinkPaginator(records_key="data").records(client, "/a"))
        hal = NextLinkPaginator(link_key="_links.next.href", records_key="data")
        assert list(hal.records(client, "/a")) == [2]


def test_next_links_only_carry_the_first_requests_params(server: LoopbackServer):
    """The params go with the first request only, headers with all; absolute URLs work."""
    route(server, "/a", lambda _: Reply.json({"_links": {"next": "/b?x=1"}, "data": [1]}))
    route(server, "/b", lambda _: Reply.json({"data": [2], "totalRecords": 2}))
    paginator = NextLinkPaginator(records_key="data", total_key="totalRecords")
    with Client(retry=None) as client:
        pages = list(
            paginator.pages(client, f"{server.url}/a", params={"q": "1"}, headers={"X-T": "t"})
        )
    assert [page.total for page in pages] == [None, 2]
    assert server.hits("/a")[0].query == {"q": ["1"]}
    assert server.hits("/b")[0].query == {"x": ["1"]}
    assert all(hit.headers["x-t"] == "t" for hit in server.requests)


def test_a_link_back_to_the_same_page_stops_with_a_warning(server: LoopbackServer, caplog):
    """A page that links to itself is fetched once, and a warning is logged."""
    route(server, "/a", lambda _: Reply.json({"_links": {"next": "/a?k=v"}, "data": [1]}))
    with Client(base_url=server.url, retry=None) as client:
        records = list(
            NextLinkPaginator(records_key="data").records(client, "/a", params={"k": "v"})
        )
    assert records == [1]
    assert len(server.hits("/a")) == 1
    assert "which was already fetched: stopping" in caplog.text
    assert "k=v" not in caplog.text  # query values are masked


def test_a_cycle_of_next_links_stops_with_a_warning(server: LoopbackServer, caplog):
    """Pages a -> b -> a are fetched once each: every record once, then a warning."""
    route(server, "/a", lambda _: Reply.json({"_links": {"next": "/b"}, "data": [1]}))
    route(server, "/b", lambda _: Reply.json({"_links": {"next": "a"}, "data": [2]}))
    with Client(base_url=server.url, retry=None) as client:
        assert list(NextLinkPaginator(records_key="data").records(client, "/a")) == [1, 2]
    assert (len(server.hits("/a")), len(server.hits("/b"))) == (1, 1)
    assert "already fetched" in caplog.text


@pytest.mark.parametrize("host", ["localhost:{port}", "127.0.0.1:{port}0", "127.0.0.1:port"])
def test_next_links_to_other_origins_are_refused(server: LoopbackServer, host):
    """A next link to another host or port raises, as the client's token would go there."""
    link = f"http://{host.format(port=server.port)}/b"
    route(server, "/a", lambda _: Reply.json({"_links": {"next": link}, "data": [1]}))
    with Client(base_url=server.url, retry=None) as client:
        stream = NextLinkPaginator(records_key="data").records(client, "/a")
        assert next(stream) == 1
        with pytest.raises(ResponseError, match="a next link to another origin"):
            next(stream)
    assert server.hits("/b") == []


def test_other_origins_are_followed_when_allowed(server: LoopbackServer):
    """allow_other_origins=True follows a next link to another host."""
    link = f"http://localhost:{server.port}/b"
    route(server, "/a", lambda _: Reply.json({"_links": {"next": link}, "data": [1]}))
    route(server, "/b", lambda _: Reply.json({"data": [2]}))
    paginator = NextLinkPaginator(records_key="data", allow_other_origins=True)
    with Client(base_url=server.url, retry=None) as client:
        assert list(paginator.records(client, "/a")) == [1, 2]


# --- next links that parsers read apart ---------------------------------------------------

#: The bearer token of the walks below.
TOKEN = "t-next-link-1"  # noqa: S105


class Bearer:
    """A token provider with one token, for a client that sends it with every request."""

    def token(self) -> str:
        return TOKEN

    def invalidate(self, token: str) -> None:
        """A fixed token cannot be renewed."""


@pytest.fixture
def other() -> Iterator[LoopbackServer]:
    """A second loopback server, on a port of its own: where a confusing next link leads."""
    yield from serve()


def test_a_backslash_next_link_never_takes_the_token_to_another_server(
    server: LoopbackServer, other: LoopbackServer
):
    """A link that is A to urllib.parse and B to urllib3 raises; B receives no request."""
    link = f"http://127.0.0.1:{other.port}\\@127.0.0.1:{server.port}/b"
    route(server, "/a", lambda _: Reply.json({"_links": {"next": link}, "data": [1]}))
    route(server, "/b", lambda _: Reply.json({"data": [2]}))
    # What urllib3 would ask B for, answered as a page would be.
    route(other, f"/%5C@127.0.0.1:{server.port}/b", lambda _: Reply.json({"data": [3]}))
    with Client(base_url=server.url, auth=Bearer(), retry=None) as client:
        stream = NextLinkPaginator(records_key="data").records(client, "/a")
        assert next(stream) == 1
        with pytest.raises(ResponseError, match="a next link with a backslash") as info:
            next(stream)
    assert other.requests == []
    assert [hit.headers["authorization"] for hit in server.requests] == [f"Bearer {TOKEN}"]
    # The message names the server that urllib3 would have connected to.
    assert f"http://127.0.0.1:{other.port}/%5C@127.0.0.1:{server.port}/b" in str(info.value)


# Next links from the page at http://127.0.0.1:{a}/a, with the other server at {b}, and
# how each is judged: a match for the ResponseError's reason, or None if it is followed.
CONFUSING_LINKS = [
    # A backslash: urllib3 and browsers end the host at it, urllib.parse does not.
    ("http://127.0.0.1:{b}\\@127.0.0.1:{a}/b", "with a backslash"),  # B to urllib3
    ("http://127.0.0.1:{a}\\@127.0.0.1:{b}/b", "with a backslash"),  # B to urllib.parse
    ("/\\127.0.0.1:{b}/b", "with a backslash"),  # B to a browser (//127.0.0.1:{b}/b)
    ("http:\\\\127.0.0.1:{b}/b", "with a backslash"),  # B to a browser
    # User information, the host after the last "@" to both parsers.
    ("http://127.0.0.1:{a}@127.0.0.1:{b}/b", "with user information"),
    ("http://user@127.0.0.1:{a}/b", "with user information"),
    ("http://127.0.0.1:{b}%5C@127.0.0.1:{a}/b", "with user information"),
    ("http://127.0.0.1:{b};@127.0.0.1:{a}/b", "with user information"),
    # Whitespace and controls: urllib.parse drops tabs and newlines, and leading blanks
    # (CVE-2023-24329); urllib3 keeps them.
    ("http://127.0.0.1:{b}\t/b", "with whitespace or a control character"),
    ("http://127.0.\n0.1:{a}/b", "with whitespace or a control character"),
    ("http://127.0.0.1:{a}/b\r\n", "with whitespace or a control character"),
    (" http://127.0.0.1:{b}/b", "with whitespace or a control character"),
    ("\x00http://127.0.0.1:{b}/b", "with whitespace or a control character"),
    # Hosts that urllib3 cannot parse, or that its releases read differently.
    ("http://%31%32%37.0.0.1:{a}/b", r"another origin \(a host written with percent-"),
    ("http://127\u30020\u30020\u30021:{a}/b", r"another origin \(a URL that urllib3 cannot"),
    ("http://[::1:{a}/b", "that is not a URL"),
    # Other hosts, however close to this one they look.
    ("http://[::1]:{a}/b", "to another origin"),
    ("http://[::ffff:127.0.0.1]:{a}/b", "to another origin"),
    ("http://127.0.0.1.:{a}/b", "to another origin"),  # a trailing dot
    ("http://localhost:{a}/b", "to another origin"),
    ("http://127.1:{a}/b", "to another origin"),
    ("http://127.0.0.1.evil.example:{a}/b", "to another origin"),
    ("https://127.0.0.1:{a}/b", "to another origin"),
    ("http://127.0.0.1:{b}#@127.0.0.1:{a}/b", "to another origin"),
    ("http://127.0.0.1:{b}?@127.0.0.1:{a}/b", "to another origin"),
    ("//127.0.0.1:{b}/b", "to another origin"),
    # This server, written otherwise: followed.
    ("HTTP://127.0.0.1:{a}/b", None),
    ("http://127.0.0.1:0{a}/b", None),
    ("//127.0.0.1:{a}/b", None),
    ("http://127.0.0.1:{a}/b#part", None),
]


@pytest.mark.parametrize(("template", "refusal"), CONFUSING_LINKS)
def test_next_links_are_judged_as_urllib3_connects(
    server: LoopbackServer, other: LoopbackServer, template: str, refusal: str | None
):
    """Each confusing link is refused for its reason, or followed to this server; B sees nothing."""
    link = template.format(a=server.port, b=other.port)
    route(server, "/a", lambda _: Reply.json({"_links": {"next": link}, "data": [1]}))
    route(server, "/b", lambda _: Reply.json({"data": [2]}))
    with Client(base_url=server.url, auth=Bearer(), retry=None) as client:
        stream = NextLinkPaginator(records_key="data").records(client, "/a")
        assert next(stream) == 1
        if refusal is None:
            assert list(stream) == [2]
        else:
            with pytest.raises(ResponseError, match=refusal):
                next(stream)
    assert other.requests == []
    assert len(server.hits("/b")) == (refusal is None)
    assert [hit.path for hit in server.requests] == ["/a"] + ["/b"] * (refusal is None)


def test_ambiguous_next_links_are_refused_even_when_other_origins_are_allowed(
    server: LoopbackServer, other: LoopbackServer
):
    """allow_other_origins follows other hosts, never links that parsers read apart."""
    link = f"http://127.0.0.1:{other.port}\\@127.0.0.1:{server.port}/b"
    route(server, "/a", lambda _: Reply.json({"_links": {"next": link}, "data": [1]}))
    route(other, f"/%5C@127.0.0.1:{server.port}/b", lambda _: Reply.json({"data": [3]}))
    paginator = NextLinkPaginator(records_key="data", allow_other_origins=True)
    with (
        Client(base_url=server.url, auth=Bearer(), retry=None) as client,
        pytest.raises(ResponseError, match="a next link with a backslash"),
    ):
        list(paginator.records(client, "/a"))
    assert other.requests == []


# --- cursors ------------------------------------------------------------------------------


def test_a_cycle_of_cursors_stops_with_a_warning(server: LoopbackServer, caplog):
    """c1 -> c2 -> c1: each page is fetched once, then a warning is logged."""
    chain = {None: ("c1", [1]), "c1": ("c2", [2]), "c2": ("c1", [3])}

    def handler(request: Request) -> Reply:
        cursor = request.query.get("after", [None])[0]
        following, records = chain[cursor]
        return Reply.json({"items": records, "next": following})

    route(server, "/items", handler)
    paginator = CursorPaginator(cursor_param="after", cursor_key="next", records_key="items")
    with Client(base_url=server.url, retry=None) as client:
        assert list(paginator.records(client, "/items")) == [1, 2, 3]
    assert len(server.hits("/items")) == 3
    assert "a cursor already used: stopping" in caplog.text


def test_a_server_that_ignores_the_cursor_stops_without_duplicates(server: LoopbackServer, caplog):
    """The same cursor back with the same records is a loop: nothing is repeated."""
    route(server, "/items", lambda _: Reply.json({"data": [1, 2], "next_cursor": 7}))
    with Client(base_url=server.url, retry=None) as client:
        pages = list(CursorPaginator(records_key="data").pages(client, "/items"))
    assert [page.records for page in pages] == [[1, 2]]
    assert [hit.query for hit in server.hits("/items")] == [{}, {"cursor": ["7"]}]
    assert "repeated the page before: stopping" in caplog.text


@pytest.mark.parametrize("cursor", [True, {"id": 1}, 1.5])
def test_a_cursor_of_another_type_is_an_error(server: LoopbackServer, cursor):
    """A cursor must be a string or an integer."""
    route(server, "/items", lambda _: Reply.json({"data": [1], "next_cursor": cursor}))
    with (
        Client(base_url=server.url, retry=None) as client,
        pytest.raises(ResponseError, match="where a cursor was expected"),
    ):
        list(CursorPaginator(records_key="data").records(client, "/items"))


def test_a_false_cursor_ends_the_walk(server: LoopbackServer):
    """A cursor of false means no more pages."""
    route(server, "/items", lambda _: Reply.json({"data": [1], "next_cursor": False}))
    with Client(base_url=server.url, retry=None) as client:
        assert list(CursorPaginator(records_key="data").records(client, "/items")) == [1]
    assert len(server.hits("/items")) == 1


# --- values -------------------------------------------------------------------------------


def test_pages_show_their_size_not_their_records():
    """A page's repr counts its records and leaves out the body."""
    page = Page(2, [{"secret": 1}] * 3, {"secret": 1}, 30)
    assert repr(page) == "Page(number=2, records=<3 records>, total=30, offset=None)"


def test_paginators_are_frozen_values():
    """Paginators compare by value and change through attrs.evolve."""
    paginator = OffsetPaginator(10, records_key="data")
    assert attrs.evolve(paginator, page_size=20) == OffsetPaginator(20, records_key="data")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        paginator.page_size = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (
            lambda: PageNumberPaginator(0, records_key="x"),
            ValueError,
            "page_size must be at least 1",
        ),
        (lambda: OffsetPaginator(True, records_key="x"), TypeError, "page_size must be an integer"),
        (lambda: PageNumberPaginator(5, first=-1, records_key="x"), ValueError, "first must be"),
        (lambda: PageNumberPaginator(5, page_param="", records_key="x"), ValueError, "page_param"),
        (lambda: OffsetPaginator(5, limit_param="", records_key="x"), ValueError, "limit_param"),
        (lambda: OffsetPaginator(5, records_key="a..b"), ValueError, "records_key must be"),
        (lambda: NextLinkPaginator(link_key="", records_key=None), ValueError, "link_key"),
        (lambda: CursorPaginator(cursor_key=None, records_key=None), ValueError, "cursor_key"),
        (lambda: CursorPaginator(cursor_param=None, records_key=None), ValueError, "cursor_param"),
    ],
)
def test_bad_arguments_are_refused_by_name(build, error, message):
    """Each bad argument raises an error that names it."""
    with pytest.raises(error, match=message):
        build()


def test_the_records_generator_can_be_closed_before_it_starts(server: LoopbackServer):
    """Closing an unstarted stream sends no request."""
    route(server, "/items", lambda _: Reply.json({"data": [1]}))
    with Client(base_url=server.url, retry=None) as client:
        stream = OffsetPaginator(1, records_key="data").records(client, "/items")
        with contextlib.closing(stream):
            pass
    assert server.hits("/items") == []


def test_every_paginator_is_a_paginator_and_urls_resolve():
    """The four paginators fit the `Paginator` protocol; `Client.url` shows where they go."""
    paginators = [
        PageNumberPaginator(10, records_key="items"),
        OffsetPaginator(10, records_key="items"),
        NextLinkPaginator(records_key="items"),
        CursorPaginator(cursor_key="next", cursor_param="cursor", records_key="items"),
    ]
    assert all(isinstance(paginator, Paginator) for paginator in paginators)
    client = Client(base_url="https://api.example.com/v1/")
    assert client.url("items", {"page": 2, "q": "a b"}) == (
        "https://api.example.com/v1/items?page=2&q=a+b"
    )
    assert client.url("https://other.example.com/x?a=1", {"b": 2}) == (
        "https://other.example.com/x?a=1&b=2"
    )


@pytest.mark.parametrize("fan_out", [False, True])
def test_a_walk_resumes_from_a_page_index(api: LoopbackServer, fan_out: bool):
    """``start`` skips the pages already processed: the rest come once each, in order."""
    records = dataset(47)
    offsets = mount(api, offset_api(records))
    numbers = mount(api, page_number_api(records, total=True))
    client = Client(base_url=api.url)
    with Scheduler(3) as scheduler:
        scheduler_or_none = scheduler if fan_out else None
        for paginator, path in [
            (OffsetPaginator(10, records_key="completedContacts"), offsets),
            (PageNumberPaginator(10, records_key="entities", total_key="total"), numbers),
        ]:
            pages = list(paginator.pages(client, path, fan_out=scheduler_or_none, start=2))
            assert [page.number for page in pages] == [2, 3, 4]
            assert [r for page in pages for r in page.records] == records[20:]
            past = list(paginator.pages(client, path, fan_out=scheduler_or_none, start=9))
            assert [page.records for page in past] == [[]]  # one request past the end


def test_start_must_be_a_page_index(api: LoopbackServer):
    """A bad ``start`` is refused at once, before any request, naming it."""
    paginator = OffsetPaginator(10, records_key="completedContacts")
    client = Client(base_url=api.url)
    with pytest.raises(ValueError, match="start must be at least 0, got -1"):
        paginator.pages(client, "/nowhere", start=-1)
    with pytest.raises(TypeError, match=r"start must be an integer, got 1\.5"):
        paginator.pages(client, "/nowhere", start=1.5)  # type: ignore[arg-type]
    assert client.statistics().requests == 0


@pytest.mark.parametrize("fan_out", [False, True])
@pytest.mark.parametrize("offset", [0, 1, 15, 40, 46, 47, 60])
def test_an_offset_walk_resumes_at_any_record(api: LoopbackServer, fan_out: bool, offset: int):
    """``offset`` skips that many records: the rest come once each, with no extra request."""
    records = dataset(47)
    path = mount(api, offset_api(records))
    client = Client(base_url=api.url)
    paginator = OffsetPaginator(10, records_key="completedContacts", offset=offset)
    with Scheduler(3) as scheduler:
        walked = list(paginator.records(client, path, fan_out=scheduler if fan_out else None))
    assert walked == records[offset:]
    skips = sorted(int(arg(request, "skip")) for request in api.hits(path))
    expected = list(range(offset, 47, 10)) or [offset]  # past the end: one request, a 204
    assert skips == expected


def test_offset_must_be_a_count():
    """A bad ``offset`` is refused, naming it."""
    with pytest.raises(ValueError, match="offset"):
        OffsetPaginator(10, records_key="items", offset=-1)
    with pytest.raises(TypeError, match="offset"):
        OffsetPaginator(10, records_key="items", offset=1.5)  # type: ignore[arg-type]


# --- completeness: growing listings, capped pages, answers in any order ------------------


def changing_api(
    initial: int, grown: int, cap: int, kind: str, salt: int
) -> Callable[[Request], Reply]:
    """A listing that grows, caps its pages, and answers concurrent pages in any order.

    It has *initial* records, and *grown* more from its second request on; it serves at
    most *cap* records a page; each answer waits a delay drawn from *salt* and the page.
    """
    lock = threading.Lock()
    state = {"requests": 0}

    def handler(request: Request) -> Reply:
        with lock:
            state["requests"] += 1
            size = initial + (grown if state["requests"] > 1 else 0)
        records = dataset(size)
        if kind == "offset":
            skip, asked = int(arg(request, "skip")), int(arg(request, "top"))
            where = skip
        else:
            number, asked = int(arg(request, "pageNumber")), int(arg(request, "pageSize"))
            where = (number - 1) * min(asked, cap)  # the API numbers pages by what it serves
        chunk = records[where : where + min(asked, cap)]
        delay = ((where * 7919 + salt) % 3) / 1000  # up to 2 ms
        key = "completedContacts" if kind == "offset" else "entities"
        return attrs.evolve(Reply.json({key: chunk, "totalRecords": size}), delay=delay)

    return handler


@given(
    initial=st.integers(min_value=0, max_value=60),
    grown=st.integers(min_value=0, max_value=30),
    size=st.integers(min_value=1, max_value=12),
    cap=st.integers(min_value=1, max_value=15),
    kind=st.sampled_from(["offset", "page"]),
    salt=st.integers(min_value=0, max_value=4),
)
def test_sequential_and_fanned_out_walks_agree_and_miss_nothing(  # noqa: PLR0913, PLR0917
    api, initial, grown, size, cap, kind, salt
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
    with Client(base_url=api.url, retry=None) as client, Scheduler(4) as scheduler:
        for fan_out in (None, scheduler):
            path = mount(api, changing_api(initial, grown, cap, kind, salt))
            walked = list(paginator.records(client, path, fan_out=fan_out))
            # A listing that the first page holds whole ends there: its growth comes
            # too late to be seen.
            assert walked == (dataset(initial) if initial <= min(size, cap) else final)
