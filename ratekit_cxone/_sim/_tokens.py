"""Access tokens: JWTs minted, and the bearer tokens issued, kept until they expire, checked."""

from __future__ import annotations

import base64
import json
import secrets
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import threading

    from ratekit.typing import Clock

#: Tokens kept before the expired ones are forgotten.
_MAX_TOKENS = 10_000


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _jwt(claims: dict[str, object]) -> str:
    """A JSON Web Token of the right shape; its signature is random, not a real one."""
    header = {"alg": "RS256", "typ": "JWT", "kid": "simulator"}
    parts = (
        _b64url(json.dumps(header, separators=(",", ":")).encode()),
        _b64url(json.dumps(claims, separators=(",", ":")).encode()),
        _b64url(secrets.token_bytes(32)),
    )
    return ".".join(parts)


class _TokenBook:
    """The tokens a `Simulator` issued, each with the clock reading at which it expires."""

    if TYPE_CHECKING:  # provided by `Simulator`
        _clock: Clock
        _lock: threading.Lock
        _token_ttl: float
        _tokens: dict[str, float]

    def _expires_in(self) -> float:
        ttl = self._token_ttl
        return int(ttl) if ttl.is_integer() else ttl

    def _register(self, token: str) -> None:
        now = self._clock.now()
        with self._lock:
            if len(self._tokens) >= _MAX_TOKENS:  # forget the dead, so memory stays bounded
                self._tokens = {key: end for key, end in self._tokens.items() if end > now}
            self._tokens[token] = now + self._token_ttl

    def _token_problem(self, authorization: str | None) -> str | None:
        """Why a bearer token is refused, or ``None`` if it is valid now."""
        if authorization is None:
            return "the Authorization header is missing"
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return "the Authorization header must be 'Bearer <access token>'"
        now = self._clock.now()
        with self._lock:
            expires = self._tokens.get(token.strip())
        if expires is None:
            return "the access token is not one this tenant issued"
        if now >= expires:
            return "the access token has expired"
        return None
