"""The routes of the simulated API: discovery, the token endpoints and the two list calls."""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlsplit

from ratekit._clock import wall_time
from ratekit_cxone._sim._answers import _Answer, _error, _Refused, _seconds_text, _token_error
from ratekit_cxone._sim._data import (
    _CONTACT_FIELDS_NEW,
    _CONTACT_FIELDS_OLD,
    _INTERACTION_FIELDS,
    _RENAMED_IN,
    _UTC,
    SUPPORTED_VERSIONS,
    _format_z,
    _render,
    _Row,
)
from ratekit_cxone._sim._faults import _Faults
from ratekit_cxone._sim._grants import _Grants
from ratekit_cxone._sim._requests import (
    _acceptable,
    _fields_parameter,
    _integer_parameter,
    _with_paging,
    _z_parameter,
)

if TYPE_CHECKING:
    from ratekit._limiter import LimiterBase

#: The largest ``top`` the platform accepts, and its default.
MAX_TOP = 10_000

#: The largest ``pageSize`` of the tutorial's interactions call, and its default.
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100

#: What every completed-contacts page reports as its business unit.
BUSINESS_UNIT_ID = 4_600_001

#: The paths served, besides ``contacts/completed``, and the method each accepts.
_ROUTES = {
    "/.well-known/openid-configuration": "GET",
    "/.well-known/cxone-configuration": "GET",
    "/auth/token": "POST",
    "/oauth/token": "POST",
    "/api/v2/ic/interactions": "GET",
}

#: Query parameters that carry secrets: never acceptable in a URL.
_SECRET_PARAMETERS = frozenset(
    {"client_secret", "password", "access_token", "refresh_token", "assertion", "client_id"}
)

_CONTACTS_PATH = re.compile(
    r"/incontactapi/services/v(?P<major>\d+)\.0/contacts/completed", re.IGNORECASE | re.ASCII
)


class _Endpoints(_Grants, _Faults):
    """How a `Simulator` answers each request: the route, then the endpoint's answer."""

    if TYPE_CHECKING:  # provided by `Simulator`
        _limiter: LimiterBase | None
        _retry_after_style: str

        def _window(
            self, start: datetime | None, end: datetime | None
        ) -> tuple[list[_Row], int, int]: ...

        def _interactions(self) -> list[_Row]: ...

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
        self._inject_fault()
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
