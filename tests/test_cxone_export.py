"""The exporter's writers: exactly once under resume, torn lines, atomic state, progress."""

from __future__ import annotations

import io
import json
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
from ratekit_cxone import _export
from ratekit_cxone._export import (
    Checkpoint,
    JsonlWriter,
    OutputError,
    Progress,
    SqliteWriter,
    open_writer,
    output_format,
    position_after,
    run_export,
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


def test_output_format_follows_the_extension():
    """.jsonl is JSON Lines, .sqlite and .db SQLite (any case); others are refused naming --out."""
    assert output_format("a/b.jsonl") == "jsonl"
    assert output_format("b.SQLITE") == "sqlite"
    assert output_format("b.db") == "sqlite"
    for bad in ("b.csv", "b", "b.json"):
        with pytest.raises(OutputError, match=r"--out must end in \.jsonl"):
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

            monkeypatch.setattr(_export, "replace_atomically", die)
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
    assert "choose another --out" in message
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
    with make(kind, path) as writer, pytest.raises(OutputError, match="choose another --out"):
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
    """An output in a directory that does not exist is an OutputError naming --out."""
    path = out_path(tmp_path / "missing", kind)
    with make(kind, path) as writer, pytest.raises(OutputError, match="cannot write --out"):
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

        monkeypatch.setattr(_export.os, "fsync", broken_fsync)
        with pytest.raises(OSError, match="disk full"):
            _export.replace_atomically(state_path(path), b"{" * 100)
        monkeypatch.undo()
        assert state_path(path).read_bytes() == before


def test_a_killed_writer_never_leaves_a_partial_state_file(tmp_path):
    """SIGKILL at any instant while a process replaces the state file leaves a whole one."""
    target = tmp_path / "out.jsonl.state"
    script = textwrap.dedent(
        f"""
        import json, pathlib
        from ratekit_cxone._export import replace_atomically
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
        path=_export.Path("o.jsonl"),
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
    assert _export.record_json(raw) == '{"contactId":1,"inner":{"a":1}}'
    with pytest.raises(TypeError, match="a record holds a set"):
        _export.record_json({"contactId": 1, "bad": {1}})


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
