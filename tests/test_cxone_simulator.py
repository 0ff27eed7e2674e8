"""The CXone simulator: both contracts, their errors, limits and faults, over real HTTP."""

from __future__ import annotations

import base64
import json
import math
import socket
import threading
import time
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import urllib3

from ratekit.http import OAuth2Token
from ratekit.testing import FakeClock
from ratekit_cxone import simulator as simulator_module
from ratekit_cxone.simulator import SeenRequest, Simulator, SimulatorStatistics

UTC = timezone.utc
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
CLIENT = ("sim-client-id", "sim-client-secret")
KEY = ("sim-access-key", "sim-access-secret")
AWKWARD_SECRET = "s3:cr+t/=&"  # noqa: S105 - made up, with characters that need encoding
AWKWARD_KEY = "k:y+ & z"
WRONG = "wrong"
WINDOW = {"startDate": "2026-01-01T00:00:00Z", "endDate": "2026-02-01T00:00:00Z"}


# --- helpers ------------------------------------------------------------------------------


@pytest.fixture
def pool():
    """A urllib3 pool that never retries, so every answer is seen as sent."""
    manager = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(total=20.0))
    yield manager
    manager.clear()


@pytest.fixture
def make():
    """Start simulators with the given settings; all are closed after the test."""
    started: list[Simulator] = []

    def start(**settings):
        simulator = Simulator(**settings).start()
        started.append(simulator)
        return simulator

    yield start
    for simulator in started:
        simulator.close()


def basic(client_id: str = CLIENT[0], secret: str = CLIENT[1]) -> dict[str, str]:
    """An HTTP Basic Authorization header (the parts joined as they are, not encoded)."""
    pair = f"{client_id}:{secret}".encode()
    return {"Authorization": "Basic " + base64.b64encode(pair).decode()}


def post(pool, url, fields=None, *, body=None, headers=None):
    """POST a form: *fields* encoded, or the raw *body*."""
    data = body if body is not None else urlencode(fields or {})
    return pool.request("POST", url, body=data, headers={**FORM, **(headers or {})})


def platform_token(pool, simulator) -> str:
    """A token from the platform's password grant."""
    fields = {"grant_type": "password", "username": KEY[0], "password": KEY[1]}
    response = post(pool, simulator.url + "/auth/token", fields, headers=basic())
    assert response.status == 200, response.data
    return response.json()["access_token"]


def tutorial_token(pool, simulator, scope: str = "ic:read") -> str:
    """A token from the tutorial's client credentials grant."""
    fields = {
        "grant_type": "client_credentials",
        "client_id": CLIENT[0],
        "client_secret": CLIENT[1],
        "scope": scope,
    }
    response = post(pool, simulator.url + "/oauth/token", fields)
    assert response.status == 200, response.data
    return response.json()["access_token"]


def completed_url(simulator, version: str = "34.0", **params) -> str:
    """The contacts/completed URL for January 2026, with *params* added or replaced."""
    query = urlencode({**WINDOW, **params})
    return f"{simulator.url}/inContactAPI/services/v{version}/contacts/completed?{query}"


def interactions_url(simulator, **params) -> str:
    """The interactions URL with *params*."""
    return f"{simulator.url}/api/v2/ic/interactions?{urlencode(params)}"


def get(pool, url, token=None, **headers):
    """GET *url*, with *token* as a bearer token if given."""
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return pool.request("GET", url, headers=headers)


def claims(jwt: str) -> dict:
    """The claims of a JWT, after checking its shape: three base64url parts, no padding."""
    parts = jwt.split(".")
    assert len(parts) == 3
    assert all(parts)
    assert not any("=" in part for part in parts)
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    return json.loads(base64.urlsafe_b64decode(payload))


def z(moment: datetime) -> str:
    """A UTC date as the API wants it, with a literal Z."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


# --- discovery ----------------------------------------------------------------------------


def test_openid_configuration_points_at_the_token_endpoint(pool, make):
    """The issuer document names the issuer, the token endpoint and both client auth methods."""
    simulator = make(records=1)
    response = get(pool, simulator.url + "/.well-known/openid-configuration")
    assert response.status == 200
    document = response.json()
    assert document["issuer"] == simulator.url
    assert document["token_endpoint"] == simulator.url + "/auth/token"
    assert document["scopes_supported"] == ["openid"]
    assert set(document["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic",
        "client_secret_post",
    }


def test_cxone_configuration_gives_the_api_endpoint_for_the_tenant(pool, make):
    """API base discovery answers the tenant's endpoints, and 404 for any other tenant."""
    simulator = make(records=1, tenant_id="aaaaaaaa-0000-0000-0000-000000000001")
    base = simulator.url + "/.well-known/cxone-configuration"
    response = get(pool, f"{base}?tenantId=aaaaaaaa-0000-0000-0000-000000000001")
    assert response.status == 200
    assert response.json() == {
        "private": False,
        "area": "na1",
        "cluster": "C1",
        "domain": "niceincontact.com",
        "api_endpoint": simulator.url,
        "auth_endpoint": simulator.url,
        "ui_endpoint": simulator.url,
        "tenantId": "aaaaaaaa-0000-0000-0000-000000000001",
    }
    assert get(pool, f"{base}?tenantId=11111111-2222-3333-4444-555555555555").status == 404
    missing = get(pool, base)
    assert missing.status == 404
    assert missing.json()["error"] == "not_found"


def test_the_whole_platform_discovery_chain_leads_to_the_api(pool, make):
    """Issuer document -> token -> tenantId claim -> cxone-configuration -> a page of contacts."""
    simulator = make(records=3)
    issuer = simulator.env("contacts")["CXONE_ISSUER"]
    token_url = get(pool, issuer + "/.well-known/openid-configuration").json()["token_endpoint"]
    fields = {"grant_type": "password", "username": KEY[0], "password": KEY[1]}
    token = post(pool, token_url, fields, headers=basic()).json()["access_token"]
    tenant = claims(token)["tenantId"]
    configuration = get(pool, f"{issuer}/.well-known/cxone-configuration?tenantId={tenant}")
    api = configuration.json()["api_endpoint"]
    response = get(
        pool, f"{api}/inContactAPI/services/v34.0/contacts/completed?{urlencode(WINDOW)}", token
    )
    assert response.status == 200
    assert response.json()["totalRecords"] == 3


# --- the platform's token endpoint --------------------------------------------------------


def test_password_grant_with_basic_client_auth(pool, make):
    """The password grant with the client in HTTP Basic answers a JWT and the CXone fields."""
    simulator = make(records=1, tenant_id="bbbbbbbb-0000-0000-0000-000000000002")
    fields = {"grant_type": "password", "username": KEY[0], "password": KEY[1]}
    before = math.floor(time.time())
    response = post(pool, simulator.url + "/auth/token", fields, headers=basic())
    after = math.ceil(time.time())
    assert response.status == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"  # noqa: S105 - a token type, not a secret
    assert body["expires_in"] == 3600
    issued = "urn:ietf:params:oauth:token-type:access_token"
    assert body["issued_token_type"] == issued
    assert body["refresh_token"]
    assert claims(body["id_token"])["iss"] == simulator.url
    payload = claims(body["access_token"])
    assert payload["tenantId"] == "bbbbbbbb-0000-0000-0000-000000000002"
    assert payload["iss"] == simulator.url
    assert before <= payload["iat"] <= after
    assert payload["exp"] == payload["iat"] + 3600
    assert simulator.statistics().tokens_issued == 1


def test_password_grant_with_client_auth_in_the_body(pool, make):
    """Some registrations send client_id and client_secret as form fields instead."""
    simulator = make(records=1)
    fields = {
        "grant_type": "password",
        "username": KEY[0],
        "password": KEY[1],
        "client_id": CLIENT[0],
        "client_secret": CLIENT[1],
    }
    response = post(pool, simulator.url + "/auth/token", fields)
    assert response.status == 200
    assert claims(response.json()["access_token"])["tenantId"] == simulator.tenant_id


def test_ratekit_oauth2_token_gets_tokens_with_awkward_secrets(make):
    """OAuth2Token (Basic with form-encoded parts) gets tokens, also for secrets with ':'."""
    simulator = make(records=1, client_secret=AWKWARD_SECRET, access_key_secret=AWKWARD_KEY)
    password = OAuth2Token(
        simulator.url + "/auth/token",
        client_id=CLIENT[0],
        client_secret=AWKWARD_SECRET,
        grant="password",
        username=KEY[0],
        password=AWKWARD_KEY,
    )
    assert claims(password.token())["tenantId"] == simulator.tenant_id
    tutorial = OAuth2Token(
        simulator.url + "/oauth/token",
        client_id=CLIENT[0],
        client_secret=AWKWARD_SECRET,
        scopes=["ic:read", "analytics:read"],
        client_auth="body",
    )
    assert tutorial.token()
    assert simulator.statistics().tokens_issued == 2


GOOD_PASSWORD = {"grant_type": "password", "username": KEY[0], "password": KEY[1]}


@pytest.mark.parametrize(
    ("fields", "headers", "status", "error"),
    [
        pytest.param(GOOD_PASSWORD, basic(secret=WRONG), 401, "invalid_client", id="bad-secret"),
        pytest.param(GOOD_PASSWORD, basic(client_id="who"), 401, "invalid_client", id="bad-id"),
        pytest.param(
            {**GOOD_PASSWORD, "client_id": CLIENT[0], "client_secret": "wrong"},
            {},
            401,
            "invalid_client",
            id="bad-secret-in-body",
        ),
        pytest.param(GOOD_PASSWORD, {}, 401, "invalid_client", id="no-client-auth"),
        pytest.param(
            GOOD_PASSWORD,
            {"Authorization": "Basic !!notbase64"},
            401,
            "invalid_client",
            id="malformed-basic",
        ),
        pytest.param(
            {**GOOD_PASSWORD, "username": "nobody"}, basic(), 400, "invalid_grant", id="bad-key"
        ),
        pytest.param(
            {**GOOD_PASSWORD, "password": "wrong"}, basic(), 400, "invalid_grant", id="bad-pass"
        ),
        pytest.param(
            {"grant_type": "client_credentials"},
            basic(),
            400,
            "unsupported_grant_type",
            id="client-credentials-grant",
        ),
        pytest.param(
            {"username": KEY[0], "password": KEY[1]},
            basic(),
            400,
            "invalid_request",
            id="no-grant-type",
        ),
        pytest.param(
            {"grant_type": "password", "username": KEY[0]},
            basic(),
            400,
            "invalid_request",
            id="no-password",
        ),
        pytest.param(
            {"grant_type": "password", "password": KEY[1]},
            basic(),
            400,
            "invalid_request",
            id="no-username",
        ),
        pytest.param(
            {**GOOD_PASSWORD, "client_secret": CLIENT[1]},
            basic(),
            400,
            "invalid_request",
            id="two-client-auth-methods",
        ),
    ],
)
def test_password_grant_errors(pool, make, fields, headers, status, error):  # noqa: PLR0913, PLR0917
    """Each wrong token request gets its OAuth error, no token, and counts as a token error."""
    simulator = make(records=1)
    response = post(pool, simulator.url + "/auth/token", fields, headers=headers)
    assert response.status == status
    body = response.json()
    assert body["error"] == error
    assert body["error_description"]
    assert "access_token" not in body
    assert response.headers["Cache-Control"] == "no-store"
    assert simulator.statistics().token_errors == 1
    assert simulator.statistics().tokens_issued == 0


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        pytest.param(
            "grant_type=password&grant_type=password&username=a&password=b",
            "application/x-www-form-urlencoded",
            id="repeated-field",
        ),
        pytest.param(json.dumps(GOOD_PASSWORD), "application/json", id="json-body"),
    ],
)
def test_malformed_token_bodies_are_invalid_requests(pool, make, body, content_type):
    """A repeated form field or a body that is not a form is an invalid_request."""
    simulator = make(records=1)
    response = pool.request(
        "POST",
        simulator.url + "/auth/token",
        body=body,
        headers={"Content-Type": content_type, **basic()},
    )
    assert response.status == 400
    assert response.json()["error"] == "invalid_request"


@pytest.mark.parametrize("path", ["/auth/token", "/oauth/token"])
def test_credentials_in_the_url_query_are_refused_and_counted(pool, make, path):
    """A token request with its secrets in the query (as the tutorial did) is refused."""
    simulator = make(records=1)
    query = urlencode({"grant_type": "client_credentials", "client_secret": CLIENT[1]})
    response = post(pool, f"{simulator.url}{path}?{query}", {}, headers=basic())
    assert response.status == 400
    assert response.json()["error"] == "invalid_request"
    statistics = simulator.statistics()
    assert statistics.credentials_in_url == 1
    assert statistics.token_errors == 1
    assert statistics.tokens_issued == 0


# --- the tutorial's token endpoint --------------------------------------------------------


def test_tutorial_grant_with_plus_separated_scopes_in_the_raw_body(pool, make):
    """``scope=ic:read+analytics:read`` in the raw body is two scopes, as form encoding says."""
    simulator = make(records=1)
    body = (
        f"grant_type=client_credentials&client_id={CLIENT[0]}&client_secret={CLIENT[1]}"
        "&scope=ic:read+analytics:read"
    )
    response = post(pool, simulator.url + "/oauth/token", body=body)
    assert response.status == 200
    answer = response.json()
    assert answer["token_type"] == "Bearer"  # noqa: S105 - a token type, not a secret
    assert answer["expires_in"] == 3600
    assert answer["scope"] == "ic:read analytics:read"
    assert response.headers["Cache-Control"] == "no-store"
    # The token is opaque, not a JWT, and works on the tutorial's list call.
    assert answer["access_token"].count(".") != 2
    assert get(pool, interactions_url(simulator), answer["access_token"]).status == 200


def test_tutorial_grant_with_basic_client_auth_and_space_joined_scopes(pool, make):
    """HTTP Basic is accepted too; space-joined scopes are encoded as '+' by urlencode."""
    simulator = make(records=1)
    fields = {"grant_type": "client_credentials", "scope": "analytics:read ic:read"}
    response = post(pool, simulator.url + "/oauth/token", fields, headers=basic())
    assert response.status == 200
    assert response.json()["scope"] == "analytics:read ic:read"


@pytest.mark.parametrize(
    ("body", "error"),
    [
        pytest.param("scope=ic:write", "invalid_scope", id="unsupported-scope"),
        pytest.param("scope=ic:read+ic:write", "invalid_scope", id="one-bad-scope"),
        # A '+' encoded as %2B is part of the scope name, so the name is unknown.
        pytest.param("scope=ic%3Aread%2Banalytics%3Aread", "invalid_scope", id="encoded-plus"),
    ],
)
def test_tutorial_grant_refuses_scopes_it_does_not_support(pool, make, body, error):
    """Every requested scope must be supported, else 400 invalid_scope."""
    simulator = make(records=1)
    prefix = f"grant_type=client_credentials&client_id={CLIENT[0]}&client_secret={CLIENT[1]}&"
    response = post(pool, simulator.url + "/oauth/token", body=prefix + body)
    assert response.status == 400
    assert response.json()["error"] == error
    assert simulator.statistics().token_errors == 1


def test_tutorial_endpoint_errors(pool, make):
    """The tutorial's endpoint refuses other grants and wrong clients like the platform's."""
    simulator = make(records=1)
    url = simulator.url + "/oauth/token"
    password = post(pool, url, GOOD_PASSWORD, headers=basic())
    assert password.status == 400
    assert password.json()["error"] == "unsupported_grant_type"
    wrong = post(
        pool,
        url,
        {"grant_type": "client_credentials", "client_id": CLIENT[0], "client_secret": "no"},
    )
    assert wrong.status == 401
    assert wrong.json()["error"] == "invalid_client"
    assert simulator.statistics().token_errors == 2


def test_tokens_of_either_endpoint_work_on_both_list_calls(pool, make):
    """A platform token reads interactions and a tutorial token reads contacts."""
    simulator = make(records=5)
    assert get(pool, interactions_url(simulator), platform_token(pool, simulator)).status == 200
    assert get(pool, completed_url(simulator), tutorial_token(pool, simulator)).status == 200


# --- token lifetimes ----------------------------------------------------------------------


def test_tokens_expire_after_their_ttl_on_the_simulator_clock(pool, make):
    """A token works until token_ttl seconds after issue, on the injected clock, then 401."""
    clock = FakeClock()
    simulator = make(records=5, token_ttl=10.0, clock=clock)
    fields = {"grant_type": "password", "username": KEY[0], "password": KEY[1]}
    answer = post(pool, simulator.url + "/auth/token", fields, headers=basic()).json()
    assert answer["expires_in"] == 10
    token = answer["access_token"]
    clock.advance(9.999)
    assert get(pool, completed_url(simulator), token).status == 200
    clock.advance(0.001)
    response = get(pool, completed_url(simulator), token)
    assert response.status == 401
    assert response.json()["error"] == "invalid_token"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    # A new token works again.
    assert get(pool, completed_url(simulator), platform_token(pool, simulator)).status == 200
    assert simulator.statistics().unauthorized == 1


def test_fractional_token_ttl(pool, make):
    """A fractional ttl is announced as such and honoured to the fraction."""
    clock = FakeClock()
    simulator = make(records=5, token_ttl=0.3, clock=clock)
    fields = {
        "grant_type": "client_credentials",
        "client_id": CLIENT[0],
        "client_secret": CLIENT[1],
    }
    answer = post(pool, simulator.url + "/oauth/token", fields).json()
    assert answer["expires_in"] == pytest.approx(0.3)
    clock.advance(0.29)
    assert get(pool, interactions_url(simulator), answer["access_token"]).status == 200
    clock.advance(0.02)
    assert get(pool, interactions_url(simulator), answer["access_token"]).status == 401


def test_expire_tokens_invalidates_every_token_issued_so_far(pool, make):
    """After expire_tokens() old tokens get 401, and tokens issued later work."""
    simulator = make(records=5)
    old_platform, old_tutorial = platform_token(pool, simulator), tutorial_token(pool, simulator)
    assert get(pool, completed_url(simulator), old_platform).status == 200
    simulator.expire_tokens()
    assert get(pool, completed_url(simulator), old_platform).status == 401
    assert get(pool, interactions_url(simulator), old_tutorial).status == 401
    assert get(pool, completed_url(simulator), platform_token(pool, simulator)).status == 200
    assert simulator.statistics().unauthorized == 2


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer", "Bearer not-a-token-it-issued", "Basic c2ltOnNpbQ==", "bearer"],
)
def test_list_calls_need_a_valid_bearer_token(pool, make, authorization):
    """Without a token it issued, both list calls answer 401 invalid_token."""
    simulator = make(records=5)
    headers = {} if authorization is None else {"Authorization": authorization}
    for url in (completed_url(simulator), interactions_url(simulator)):
        response = pool.request("GET", url, headers=headers)
        assert response.status == 401
        assert response.json()["error"] == "invalid_token"
    assert simulator.statistics().unauthorized == 2


# --- contacts/completed -------------------------------------------------------------------


def test_contacts_paging_walks_every_record_once_by_next_links(pool, make):
    """Following _links.next yields each record exactly once, in order, then stops."""
    simulator = make(records=237)
    token = platform_token(pool, simulator)
    url: str | None = completed_url(simulator, top=50)
    collected, pages = [], []
    while url is not None:
        assert url.startswith(simulator.url + "/")
        response = get(pool, url, token, Accept="application/json")
        assert response.status == 200
        page = response.json()
        pages.append(page)
        assert page["totalRecords"] == 237
        assert page["businessUnitId"] == 4600001
        assert page["lastPollTime"].endswith("Z")
        collected.extend(page["completedContacts"])
        url = page["_links"].get("next")
    assert len(pages) == 5
    assert [len(page["completedContacts"]) for page in pages] == [50, 50, 50, 50, 37]
    assert "previous" not in pages[0]["_links"]
    assert all("previous" in page["_links"] for page in pages[1:])
    assert "next" not in pages[-1]["_links"]
    ids = [record["contactId"] for record in collected]
    assert ids == sorted(set(ids))
    assert collected == simulator.contacts()
    # The links are absolute and keep the query, with skip advanced by top.
    second = parse_qs(urlsplit(pages[0]["_links"]["next"]).query)
    assert second["skip"] == ["50"]
    assert second["top"] == ["50"]
    assert second["startDate"] == [WINDOW["startDate"]]
    assert pages[0]["_links"]["self"].startswith(simulator.url + "/inContactAPI/")


def test_the_window_includes_its_start_and_excludes_its_end(pool, make):
    """Records with startDate <= start < endDate are served, as contacts() says."""
    first = datetime(2026, 1, 1, tzinfo=UTC)
    simulator = make(records=30, first_date=first, span=timedelta(days=30))
    everything = simulator.contacts()
    starts = [record["contactStartDate"] for record in everything]
    assert starts[:3] == [
        "2026-01-01T00:00:00.000Z",
        "2026-01-02T00:00:00.000Z",
        "2026-01-03T00:00:00.000Z",
    ]
    ids = [record["contactId"] for record in everything]
    assert ids == sorted(ids)
    assert len(set(ids)) == 30
    low, high = first + timedelta(days=5), first + timedelta(days=10)
    token = platform_token(pool, simulator)
    url = completed_url(simulator, startDate=z(low), endDate=z(high))
    page = get(pool, url, token).json()
    assert page["totalRecords"] == 5
    assert page["completedContacts"] == everything[5:10]
    assert simulator.contacts(low, high) == everything[5:10]
    assert simulator.contacts(low) == everything[5:]
    assert simulator.contacts(end=high) == everything[:10]


def test_fractional_seconds_are_accepted_in_dates(pool, make):
    """Dates with fractional seconds and a Z are fine."""
    simulator = make(records=10)
    url = completed_url(
        simulator, startDate="2026-01-01T00:00:00.000Z", endDate="2026-01-31T23:59:59.999999Z"
    )
    assert get(pool, url, platform_token(pool, simulator)).status == 200


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"startDate": "2025-01-01T00:00:00Z", "endDate": "2025-02-01T00:00:00Z"}),
        pytest.param({"startDate": "2026-01-01T00:00:00Z", "endDate": "2026-01-01T00:00:00Z"}),
        pytest.param({"skip": "10"}, id="skip-at-the-end"),
        pytest.param({"skip": "11", "top": "3"}, id="skip-past-the-end"),
    ],
)
def test_nothing_to_serve_is_204_without_a_body(pool, make, params):
    """An empty window or a skip at or past its end is 204 without a body; the link lives."""
    simulator = make(records=10)
    token = platform_token(pool, simulator)
    response = get(pool, completed_url(simulator, **params), token)
    assert response.status == 204
    assert response.data == b""
    assert "Content-Length" not in response.headers
    assert get(pool, completed_url(simulator), token).status == 200


@pytest.mark.parametrize("name", ["startDate", "endDate"])
@pytest.mark.parametrize(
    "value",
    [
        "2026-01-01T00:00:00+00:00",
        "2026-01-01T00:00:00",
        "2026-01-01",
        "2026-01-01T00:00:00z",
        "2026-13-01T00:00:00Z",
        "",
    ],
)
def test_dates_must_be_utc_with_a_literal_z(pool, make, name, value):
    """An offset, no zone or a bad date is 400 invalid_request naming the parameter."""
    simulator = make(records=10)
    response = get(pool, completed_url(simulator, **{name: value}), platform_token(pool, simulator))
    assert response.status == 400
    body = response.json()
    assert body["error"] == "invalid_request"
    assert body["error_description"].startswith(name)


@pytest.mark.parametrize("name", ["startDate", "endDate"])
def test_dates_are_required(pool, make, name):
    """Both dates are required; the error names the one missing."""
    simulator = make(records=10)
    query = urlencode({key: value for key, value in WINDOW.items() if key != name})
    url = f"{simulator.url}/inContactAPI/services/v34.0/contacts/completed?{query}"
    response = get(pool, url, platform_token(pool, simulator))
    assert response.status == 400
    assert name in response.json()["error_description"]


def test_an_end_before_the_start_is_refused(pool, make):
    """An endDate earlier than startDate is 400, naming endDate."""
    simulator = make(records=10)
    url = completed_url(simulator, startDate="2026-03-01T00:00:00Z")
    response = get(pool, url, platform_token(pool, simulator))
    assert response.status == 400
    assert response.json()["error_description"].startswith("endDate")


@pytest.mark.parametrize(
    ("name", "value"),
    [("top", "10001"), ("top", "0"), ("top", "ten"), ("skip", "-1"), ("skip", "1.5")],
)
def test_top_and_skip_out_of_range_are_400(pool, make, name, value):
    """A top outside 1..10000 or a skip below 0 is 400 naming the parameter."""
    simulator = make(records=10)
    response = get(pool, completed_url(simulator, **{name: value}), platform_token(pool, simulator))
    assert response.status == 400
    assert response.json()["error_description"].startswith(name)


def test_top_defaults_to_ten_thousand(pool, make):
    """Without top, one page holds up to 10,000 records."""
    simulator = make(records=10_001)
    token = platform_token(pool, simulator)
    first = get(pool, completed_url(simulator), token).json()
    assert len(first["completedContacts"]) == 10_000
    assert first["totalRecords"] == 10_001
    last = get(pool, first["_links"]["next"], token).json()
    assert len(last["completedContacts"]) == 1
    assert "next" not in last["_links"]
    assert get(pool, completed_url(simulator, top=10_000), token).status == 200


@pytest.mark.parametrize(
    "accept",
    [
        "text/html",
        "application/xml",
        "text/*",
        "application/json;q=0, */*",
        "application/json; q=0",
    ],
)
def test_an_unacceptable_accept_header_is_406(pool, make, accept):
    """The API answers JSON only: an Accept that excludes it gets 406."""
    simulator = make(records=5)
    token = platform_token(pool, simulator)
    for url in (completed_url(simulator), interactions_url(simulator)):
        response = get(pool, url, token, Accept=accept)
        assert response.status == 406
        assert response.json()["error"] == "not_acceptable"


@pytest.mark.parametrize(
    "accept",
    [
        "*/*",
        "application/*",
        "application/json",
        "Application/JSON; charset=utf-8",
        "text/html, application/json;q=0.5",
        "application/json;q=0.1, */*;q=0",
        "",
    ],
)
def test_acceptable_accept_headers(pool, make, accept):
    """*/*, application/* and application/json (any parameters, q > 0) are served."""
    simulator = make(records=5)
    response = get(pool, completed_url(simulator), platform_token(pool, simulator), Accept=accept)
    assert response.status == 200


OLD_TO_NEW = {
    "contactId": "contactId",
    "masterContactId": "masterContactId",
    "contactStart": "contactStartDate",
    "fromAddr": "fromAddress",
    "toAddr": "toAddress",
    "mediaType": "mediaTypeId",
    "mediaTypeName": "mediaTypeName",
    "skillId": "skillId",
    "skillName": "skillName",
    "agentId": "agentId",
    "totalDurationSeconds": "totalDurationSeconds",
    "confSeconds": "conferenceSeconds",
    "ACWSeconds": "acwSeconds",
    "lastUpdateTime": "lastUpdateTime",
}


def test_field_names_follow_the_api_version(pool, make):
    """v21-v32 use the old names and v33+ the new ones, for the same values."""
    simulator = make(records=20)
    token = platform_token(pool, simulator)
    served = {
        version: get(pool, completed_url(simulator, version), token).json()["completedContacts"]
        for version in ("21.0", "32.0", "33.0", "34.0")
    }
    assert served["21.0"] == served["32.0"]
    assert served["33.0"] == served["34.0"]
    for old, new in zip(served["21.0"], served["34.0"], strict=True):
        assert set(old) == set(OLD_TO_NEW)
        assert set(new) == set(OLD_TO_NEW.values())
        assert {OLD_TO_NEW[name]: value for name, value in old.items()} == new
    assert served["21.0"] == simulator.contacts(version="21.0")
    assert served["34.0"] == simulator.contacts(version="v34.0")


@pytest.mark.parametrize("version", ["20.0", "35.0", "34.1"])
def test_unserved_versions_are_404(pool, make, version):
    """Only v21.0 to v34.0 exist."""
    simulator = make(records=5)
    response = get(pool, completed_url(simulator, version), platform_token(pool, simulator))
    assert response.status == 404
    assert response.json()["error"] == "not_found"


def test_the_path_prefix_is_matched_without_regard_to_case(pool, make):
    """Real clients spell inContactAPI in several ways; all are served."""
    simulator = make(records=5)
    url = completed_url(simulator).replace("/inContactAPI/", "/incontactapi/")
    assert get(pool, url, platform_token(pool, simulator)).status == 200


def test_fields_returns_only_the_named_keys(pool, make):
    """``fields`` trims each record to the names asked for; unknown names are 400."""
    simulator = make(records=8)
    token = platform_token(pool, simulator)
    url = completed_url(simulator, fields="contactId, contactStartDate")
    records = get(pool, url, token).json()["completedContacts"]
    full = simulator.contacts()
    assert records == [
        {"contactId": r["contactId"], "contactStartDate": r["contactStartDate"]} for r in full
    ]
    old = get(pool, completed_url(simulator, "25.0", fields="contactStart"), token)
    assert set(old.json()["completedContacts"][0]) == {"contactStart"}
    wrong = get(pool, completed_url(simulator, "25.0", fields="contactStartDate"), token)
    assert wrong.status == 400
    assert wrong.json()["error_description"].startswith("fields")


def test_the_contacts_method_validates_its_arguments():
    """contacts() names the argument at fault; it needs no running server."""
    simulator = Simulator(records=3)
    assert len(simulator.contacts()) == 3
    with pytest.raises(ValueError, match="version"):
        simulator.contacts(version="20.0")
    with pytest.raises(ValueError, match="start"):
        simulator.contacts(datetime(2026, 1, 1))  # noqa: DTZ001 - naive on purpose
    with pytest.raises(ValueError, match="end"):
        simulator.contacts(datetime(2026, 1, 2, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))


# --- interactions -------------------------------------------------------------------------


def test_interactions_paging_ends_with_next_page_null(pool, make):
    """Pages follow nextPage until it is null; every interaction comes once, in order."""
    simulator = make(records=5, interactions=25)
    token = tutorial_token(pool, simulator)
    collected, number, pages = [], 1, []
    while number is not None:
        response = get(pool, interactions_url(simulator, pageSize=10, pageNumber=number), token)
        assert response.status == 200
        page = response.json()
        assert page["pageSize"] == 10
        assert page["pageNumber"] == number
        pages.append(page)
        collected.extend(page["entities"])
        number = page["nextPage"]
    assert [page["nextPage"] for page in pages] == [2, 3, None]
    assert collected == simulator.interactions()
    assert [item["id"] for item in collected] == [f"int-{n:06d}" for n in range(1, 26)]
    for item in collected:
        assert item["status"] in {"closed", "open", "pending", "abandoned"}
        assert item["channel"] in {"voice", "chat", "email"}
        assert item["createdTime"].endswith("Z")
    past = get(pool, interactions_url(simulator, pageSize=10, pageNumber=4), token).json()
    assert past["entities"] == []
    assert past["nextPage"] is None


def test_interactions_defaults_and_bounds(pool, make):
    """The pageSize defaults to 100 (1..1000) and pageNumber to 1 (>= 1); others are 400."""
    simulator = make(records=250)
    token = tutorial_token(pool, simulator)
    page = get(pool, interactions_url(simulator), token).json()
    assert (page["pageSize"], page["pageNumber"], page["nextPage"]) == (100, 1, 2)
    assert len(page["entities"]) == 100
    exact = get(pool, interactions_url(simulator, pageSize=250), token).json()
    assert exact["nextPage"] is None
    for name, value in [("pageSize", 0), ("pageSize", 1001), ("pageNumber", 0)]:
        response = get(pool, interactions_url(simulator, **{name: value}), token)
        assert response.status == 400
        assert response.json()["error_description"].startswith(name)
    assert get(pool, interactions_url(simulator, pageSize=1000), token).status == 200


# --- the server-side limit ----------------------------------------------------------------


@pytest.mark.parametrize("style", ["integer", "fraction", "http-date"])
def test_over_the_limit_is_429_with_the_limiters_exact_wait(pool, make, style):
    """With "2/second", a third request 0.25 s after the first waits 0.75 s, as announced."""
    clock = FakeClock()
    simulator = make(records=5, rate="2/second", retry_after=style, clock=clock)
    token = platform_token(pool, simulator)
    url = completed_url(simulator)
    assert get(pool, url, token).status == 200
    clock.advance(0.25)
    assert get(pool, url, token).status == 200
    before = time.time()
    response = get(pool, url, token)
    after = time.time()
    assert response.status == 429
    assert response.json()["error"] == "too_many_requests"
    value = response.headers["Retry-After"]
    if style == "integer":
        assert value == "1"
    elif style == "fraction":
        assert value == "0.750"
    else:
        announced = parsedate_to_datetime(value).timestamp()
        assert announced == int(announced)
        assert before + 0.75 <= announced < after + 1.75
    # Throttled requests take nothing: asking again just before the wait is still 429,
    # and at the announced instant it is granted.
    clock.advance(0.749)
    assert get(pool, url, token).status == 429
    clock.advance(0.001)
    assert get(pool, url, token).status == 200
    assert simulator.statistics().throttled == 2


def test_the_limit_is_one_for_the_whole_tenant_and_spares_tokens_and_discovery(pool, make):
    """Both list calls share the limit; token and discovery requests are not limited."""
    clock = FakeClock()
    simulator = make(records=5, rate="2/minute", clock=clock)
    for _ in range(5):
        assert get(pool, simulator.url + "/.well-known/openid-configuration").status == 200
    token = platform_token(pool, simulator)
    tutorial = tutorial_token(pool, simulator)
    assert get(pool, completed_url(simulator), token).status == 200
    assert get(pool, interactions_url(simulator), tutorial).status == 200
    throttled = get(pool, interactions_url(simulator), tutorial)
    assert throttled.status == 429
    assert throttled.headers["Retry-After"] == "60"
    assert get(pool, completed_url(simulator), token).status == 429


def test_several_limits_at_once(pool, make):
    """With "10/second, 3/minute" a fourth request waits for the minute, not the second."""
    clock = FakeClock()
    simulator = make(records=5, rate="10/second, 3/minute", retry_after="fraction", clock=clock)
    token = platform_token(pool, simulator)
    for _ in range(3):
        assert get(pool, completed_url(simulator), token).status == 200
        clock.advance(1.0)
    response = get(pool, completed_url(simulator), token)
    assert response.status == 429
    assert response.headers["Retry-After"] == "57.000"


def test_unauthorized_requests_do_not_consume_the_limit(pool, make):
    """The limit is checked after authentication: 401s use none of it."""
    clock = FakeClock()
    simulator = make(records=5, rate="1/second", clock=clock)
    for _ in range(3):
        assert get(pool, completed_url(simulator), "bogus").status == 401
    assert get(pool, completed_url(simulator), platform_token(pool, simulator)).status == 200


# --- faults -------------------------------------------------------------------------------


def test_fault_rate_one_answers_503_with_retry_after(pool, make):
    """Every list call is 503 service_unavailable with Retry-After in the chosen format."""
    simulator = make(records=5, fault_rate=1.0, fault_retry_after=2.5, retry_after="fraction")
    token = platform_token(pool, simulator)
    for url in (completed_url(simulator), interactions_url(simulator)):
        response = get(pool, url, token)
        assert response.status == 503
        assert response.json()["error"] == "service_unavailable"
        assert response.headers["Retry-After"] == "2.500"
    statistics = simulator.statistics()
    assert statistics.faults == 2
    assert statistics.tokens_issued == 1  # the token endpoint is never faulted


def test_a_503_without_retry_after(pool, make):
    """fault_retry_after=None sends 503 with no Retry-After at all."""
    simulator = make(records=5, fault_rate=1.0, fault_retry_after=None)
    response = get(pool, completed_url(simulator), platform_token(pool, simulator))
    assert response.status == 503
    assert "Retry-After" not in response.headers


def test_faults_do_not_consume_the_limit(pool, make):
    """A 503 uses none of the limit: the first request that is not faulted is granted."""
    clock = FakeClock()
    # Seed 0 faults the first two requests (the draws are fixed by the seed).
    simulator = make(records=5, rate="1/second", fault_rate=0.5, seed=0, clock=clock)
    token = platform_token(pool, simulator)
    statuses = [get(pool, completed_url(simulator), token).status for _ in range(20)]
    assert statuses.count(503) >= 3
    assert 503 in statuses[: statuses.index(200)]
    others = [status for status in statuses if status != 503]
    assert others[0] == 200
    assert set(others[1:]) == {429}


def test_drop_rate_one_closes_the_connection_without_an_answer(pool, make):
    """A dropped request gets no answer at all; the client sees the connection close."""
    simulator = make(records=5, drop_rate=1.0)
    token = platform_token(pool, simulator)
    with pytest.raises(urllib3.exceptions.ProtocolError):
        get(pool, completed_url(simulator), token)
    statistics = simulator.statistics()
    assert statistics.drops == 1
    assert statistics.api_requests == 1
    assert simulator.seen_requests[-1].status is None
    # Token requests are never dropped.
    assert platform_token(pool, simulator)


def test_slow_rate_one_answers_after_slow_seconds_on_the_clock(pool, make):
    """A slow answer sleeps slow_seconds on the simulator's clock, then answers normally."""
    clock = FakeClock()
    simulator = make(records=5, slow_rate=1.0, slow_seconds=5.0, clock=clock)
    token = platform_token(pool, simulator)
    response = get(pool, completed_url(simulator), token)
    assert response.status == 200
    assert response.json()["totalRecords"] == 5
    assert clock.sleeps == [5.0]
    assert clock.now() == 5.0
    assert simulator.statistics().slow == 1


def test_close_cuts_a_slow_answer_short(pool, make):
    """Closing while an answer is held back drops it at once instead of waiting it out."""
    simulator = make(records=5, slow_rate=1.0, slow_seconds=600.0)
    token = platform_token(pool, simulator)
    outcome: list[BaseException | int] = []

    def call():
        try:
            outcome.append(get(pool, completed_url(simulator), token).status)
        except urllib3.exceptions.HTTPError as error:
            outcome.append(error)

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while simulator.statistics().slow == 0:
        assert time.monotonic() < deadline, "the slow request never arrived"
        time.sleep(0.01)
    simulator.close()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert len(outcome) == 1
    assert isinstance(outcome[0], urllib3.exceptions.ProtocolError)


def test_fault_draws_are_deterministic_from_the_seed(pool, make):
    """Two simulators with one seed fault the same requests; another seed differs."""

    def statuses(seed: int) -> list[int]:
        simulator = make(records=5, fault_rate=0.5, seed=seed)
        token = platform_token(pool, simulator)
        return [get(pool, interactions_url(simulator), token).status for _ in range(24)]

    first = statuses(11)
    assert set(first) == {200, 503}
    assert statuses(11) == first
    assert statuses(12) != first


# --- determinism --------------------------------------------------------------------------


def test_the_same_seed_serves_the_same_records(pool, make):
    """Same seed: identical records (also over HTTP); another seed: different ones."""
    one, two, other = make(records=60, seed=7), make(records=60, seed=7), make(records=60, seed=8)
    assert one.contacts() == two.contacts()
    assert one.interactions() == two.interactions()
    assert one.contacts() != other.contacts()
    assert one.interactions() != other.interactions()
    pages = [
        get(
            pool, completed_url(simulator, top=25, skip=25), platform_token(pool, simulator)
        ).json()["completedContacts"]
        for simulator in (one, two)
    ]
    assert pages[0] == pages[1] == one.contacts()[25:50]


def test_interactions_count_defaults_to_records_and_data_is_independent_of_it():
    """The interactions count defaults to records; the contacts do not depend on it."""
    assert len(Simulator(records=12).interactions()) == 12
    assert Simulator(records=12, interactions=3).contacts() == Simulator(records=12).contacts()
    assert Simulator(records=0).contacts() == []


# --- environment, statistics, requests seen -----------------------------------------------


def test_env_names_every_variable_of_each_contract(make):
    """env() gives every variable the adapter reads, none empty, pointing here."""
    simulator = make(records=1, client_id="cid", client_secret=WRONG, scopes_supported=["a", "b"])
    contacts = simulator.env("contacts")
    assert contacts == {
        "CXONE_ISSUER": simulator.url,
        "CXONE_CLIENT_ID": "cid",
        "CXONE_CLIENT_SECRET": WRONG,
        "CXONE_ACCESS_KEY_ID": KEY[0],
        "CXONE_ACCESS_KEY_SECRET": KEY[1],
    }
    assert simulator.env() == contacts
    interactions = simulator.env("interactions")
    assert interactions == {
        "CXONE_TENANT_URL": simulator.url,
        "CXONE_CLIENT_ID": "cid",
        "CXONE_CLIENT_SECRET": WRONG,
        "CXONE_SCOPES": "a b",
    }
    assert all(value for value in [*contacts.values(), *interactions.values()])
    with pytest.raises(ValueError, match="api"):
        simulator.env("calls")  # type: ignore[arg-type]


def test_statistics_count_every_kind_of_answer(pool, make):
    """Each counter counts its own kind of answer, and requests counts them all."""
    clock = FakeClock()
    simulator = make(records=5, rate="2/second", clock=clock)
    assert simulator.statistics() == SimulatorStatistics(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    get(pool, simulator.url + "/.well-known/openid-configuration")  # 1 request
    token = platform_token(pool, simulator)  # 2
    post(pool, simulator.url + "/auth/token", GOOD_PASSWORD, headers=basic(secret=WRONG))  # 3
    get(pool, completed_url(simulator), "nope")  # 4: 401
    get(pool, completed_url(simulator), token)  # 5
    get(pool, interactions_url(simulator), token)  # 6
    get(pool, interactions_url(simulator), token)  # 7: 429
    get(pool, simulator.url + "/nowhere")  # 8: 404
    assert simulator.statistics() == SimulatorStatistics(
        requests=8,
        api_requests=4,
        throttled=1,
        faults=0,
        drops=0,
        slow=0,
        tokens_issued=1,
        token_errors=1,
        unauthorized=1,
        credentials_in_url=0,
        errors=0,
    )
    assert [status for _, _, status in statuses(simulator)] == [
        200,
        200,
        401,
        401,
        200,
        200,
        429,
        404,
    ]


def statuses(simulator) -> list[tuple[str, str, int | None]]:
    """(method, path, status) of every request the simulator saw."""
    return [(r.method, r.path, r.status) for r in simulator.seen_requests]


def test_seen_records_every_request_and_no_secret_went_into_a_url(pool, make):
    """The seen list has (method, target) in order; headers and bodies are kept, masked in reprs."""
    simulator = make(records=5)
    token = platform_token(pool, simulator)
    get(pool, completed_url(simulator, top=2), token)
    seen = simulator.seen
    assert seen[0] == ("POST", "/auth/token")
    assert seen[1][0] == "GET"
    assert seen[1][1].startswith("/inContactAPI/services/v34.0/contacts/completed?")
    assert "top=2" in seen[1][1]
    for _, target in seen:
        for secret in (*CLIENT[1:], *KEY, token):
            assert secret not in target
    requests = simulator.seen_requests
    assert all(isinstance(request, SeenRequest) for request in requests)
    assert requests[0].header("authorization") == basic()["Authorization"]
    assert b"password=sim-access-secret" in requests[0].body
    assert requests[1].header("AUTHORIZATION") == f"Bearer {token}"
    assert requests[1].query["top"] == "2"
    assert requests[1].header("X-Missing") is None
    shown = repr(requests) + repr(simulator)
    for secret in (CLIENT[1], KEY[1], token, basic()["Authorization"]):
        assert secret not in shown


def test_unknown_paths_and_methods(pool, make):
    """Unknown paths are 404 JSON; a known path with the wrong method is 405."""
    simulator = make(records=1)
    missing = get(pool, simulator.url + "/api/v3/nothing")
    assert missing.status == 404
    assert missing.headers["Content-Type"].startswith("application/json")
    assert missing.json()["error"] == "not_found"
    wrong = get(pool, simulator.url + "/auth/token")
    assert wrong.status == 405
    assert wrong.headers["Allow"] == "POST"


def test_connections_are_kept_alive_across_answers_of_every_kind(make):
    """One connection carries 200, 204, 400, 401, 404 and 429 answers in turn."""
    clock = FakeClock()
    simulator = make(records=5, rate="3/second", clock=clock)
    with urllib3.HTTPConnectionPool(
        "127.0.0.1", urlsplit(simulator.url).port, maxsize=1, retries=False
    ) as connection:
        fields = urlencode(GOOD_PASSWORD)
        token = connection.request(
            "POST", "/auth/token", body=fields, headers={**FORM, **basic()}
        ).json()["access_token"]
        path = urlsplit(completed_url(simulator)).path
        query = "?" + urlencode(WINDOW)
        auth = {"Authorization": f"Bearer {token}"}
        answers = [
            connection.request("GET", path + query, headers=auth).status,
            connection.request(
                "GET", path + "?" + urlencode({**WINDOW, "skip": 9}), headers=auth
            ).status,
            connection.request("GET", path + "?startDate=x", headers=auth).status,
            connection.request("GET", path + query).status,
            connection.request("GET", "/nowhere").status,
            connection.request("GET", path + query, headers=auth).status,
        ]
        assert answers == [200, 204, 400, 401, 404, 429]
        assert connection.num_connections == 1


def test_concurrent_clients_are_all_served(pool, make):
    """Many threads at once: every page is served once and the counters add up."""
    simulator = make(records=400)
    token = platform_token(pool, simulator)
    results: dict[int, list[dict]] = {}
    errors: list[BaseException] = []

    def fetch(skip: int) -> None:
        try:
            response = get(pool, completed_url(simulator, top=20, skip=skip), token)
            results[skip] = response.json()["completedContacts"]
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=fetch, args=(skip,)) for skip in range(0, 400, 20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    collected = [record for skip in sorted(results) for record in results[skip]]
    assert collected == simulator.contacts()
    assert simulator.statistics().api_requests == 20


# --- life cycle and settings --------------------------------------------------------------


def test_close_frees_the_port_and_is_idempotent(make):
    """After close() nothing listens on the port, which a new simulator can take."""
    first = Simulator(records=1).start()
    port = urlsplit(first.url).port
    assert port
    first.close()
    first.close()
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), 5):
        pass
    second = make(records=1, port=port)
    assert second.url == f"http://127.0.0.1:{port}"
    with pytest.raises(RuntimeError, match="closed"):
        first.start()


def test_context_manager_starts_and_closes(pool):
    """``with Simulator() as s`` serves inside the block and not after it."""
    with Simulator(records=1) as simulator:
        assert simulator.start() is simulator  # starting again does nothing
        url = simulator.url
        assert get(pool, url + "/.well-known/openid-configuration").status == 200
    with pytest.raises(urllib3.exceptions.HTTPError):
        get(pool, url + "/.well-known/openid-configuration")


def test_url_needs_a_started_simulator():
    """The URL exists only once the port is bound."""
    simulator = Simulator(records=1)
    with pytest.raises(RuntimeError, match="start"):
        _ = simulator.url
    with pytest.raises(RuntimeError, match="start"):
        simulator.env()
    simulator.close()  # closing one never started is fine


@pytest.mark.parametrize(
    ("settings", "name"),
    [
        ({"records": -1}, "records"),
        ({"interactions": -5}, "interactions"),
        ({"port": 70_000}, "port"),
        ({"rate": "fast"}, "rate"),
        ({"retry_after": "seconds"}, "retry_after"),
        ({"token_ttl": 0}, "token_ttl"),
        ({"fault_rate": 1.5}, "fault_rate"),
        ({"drop_rate": -0.1}, "drop_rate"),
        ({"drop_rate": 0.6, "fault_rate": 0.6}, "drop_rate"),
        ({"slow_seconds": -1}, "slow_seconds"),
        ({"fault_retry_after": math.inf}, "fault_retry_after"),
        ({"client_secret": ""}, "client_secret"),
        ({"scopes_supported": ["ic read"]}, "scopes_supported"),
        ({"first_date": datetime(2026, 1, 1)}, "first_date"),  # noqa: DTZ001 - naive on purpose
        ({"span": timedelta(0)}, "span"),
    ],
)
def test_bad_settings_name_the_argument(settings, name):
    """Every setting is checked at construction, and the error names it."""
    with pytest.raises(ValueError, match=name):
        Simulator(**settings)


@pytest.mark.parametrize(
    ("settings", "name"),
    [({"records": 1.5}, "records"), ({"seed": "x"}, "seed"), ({"scopes_supported": "a"}, "scopes")],
)
def test_settings_of_the_wrong_type(settings, name):
    """A setting of the wrong type is a TypeError naming it."""
    with pytest.raises(TypeError, match=name):
        Simulator(**settings)


def test_the_public_module_lists_its_names():
    """ratekit_cxone.simulator re-exports its names in a sorted __all__."""
    assert simulator_module.__all__ == sorted(simulator_module.__all__)
    for name in simulator_module.__all__:
        assert getattr(simulator_module, name).__module__ == "ratekit_cxone._simulator"
