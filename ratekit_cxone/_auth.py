"""Tokens and API bases for both contracts: issuer discovery, grants, the tenant's API."""

from __future__ import annotations

import base64
import json
import threading
from typing import TYPE_CHECKING

import attrs

from ratekit.http import (
    Client,
    HTTPStatusError,
    OAuth2Token,
    ResponseError,
    TokenError,
    redact_url,
)
from ratekit.http._oauth import is_transient
from ratekit_cxone._config import ENVIRONMENT, ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping

    import urllib3

    from ratekit.http import ClientStatistics
    from ratekit.retry import RetryPolicy
    from ratekit.typing import Clock
    from ratekit_cxone._config import CXoneConfig

#: OAuth2 error codes that mean "these credentials are wrong", and which ones they are.
_CLIENT_ERRORS = frozenset({"invalid_client", "unauthorized_client"})
_GRANT_ERRORS = frozenset({"invalid_grant", "access_denied"})


def _names(*fields: str) -> str:
    """Fields with their environment variables: ``client_id (CXONE_CLIENT_ID)``."""
    return " and ".join(f"{field} ({ENVIRONMENT[field]})" for field in fields)


def _claim(token: str, name: str) -> object:
    """A claim of a JWT's payload, read without verifying the signature; ``None`` if absent."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims: object = json.loads(base64.urlsafe_b64decode(payload))
    except ValueError:  # bad base64 (binascii.Error), bad UTF-8 or bad JSON
        return None
    return claims.get(name) if isinstance(claims, dict) else None


class CXoneAuth:
    """Bearer tokens for the CXone API, and where the API is (a `TokenProvider`).

    Token requests that fail for want of a connection, or that the endpoint answers with
    429 or 5xx, are retried by the client's retry policy; rejected credentials raise
    `ratekit.http.TokenError` naming the configuration fields (and environment
    variables) to check.  Subclasses say how the token endpoint and the API base are
    found.

    Args:
        config: The configuration (already checked).
        pool: The connection pool shared with the API client.
        retry: The retry policy for token and discovery requests (``None``: no retries).
        timeout: Seconds that one token or discovery request may take.
        clock: Where time comes from.
    """

    __slots__ = (
        "_clock",
        "_config",
        "_discovery",
        "_lock",
        "_oauth",
        "_pool",
        "_retry",
        "_timeout",
    )

    def __init__(
        self,
        config: CXoneConfig,
        *,
        pool: urllib3.PoolManager,
        retry: RetryPolicy | None,
        timeout: float,
        clock: Clock,
    ) -> None:
        self._config = config
        self._pool = pool
        self._timeout = timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._oauth: OAuth2Token | None = None
        # Retried as the API's requests are, but on the token endpoint's own failures.
        self._retry = (
            None if retry is None else attrs.evolve(retry, retry_on=is_transient, clock=clock)
        )
        # Discovery requests are few, and go to the issuer: not paced by the API's limiter.
        self._discovery = Client(
            None,
            retry=retry,
            pool=pool,
            timeout=timeout,
            clock=clock,
            headers={"Accept": "application/json"},
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._config!r})"

    def statistics(self) -> ClientStatistics:
        """The counts of the discovery requests."""
        return self._discovery.statistics()

    def api_base(self) -> str:
        """The base URL of the API, without a trailing slash (discovered once, if need be)."""
        raise NotImplementedError

    def token(self) -> str:
        """Return a valid access token, fetching one (after any discovery) when due.

        Raises:
            ratekit.http.TokenError: If the token endpoint rejected the credentials (the
                message names the fields to check) or answered something unreadable.
            ratekit.retry.RetryError: If the token endpoint stayed unreachable or
                overloaded through every retry.
            ConfigError: If discovery showed the configuration to be wrong.
        """
        oauth = self._oauth or self._token_source()
        try:
            if self._retry is None:
                return oauth.token()
            return self._retry.call(oauth.token)
        except TokenError as error:
            hint = self._hint(error)
            if not hint:
                raise
            detail = f"{error.description}; {hint}" if error.description else hint
            raise TokenError(error.error, detail, error.status) from error

    def invalidate(self, token: str) -> None:
        """Forget *token* (the API rejected it): the next `token` fetches a new one."""
        if self._oauth is not None:
            self._oauth.invalidate(token)

    def _token_source(self) -> OAuth2Token:
        """The `OAuth2Token`, made at the first call (subclasses may discover it)."""
        oauth = self._make_oauth()
        with self._lock:
            if self._oauth is None:
                self._oauth = oauth
            return self._oauth

    def _make_oauth(self) -> OAuth2Token:
        raise NotImplementedError

    def _hint(self, error: TokenError) -> str:
        """Which configuration to check, for an error that says the credentials are bad."""
        raise NotImplementedError

    def _get_json(self, url: str, params: Mapping[str, str] | None = None) -> object:
        """``GET`` a discovery document; its 404 becomes ``None``."""
        try:
            document: object = self._discovery.get_json(url, params=params)
        except HTTPStatusError as error:
            if error.status == 404:
                return None
            raise
        return document


def _field(document: object, name: str, url: str) -> str:
    """A URL field of a discovery document, or the `ResponseError` that it is missing."""
    value = document.get(name) if isinstance(document, dict) else None
    if not isinstance(value, str) or not value.startswith(("https://", "http://")):
        excerpt = json.dumps(document)[:200]
        reason = f"no URL at {name!r}"
        raise ResponseError(200, redact_url(url), excerpt, reason)
    return value.rstrip("/")


class PlatformAuth(CXoneAuth):
    """The real platform: the issuer's token endpoint, a password grant, the tenant's API.

    At the first token: ``GET {issuer}/.well-known/openid-configuration`` gives the
    ``token_endpoint`` (once), which is asked for a token with ``grant_type=password``
    (the access key id and secret as username and password, the client id and secret
    by HTTP Basic).  The API base is the configured ``api_base``, or else the
    ``api_endpoint`` of ``GET {issuer}/.well-known/cxone-configuration?tenantId=...``
    (once), the tenant id being the configured one or the token's ``tenantId`` claim.
    """

    __slots__ = ("_api_base", "_tenant_id")

    def __init__(
        self,
        config: CXoneConfig,
        *,
        pool: urllib3.PoolManager,
        retry: RetryPolicy | None,
        timeout: float,
        clock: Clock,
    ) -> None:
        super().__init__(config, pool=pool, retry=retry, timeout=timeout, clock=clock)
        self._tenant_id = config.tenant_id
        self._api_base = None if config.api_base is None else config.api_base.rstrip("/")

    @property
    def issuer(self) -> str:
        """The issuer, without a trailing slash."""
        return self._config.issuer.rstrip("/")

    def _make_oauth(self) -> OAuth2Token:
        url = f"{self.issuer}/.well-known/openid-configuration"
        document = self._get_json(url)
        if document is None:
            raise ConfigError(
                f"the issuer {redact_url(self.issuer)} has no OpenID configuration "
                f"(GET {redact_url(url)} answered 404): check {_names('issuer')}"
            )
        token_url = _field(document, "token_endpoint", url)
        config = self._config
        return OAuth2Token(
            token_url,
            client_id=config.client_id or "",
            client_secret=config.client_secret or "",
            grant="password",
            username=config.access_key_id,
            password=config.access_key_secret,
            client_auth="basic",
            timeout=self._timeout,
            pool=self._pool,
            clock=self._clock,
        )

    def _hint(self, error: TokenError) -> str:
        if error.error in _CLIENT_ERRORS or error.status == 401:
            return f"the client was rejected: check {_names('client_id', 'client_secret')}"
        if error.error in _GRANT_ERRORS:
            return (
                f"the access key was rejected: check {_names('access_key_id', 'access_key_secret')}"
            )
        return ""

    def tenant_id(self) -> str:
        """The tenant id: configured, or read from the token's ``tenantId`` claim.

        Raises:
            ConfigError: If it is not configured and the token carries no such claim.
        """
        if self._tenant_id is None:
            claim = _claim(self.token(), "tenantId")
            if isinstance(claim, int) and not isinstance(claim, bool):
                claim = str(claim)
            if not isinstance(claim, str) or not claim:
                raise ConfigError(
                    "the access token has no tenantId claim to find the API with: "
                    f"set {_names('tenant_id')} or {_names('api_base')}"
                )
            self._tenant_id = claim
        return self._tenant_id

    def api_base(self) -> str:
        """The API base: configured, or the tenant's ``api_endpoint`` (found once).

        Raises:
            ConfigError: If the issuer knows no such tenant (its 404).
            ratekit.http.HTTPError: If discovery fails otherwise.
        """
        if self._api_base is not None:
            return self._api_base
        tenant = self.tenant_id()
        url = f"{self.issuer}/.well-known/cxone-configuration"
        document = self._get_json(url, {"tenantId": tenant})
        if document is None:
            raise ConfigError(
                f"unknown tenant {tenant!r}: GET {redact_url(url)}?tenantId={tenant} "
                f"answered 404; check {_names('tenant_id')} and {_names('issuer')}"
            )
        base = _field(document, "api_endpoint", url)
        with self._lock:
            if self._api_base is None:
                self._api_base = base
            return self._api_base


class TutorialAuth(CXoneAuth):
    """The tutorial's contract: ``client_credentials`` at ``{tenant_url}/oauth/token``.

    The client id and secret go in the form body with the scopes (space-joined); the
    API base is the tenant URL.
    """

    __slots__ = ()

    @property
    def tenant_url(self) -> str:
        """The tenant URL, without a trailing slash."""
        return (self._config.tenant_url or "").rstrip("/")

    def _make_oauth(self) -> OAuth2Token:
        config = self._config
        return OAuth2Token(
            f"{self.tenant_url}/oauth/token",
            client_id=config.client_id or "",
            client_secret=config.client_secret or "",
            scopes=config.scopes,
            client_auth="body",
            timeout=self._timeout,
            pool=self._pool,
            clock=self._clock,
        )

    def _hint(self, error: TokenError) -> str:
        if error.error == "invalid_scope":
            return f"a scope was refused: check {_names('scopes')}"
        if error.error in _CLIENT_ERRORS | _GRANT_ERRORS or error.status == 401:
            return f"the client was rejected: check {_names('client_id', 'client_secret')}"
        return ""

    def api_base(self) -> str:
        """The tenant URL."""
        return self.tenant_url


def make_auth(
    config: CXoneConfig,
    *,
    pool: urllib3.PoolManager,
    retry: RetryPolicy | None,
    timeout: float,
    clock: Clock,
) -> CXoneAuth:
    """The auth for *config*'s contract."""
    kind = PlatformAuth if config.api == "contacts" else TutorialAuth
    return kind(config, pool=pool, retry=retry, timeout=timeout, clock=clock)
