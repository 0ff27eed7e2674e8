"""An adapter for a GitHub-style REST API, on ratekit's public API alone, and its demo.

`GitHub.issues` lists a repository's issues through one `ratekit.http.Client`: paced by
an `AdaptiveLimiter` from the ``X-RateLimit-*`` headers, authenticated by `StaticToken`,
retried by `RETRY` (GitHub's 403 with a spent budget too), paged by the ``Link`` header.
Run ``python examples/github_adapter.py`` to list the issues of a stub on 127.0.0.1.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypedDict, cast, final
from urllib.parse import quote

import attrs

import ratekit.http
import ratekit.retry

if TYPE_CHECKING:
    from collections.abc import Iterator

    import urllib3

    from ratekit.typing import Limiter


class Issue(TypedDict):
    """The fields of an issue that callers rely on; the dict holds the others too."""

    number: int
    title: str


@attrs.frozen
class StaticToken:
    """A personal access token, a `ratekit.typing.TokenProvider`; repr shows ``***``."""

    secret: str = attrs.field(repr=lambda _: ratekit.http.MASK)

    def token(self) -> str:
        """Return the token."""
        return self.secret

    def invalidate(self, token: str) -> None:
        """Do nothing: a static token has no successor, so a second 401 is an error."""


def rate_limited(response: urllib3.BaseHTTPResponse) -> bool:
    """Whether to retry: a 429, a 502-504, or a 403 that is GitHub's rate limit."""
    if response.status in ratekit.retry.DEFAULT_RETRY_STATUSES:
        return True
    spent = response.headers.get("X-RateLimit-Remaining") == "0"
    return response.status == 403 and (spent or "Retry-After" in response.headers)


def server_wait(outcome: object) -> float | None:
    """``Retry-After`` if given, else the time until a spent budget resets, or None."""
    wait = ratekit.retry.retry_after_of(outcome)
    headers = getattr(outcome, "headers", None) or {}
    info = ratekit.retry.parse_rate_limit_headers(headers)
    if wait is not None or info is None:
        return wait
    return info.wait or None  # None: the backoff decides


#: Five attempts, no deadline, waiting what the server says up to 1 h (GitHub's resets).
RETRY = ratekit.retry.RetryPolicy(
    retry_on=ratekit.http.TRANSIENT_ERRORS,
    retry_result=rate_limited,
    retry_after=server_wait,
    max_retry_after=3600.0,
)


@final
class GitHub:
    """A client of a GitHub-style REST API: paced, authenticated, retried and paged.

    Args:
        base_url: The API's root, such as ``"https://api.github.com"``.
        token: A personal access token, sent as ``Authorization: Bearer``.
        limiter: Paces the requests (default: an `AdaptiveLimiter` fed by the headers).
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        limiter: Limiter | None = None,
    ) -> None:
        self.limiter = ratekit.http.AdaptiveLimiter() if limiter is None else limiter
        self._client = ratekit.http.Client(
            self.limiter,
            base_url=base_url.rstrip("/") + "/",
            auth=StaticToken(token),
            retry=attrs.evolve(RETRY, on_retry=self._share_wait),
            headers={"Accept": "application/vnd.github+json"},
        )
        self._paginator = ratekit.http.NextLinkPaginator(
            records_key=None,
            link_key=None,
        )

    def _share_wait(self, event: ratekit.retry.RetryEvent) -> None:
        # The client shares the waits of 429 and 503 by itself; this shares a 403's too.
        if event.retry_after is not None:
            self._client.cool_down(event.retry_after)

    def issues(self, owner: str, repo: str, *, per_page: int = 100) -> Iterator[Issue]:
        """Yield every issue of *owner*/*repo* once, in the API's order, page by page.

        Raises:
            ValueError: If *per_page* is not between 1 and 100.
            ratekit.http.HTTPStatusError: For a status not retried, such as 404.
            ratekit.retry.RetryError: When the retries run out.
        """
        if not 1 <= per_page <= 100:
            raise ValueError(f"per_page must be between 1 and 100, got {per_page!r}")
        path = f"repos/{quote(owner, safe='')}/{quote(repo, safe='')}/issues"
        params = {"per_page": per_page}
        for page in self._paginator.pages(self._client, path, params=params):
            for record in page.records:
                number = record.get("number") if isinstance(record, dict) else None
                if not isinstance(number, int):
                    reason = "a record that is no issue"
                    raise ratekit.http.ResponseError(200, path, "", reason)
                yield cast("Issue", record)

    def close(self) -> None:
        """Close the client's connections."""
        self._client.close()

    def __enter__(self) -> GitHub:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# --- the demo: the adapter against a local stub of the API, in _github_stub.py --------
def main() -> None:
    """List the stub's issues through the adapter, and check what reached the server."""
    from _github_stub import GitHubStub  # the demo's server; the adapter stands alone

    with GitHubStub(issues=25, limit=3) as stub, GitHub(stub.url, "ghp_demo") as github:
        issues = github.issues("octo", "hello", per_page=10)
        numbers = [issue["number"] for issue in issues]
        assert numbers == list(range(1, 26))
        print(f"octo/hello: {len(numbers)} issues, #1 to #{numbers[-1]}, each once")
        try:
            list(github.issues("octo", "missing"))
        except ratekit.http.HTTPStatusError as error:
            print(f"octo/missing: {type(error).__name__}, status {error.status}")
    # The budget was spent: a 403, then the same page after the reset.
    first, retried = stub.hits[:2]
    assert (first.status, retried.status, retried.target) == (403, 200, first.target)
    assert retried.at >= first.reset
    print("first answer 403: waited for the reset, then got the same page")
    seen = {(hit.authorization, "ghp" in hit.target) for hit in stub.hits}
    assert seen == {("Bearer ghp_demo", False)}
    print(
        f"{len(stub.hits)} requests,",
        "each with the token in its header, none in its URL",
    )


if __name__ == "__main__":
    main()
