"""The OAuth token endpoints: the platform's ``password`` grant, the tutorial's scopes."""

from __future__ import annotations

import base64
import binascii
import hmac
import math
import secrets
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, unquote_plus

from ratekit._clock import wall_time
from ratekit_cxone._sim._answers import _NO_STORE, _Answer, _Refused, _token_error
from ratekit_cxone._sim._tokens import _jwt, _TokenBook


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


class _Grants(_TokenBook):
    """The token endpoints of a `Simulator`: they authenticate the client, then grant."""

    if TYPE_CHECKING:  # provided by `Simulator`
        _access_key_id: str
        _access_key_secret: str
        _client_id: str
        _client_secret: str
        _scopes: tuple[str, ...]
        _tenant_id: str

        @property
        def url(self) -> str: ...

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
