"""The inotify reader and the DB watcher on real files and a real SQLite writer: what is reported,
that a reader paused for a due pass hands everything to `drain()`, and that it listens again after."""

from __future__ import annotations

import shutil
import sqlite3
import threading
from pathlib import Path

import pytest

from tests import dbfactory
from watchdogd.file_events import (
    CHANGE,
    CLOSE,
    LIFECYCLE,
    DBWatcher,
    classify,
    nearest_existing,
    new_db,
    on_the_way,
)
from watchdogd.inotify import IN_CREATE, IN_DELETE_SELF, IN_ISDIR, IN_MODIFY, IN_MOVED_TO, Inotify, RawEvent

WAIT = 20.0  # generous: a loaded 2-core machine


class Batches:
    """on_batch for Inotify: records batches; `wants_pass` is what it answers (True pauses the reader)."""

    def __init__(self, wants_pass: bool = True):
        self.wants_pass = wants_pass
        self.batches: list[list[RawEvent]] = []
        self.arrived = threading.Event()

    def __call__(self, events: list[RawEvent]) -> bool:
        self.batches.append(events)
        self.arrived.set()
        return self.wants_pass


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


def test_watch_of_a_missing_folder_is_an_os_error(tmp_path):
    inotify = Inotify(Batches())
    try:
        with pytest.raises(OSError):
            inotify.watch(tmp_path / "absent")
    finally:
        inotify.stop()


def test_paused_reader_hands_events_to_drain_then_listens_again(folder):
    batches = Batches(wants_pass=True)
    inotify = Inotify(batches)
    inotify.watch(folder)
    inotify.start()
    try:
        (folder / "a").write_text("1")
        assert batches.arrived.wait(WAIT)
        assert any(e.name == "a" and e.mask & IN_CREATE for e in batches.batches[0])
        batches.arrived.clear()
        # Paused: nothing more reaches on_batch until a pass drains.
        (folder / "b").write_text("2")
        assert not batches.arrived.wait(0.5)
        drained = inotify.drain()
        assert any(e.name == "b" and e.mask & IN_CREATE for e in drained)
        assert len(batches.batches) == 1
        # After the drain it listens again.
        (folder / "c").write_text("3")
        assert batches.arrived.wait(WAIT)
        assert any(e.name == "c" for e in batches.batches[-1])
    finally:
        inotify.stop()
    assert inotify.drain() == []  # stopped: nothing, and no error


def test_batch_nobody_wanted_keeps_the_reader_listening(folder):
    batches = Batches(wants_pass=False)
    inotify = Inotify(batches)
    inotify.watch(folder)
    inotify.start()
    try:
        (folder / "a").write_text("1")
        assert batches.arrived.wait(WAIT)
        batches.arrived.clear()
        (folder / "b").write_text("2")
        assert batches.arrived.wait(WAIT)
        assert any(e.name == "b" for e in batches.batches[-1])
    finally:
        inotify.stop()


def test_deleted_folder_drops_its_watch(folder):
    inotify = Inotify(Batches(wants_pass=False))
    wd = inotify.watch(folder)
    inotify.start()
    try:
        shutil.rmtree(folder)
        deadline = threading.Event()
        for _ in range(int(WAIT / 0.05)):
            if not inotify.is_watched(wd):
                break
            deadline.wait(0.05)
        assert not inotify.is_watched(wd)
    finally:
        inotify.stop()


def test_commit_and_close_of_a_real_writer_are_classified(folder):
    db = dbfactory.make_db(folder / "opencode.db")
    seen: list[tuple[Path, str]] = []
    arrived = threading.Event()

    def on_event(path: Path, kind: str) -> None:
        seen.append((path, kind))
        arrived.set()

    watcher = DBWatcher(on_event)
    assert watcher.sync([db, folder / "sub" / "other.db"]) == {folder / "sub" / "other.db": folder}
    try:
        conn = sqlite3.connect(db)
        session = dbfactory.add_session(conn)
        conn.commit()
        assert arrived.wait(WAIT)
        assert (db, CHANGE) in seen
        conn.close()  # the last connection: checkpoint, -wal removed, the DB closed after writing
        kinds = set()
        for _ in range(int(WAIT / 0.05)):
            kinds |= watcher.drain()
            if (db, CLOSE) in kinds:
                break
            threading.Event().wait(0.05)
        assert (db, CLOSE) in kinds
        assert dbfactory.read_row(db, "session", session) is not None
    finally:
        watcher.stop()


@pytest.mark.parametrize(
    ("name", "mask", "kind"),
    [
        ("opencode.db", 0x2, CHANGE),  # IN_MODIFY
        ("opencode.db", 0x8, CLOSE),  # IN_CLOSE_WRITE
        ("opencode.db", 0x100, LIFECYCLE),  # IN_CREATE
        ("opencode.db", 0x80, LIFECYCLE),  # IN_MOVED_TO (a restored copy renamed into place)
        ("opencode.db-wal", 0x2, CHANGE),
        ("opencode.db-wal", 0x100, CHANGE),
        ("opencode.db-wal", 0x8, CLOSE),
        ("opencode.db-wal", 0x200, None),  # -wal removed after the last close: the close says it
        ("opencode.db-shm", 0x2, None),
        ("other.db", 0x2, None),
        ("", 0x400, LIFECYCLE),  # IN_DELETE_SELF: the folder itself went away
    ],
)
def test_classify(tmp_path, name, mask, kind):
    db = tmp_path / "opencode.db"
    assert classify(RawEvent(tmp_path, name, mask), db) == kind
    assert classify(RawEvent(tmp_path / "elsewhere", name, mask), db) is None


def test_queue_overflow_concerns_every_db(tmp_path):
    assert classify(RawEvent(Path("/"), "", 0x4000), tmp_path / "opencode.db") == LIFECYCLE


def test_without_inotify_the_watcher_reports_every_folder_missing(tmp_path, monkeypatch, capsys):
    """inotify_init1 can fail (fs.inotify.max_user_instances reached): the daemon keeps running on its poll."""

    def refuse(_on_batch):
        raise OSError(24, "Too many open files")

    monkeypatch.setattr("watchdogd.file_events.Inotify", refuse)
    watcher = DBWatcher(lambda *_: None)
    db = dbfactory.make_db(tmp_path / "opencode.db")
    assert watcher.sync([db]) == {}  # its folder exists; nothing is watched, the poll finds changes
    assert watcher.drain() == set()
    watcher.stop()
    assert "no file events" in capsys.readouterr().out


def test_missing_db_folder_is_waited_for_from_its_nearest_ancestor(tmp_path):
    db = tmp_path / "a" / "b" / "opencode.db"
    arrived = threading.Event()
    seen: list[tuple[Path, str]] = []

    def on_event(path: Path, kind: str) -> None:
        seen.append((path, kind))
        arrived.set()

    watcher = DBWatcher(on_event)
    try:
        assert watcher.sync([db]) == {db: tmp_path}
        (tmp_path / "a").mkdir()
        assert arrived.wait(WAIT) and (db, LIFECYCLE) in seen
        assert watcher.sync([db]) == {db: tmp_path / "a"}  # the pass moves the watch down
        watcher.drain()
        arrived.clear()
        (tmp_path / "a" / "b").mkdir()
        for _ in range(int(WAIT / 0.05)):
            if (db, LIFECYCLE) in watcher.drain() | set(seen[1:]):
                break
            threading.Event().wait(0.05)
        assert watcher.sync([db]) == {}
        watcher.drain()
        seen.clear()
        arrived.clear()
        dbfactory.make_db(db)  # created where it was expected: the DB itself appears
        assert arrived.wait(WAIT)
        assert (db, LIFECYCLE) in seen or (db, LIFECYCLE) in watcher.drain()
    finally:
        watcher.stop()


def test_a_new_opencode_db_next_to_a_watched_one_is_announced(folder):
    db = dbfactory.make_db(folder / "opencode.db")
    seen: list[tuple[Path, str]] = []
    arrived = threading.Event()

    def on_event(path: Path, kind: str) -> None:
        seen.append((path, kind))
        arrived.set()

    watcher = DBWatcher(on_event)
    try:
        assert watcher.sync([db]) == {}
        (folder / "notes.txt").write_text("not a DB")
        (folder / "opencode-beta.db").write_bytes(b"")
        kinds: set[tuple[Path, str]] = set()
        for _ in range(int(WAIT / 0.05)):
            kinds |= set(seen) | watcher.drain()
            if (folder / "opencode-beta.db", LIFECYCLE) in kinds:
                break
            threading.Event().wait(0.05)
        assert (folder / "opencode-beta.db", LIFECYCLE) in kinds
        assert not any(path.name == "notes.txt" for path, _ in kinds)
    finally:
        watcher.stop()


def test_a_failing_handler_neither_ends_the_reader_nor_leaves_it_paused(folder, capsys):
    calls = threading.Event()
    count = []

    def explode(_events):
        count.append(1)
        calls.set()
        raise RuntimeError("handler bug")

    inotify = Inotify(explode)
    inotify.watch(folder)
    inotify.start()
    try:
        (folder / "a").write_text("1")
        assert calls.wait(WAIT)
        calls.clear()
        (folder / "b").write_text("2")  # no drain in between: the reader must be listening again
        assert calls.wait(WAIT)
        assert inotify.alive()
    finally:
        inotify.stop()
    assert not inotify.alive()
    assert "file event handler failed" in capsys.readouterr().out


# -- where the watches go for DBs whose directory may not exist yet (ported from the watchdog-based watcher)
# --


def test_nearest_existing_walks_up_to_a_directory(tmp_path):
    assert nearest_existing(tmp_path / "a" / "b" / "c") == tmp_path
    (tmp_path / "a").mkdir()
    assert nearest_existing(tmp_path / "a" / "b" / "c") == tmp_path / "a"
    (tmp_path / "a" / "b").write_text("a file, not a directory")
    assert nearest_existing(tmp_path / "a" / "b" / "c") == tmp_path / "a"


def test_directory_events_on_the_way_to_a_missing_db_directory(tmp_path):
    db = tmp_path / "data" / "opencode" / "opencode.db"
    assert on_the_way(RawEvent(tmp_path, "data", IN_CREATE | IN_ISDIR), db)
    assert on_the_way(RawEvent(tmp_path, "data", IN_MOVED_TO | IN_ISDIR), db)
    assert on_the_way(RawEvent(tmp_path / "data", "opencode", IN_CREATE | IN_ISDIR), db)
    assert on_the_way(RawEvent(tmp_path, "", IN_DELETE_SELF), db)  # the watched ancestor itself went
    assert not on_the_way(RawEvent(tmp_path, "database", IN_CREATE | IN_ISDIR), db)  # a prefix, not a parent
    assert not on_the_way(RawEvent(tmp_path, "other", IN_CREATE | IN_ISDIR), db)
    assert not on_the_way(RawEvent(tmp_path, "data", IN_CREATE), db)  # a file named like the directory


def test_new_db_files_that_discovery_would_add(tmp_path):
    assert new_db(RawEvent(tmp_path, "opencode-dev.db", IN_CREATE)) == tmp_path / "opencode-dev.db"
    assert new_db(RawEvent(tmp_path, "opencode.db", IN_MOVED_TO)) == tmp_path / "opencode.db"
    assert new_db(RawEvent(tmp_path, "opencode.db-wal", IN_CREATE)) is None
    assert new_db(RawEvent(tmp_path, "notes.db", IN_CREATE)) is None
    assert new_db(RawEvent(tmp_path, "opencode-dev.db", IN_MODIFY)) is None


def test_the_watch_moves_down_as_the_path_is_created(tmp_path):
    """Real inotify: each directory created on the way is an event; a sync places the watch deeper. As in the
    daemon, each pass drains what the paused reader queued before it syncs."""
    db = tmp_path / "data" / "opencode" / "opencode.db"
    events: list[tuple[Path, str]] = []
    seen = threading.Event()

    def on_event(path: Path, kind: str) -> None:
        events.append((path, kind))
        seen.set()

    watcher = DBWatcher(on_event)
    try:
        assert watcher.sync([db]) == {db: tmp_path}
        (tmp_path / "data").mkdir()
        assert seen.wait(WAIT) and events[-1] == (db, LIFECYCLE)
        watcher.drain()
        assert watcher.sync([db]) == {db: tmp_path / "data"}
        (tmp_path / "data" / "opencode").mkdir()
        watcher.drain()
        assert watcher.sync([db]) == {}  # its own directory now: nothing is waited for
        seen.clear()
        db.write_bytes(b"")
        assert seen.wait(WAIT) and (db, LIFECYCLE) in events
    finally:
        watcher.stop()


def test_a_new_db_file_counts_only_in_a_db_directory_not_in_an_ancestor_watched_while_waiting(tmp_path):
    db = tmp_path / "data" / "opencode" / "opencode.db"
    events: list[tuple[Path, str]] = []
    watcher = DBWatcher(lambda path, kind: events.append((path, kind)))
    try:
        watcher.sync([db])
        (tmp_path / "opencode-stray.db").write_bytes(b"")  # in the ancestor: not where discovery looks
        (tmp_path / "data").mkdir()
        wait = threading.Event()
        wait.wait(1.0)  # inotify delivers within milliseconds; nothing to poll for a non-event
    finally:
        watcher.stop()
    assert (tmp_path / "opencode-stray.db", LIFECYCLE) not in events and (db, LIFECYCLE) in events
