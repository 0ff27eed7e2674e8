"""The exporter's writers: exactly once under resume, torn lines, atomic state, progress."""

from __future__ import annotations

import io
import json
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import types

import attrs
import pytest

from ratekit.testing import FakeClock
from ratekit_cxone import _export, _writers
from ratekit_cxone._export import position_after, run_export
from ratekit_cxone._progress import Progress
from ratekit_cxone._writers import (
    Checkpoint,
    JsonlWriter,
    OutputError,
    SqliteWriter,
    open_writer,
    output_format,
    state_path,
)

PARAMETERS = {"api": "contacts", "source": "http://127.0.0.1:1", "start": "a", "page_size": 10}


@attrs.frozen
class Record:
    """A record as the library gives it: a key and the raw JSON object."""

    raw: dict[str, object]

    @property
    def key(self) -> str:
        return str(self.raw["contactId"])


@attrs.frozen
class Page:
    """A page as the library gives it."""

    position: int
    records: list[Record]
    total: int | None


@attrs.frozen
class Stats:
    """The client's counters that progress reports read."""

    requests: int = 0
    throttled: int = 0
    retries: int = 0


def records(first, last):
    """Records with ids first..last-1; the text holds non-ASCII to check the encoding."""
    return [
        Record({"contactId": i, "fromAddress": f"caf\u00e9 {i}", "n": [i]})
        for i in range(first, last)
    ]


def key_of(raw):
    """The id of a raw record."""
    return str(raw["contactId"])


def make(kind, path, parameters=PARAMETERS):
    """A writer of *kind* for *path*."""
    cls = JsonlWriter if kind == "jsonl" else SqliteWriter
    return cls(path, parameters, initial_position=0, key_of=key_of)


def pages_of(total, size=10, *, stop_at=None):
    """A listing of *total* records paged by offset, as `completed_contact_pages` gives it."""

    def pages(skip):
        for position in range(skip, total, size):
            if stop_at is not None and position >= stop_at:
                raise KeyboardInterrupt
            yield Page(position, records(position, min(position + size, total)), total)

    return pages


def export(writer, total, **kwargs):
    """Open *writer* and export a listing of *total* records to it."""
    checkpoint = writer.open()
    return run_export(
        writer=writer,
        checkpoint=checkpoint,
        pages=pages_of(total, **kwargs),
        next_position=position_after("contacts"),
        statistics=Stats,
    )


@pytest.fixture(params=["jsonl", "sqlite"])
def kind(request):
    """Each output format in turn."""
    return request.param


def out_path(tmp_path, kind):
    """An output path of *kind*."""
    return tmp_path / ("out.jsonl" if kind == "jsonl" else "out.sqlite")


FIRST_WINDOW = ("2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z")
SECOND_WINDOW = ("2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z")


def listing(ids, size=10, *, stop_at=None):
    """A listing of the records with *ids*, in that order, paged by offset."""
    ids = list(ids)

    def pages(skip):
        for position in range(skip, len(ids), size):
            if stop_at is not None and position >= stop_at:
                raise KeyboardInterrupt
            chunk = ids[position : position + size]
            yield Page(position, [records(i, i + 1)[0] for i in chunk], len(ids))

    return pages


def walk(writer, checkpoint, pages):
    """Run an export of *pages* on an opened *writer* from *checkpoint*."""
    return run_export(
        writer=writer,
        checkpoint=checkpoint,
        pages=pages,
        next_position=position_after("contacts"),
        statistics=Stats,
    )


#: The SQLite schema of checkpoint version 1, before windows.
SCHEMA_1 = """
CREATE TABLE records (id TEXT PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE export_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL,
    parameters TEXT NOT NULL,
    next_position INTEGER NOT NULL,
    count INTEGER NOT NULL,
    total INTEGER,
    complete INTEGER NOT NULL
);
"""


def test_output_format_follows_the_extension():
    """.jsonl is JSON Lines, .sqlite and .db SQLite (any case); others are refused naming path."""
    assert output_format("a/b.jsonl") == "jsonl"
    assert output_format("b.SQLITE") == "sqlite"
    assert output_format("b.db") == "sqlite"
    for bad in ("b.csv", "b", "b.json"):
        with pytest.raises(OutputError, match=r"path must end in \.jsonl"):
            output_format(bad)
    assert isinstance(
        open_writer("x.db", PARAMETERS, initial_position=0, key_of=key_of), SqliteWriter
    )
    assert isinstance(
        open_writer("x.jsonl", PARAMETERS, initial_position=0, key_of=key_of), JsonlWriter
    )


def test_a_whole_export_writes_each_record_once_and_is_marked_complete(tmp_path, kind):
    """Every record is written once, raw, and the export is complete; reopening says so."""
    path = out_path(tmp_path, kind)
    with make(kind, path) as writer:
        result = export(writer, 95)
    assert result.records == result.new == 95
    assert result.pages == 10
    assert result.complete
    with make(kind, path) as writer:
        assert writer.keys() == [str(i) for i in range(95)]
        again = writer.open()
    assert again.complete
    assert again.count == 95
    if kind == "jsonl":
        lines = path.read_text(encoding="utf-8").splitlines()
        assert json.loads(lines[3]) == {"contactId": 3, "fromAddress": "caf\u00e9 3", "n": [3]}
        assert "caf\u00e9" in lines[3]  # UTF-8 text, not \u escapes
        state = json.loads(state_path(path).read_text())
        assert state["complete"] is True
        assert state["count"] == 95
    else:
        with sqlite3.connect(path) as db:
            row = db.execute("SELECT record FROM records WHERE id = '3'").fetchone()
            assert json.loads(row[0])["fromAddress"] == "caf\u00e9 3"
        db.close()


def test_an_interrupted_export_resumes_where_it_stopped(tmp_path, kind):
    """Stopped mid-way, the same export continues at the next page; the whole holds each once."""
    path = out_path(tmp_path, kind)
    with make(kind, path) as writer, pytest.raises(KeyboardInterrupt):
        export(writer, 95, stop_at=40)
    with make(kind, path) as writer:
        checkpoint = writer.open()
        assert checkpoint.next_position == 40
        assert checkpoint.count == 40
        assert not checkpoint.complete
        fetched = []

        def pages(skip):
            fetched.append(skip)
            return pages_of(95)(skip)

        result = run_export(
            writer=writer,
            checkpoint=checkpoint,
            pages=pages,
            next_position=position_after("contacts"),
            statistics=Stats,
        )
    assert fetched == [40]
    assert result.records == 95
    assert result.new == 55
    with make(kind, path) as writer:
        assert writer.keys() == [str(i) for i in range(95)]


def test_a_page_written_but_not_checkpointed_is_not_written_twice(tmp_path, kind, monkeypatch):
    """Killed between a page's records and its checkpoint, the page is fetched again, once."""
    path = out_path(tmp_path, kind)
    with make(kind, path) as writer:
        writer.open()
        writer.write_page(records(0, 10), next_position=10, total=30)
        if kind == "jsonl":
            # The records reach the disk, then the process dies before the state file moves.
            def die(*args):
                raise KeyboardInterrupt

            monkeypatch.setattr(_writers, "replace_atomically", die)
            with pytest.raises(KeyboardInterrupt):
                writer.write_page(records(10, 20), next_position=20, total=30)
            monkeypatch.undo()
            assert len(path.read_text().splitlines()) == 20
        else:
            # The page's transaction is cut short: none of it stays.
            def interrupted():
                yield from records(10, 15)
                raise KeyboardInterrupt

            with pytest.raises(KeyboardInterrupt):
                writer.write_page(interrupted(), next_position=20, total=30)
    with make(kind, path) as writer:
        checkpoint = writer.open()
        assert checkpoint.next_position == 10
        result = run_export(
            writer=writer,
            checkpoint=checkpoint,
            pages=pages_of(30),
            next_position=position_after("contacts"),
            statistics=Stats,
        )
        assert result.records == 30
    with make(kind, path) as writer:
        assert writer.keys() == [str(i) for i in range(30)]


def test_a_torn_last_line_is_cut_off_on_resume(tmp_path):
    """A last line without its newline (a write cut short) is removed before appending."""
    path = tmp_path / "out.jsonl"
    with make("jsonl", path) as writer:
        writer.open()
        writer.write_page(records(0, 10), next_position=10, total=30)
    whole = path.read_bytes()
    with path.open("ab") as file:
        file.write(b'{"contactId":10,"fromAddr')
    with make("jsonl", path) as writer:
        checkpoint = writer.open()
        assert path.read_bytes() == whole
        assert checkpoint.count == 10
        run_export(
            writer=writer,
            checkpoint=checkpoint,
            pages=pages_of(30),
            next_position=position_after("contacts"),
            statistics=Stats,
        )
    assert [json.loads(line)["contactId"] for line in path.read_text().splitlines()] == list(
        range(30)
    )


def test_a_torn_only_line_leaves_an_empty_file(tmp_path):
    """A file holding nothing but a torn line is emptied and the export starts over."""
    path = tmp_path / "out.jsonl"
    with make("jsonl", path) as writer:
        writer.open()
    path.write_bytes(b'{"contactId": 1' * 10000)  # longer than one read-back chunk
    with make("jsonl", path) as writer:
        assert writer.open().count == 0
    assert path.read_bytes() == b""


def test_a_broken_line_in_the_middle_is_refused(tmp_path):
    """A line that is not a record, before the last one, means someone else changed the file."""
    path = tmp_path / "out.jsonl"
    with make("jsonl", path) as writer:
        writer.open()
        writer.write_page(records(0, 3), next_position=3, total=None)
    lines = path.read_text().splitlines()
    lines[1] = "not json"
    path.write_text("\n".join(lines) + "\n")
    with make("jsonl", path) as writer, pytest.raises(OutputError, match=r"line 2 of .*out\.jsonl"):
        writer.open()


def test_other_parameters_are_refused_with_what_to_do(tmp_path, kind):
    """An output holding another export is refused, naming what differs and what to do."""
    path = out_path(tmp_path, kind)
    with make(kind, path) as writer:
        writer.open()
        writer.write_page(records(0, 10), next_position=10, total=30)
    other = {**PARAMETERS, "start": "b"}
    with make(kind, path, other) as writer, pytest.raises(OutputError) as caught:
        writer.open()
    message = str(caught.value)
    assert "start='a' (now 'b')" in message
    assert "choose another path" in message
    assert "page_size" not in message  # only what differs
    with make(kind, path) as writer:  # the output was left as it was
        assert writer.open().count == 10


def test_a_file_that_no_export_wrote_is_not_touched(tmp_path, kind):
    """An existing, non-empty output without a checkpoint is refused and left unchanged."""
    path = out_path(tmp_path, kind)
    if kind == "jsonl":
        path.write_text('{"contactId": 1}\n')
    else:
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE mine (x)")
        db.close()
    before = path.read_bytes()
    with make(kind, path) as writer, pytest.raises(OutputError, match="choose another path"):
        writer.open()
    assert path.read_bytes() == before


def test_a_file_that_is_not_a_database_is_refused(tmp_path):
    """A .sqlite file holding something else is refused as not an export database."""
    path = tmp_path / "out.sqlite"
    path.write_text("hello\n" * 100)
    with make("sqlite", path) as writer, pytest.raises(OutputError, match="not an export database"):
        writer.open()


def test_an_empty_output_file_is_used(tmp_path, kind):
    """An empty file (created ahead, say by mktemp) is a fresh start."""
    path = out_path(tmp_path, kind)
    path.write_bytes(b"")
    with make(kind, path) as writer:
        assert export(writer, 12).records == 12


def test_an_unwritable_output_is_reported(tmp_path, kind):
    """An output in a directory that does not exist is an OutputError naming it."""
    path = out_path(tmp_path / "missing", kind)
    with (
        make(kind, path) as writer,
        pytest.raises(OutputError, match=re.escape(f"cannot write {path}:")),
    ):
        writer.open()


def test_a_deleted_output_starts_over(tmp_path):
    """If the JSON Lines output was deleted but not its state file, the export starts again."""
    path = tmp_path / "out.jsonl"
    with make("jsonl", path) as writer:
        export(writer, 20)
    path.unlink()
    with make("jsonl", path) as writer:
        checkpoint = writer.open()
        assert checkpoint == Checkpoint(parameters=PARAMETERS, next_position=0, count=0)


def test_a_damaged_state_file_is_refused(tmp_path):
    """A state file that is not one is reported, with what to delete."""
    path = tmp_path / "out.jsonl"
    state_path(path).write_text("{}")
    with (
        make("jsonl", path) as writer,
        pytest.raises(OutputError, match="not an export state file"),
    ):
        writer.open()


def test_sqlite_keeps_the_newest_form_of_a_record_seen_again(tmp_path):
    """A record fetched again is updated in place and counted once."""
    path = tmp_path / "out.db"
    with make("sqlite", path) as writer:
        writer.open()
        assert writer.write_page(records(0, 5), next_position=5, total=None) == 5
        changed = [Record({"contactId": 4, "fromAddress": "new"}), *records(5, 7)]
        assert writer.write_page(changed, next_position=7, total=None) == 2
        assert writer.count == 7
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM records").fetchone() == (7,)
        assert json.loads(
            db.execute("SELECT record FROM records WHERE id = '4'").fetchone()[0]
        ) == {
            "contactId": 4,
            "fromAddress": "new",
        }
    db.close()


def test_a_record_repeated_across_pages_is_written_once(tmp_path, kind):
    """The same id on two pages of one run (a listing that shifted) is kept once."""
    path = out_path(tmp_path, kind)
    with make(kind, path) as writer:
        writer.open()
        writer.write_page(records(0, 5), next_position=5, total=None)
        assert writer.write_page(records(3, 8), next_position=10, total=None) == 3
    with make(kind, path) as writer:
        assert writer.keys() == [str(i) for i in range(8)]


def test_the_state_file_is_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    """A failure while the new state is written leaves the previous state file intact."""
    path = tmp_path / "out.jsonl"
    with make("jsonl", path) as writer:
        writer.open()
        writer.write_page(records(0, 10), next_position=10, total=None)
        before = state_path(path).read_bytes()

        def broken_fsync(fd):
            raise OSError("disk full")

        monkeypatch.setattr(_writers.os, "fsync", broken_fsync)
        with pytest.raises(OSError, match="disk full"):
            _writers.replace_atomically(state_path(path), b"{" * 100)
        monkeypatch.undo()
        assert state_path(path).read_bytes() == before


def test_a_killed_writer_never_leaves_a_partial_state_file(tmp_path):
    """SIGKILL at any instant while a process replaces the state file leaves a whole one."""
    target = tmp_path / "out.jsonl.state"
    script = textwrap.dedent(
        f"""
        import json, pathlib
        from ratekit_cxone._writers import replace_atomically
        target = pathlib.Path({str(target)!r})
        n = 0
        while True:
            n += 1
            replace_atomically(target, json.dumps({{"n": n, "pad": "x" * 200000}}).encode())
        """
    )
    process = subprocess.Popen([sys.executable, "-c", script])  # noqa: S603 - our own script
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if target.exists() and json.loads(target.read_bytes())["n"] >= 5:
                break
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=60)
    state = json.loads(target.read_bytes())
    assert state["n"] >= 5
    assert len(state["pad"]) == 200000


def test_progress_lines_come_every_interval_with_counts():
    """Without a terminal, a line gives records/total, pages, req/s and 429s every interval."""
    clock = FakeClock()
    stream = io.StringIO()
    progress = Progress("lines", stream=stream, interval=2.0, clock=clock)
    progress.start(0)
    clock.advance(1.0)
    progress.update(records=10, total=100, pages=1, statistics=Stats(2, 1, 1))
    assert stream.getvalue() == ""
    clock.advance(1.0)
    progress.update(records=20, total=100, pages=2, statistics=Stats(4, 1, 1))
    assert stream.getvalue() == (
        "export: 20/100 records (20%), 2 pages, 2.0 req/s, 1 throttled (429), 1 retry, 2 s\n"
    )
    clock.advance(2.5)
    progress.update(records=30, total=None, pages=3, statistics=Stats(9, 2, 2))
    assert stream.getvalue().splitlines()[-1] == (
        "export: 30 records, 3 pages, 2.0 req/s, 2 throttled (429), 2 retries, 4 s"
    )
    progress.close()


def test_quiet_progress_writes_nothing(tmp_path):
    """Mode "none" reports nothing, whatever happens."""
    clock = FakeClock()
    stream = io.StringIO()
    progress = Progress("none", stream=stream, clock=clock)
    progress.start(0)
    clock.advance(100)
    progress.update(records=10, total=10, pages=1, statistics=Stats(1))
    progress.close()
    assert stream.getvalue() == ""


def test_the_progress_bar_shows_records_total_and_the_postfix(tmp_path):
    """On a terminal, a tqdm bar counts records towards the total and shows pages and 429s."""
    stream = io.StringIO()
    path = tmp_path / "out.jsonl"
    with make("jsonl", path) as writer:
        checkpoint = writer.open()
        progress = Progress("bar", stream=stream)
        run_export(
            writer=writer,
            checkpoint=checkpoint,
            pages=pages_of(50),
            next_position=position_after("contacts"),
            statistics=lambda: Stats(7, 3, 0),
            progress=progress,
        )
    shown = stream.getvalue()
    assert "50/50" in shown
    assert "records" in shown
    assert "5 pages" in shown
    assert "throttled" in shown


def test_the_summary_names_every_count():
    """The summary line gives records, pages, requests with their rate, 429s, retries and time."""
    result = _export.ExportResult(
        path=_writers.Path("o.jsonl"),
        records=1,
        new=1,
        pages=2,
        requests=10,
        throttled=3,
        retries=1,
        elapsed=4.0,
        complete=True,
    )
    assert result.summary() == (
        "exported 1 record to o.jsonl (1 new in this run) in 4.0 s: 2 pages, "
        "10 requests (2.5/s), 3 throttled (429), 1 retry"
    )


def test_interactions_continue_at_the_next_page_number():
    """Page numbers go up by one; offsets by the records a page held."""
    page = Page(3, records(0, 7), None)
    assert position_after("interactions")(page) == 4
    assert position_after("contacts")(page) == 10


def test_abandon_removes_only_what_open_created_before_any_page(tmp_path, kind):
    """An export that fails before its first page leaves nothing; after one, all stays."""
    path = out_path(tmp_path, kind)
    writer = make(kind, path)
    writer.open()
    writer.abandon()
    assert list(tmp_path.iterdir()) == []
    writer = make(kind, path)
    writer.open()
    writer.write_page(records(0, 3), next_position=3, total=None)
    writer.abandon()
    with make(kind, path) as again:
        assert again.open().count == 3


def test_abandon_keeps_an_empty_file_that_was_there(tmp_path):
    """A file that existed before the export is never removed."""
    path = tmp_path / "out.jsonl"
    path.write_bytes(b"")
    writer = make("jsonl", path)
    writer.open()
    writer.abandon()
    assert path.exists()
    assert not state_path(path).exists()


def test_records_are_written_as_compact_json():
    """Read-only mappings are written as objects; a value JSON cannot hold is refused."""
    raw = types.MappingProxyType({"contactId": 1, "inner": types.MappingProxyType({"a": 1})})
    assert _writers.record_json(raw) == '{"contactId":1,"inner":{"a":1}}'
    with pytest.raises(TypeError, match="a record holds a set"):
        _writers.record_json({"contactId": 1, "bad": {1}})


def test_writing_before_open_is_an_error(tmp_path, kind):
    """write_page and finish need open first."""
    writer = make(kind, out_path(tmp_path, kind))
    with pytest.raises(RuntimeError, match=r"needs open\(\) first"):
        writer.write_page(records(0, 1), next_position=1, total=None)
    with pytest.raises(RuntimeError, match=r"needs open\(\) first"):
        writer.finish()


@pytest.mark.parametrize(
    "damage",
    [
        "UPDATE export_state SET parameters = 'not json'",
        "UPDATE export_state SET parameters = '[1]'",
        "UPDATE export_state SET version = 99",
        "DELETE FROM export_state",
    ],
)
def test_a_damaged_export_database_is_refused(tmp_path, damage):
    """A database whose checkpoint is unreadable (and which holds records) is not touched."""
    path = tmp_path / "out.db"
    with make("sqlite", path) as writer:
        writer.open()
        writer.write_page(records(0, 3), next_position=3, total=None)
    with sqlite3.connect(path) as db:
        db.execute(damage)
    db.close()
    with make("sqlite", path) as writer, pytest.raises(OutputError, match="not an export database"):
        writer.open()


def test_without_tqdm_the_bar_falls_back_to_lines(tmp_path, monkeypatch):
    """Without the progress-bar library (the cli extra), a terminal gets plain lines."""
    monkeypatch.setitem(sys.modules, "tqdm", None)
    clock = FakeClock()
    stream = io.StringIO()
    progress = Progress("bar", stream=stream, clock=clock, interval=1.0)
    progress.start(0)
    clock.advance(1.0)
    progress.update(records=5, total=10, pages=1, statistics=Stats(1))
    progress.close()
    assert progress.mode == "lines"
    assert stream.getvalue().startswith("export: 5/10 records (50%), 1 page, 1.0 req/s")


def test_run_export_reads_the_total_from_the_client_when_pages_lack_it(tmp_path):
    """Pages without a total take the client's; any iterator of pages will do."""
    path = tmp_path / "out.jsonl"
    with make("jsonl", path) as writer:
        checkpoint = writer.open()
        result = run_export(
            writer=writer,
            checkpoint=checkpoint,
            pages=lambda skip: iter([Page(0, records(0, 5), None), Page(5, records(5, 8), None)]),
            next_position=position_after("contacts"),
            statistics=Stats,
            total=lambda: 8,
        )
    assert result.records == 8
    assert json.loads(state_path(path).read_text())["total"] == 8


def test_one_export_at_a_time_per_output(tmp_path, kind):
    """While one export holds an output, another is refused; once it ends, it may go on."""
    path = out_path(tmp_path, kind)
    with make(kind, path) as first:
        first.open()
        first.write_page(records(0, 3), next_position=3, total=None)
        with make(kind, path) as second, pytest.raises(OutputError, match="another export"):
            second.open()
    with make(kind, path) as third:
        assert third.open().count == 3


def test_a_writer_refused_the_lock_removes_nothing(tmp_path, kind, monkeypatch):
    """Two exports started at once: the one refused the lock leaves the other's files intact."""
    path = out_path(tmp_path, kind)
    winner = make(kind, path)
    claimed = []
    lock = _writers._lock

    def race(*args):
        # The winner claims the output after the loser looked at it, before the loser locks.
        monkeypatch.setattr(_writers, "_lock", lock)
        claimed.append(winner.open())
        lock(*args)

    monkeypatch.setattr(_writers, "_lock", race)
    loser = make(kind, path)
    with pytest.raises(OutputError, match="being written by another export"):
        loser.open()
    loser.abandon()
    assert path.exists()
    if kind == "jsonl":
        assert state_path(path).exists()
    with winner:
        result = walk(winner, claimed[0], pages_of(25))
    assert result.records == result.new == 25
    with make(kind, path) as reader:
        assert reader.keys() == [str(i) for i in range(25)]
        assert reader.open().complete


def test_an_output_removed_before_it_is_locked_is_created_again(tmp_path, kind, monkeypatch):
    """An output its holder removes (abandon) while another export opens it is claimed anew."""
    path = out_path(tmp_path, kind)
    first = make(kind, path)
    first.open()
    lock = _writers._lock

    def removed_meanwhile(*args):
        monkeypatch.setattr(_writers, "_lock", lock)
        first.abandon()
        lock(*args)

    monkeypatch.setattr(_writers, "_lock", removed_meanwhile)
    with make(kind, path) as second:
        assert export(second, 12).records == 12
    with make(kind, path) as reader:
        assert reader.keys() == [str(i) for i in range(12)]


def test_files_are_removed_only_while_the_lock_is_held(tmp_path, kind):
    """Leaving the with block by an exception removes what open created; after close, nothing."""
    path = out_path(tmp_path, kind)

    def fail_after_open():
        with make(kind, path) as writer:
            writer.open()
            raise LookupError

    with pytest.raises(LookupError):
        fail_after_open()
    assert list(tmp_path.iterdir()) == []
    writer = make(kind, path)
    writer.open()
    writer.close()
    writer.abandon()
    assert path.exists()
    with make(kind, path) as again:
        assert again.open().count == 0


@pytest.mark.parametrize("where", ["a directory", "a missing directory"])
def test_an_output_that_cannot_be_created_is_one_line_and_leaves_nothing(tmp_path, kind, where):
    """A path that is a directory, or in a missing one: one line naming it and why; no file."""
    if where == "a directory":
        path = out_path(tmp_path, kind)
        path.mkdir()
        cause = "Is a directory"
    else:
        path = out_path(tmp_path / "missing", kind)
        cause = "No such file or directory"
    before = sorted(tmp_path.rglob("*"))
    writer = make(kind, path)
    with pytest.raises(OutputError) as caught:
        writer.open()
    writer.abandon()
    assert str(caught.value) == (
        f"cannot write {path}: {cause}; once that is fixed, open the same export again to resume"
    )
    assert sorted(tmp_path.rglob("*")) == before


def test_a_file_size_limit_fails_the_page_and_the_export_resumes(tmp_path, kind):
    """A page over RLIMIT_FSIZE (EFBIG) is an OutputError naming the path; then it resumes."""
    path = out_path(tmp_path, kind)
    script = textwrap.dedent(
        f"""
        import pathlib, resource, signal, types
        from ratekit_cxone._writers import OutputError, open_writer

        def page(first, last):
            # Big enough records that the page needs room the limit does not leave.
            return [
                types.SimpleNamespace(key=str(i), raw={{"contactId": i, "pad": "x" * 200}})
                for i in range(first, last)
            ]

        path = pathlib.Path({str(path)!r})
        writer = open_writer(
            path, {PARAMETERS!r}, initial_position=0, key_of=lambda raw: str(raw["contactId"])
        )
        writer.open()
        writer.write_page(page(0, 10), next_position=10, total=60)
        # Past the limit a write fails with EFBIG rather than killing the process.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        size = path.stat().st_size + 1000
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, resource.RLIM_INFINITY))
        try:
            writer.write_page(page(10, 60), next_position=60, total=60)
        except OutputError as error:
            print(error)
        writer.close()
        """
    )
    done = subprocess.run(  # noqa: S603 - our own script
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    # SQLite reports a failed write as an I/O error, without the system's reason.
    cause = "File too large" if kind == "jsonl" else "disk I/O error"
    assert done.stdout == (
        f"cannot write {path}: {cause}; once that is fixed, open the same export again to resume\n"
    )
    with make(kind, path) as writer:
        checkpoint = writer.open()
        assert (checkpoint.next_position, checkpoint.count) == (10, 10)
        result = walk(writer, checkpoint, pages_of(60))
    assert result.records == 60
    assert result.new == 50
    with make(kind, path) as reader:
        assert reader.keys() == [str(i) for i in range(60)]


def test_a_page_that_cannot_be_kept_is_an_error_and_the_export_resumes(tmp_path, kind):
    """A page whose state file or journal cannot be written: OutputError; resumed, none doubled."""
    path = out_path(tmp_path, kind)
    # A directory where the state's temporary file (JSON Lines) or SQLite's journal goes.
    blocker = path.with_name(path.name + (".state.tmp" if kind == "jsonl" else "-journal"))
    with make(kind, path) as writer:
        writer.open()
        writer.write_page(records(0, 10), next_position=10, total=30)
        blocker.mkdir()
        with pytest.raises(OutputError) as caught:
            writer.write_page(records(10, 20), next_position=20, total=30)
    if kind == "jsonl":
        failed = f"{state_path(path)} (the progress of {path}): Is a directory"
    else:
        failed = f"{path}: disk I/O error"
    assert str(caught.value) == (
        f"cannot write {failed}; once that is fixed, open the same export again to resume"
    )
    blocker.rmdir()
    with make(kind, path) as writer:
        checkpoint = writer.open()
        assert checkpoint.next_position == 10
        result = walk(writer, checkpoint, pages_of(30))
    assert result.records == 30
    with make(kind, path) as reader:
        assert reader.keys() == [str(i) for i in range(30)]


def test_restart_takes_only_the_new_records_of_a_new_window(tmp_path, kind):
    """A complete export restarted on a new window adds the records not there; counts exact."""
    path = out_path(tmp_path, kind)
    with make(kind, path) as writer:
        writer.open()
        walk(writer, writer.restart(next_position=0, window=FIRST_WINDOW), listing(range(30)))
    with make(kind, path) as writer:
        checkpoint = writer.open()
        assert checkpoint.complete
        assert checkpoint.window == FIRST_WINDOW
        restarted = writer.restart(next_position=0, window=SECOND_WINDOW)
        assert restarted == Checkpoint(
            parameters=PARAMETERS, next_position=0, count=30, window=SECOND_WINDOW, base=30
        )
        result = walk(writer, restarted, listing(range(20, 50)))
    assert result.records == 50
    assert result.new == 20
    with make(kind, path) as writer:
        assert writer.keys() == [str(i) for i in range(50)]
        again = writer.open()
    assert again.complete
    assert (again.count, again.total, again.window) == (50, 30, SECOND_WINDOW)


def test_an_interrupted_restart_resumes_at_its_own_position_and_window(tmp_path, kind):
    """A restarted walk stopped mid-way resumes at its position and window, each record once."""
    path = out_path(tmp_path, kind)
    with make(kind, path) as writer:
        export(writer, 30)
    with make(kind, path) as writer:
        writer.open()
        restarted = writer.restart(next_position=0, window=SECOND_WINDOW)
        with pytest.raises(KeyboardInterrupt):
            walk(writer, restarted, listing(range(20, 60), stop_at=20))
    with make(kind, path) as writer:
        checkpoint = writer.open()
        assert checkpoint == Checkpoint(
            parameters=PARAMETERS,
            next_position=20,
            count=40,
            total=40,
            window=SECOND_WINDOW,
            base=30,
        )
        result = walk(writer, checkpoint, listing(range(20, 60)))
    assert result.records == 60
    assert result.new == 20
    with make(kind, path) as writer:
        assert writer.keys() == [str(i) for i in range(60)]


def test_a_complete_export_takes_pages_only_after_restart(tmp_path, kind):
    """write_page on a complete export is refused until restart; restart needs open first."""
    path = out_path(tmp_path, kind)
    with make(kind, path) as writer:
        export(writer, 5)
    with make(kind, path) as writer:
        with pytest.raises(RuntimeError, match=r"restart\(\) needs open\(\) first"):
            writer.restart(next_position=0, window=None)
        writer.open()
        with pytest.raises(RuntimeError, match=r"needs restart\(\) first"):
            writer.write_page(records(5, 6), next_position=6, total=None)
    with make(kind, path) as writer:
        assert writer.keys() == [str(i) for i in range(5)]


def test_a_window_is_a_pair_of_strings():
    """A checkpoint's window is None or (start, end); anything else is refused, naming it."""
    assert Checkpoint(parameters={}, next_position=0, count=0).window is None
    for bad in [("a",), ["a", "b"], ("a", 1)]:
        with pytest.raises(TypeError, match=r"window must be None or a \(start, end\) pair"):
            Checkpoint(parameters={}, next_position=0, count=0, window=bad)


def test_an_unfinished_export_of_state_version_1_resumes(tmp_path, kind):
    """A checkpoint of version 1 (no window) is read with window None, resumed, then kept as 2."""
    path = out_path(tmp_path, kind)
    kept = records(0, 10)
    if kind == "jsonl":
        path.write_text("".join(_writers.record_json(r.raw) + "\n" for r in kept))
        state = {"version": 1, "parameters": PARAMETERS, "next_position": 10, "count": 10}
        state_path(path).write_text(json.dumps({**state, "total": 30, "complete": False}))
    else:
        with sqlite3.connect(path) as db:
            db.executescript(SCHEMA_1)
            db.executemany(
                "INSERT INTO records VALUES (?, ?)",
                [(r.key, _writers.record_json(r.raw)) for r in kept],
            )
            db.execute(
                "INSERT INTO export_state VALUES (1, 1, ?, 10, 10, 30, 0)",
                (json.dumps(PARAMETERS),),
            )
        db.close()
    with make(kind, path) as writer:
        checkpoint = writer.open()
        assert checkpoint == Checkpoint(parameters=PARAMETERS, next_position=10, count=10, total=30)
        assert checkpoint.window is None
        result = walk(writer, checkpoint, pages_of(30))
    assert (result.records, result.new) == (30, 20)
    with make(kind, path) as writer:
        assert writer.keys() == [str(i) for i in range(30)]
    if kind == "jsonl":
        assert json.loads(state_path(path).read_text())["version"] == 2
    else:
        with sqlite3.connect(path) as db:
            row = db.execute('SELECT version, complete, "window" FROM export_state').fetchone()
        db.close()
        assert row == (2, 1, None)


def test_a_stored_window_that_is_not_a_pair_is_refused(tmp_path, kind):
    """A damaged window in the checkpoint makes the output one that no export wrote."""
    path = out_path(tmp_path, kind)
    with make(kind, path) as writer:
        writer.open()
        writer.write_page(records(0, 3), next_position=3, total=None)
    if kind == "jsonl":
        state = json.loads(state_path(path).read_text())
        state_path(path).write_text(json.dumps({**state, "window": ["a"]}))
        refused = "not an export state file"
    else:
        with sqlite3.connect(path) as db:
            db.execute("""UPDATE export_state SET "window" = '["a", 2]'""")
        db.close()
        refused = "not an export database"
    with make(kind, path) as writer, pytest.raises(OutputError, match=refused):
        writer.open()
