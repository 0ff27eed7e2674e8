"""Walk a paged listing from asyncio, with httpx and with aiohttp, fanned out under a limit.

A small JSON API runs on loopback, in a thread of this script: ``GET /contacts?skip=N&top=M``
returns up to M of its 95 contacts from the N-th on, with their total, in the shape of the
CXone contacts API, and wants a bearer token from ``POST /token``.  An `OAuth2Token` gets
that token with `token_async`, without blocking the event loop.  The same
`OffsetPaginator` then walks the listing twice: through an ``httpx.AsyncClient`` with a
base URL, its pages fanned out over an `AsyncScheduler` of 3 tasks paced by a
`TokenBucket` of 20 requests a second, and through an ``aiohttp.ClientSession`` without a
base URL, one page after another.  Both give every contact once, in order.

`walk` takes any `ratekit.typing.AsyncHTTPClient`: mypy checks that both clients are
one.  Run it with ``python examples/async_pages.py``; it takes about half a second.
"""

from __future__ import annotations

import asyncio
import json
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import aiohttp
import httpx

import ratekit
from ratekit.http import OAuth2Token, OffsetPaginator

if TYPE_CHECKING:
    from ratekit.typing import AsyncHTTPClient

#: The contacts the API holds, and the most it serves a page.
CONTACTS = [{"contactId": n} for n in range(1, 96)]
PAGE = 10
TOKEN = "t-example"  # noqa: S105 - the made-up token that the API hands out and wants


class ContactsHandler(BaseHTTPRequestHandler):
    """Serve ``POST /token`` and ``GET /contacts?skip=N&top=M``, with a bearer token."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        """Hand out the token."""
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = {"access_token": TOKEN, "token_type": "Bearer", "expires_in": 3600}
        self.send_json(HTTPStatus.OK, body)

    def do_GET(self) -> None:
        """Answer one page, or 401 without the token."""
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self.send_json(HTTPStatus.UNAUTHORIZED, {"error": "no token"})
            return
        query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
        skip, top = int(query["skip"]), min(int(query["top"]), PAGE)
        chunk = CONTACTS[skip : skip + top]
        if not chunk:
            self.send_json(HTTPStatus.NO_CONTENT, None)
            return
        self.send_json(HTTPStatus.OK, {"completedContacts": chunk, "totalRecords": len(CONTACTS)})

    def send_json(self, status: HTTPStatus, document: object) -> None:
        """Send *document* as the JSON body of a response (none for a 204)."""
        body = b"" if document is None else json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base's name
        """Log nothing: the client prints what matters."""


async def walk(
    client: AsyncHTTPClient, url: str, fan_out: ratekit.AsyncScheduler | None = None
) -> list[int]:
    """The ids of every contact at *url*, in order, through any asyncio client."""
    paginator = OffsetPaginator(PAGE, records_key="completedContacts")
    pages = paginator.pages_async(client, url, fan_out=fan_out)
    ids: list[int] = []
    async for page in pages:
        ids += [record["contactId"] for record in page.records if isinstance(record, dict)]
    return ids


async def main(base: str) -> None:
    """Get a token, then walk the contacts with httpx (fanned out) and with aiohttp."""
    auth = OAuth2Token(f"{base}/token", client_id="app", client_secret="s3cret")  # noqa: S106
    headers = {"Authorization": f"Bearer {await auth.token_async()}"}
    bucket = ratekit.TokenBucket(20.0, capacity=3)

    async with (
        httpx.AsyncClient(base_url=base, headers=headers) as client,
        ratekit.AsyncScheduler(3, bucket) as scheduler,
    ):
        fanned = await walk(client, "/contacts", fan_out=scheduler)
    print(f"httpx, fanned out: {len(fanned)} contacts, ids {fanned[0]} to {fanned[-1]}")

    async with aiohttp.ClientSession(headers=headers) as session:
        one_by_one = await walk(session, f"{base}/contacts")
    print(f"aiohttp, one page after another: {len(one_by_one)} contacts")

    assert fanned == one_by_one == [contact["contactId"] for contact in CONTACTS]
    print("both walks gave every contact once, in order")


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", 0), ContactsHandler)
    server.daemon_threads = True
    serving = threading.Thread(target=server.serve_forever, name="contacts-server")
    serving.start()
    try:
        asyncio.run(main(f"http://127.0.0.1:{server.server_address[1]}"))
    finally:
        server.shutdown()
        server.server_close()
        serving.join()
