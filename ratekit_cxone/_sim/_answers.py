"""What the simulator sends back: a status, a JSON body and headers, or a refusal."""

from __future__ import annotations

import math
from email.utils import formatdate

import attrs

from ratekit._clock import wall_time


@attrs.frozen
class _Answer:
    """What to send back: a status, a JSON body (``None``: no body) and headers."""

    status: int
    body: object = None
    headers: tuple[tuple[str, str], ...] = ()
    drop: bool = False


_DROP = _Answer(0, drop=True)


def _error(status: int, error: str, description: str | None = None, **headers: str) -> _Answer:
    body = {"error": error}
    if description is not None:
        body["error_description"] = description
    return _Answer(status, body, tuple(headers.items()))


def _token_error(status: int, error: str, description: str, **headers: str) -> _Answer:
    answer = _error(status, error, description, **headers)
    return attrs.evolve(answer, headers=(*answer.headers, *_NO_STORE))


_NO_STORE = (("Cache-Control", "no-store"), ("Pragma", "no-cache"))


def _seconds_text(seconds: float, style: str) -> str:
    """*seconds* as a ``Retry-After`` value in *style*, never earlier than *seconds*."""
    if style == "integer":
        return str(max(1, math.ceil(seconds)))
    if style == "fraction":
        return f"{max(1, math.ceil(seconds * 1000)) / 1000:.3f}"
    return formatdate(math.ceil(wall_time() + seconds), usegmt=True)


_RETRY_AFTER_STYLES = ("integer", "fraction", "http-date")


class _Refused(Exception):
    """Raised on the way to an answer when the request is refused: carries the answer."""

    def __init__(self, answer: _Answer) -> None:
        super().__init__(answer.status)
        self.answer = answer


def _bad_request(description: str) -> _Refused:
    return _Refused(_error(400, "invalid_request", description))
