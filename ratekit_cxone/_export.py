"""The run of an export: every page from a checkpoint on, written, then the export finished.

`run_export` walks the pages of one listing in order through a `Writer`
(`ratekit_cxone._writers`), which checkpoints after each, and reports on a `Progress`
(`ratekit_cxone._progress`); `ExportResult` is what one run did.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal, Protocol

import attrs

from ratekit._clock import MONOTONIC
from ratekit_cxone._progress import _plural

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from pathlib import Path

    from ratekit.typing import Clock
    from ratekit_cxone._progress import Progress, StatisticsLike
    from ratekit_cxone._writers import Checkpoint, Writer, _RecordLike


class PageLike(Protocol):
    """What the exporter needs of a page of records (`ratekit_cxone.RecordPage`)."""

    @property
    def position(self) -> int:
        """The page's position in the listing."""

    @property
    def records(self) -> Sequence[_RecordLike]:
        """The page's records, in API order."""

    @property
    def total(self) -> int | None:
        """The listing's total, if the API tells it."""


@attrs.frozen(kw_only=True)
class ExportResult:
    """What an export did in this run.

    Attributes:
        path: The output.
        records: How many records the output holds.
        new: How many of them this run added.
        pages: Pages written in this run.
        requests: Requests sent in this run (retries included).
        throttled: Responses that were 429.
        retries: Requests retried.
        elapsed: Seconds the run took.
        complete: Whether the export is complete.
    """

    path: Path
    records: int
    new: int
    pages: int
    requests: int
    throttled: int
    retries: int
    elapsed: float
    complete: bool

    def summary(self) -> str:
        """One line for people: records, pages, requests, 429s, retries, time, rate."""
        rate = self.requests / self.elapsed if self.elapsed > 0 else math.nan
        retries = _plural(self.retries, "retry", "retries")
        return (
            f"exported {_plural(self.records, 'record')} to {self.path} ({self.new} new in this "
            f"run) in {self.elapsed:.1f} s: {_plural(self.pages, 'page')}, "
            f"{_plural(self.requests, 'request')} ({rate:.1f}/s), "
            f"{self.throttled} throttled (429), {retries}"
        )


def run_export(  # noqa: PLR0913 - the parts of an export, all keyword-only
    *,
    writer: Writer,
    checkpoint: Checkpoint,
    pages: Callable[[int], Iterator[PageLike]],
    next_position: Callable[[PageLike], int],
    statistics: Callable[[], StatisticsLike],
    total: Callable[[], int | None] | None = None,
    progress: Progress | None = None,
    clock: Clock | None = None,
    check: Callable[[], object] | None = None,
) -> ExportResult:
    """Write every page from *checkpoint* on, checkpointing after each, then finish.

    Args:
        writer: The opened writer.
        checkpoint: What `Writer.open` returned.
        pages: Gives the pages in order, starting at a position.
        next_position: The position after a page.
        statistics: The client's statistics (requests, 429s, retries), read for reports.
        total: The listing's total once known, if the pages do not carry it.
        progress: Where progress goes (``None``: nowhere).
        clock: Where time is read (default: the real clock).
        check: Called after the last page, before the export is marked complete: what
            it raises leaves the export unfinished (a count that does not match).

    Returns:
        What the run did.  A `KeyboardInterrupt` (Ctrl-C, or SIGTERM turned into one)
        propagates after the last whole page is kept.
    """
    clock = MONOTONIC if clock is None else clock
    started = clock.now()
    before = statistics()
    written = 0
    page_count = 0
    known_total = checkpoint.total
    if progress is not None:
        progress.start(writer.count)
    iterator = pages(checkpoint.next_position)
    try:
        for page in iterator:
            if page.total is not None:
                known_total = page.total
            elif total is not None:
                known_total = total() or known_total
            written += writer.write_page(
                page.records, next_position=next_position(page), total=known_total
            )
            page_count += 1
            if progress is not None:
                progress.update(
                    records=writer.count,
                    total=known_total,
                    pages=page_count,
                    statistics=_since(before, statistics()),
                )
        if check is not None:  # the last page is in: is the output whole?
            check()
        writer.finish()
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()
        if progress is not None:
            progress.close()
    after = _since(before, statistics())
    return ExportResult(
        path=writer.path,
        records=writer.count,
        new=written,
        pages=page_count,
        requests=after.requests,
        throttled=after.throttled,
        retries=after.retries,
        elapsed=clock.now() - started,
        # What the output records, read back rather than assumed: `finish` marked it.
        complete=writer.checkpoint is not None and writer.checkpoint.complete,
    )


@attrs.frozen
class _Counts:
    requests: int
    throttled: int
    retries: int


def _since(before: StatisticsLike, after: StatisticsLike) -> _Counts:
    return _Counts(
        requests=after.requests - before.requests,
        throttled=after.throttled - before.throttled,
        retries=after.retries - before.retries,
    )


def position_after(api: Literal["contacts", "interactions"]) -> Callable[[PageLike], int]:
    """How the listing continues after a page.

    Contacts are paged by offset (``skip``): the next page starts after this page's
    records.  Interactions are paged by number: the next page is the next number.
    """
    if api == "contacts":
        return lambda page: page.position + len(page.records)
    return lambda page: page.position + 1
