"""`CXoneConfig`: what the adapter needs to reach a tenant, from code or the environment."""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Literal, get_args
from urllib.parse import urlsplit

import attrs

from ratekit import RateKitError
from ratekit._redact import is_loopback, origin, redact_url
from ratekit.http import MASK

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

#: The global CXone issuer (the US government cloud's is ``https://cxone-gov.niceincontact.com``).
DEFAULT_ISSUER = "https://cxone.niceincontact.com"

#: The API version of the reporting endpoints, as it appears in their path (``v34.0``).
DEFAULT_API_VERSION = "34.0"

Api = Literal["contacts", "interactions"]
_APIS: tuple[str, ...] = get_args(Api)

#: The environment variable behind each field.
ENVIRONMENT: Mapping[str, str] = {
    "issuer": "CXONE_ISSUER",
    "client_id": "CXONE_CLIENT_ID",
    "client_secret": "CXONE_CLIENT_SECRET",
    "access_key_id": "CXONE_ACCESS_KEY_ID",
    "access_key_secret": "CXONE_ACCESS_KEY_SECRET",
    "tenant_id": "CXONE_TENANT_ID",
    "api_base": "CXONE_API_BASE",
    "api_version": "CXONE_API_VERSION",
    "tenant_url": "CXONE_TENANT_URL",
    "scopes": "CXONE_SCOPES",
}

#: The fields each contract reads, and which of them it cannot do without.
_FIELDS: Mapping[str, tuple[str, ...]] = {
    "contacts": (
        "issuer",
        "client_id",
        "client_secret",
        "access_key_id",
        "access_key_secret",
        "tenant_id",
        "api_base",
        "api_version",
    ),
    "interactions": ("tenant_url", "client_id", "client_secret", "scopes"),
}
_REQUIRED: Mapping[str, tuple[str, ...]] = {
    "contacts": ("issuer", "client_id", "client_secret", "access_key_id", "access_key_secret"),
    "interactions": ("tenant_url", "client_id", "client_secret"),
}
_URLS = ("issuer", "api_base", "tenant_url")
_VERSION = re.compile(r"\d+(?:\.\d+)?")


class ConfigError(RateKitError, ValueError):
    """The configuration is missing something or holds a bad value.

    The message names every variable or argument at fault (never a secret's value).
    """


def _secret(value: str | None) -> str:
    return repr(value) if value is None else repr(MASK)


def _check_api(_instance: object, _attribute: object, value: object) -> None:
    if value not in _APIS:
        raise ConfigError(f"api must be one of {_APIS}, got {value!r}")


def _scopes(value: str | Iterable[str]) -> tuple[str, ...]:
    """Scopes as a tuple: text is split on spaces and commas."""
    if isinstance(value, str):
        return tuple(re.split(r"[\s,]+", value.strip())) if value.strip() else ()
    return tuple(value)


@attrs.frozen(kw_only=True)
class CXoneConfig:
    """How to reach a CXone tenant, for one of the two contracts the adapter speaks.

    ``api="contacts"`` is the real platform: a token from the issuer's token endpoint
    (found by OpenID discovery) with the ``password`` grant, the access key as username
    and password and the application's client id and secret by HTTP Basic; the API base
    from the issuer's ``cxone-configuration`` for the tenant (unless *api_base* is given).
    ``api="interactions"`` is the tutorial's contract: a ``client_credentials`` token
    from ``{tenant_url}/oauth/token`` and the listing at the tenant URL.

    Construction takes anything; `check` (called by `CXoneClient`) says what is
    missing or wrong.  Secrets are shown as ``***`` in ``repr``.  Change a config with
    ``attrs.evolve``.

    Attributes:
        api: Which contract: ``"contacts"`` (the platform) or ``"interactions"``.
        issuer: The OpenID issuer (contacts).
        client_id: The registered application's client id (both).
        client_secret: Its secret (both).
        access_key_id: The access key id, sent as the username (contacts).
        access_key_secret: The access key secret, sent as the password (contacts).
        tenant_id: The tenant id; by default read from the token's ``tenantId`` claim
            (contacts).
        api_base: The API base URL, skipping its discovery (contacts).
        api_version: The API version in the path, such as ``"34.0"`` (contacts).
        tenant_url: The tenant's base URL (interactions).
        scopes: The scopes to ask for; text is split on spaces and commas
            (interactions).

    Raises:
        ConfigError: If *api* is not one of the two contracts.
    """

    api: Api = attrs.field(default="contacts", validator=_check_api)
    issuer: str = DEFAULT_ISSUER
    client_id: str | None = None
    client_secret: str | None = attrs.field(default=None, repr=_secret)
    access_key_id: str | None = None
    access_key_secret: str | None = attrs.field(default=None, repr=_secret)
    tenant_id: str | None = None
    api_base: str | None = None
    api_version: str = DEFAULT_API_VERSION
    tenant_url: str | None = None
    scopes: tuple[str, ...] = attrs.field(default=("ic:read",), converter=_scopes)

    @classmethod
    def from_env(
        cls, api: Api = "contacts", environ: Mapping[str, str] | None = None
    ) -> CXoneConfig:
        """Read the configuration of *api* from ``CXONE_*`` environment variables.

        Contacts read ``CXONE_ISSUER`` (default `DEFAULT_ISSUER`), ``CXONE_CLIENT_ID``,
        ``CXONE_CLIENT_SECRET``, ``CXONE_ACCESS_KEY_ID``, ``CXONE_ACCESS_KEY_SECRET``,
        and optionally ``CXONE_TENANT_ID``, ``CXONE_API_BASE`` and ``CXONE_API_VERSION``
        (default `DEFAULT_API_VERSION`).  Interactions read ``CXONE_TENANT_URL``,
        ``CXONE_CLIENT_ID``, ``CXONE_CLIENT_SECRET`` and optionally ``CXONE_SCOPES``
        (space- or comma-separated, default ``ic:read``).  A variable that is empty
        (or only spaces) counts as unset; values are stripped of surrounding spaces.

        Args:
            api: Which contract to configure.
            environ: Where to read the variables (default `os.environ`).

        Returns:
            A configuration that passes `check`.

        Raises:
            ConfigError: Naming every required variable that is missing (``missing
                environment variables: CXONE_A, CXONE_B``, sorted) and every one whose
                value is invalid.
        """
        if api not in _APIS:
            raise ConfigError(f"api must be one of {_APIS}, got {api!r}")
        env = os.environ if environ is None else environ
        values: dict[str, str] = {}
        for name in _FIELDS[api]:
            value = env.get(ENVIRONMENT[name], "").strip()
            if value:
                values[name] = value
        missing = sorted(
            ENVIRONMENT[name]
            for name in _REQUIRED[api]
            if name not in values and not attrs.fields_dict(cls)[name].default
        )
        config = cls(api=api, **values)
        messages = []
        if missing:
            messages.append(f"missing environment variables: {', '.join(missing)}")
        messages += [f"{ENVIRONMENT[name]} {problem}" for name, problem in config._problems()]
        if messages:
            raise ConfigError("; ".join(messages))
        return config

    def check(self) -> None:
        """Check that this configuration is complete and valid for its `api`.

        Raises:
            ConfigError: Naming every field that is missing or invalid.
        """
        missing = [name for name in _REQUIRED[self.api] if not getattr(self, name)]
        messages = []
        if missing:
            messages.append(f"missing {', '.join(missing)} for api={self.api!r}")
        messages += [
            f"{name} {problem}" for name, problem in self._problems() if name not in missing
        ]
        if messages:
            raise ConfigError(f"invalid CXone configuration: {'; '.join(messages)}")

    def _problems(self) -> list[tuple[str, str]]:
        """The fields of this contract that hold a bad value, each with what is wrong."""
        problems: list[tuple[str, str]] = []
        fields = _FIELDS[self.api]
        for name in fields:
            value: object = getattr(self, name)
            if name == "scopes":
                problems += _scope_problems(self.scopes)
            elif value is None:
                continue
            elif not isinstance(value, str):
                problems.append((name, f"must be a string, got {type(value).__name__}"))
            elif not value.strip():
                problems.append((name, "must not be empty"))
            elif name in _URLS:
                problems += [(name, problem) for problem in _url_problems(value)]
            elif name == "api_version" and not _VERSION.fullmatch(value):
                problems.append((name, f"must be a version such as '34.0', got {value!r}"))
        return problems

    @property
    def version(self) -> str:
        """The API version as the path spells it: ``"34.0"`` for ``"34"`` or ``"34.0"``."""
        return self.api_version if "." in self.api_version else f"{self.api_version}.0"


def _url_problems(value: str) -> list[str]:
    try:
        parts = urlsplit(value)
    except ValueError:
        return [f"is not a URL: {redact_url(value)!r}"]
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        return [f"must be an https:// URL, got {redact_url(value)!r}"]
    try:
        # Judged by the parser that connects: where parsers disagree, it is no URL.
        where = origin(value)
    except ValueError as error:
        return [f"is not a URL that can be used ({error}): {redact_url(value)!r}"]
    if where.scheme == "http" and not is_loopback(where.host):
        return [f"must use https:// (plain http:// only to loopback), got {redact_url(value)!r}"]
    if parts.query or parts.fragment or parts.username or parts.password:
        return [f"must be a base URL without query, fragment or user, got {redact_url(value)!r}"]
    return []


def _scope_problems(scopes: tuple[object, ...]) -> list[tuple[str, str]]:
    for scope in scopes:
        if not isinstance(scope, str) or not scope or scope.split() != [scope] or "," in scope:
            return [("scopes", f"must be names without spaces or commas, got {scope!r}")]
    return []
