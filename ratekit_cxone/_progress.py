"""The progress report of an export: a bar on a terminal, plain lines for logs."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Literal, Protocol, TextIO

from ratekit._clock import MONOTONIC

if TYPE_CHECKING:
    from ratekit.typing import Clock

#: Seconds between two progress lines when the output is not a terminal.
DEFAULT_PROGRESS_INTERVAL = 2.0


class StatisticsLike(Protocol):
    """What the progress report reads of the client's statistics."""

    @property
    def requests(self) -> int:
        """Requests sent, retries included."""

    @property
    def throttled(self) -> int:
        """Responses that were 429."""

    @property
    def retries(self) -> int:
        """Requests that were retried."""


def _plural(count: int, word: str, words: str = "") -> str:
    """*count* and the word: ``1 page``, ``2 pages``, ``2 retries`` (given *words*)."""
    return f"{count} {word if count == 1 else words or word + 's'}"


class _Bar(Protocol):
    n: float
    total: float | None

    def update(self, n: float = 1) -> bool | None: ...
    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None: ...  # noqa: FBT002
    def refresh(self) -> None: ...
    def close(self) -> None: ...


def _make_bar(stream: TextIO, initial: int, label: str) -> _Bar | None:
    """A tqdm bar on *stream*, or ``None`` if tqdm (the ``cli`` extra) is missing."""
    try:
        import importlib

        tqdm = importlib.import_module("tqdm").tqdm
    except ImportError:
        return None
    try:
        width = os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, ValueError, OSError):
        width = 0
    # A terminal that tells no width (some pseudo-terminals) gets a fixed one.
    sizing = {"dynamic_ncols": True} if width > 0 else {"ncols": 100, "nrows": 20}
    bar: _Bar = tqdm(
        total=None,
        initial=initial,
        unit=" records",
        desc=label,
        file=stream,
        smoothing=0.1,
        **sizing,
    )
    return bar


class Progress:
    """Reports an export's progress on *stream* (standard error, normally).

    Args:
        mode: ``"bar"``: a progress bar (tqdm) for a terminal, with the total and an ETA
            once known; ``"lines"``: one plain line every *interval* seconds, for logs;
            ``"none"``: nothing.
        stream: Where reports go.
        interval: Seconds between two lines in ``"lines"`` mode.
        label: What the reports start with.
        clock: Where time is read (default: the real clock).
    """

    def __init__(
        self,
        mode: Literal["bar", "lines", "none"],
        *,
        stream: TextIO,
        interval: float = DEFAULT_PROGRESS_INTERVAL,
        label: str = "export",
        clock: Clock | None = None,
    ) -> None:
        self.mode = mode
        self.stream = stream
        self.interval = interval
        self.label = label
        self.clock = MONOTONIC if clock is None else clock
        self.started = self.clock.now()
        self._last_line = self.started
        self._bar: _Bar | None = None

    def start(self, records: int) -> None:
        """Begin, with *records* already in the output."""
        self.started = self._last_line = self.clock.now()
        if self.mode == "bar":
            self._bar = _make_bar(self.stream, records, self.label)
            if self._bar is None:
                self.mode = "lines"

    def update(
        self, *, records: int, total: int | None, pages: int, statistics: StatisticsLike
    ) -> None:
        """Report *records* in the output after *pages* pages in this run."""
        now = self.clock.now()
        elapsed = max(now - self.started, 1e-9)
        if self._bar is not None:
            bar = self._bar
            if total is not None and bar.total != total:
                bar.total = total
            bar.set_postfix_str(
                f"{_plural(pages, 'page')}, {statistics.requests / elapsed:.1f} req/s, "
                f"{statistics.throttled} throttled",
                refresh=False,
            )
            bar.update(records - bar.n)
        elif self.mode == "lines" and now - self._last_line >= self.interval:
            self._last_line = now
            self.stream.write(self._line(records, total, pages, statistics, elapsed) + "\n")
            self.stream.flush()

    def _line(
        self,
        records: int,
        total: int | None,
        pages: int,
        statistics: StatisticsLike,
        elapsed: float,
    ) -> str:
        done = f"{records}/{total} records ({100 * records / total:.0f}%)" if total else None
        return (
            f"{self.label}: {done or _plural(records, 'record')}, {_plural(pages, 'page')}, "
            f"{statistics.requests / elapsed:.1f} req/s, {statistics.throttled} throttled (429), "
            f"{_plural(statistics.retries, 'retry', 'retries')}, "
            f"{elapsed:.0f} s"
        )

    def close(self) -> None:
        """End the report (the bar stays on screen)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
