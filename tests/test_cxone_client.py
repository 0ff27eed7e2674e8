"""CXoneClient against CXone on loopback: both auth flows, paging, resume, errors, counts.

Most tests script a small tenant on the `server` fixture, so that each request can be
checked; the last ones run against `ratekit_cxone.simulator.Simulator`.  Waits happen on
a FakeClock, so retries and pacing cost no real time.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING
from urllib.parse import unquote_plus

import attrs
import pytest
from loopback import LoopbackServer, Reply, Request

from ratekit import Cancelled
from ratekit.http import DEFAULT_RETRY, AuthError, HTTPStatusError, ResponseError, TokenError
from ratekit.retry import ConstantBackoff, RetryError
from ratekit.testing import FakeClock
from ratekit_cxone import (
    ConfigError,
    Contact,
    CXoneClient,
    CXoneConfig,
    CXoneStatistics,
    Interaction,
    RecordPage,
    make_limiter,
)
from ratekit_cxone.simulator import Simulator

if TYPE_CHECKING:
    from collections.abc import Iterator

# Made-up credentials, to look for in everything the server saw and the client showed.
CLIENT_SECRET = "cl!ent-secret+value"  # noqa: S105
KEY_SECRET = "acc3ss-key-secret/value"  # noqa: S105
TENANT = "tenant-0001"
START = datetime(2024, 1, 1, tzinfo=timezone.utc)
END = datetime(2024, 2, 1, tzinfo=timezone.utc)
COMPLETED = "/api/inContactAPI/services/v34.0/contacts/completed"
#: A window end that takes in every record a simulator holds.
FAR = END + timedelta(days=3650)


def jwt(claims: dict[str, object]) -> str:
    """An unsigned JWT carrying *claims* (base64url without padding, as issuers write)."""

    def part(value: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"


def contact(number: int) -> dict[str, object]:
    """A v34 completed contact."""
    return {
        "contactId": 1000 + number,
        "masterContactId": 1000 + number,
        "contactStartDate": (START + timedelta(minutes=number)).isoformat().replace("+00:00", "Z"),
        "fromAddress": f"+1555{number:07d}",
        "mediaTypeId": 4,
        "mediaTypeName": "Phone Call",
        "totalDurationSeconds": number % 300,
    }


class Tenant:
    """A scripted CXone tenant on the loopback server: discovery, tokens and both listings.

    Tokens are valid until `expire`; contacts pages answer from ``contacts`` by ``top``
    and ``skip`` (204 when the listing is empty); interactions pages by page number.
    ``faults`` maps a ``skip`` (or page number) to replies given before the real one.
    """

    def __init__(self, server: LoopbackServer, contacts: int = 0, interactions: int = 0) -> None:
        self.server = server
        self.contacts = [contact(n) for n in range(contacts)]
        self.interactions = [
            {
                "id": f"i-{n}",
                "status": "closed",
                "channel": "chat",
                "createdTime": "2024-01-01T00:00:00Z",
            }
            for n in range(interactions)
        ]
        self.valid: set[str] = set()
        self.issued = 0
        self.claims: dict[str, object] = {"tenantId": TENANT, "sub": "user"}
        self.faults: dict[int, list[Reply]] = {}
        self.lock = threading.Lock()
        self.barrier: threading.Barrier | None = None
        server.route("GET", "/.well-known/openid-configuration")(
            lambda _: Reply.json(
                {"issuer": server.url, "token_endpoint": f"{server.url}/auth/token"}
            )
        )
        server.route("GET", "/.well-known/cxone-configuration")(self._cxone_configuration)
        server.route("POST", "/auth/token")(self._password_grant)
        server.route("POST", "/oauth/token")(self._client_credentials)
        server.route("GET", COMPLETED)(self._completed)
        server.route("GET", "/api/v2/ic/interactions")(self._interactions)

    def config(self, **changes: object) -> CXoneConfig:
        """The platform configuration that reaches this tenant."""
        fields: dict[str, object] = {
            "issuer": self.server.url,
            "client_id": "the-client",
            "client_secret": CLIENT_SECRET,
            "access_key_id": "the-key",
            "access_key_secret": KEY_SECRET,
            **changes,
        }
        return CXoneConfig(**fields)  # type: ignore[arg-type]

    def tutorial(self, **changes: object) -> CXoneConfig:
        """The tutorial configuration that reaches this tenant."""
        fields: dict[str, object] = {
            "api": "interactions",
            "tenant_url": self.server.url + "/",
            "client_id": "the-client",
            "client_secret": CLIENT_SECRET,
            "scopes": ("ic:read", "analytics:read"),
            **changes,
        }
        return CXoneConfig(**fields)  # type: ignore[arg-type]

    def expire(self) -> None:
        """Every token issued so far is refused from now on."""
        with self.lock:
            self.valid.clear()

    def _issue(self) -> Reply:
        with self.lock:
            self.issued += 1
            token = jwt({**self.claims, "n": self.issued})
            self.valid.add(token)
        return Reply.json({"access_token": token, "token_type": "Bearer", "expires_in": 3600})

    def _password_grant(self, request: Request) -> Reply:
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        client, _, secret = base64.b64decode(encoded or "Og==").decode().partition(":")
        if scheme != "Basic" or (unquote_plus(client), unquote_plus(secret)) != (
            "the-client",
            CLIENT_SECRET,
        ):
            return Reply.json(
                {"error": "invalid_client", "error_description": "unknown client"}, 401
            )
        form = request.form()
        if form.get("grant_type") != "password":
            return Reply.json({"error": "unsupported_grant_type"}, 400)
        if (form.get("username"), form.get("password")) != ("the-key", KEY_SECRET):
            description = f"bad password {form.get('password')}"  # a server that echoes
            return Reply.json({"error": "invalid_grant", "error_description": description}, 400)
        return self._issue()

    def _client_credentials(self, request: Request) -> Reply:
        form = request.form()
        if form.get("grant_type") != "client_credentials":
            return Reply.json({"error": "unsupported_grant_type"}, 400)
        if (form.get("client_id"), form.get("client_secret")) != ("the-client", CLIENT_SECRET):
            return Reply.json({"error": "invalid_client"}, 401)
        if form.get("scope") != "ic:read analytics:read":
            return Reply.json({"error": "invalid_scope"}, 400)
        return self._issue()

    def _cxone_configuration(self, request: Request) -> Reply:
        if request.query.get("tenantId") != [TENANT]:
            return Reply.json({"error": "not found"}, 404)
        return Reply.json(
            {"area": "na1", "api_endpoint": f"{self.server.url}/api/", "tenantId": TENANT}
        )

    def _authorized(self, request: Request) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        with self.lock:
            return scheme == "Bearer" and token in self.valid

    def _fault(self, key: int) -> Reply | None:
        with self.lock:
            queue = self.faults.get(key)
            return queue.pop(0) if queue else None

    def _completed(self, request: Request) -> Reply:
        if not self._authorized(request):
            return Reply(401)
        if request.headers.get("accept") != "application/json":
            return Reply(406)
        top, skip = int(request.query["top"][0]), int(request.query["skip"][0])
        if self.barrier is not None and skip in {100, 200}:
            self.barrier.wait()  # two pages in flight at once, or the barrier breaks
        fault = self._fault(skip)
        if fault is not None:
            return fault
        page = self.contacts[skip : skip + top]
        if not self.contacts:
            return Reply(204)
        body = {"completedContacts": page, "totalRecords": len(self.contacts), "businessUnitId": 1}
        return Reply.json(body)

    def _interactions(self, request: Request) -> Reply:
        if not self._authorized(request):
            return Reply(401)
        size, number = int(request.query["pageSize"][0]), int(request.query["pageNumber"][0])
        fault = self._fault(number)
        if fault is not None:
            return fault
        page = self.interactions[(number - 1) * size : number * size]
        more = number * size < len(self.interactions)
        body = {
            "entities": page,
            "pageSize": size,
            "pageNumber": number,
            "nextPage": number + 1 if more else None,
        }
        return Reply.json(body)


@pytest.fixture
def tenant(server: LoopbackServer) -> Tenant:
    """A tenant with 250 contacts and 25 interactions."""
    return Tenant(server, contacts=250, interactions=25)


def client(config: CXoneConfig, **options: object) -> CXoneClient:
    """A client on a FakeClock (waits are instant), with quick constant retries."""
    clock = options.pop("clock", None) or FakeClock()
    options.setdefault("retry", attrs.evolve(DEFAULT_RETRY, backoff=ConstantBackoff(0.5)))
    return CXoneClient(config, clock=clock, **options)  # type: ignore[arg-type]


def ids(records: list[Contact]) -> list[int]:
    """The contact ids of *records*."""
    return [record.contact_id for record in records]


def everything_the_server_saw(server: LoopbackServer) -> str:
    """Every request's path and query, as text."""
    with server.lock:
        return "\n".join(f"{r.path}?{json.dumps(r.query)}" for r in server.requests)


# The platform


def test_platform_flow_discovers_authenticates_and_walks_every_contact(server, tenant):
    """Discovery, password grant by Basic auth, tenantId claim, API discovery, contacts."""
    with client(tenant.config()) as cxone:
        contacts = list(cxone.completed_contacts(START, END, page_size=100))
        assert cxone.total == 250
    assert [c.raw for c in contacts] == tenant.contacts
    assert all(isinstance(c, Contact) for c in contacts)
    assert [request.path for request in server.requests[:3]] == [
        "/.well-known/openid-configuration",
        "/auth/token",
        "/.well-known/cxone-configuration",
    ]
    (token,) = server.hits("/auth/token")
    assert token.headers["authorization"].startswith("Basic ")
    assert token.form() == {"grant_type": "password", "username": "the-key", "password": KEY_SECRET}
    (configuration,) = server.hits("/.well-known/cxone-configuration")
    assert configuration.query == {"tenantId": [TENANT]}
    pages = server.hits(COMPLETED)
    # Pages after the first are fetched concurrently: they may arrive in any order.
    assert sorted((int(p.query["skip"][0]), p.query["top"]) for p in pages) == [
        (s, ["100"]) for s in (0, 100, 200)
    ]
    for page in pages:
        assert page.query["startDate"] == ["2024-01-01T00:00:00Z"]
        assert page.query["endDate"] == ["2024-02-01T00:00:00Z"]
        assert page.headers["authorization"] == f"Bearer {next(iter(tenant.valid))}"
        assert page.headers["accept"] == "application/json"


def test_discovery_happens_once_for_many_walks(server, tenant):
    """The token endpoint and the API base are found once, the token fetched once."""
    with client(tenant.config()) as cxone:
        for _ in range(3):
            assert len(list(cxone.completed_contacts(START, END, page_size=250))) == 250
    assert len(server.hits("/.well-known/openid-configuration")) == 1
    assert len(server.hits("/.well-known/cxone-configuration")) == 1
    assert len(server.hits("/auth/token")) == 1


def test_a_configured_tenant_or_api_base_skips_what_it_replaces(server, tenant):
    """A tenant_id skips the token's claim; an api_base skips the API's discovery."""
    tenant.claims = {}  # a token without a tenantId claim
    with client(tenant.config(tenant_id=TENANT)) as cxone:
        assert len(list(cxone.completed_contacts(START, END))) == 250
    with client(tenant.config(api_base=f"{server.url}/api/")) as cxone:
        assert len(list(cxone.completed_contacts(START, END))) == 250
    assert len(server.hits("/.well-known/cxone-configuration")) == 1
    with (
        client(tenant.config()) as cxone,
        pytest.raises(ConfigError, match="no tenantId claim") as caught,
    ):
        list(cxone.completed_contacts(START, END))
    assert "CXONE_TENANT_ID" in str(caught.value)


def test_an_unknown_tenant_is_a_config_error_naming_it(server, tenant):
    """cxone-configuration's 404 becomes a ConfigError naming the tenant id."""
    with (
        client(tenant.config(tenant_id="nobody")) as cxone,
        pytest.raises(ConfigError, match="unknown tenant 'nobody'") as caught,
    ):
        next(iter(cxone.completed_contact_pages(START, END)))
    assert "CXONE_TENANT_ID" in str(caught.value)


def test_an_issuer_without_discovery_is_a_config_error(server):
    """An issuer without an OpenID configuration (404) is named in a ConfigError."""
    config = Tenant(server).config(issuer=f"{server.url}/elsewhere")
    with client(config) as cxone, pytest.raises(ConfigError, match="has no OpenID configuration"):
        list(cxone.completed_contacts(START, END))


def test_a_discovery_document_without_its_url_is_a_response_error(server):
    """A discovery answer without token_endpoint is the server's fault: ResponseError."""
    tenant = Tenant(server)
    server.route("GET", "/.well-known/openid-configuration")(lambda _: Reply.json({"issuer": "x"}))
    with (
        client(tenant.config()) as cxone,
        pytest.raises(ResponseError, match="no URL at 'token_endpoint'"),
    ):
        list(cxone.completed_contacts(START, END))


def test_every_record_once_in_order_with_concurrent_pages(server, caplog):
    """Four workers fetch pages at once; every record comes out once, in order."""
    caplog.set_level(logging.WARNING, logger="urllib3")
    tenant = Tenant(server, contacts=2345)
    tenant.barrier = threading.Barrier(2, timeout=10)  # pages 1 and 2 must be in flight together
    seen: list[RecordPage] = []
    with client(tenant.config(), concurrency=4, on_page=seen.append) as cxone:
        contacts = list(cxone.completed_contacts(START, END, page_size=100))
        statistics = cxone.statistics()
    assert ids(contacts) == [record["contactId"] for record in tenant.contacts]
    assert [page.position for page in seen] == list(range(0, 2345, 100))
    assert {page.total for page in seen} == {2345}
    assert sum(len(page.records) for page in seen) == 2345
    assert statistics.pages == 24
    assert statistics.records == 2345
    skips = sorted(int(r.query["skip"][0]) for r in server.hits(COMPLETED))
    assert skips == list(range(0, 2345, 100))
    assert "pool is full" not in caplog.text  # a kept-alive connection per worker


def test_nothing_matching_204_gives_nothing(server):
    """A 204 is an empty listing: no pages, no records."""
    tenant = Tenant(server, contacts=0)
    with client(tenant.config()) as cxone:
        assert list(cxone.completed_contact_pages(START, END)) == []
        assert list(cxone.completed_contacts(START, END)) == []
        assert cxone.statistics().pages == 0
    assert len(server.hits(COMPLETED)) == 2


def test_dates_go_out_in_utc_with_a_literal_z(server, tenant):
    """Aware datetimes in any zone go out as UTC with Z; fields join with commas."""
    paris = timezone(timedelta(hours=1))
    with client(tenant.config()) as cxone:
        start = datetime(2024, 1, 1, 1, 0, 0, 250000, tzinfo=paris)
        list(cxone.completed_contacts(start, END, fields=["agentId", "skillId"]))
        list(cxone.completed_contacts(datetime(2024, 1, 1, 0, 0, 0, 1, tzinfo=paris), END))
    first, second = server.hits(COMPLETED)[0], server.hits(COMPLETED)[-1]
    assert first.query["startDate"] == ["2024-01-01T00:00:00.250Z"]
    assert first.query["fields"] == ["contactId,agentId,skillId"]  # the key always comes
    assert second.query["startDate"] == ["2023-12-31T23:00:00.000001Z"]


@pytest.mark.parametrize(
    ("window", "options", "error", "match"),
    [
        ((datetime(2024, 1, 1), END), {}, ValueError, "start must be an aware datetime"),  # noqa: DTZ001
        ((START, datetime(2024, 2, 1)), {}, ValueError, "end must be an aware datetime"),  # noqa: DTZ001
        ((END, START), {}, ValueError, "start must be before end"),
        ((START, START), {}, ValueError, "start must be before end"),
        (("2024-01-01", END), {}, TypeError, "start must be a datetime"),
        ((START, END), {"page_size": 0}, ValueError, "page_size must be between 1 and 10000"),
        ((START, END), {"page_size": 10_001}, ValueError, "page_size must be between 1 and 10000"),
        ((START, END), {"page_size": 10.0}, TypeError, "page_size must be an integer"),
        ((START, END), {"skip": -1}, ValueError, "skip must be at least 0"),
        ((START, END), {"fields": []}, ValueError, "fields must name at least one field"),
        ((START, END), {"fields": ["a,b"]}, ValueError, "fields must be field names"),
    ],
)
def test_bad_arguments_are_refused_at_once_by_name(tenant, window, options, error, match):
    """Naive datetimes, reversed windows, out-of-range sizes: raised at the call, nothing sent."""
    start, end = window
    with client(tenant.config()) as cxone:
        with pytest.raises(error, match=match):
            cxone.completed_contact_pages(start, end, **options)
        with pytest.raises(error, match=match):
            cxone.completed_contacts(start, end, **options)
        assert len(list(cxone.completed_contact_pages(START, END, page_size=10_000))) == 1
    assert len(tenant.server.hits(COMPLETED)) == 1


@pytest.mark.parametrize("concurrency", [1, 4])
def test_resuming_from_skip_yields_exactly_the_rest(server, concurrency):
    """skip=position+len(records) of a page resumes with exactly the records after it."""
    tenant = Tenant(server, contacts=1234)
    with client(tenant.config(), concurrency=concurrency) as cxone:
        pages = cxone.completed_contact_pages(START, END, page_size=100)
        first, second = next(pages), next(pages)
        pages.close()  # type: ignore[attr-defined]
        assert (first.position, second.position) == (0, 100)
        rest = list(
            cxone.completed_contacts(
                START, END, page_size=100, skip=second.position + len(second.records)
            )
        )
        assert cxone.total == 1234
        odd = list(cxone.completed_contact_pages(START, END, page_size=100, skip=1150))
    expected = [record["contactId"] for record in tenant.contacts]
    assert ids(first.records + second.records + rest) == expected  # type: ignore[arg-type]
    assert [page.position for page in odd] == [1150]
    assert ids(odd[0].records) == expected[1150:]  # type: ignore[arg-type]
    with client(tenant.config(), concurrency=concurrency) as cxone:
        assert list(cxone.completed_contacts(START, END, page_size=100, skip=5000)) == []


def test_an_expired_token_is_replaced_mid_walk(server):
    """A 401 in the middle of a walk fetches a new token; no record lost or repeated."""
    tenant = Tenant(server, contacts=500)
    with client(tenant.config(), concurrency=1) as cxone:
        pages = cxone.completed_contact_pages(START, END, page_size=100)
        records = list(next(pages).records)
        tenant.expire()
        for page in pages:
            records += page.records
    assert ids(records) == [record["contactId"] for record in tenant.contacts]  # type: ignore[arg-type]
    assert tenant.issued == 2
    statuses = [r.headers["authorization"] for r in server.hits(COMPLETED)]
    assert len(statuses) == 6  # five pages and the one 401
    assert len(server.hits("/.well-known/openid-configuration")) == 1


def test_rejected_credentials_name_what_to_check_and_hide_secrets(server, tenant, caplog):
    """A wrong access key or client: TokenError naming the fields, never a secret."""
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-" + KEY_SECRET
    with (
        client(tenant.config(access_key_secret=wrong)) as cxone,
        pytest.raises(TokenError) as caught,
    ):
        list(cxone.completed_contacts(START, END))
    message = str(caught.value)
    assert caught.value.error == "invalid_grant"
    assert (
        "access_key_id (CXONE_ACCESS_KEY_ID) and access_key_secret (CXONE_ACCESS_KEY_SECRET)"
        in message
    )
    assert wrong not in message  # the server echoed it: masked
    with (
        client(tenant.config(client_secret="nope-" + CLIENT_SECRET)) as cxone,
        pytest.raises(TokenError) as caught,
    ):
        list(cxone.completed_contacts(START, END))
    assert caught.value.status == 401
    assert "client_id (CXONE_CLIENT_ID) and client_secret (CXONE_CLIENT_SECRET)" in str(
        caught.value
    )
    for secret in (KEY_SECRET, CLIENT_SECRET):
        assert secret not in str(caught.value)
        assert secret not in caplog.text
    assert len(server.hits(COMPLETED)) == 0


def test_a_token_the_api_keeps_refusing_is_an_auth_error(server, tenant):
    """401 even with a fresh token: AuthError, after exactly one refresh."""
    server.route("GET", COMPLETED)(lambda _: Reply(401))
    with (
        client(tenant.config()) as cxone,
        pytest.raises(AuthError, match="access token was rejected"),
    ):
        list(cxone.completed_contacts(START, END))
    assert tenant.issued == 2


def test_no_secret_in_any_url_repr_or_error(server, tenant):
    """Secrets travel only in headers and bodies: not in URLs, reprs or errors."""
    with client(tenant.config()) as cxone:
        list(cxone.completed_contacts(START, END, page_size=50))
        shown = repr(cxone)
    with client(tenant.tutorial()) as cxone:
        list(cxone.interactions(page_size=10))
    seen = everything_the_server_saw(server)
    for secret in (CLIENT_SECRET, KEY_SECRET):
        assert secret not in seen
        assert secret not in shown
    assert "the-key" not in seen  # the access key id goes in the form body too


def test_statistics_count_requests_429s_retries_and_failures(server, tenant):
    """A 429, a 503 and a dropped connection are counted and retried; pages and records too."""
    tenant.faults[100] = [Reply(429, {"Retry-After": "2"}), Reply(503), Reply(drop=True)]
    clock = FakeClock()
    with client(tenant.config(), clock=clock, concurrency=1) as cxone:
        assert cxone.statistics() == CXoneStatistics()
        assert len(list(cxone.completed_contacts(START, END, page_size=100))) == 250
        statistics = cxone.statistics()
    # 3 pages, 3 retries, 2 discovery requests (token requests are not counted); the
    # 429's Retry-After held every request for 2 s
    assert statistics == CXoneStatistics(
        requests=8,
        throttled=1,
        retries=3,
        failures=1,
        pages=3,
        records=250,
        cooled=pytest.approx(2.0),
    )
    assert 2.0 in clock.sleeps  # the Retry-After was obeyed


def test_retries_give_up_with_a_retry_error(server, tenant):
    """A page that keeps failing ends the walk with RetryError after the policy's attempts."""
    tenant.faults[0] = [Reply(503)] * 10
    with (
        client(tenant.config()) as cxone,
        pytest.raises(RetryError, match="gave up after 5 attempts"),
    ):
        list(cxone.completed_contacts(START, END))


def test_an_api_error_is_an_http_status_error(server, tenant):
    """A 400 from the listing (bad dates, say) is raised with its excerpt."""
    tenant.faults[0] = [
        Reply.json({"error": "invalid_request", "error_description": "bad date"}, 400)
    ]
    with client(tenant.config()) as cxone, pytest.raises(HTTPStatusError, match="bad date"):
        list(cxone.completed_contacts(START, END))


def test_a_record_without_contact_id_is_a_response_error(server, tenant):
    """A record the model cannot read is the API's fault: ResponseError naming the field."""
    tenant.contacts[5] = {"agentId": 1}
    with client(tenant.config()) as cxone, pytest.raises(ResponseError, match="contactId"):
        list(cxone.completed_contacts(START, END))


def test_the_wrong_listing_for_the_contract_is_a_config_error(tenant):
    """Contacts need the platform config, interactions the tutorial's."""
    with client(tenant.config()) as cxone, pytest.raises(ConfigError, match="api='interactions'"):
        cxone.interactions()
    with client(tenant.tutorial()) as cxone, pytest.raises(ConfigError, match="api='contacts'"):
        cxone.completed_contacts(START, END)


def test_a_bad_config_or_setting_is_refused_at_construction():
    """The client checks its config and its own settings by name."""
    with pytest.raises(ConfigError, match="missing client_id, client_secret"):
        CXoneClient(CXoneConfig())
    config = CXoneConfig(client_id="a", client_secret="b", access_key_id="c", access_key_secret="d")  # noqa: S106
    with pytest.raises(ValueError, match="concurrency must be at least 1"):
        CXoneClient(config, concurrency=0)
    with pytest.raises(ValueError, match="timeout"):
        CXoneClient(config, timeout=0)


# The tutorial's contract


def test_tutorial_flow_uses_client_credentials_and_walks_every_interaction(server, tenant):
    """client_credentials in the form body with space-joined scopes, then pages by number."""
    seen: list[RecordPage] = []
    with client(tenant.tutorial(), on_page=seen.append) as cxone:
        interactions = list(cxone.interactions(page_size=10))
        assert cxone.total is None
    assert [i.raw for i in interactions] == tenant.interactions
    assert all(isinstance(i, Interaction) for i in interactions)
    assert [page.position for page in seen] == [1, 2, 3]
    (token,) = server.hits("/oauth/token")
    assert "authorization" not in token.headers
    assert token.form() == {
        "grant_type": "client_credentials",
        "client_id": "the-client",
        "client_secret": CLIENT_SECRET,
        "scope": "ic:read analytics:read",
    }
    assert b"scope=ic%3Aread+analytics%3Aread" in token.body  # plus-separated on the wire
    pages = server.hits("/api/v2/ic/interactions")
    assert [(p.query["pageNumber"], p.query["pageSize"]) for p in pages] == [
        (["1"], ["10"]),
        (["2"], ["10"]),
        (["3"], ["10"]),
    ]


def test_resuming_from_a_page_number_yields_exactly_the_rest(server, tenant):
    """first_page=position+1 of a page resumes after it; page_size is bounded."""
    with client(tenant.tutorial()) as cxone:
        pages = cxone.interaction_pages(page_size=10)
        first = next(pages)
        pages.close()  # type: ignore[attr-defined]
        rest = list(cxone.interactions(page_size=10, first_page=first.position + 1))
        with pytest.raises(ValueError, match="page_size must be between 1 and 1000"):
            cxone.interactions(page_size=1001)
        with pytest.raises(ValueError, match="first_page must be at least 1"):
            cxone.interaction_pages(first_page=0)
    assert [i.id for i in first.records + rest] == [i["id"] for i in tenant.interactions]  # type: ignore[operator]


def test_tutorial_wrong_client_or_scope_names_what_to_check(server, tenant):
    """invalid_client names the client id and secret; invalid_scope names the scopes."""
    with client(tenant.tutorial(client_secret="x")) as cxone, pytest.raises(TokenError) as caught:  # noqa: S106
        list(cxone.interactions())
    assert "client_id (CXONE_CLIENT_ID) and client_secret (CXONE_CLIENT_SECRET)" in str(
        caught.value
    )
    with client(tenant.tutorial(scopes=["ic:write"])) as cxone, pytest.raises(TokenError) as caught:
        list(cxone.interactions())
    assert "scopes (CXONE_SCOPES)" in str(caught.value)


def test_an_unreachable_token_endpoint_is_retried_then_given_up(server, tenant):
    """Token requests that fail to connect or get 503 are retried, then RetryError."""
    answers = [Reply(503), Reply(drop=True)]
    token = server.routes[("POST", "/oauth/token")]
    server.route("POST", "/oauth/token")(lambda r: answers.pop(0) if answers else token(r))
    with client(tenant.tutorial()) as cxone:
        assert len(list(cxone.interactions())) == 25
    assert len(server.hits("/oauth/token")) == 3
    server.route("POST", "/oauth/token")(lambda _: Reply(503))
    with client(tenant.tutorial()) as cxone, pytest.raises(RetryError, match="TokenError"):
        list(cxone.interactions())


# Against the simulator


@pytest.fixture
def simulator() -> Iterator[Simulator]:
    """A simulator of 3000 contacts and 700 interactions, without limit or faults."""
    with Simulator(records=3000, interactions=700, seed=7) as simulator:
        yield simulator


def from_env(simulator: Simulator, api: str = "contacts") -> CXoneConfig:
    """The configuration the simulator's environment variables give."""
    return CXoneConfig.from_env(api, simulator.env(api))  # type: ignore[arg-type]


def test_simulator_contacts_are_exported_whole_in_order(simulator):
    """Every completed contact of a window, once, in order, as the simulator serves them."""
    start = datetime(2026, 1, 3, tzinfo=timezone.utc)
    end = datetime(2026, 1, 20, 12, tzinfo=timezone.utc)
    with CXoneClient(
        from_env(simulator), limiter=make_limiter("500/s", 50), concurrency=4
    ) as cxone:
        contacts = list(cxone.completed_contacts(start, end, page_size=250))
    expected = simulator.contacts(start, end)
    assert len(expected) > 1000
    assert [c.raw for c in contacts] == expected
    assert contacts == [
        Contact.from_raw(record) for record in simulator.contacts(start, end, version="26.0")
    ]
    for _method, target in simulator.seen:
        for secret in from_env(simulator).client_secret, from_env(simulator).access_key_secret:
            assert secret is not None
            assert secret not in target


def test_simulator_older_api_versions_normalise_the_same(simulator):
    """A v26 export gives the same Contacts as a v34 one."""
    limiter = make_limiter("500/s", 50)
    with CXoneClient(attrs.evolve(from_env(simulator), api_version="26"), limiter=limiter) as cxone:
        old = list(cxone.completed_contacts(START, END + timedelta(days=3650), page_size=1000))
    with CXoneClient(from_env(simulator), limiter=limiter) as cxone:
        new = list(cxone.completed_contacts(START, END + timedelta(days=3650), page_size=1000))
    assert len(new) == 3000
    assert old == new
    assert "contactStart" in old[0].raw
    assert "contactStartDate" in new[0].raw


def test_simulator_token_expiry_and_faults_lose_nothing():
    """Expired tokens and retried faults mid-run: every record still once, in order."""
    # With this seed the simulator's fault draws give one 503 and two dropped
    # connections, whatever the order of the requests: no page runs out of attempts.
    with Simulator(
        records=2000, seed=1, fault_rate=0.1, drop_rate=0.1, fault_retry_after=0.0
    ) as faulty:
        clock = FakeClock()
        with client(from_env(faulty), clock=clock, concurrency=4) as cxone:
            pages = cxone.completed_contact_pages(START, END + timedelta(days=3650), page_size=100)
            records = list(next(pages).records)
            faulty.expire_tokens()
            for page in pages:
                records += page.records
            statistics = cxone.statistics()
        assert [c.raw for c in records] == faulty.contacts()
        served = faulty.statistics()
        assert served.tokens_issued == 2
        assert (served.faults, served.drops) == (1, 2)
        assert statistics.retries == served.faults + served.drops
        assert statistics.failures == served.drops
        assert statistics.records == 2000


def test_simulator_interactions_resume_and_stop_early(simulator):
    """The tutorial's contract: a whole walk, then a resumed one, then an early stop."""
    config = from_env(simulator, "interactions")
    limiter = make_limiter("500/s", 50)
    with CXoneClient(config, limiter=limiter) as cxone:
        whole = [i.raw for i in cxone.interactions(page_size=100)]
        rest = [i.raw for i in cxone.interactions(page_size=100, first_page=5)]
        pages = cxone.interaction_pages(page_size=100)
        next(pages)
        pages.close()  # type: ignore[attr-defined]
    assert whole == simulator.interactions()
    assert rest == whole[400:]


def test_simulator_server_limit_is_obeyed_through_retry_after():
    """Against a server-side limit, 429s are retried after Retry-After and nothing is lost.

    The client's limit is ten times the server's and four pages are in flight, so after
    each shared cooldown they race for the server's next slot: how many times one page
    loses is chance, and a fixed number of attempts would make this test a lottery.
    The attempts here are bounded by a deadline instead (each race has a winner).
    """
    retry = attrs.evolve(DEFAULT_RETRY, attempts=10_000, deadline=60.0)
    with Simulator(records=400, rate="20/second", retry_after="fraction") as limited:
        with CXoneClient(
            from_env(limited), limiter=make_limiter("200/s", 20), concurrency=4, retry=retry
        ) as cxone:
            contacts = list(
                cxone.completed_contacts(START, END + timedelta(days=3650), page_size=10)
            )
            statistics = cxone.statistics()
        assert [c.raw for c in contacts] == limited.contacts()
        assert statistics.throttled == limited.statistics().throttled > 0
        assert statistics.retries >= statistics.throttled


@pytest.mark.parametrize("concurrency", [1, 4])
def test_a_walk_stops_at_once_when_its_event_is_set(concurrency):
    """Pages waiting on a slow tenant stop within a second of the event: Cancelled."""
    with Simulator(records=400, slow_rate=1.0, slow_seconds=30.0) as slow:
        stop = threading.Event()
        got: list[Contact] = []

        def walk(cxone: CXoneClient) -> None:
            got.extend(cxone.completed_contacts(START, FAR, page_size=10, cancel=stop))

        with CXoneClient(
            from_env(slow), limiter=make_limiter("500/s", 50), concurrency=concurrency
        ) as cxone:
            threading.Timer(0.3, stop.set).start()
            started = time.monotonic()
            with pytest.raises(Cancelled):
                walk(cxone)
            assert time.monotonic() - started < 0.3 + 1.0
        assert got == []


def test_a_windows_total_and_the_tenant_are_told(simulator):
    """completed_contacts_total counts a window (0 when empty); tenant_id reads the token."""
    start = datetime(2026, 1, 3, tzinfo=timezone.utc)
    end = datetime(2026, 1, 9, tzinfo=timezone.utc)
    with CXoneClient(from_env(simulator), limiter=make_limiter("500/s", 50)) as cxone:
        assert cxone.completed_contacts_total(start, end) == len(simulator.contacts(start, end))
        assert cxone.completed_contacts_total(FAR, FAR + timedelta(days=1)) == 0
        assert cxone.tenant_id() == simulator.tenant_id
        with pytest.raises(ValueError, match="start must be before end"):
            cxone.completed_contacts_total(end, start)
    with CXoneClient(from_env(simulator, "interactions")) as tutorial:
        assert tutorial.tenant_id() is None
        with pytest.raises(ConfigError, match="api='contacts'"):
            tutorial.completed_contacts_total(start, end)
