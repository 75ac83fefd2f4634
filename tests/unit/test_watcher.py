"""Where the watches go, and which file events matter, for DBs whose directory may not exist yet."""

from __future__ import annotations

import threading
from pathlib import Path

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileCreatedEvent,
    FileModifiedEvent,
    FileMovedEvent,
)

from watchdogd.watcher import LIFECYCLE, DBWatcher, nearest_existing, new_db, on_the_way


def test_nearest_existing_walks_up_to_a_directory(tmp_path):
    assert nearest_existing(tmp_path / "a" / "b" / "c") == tmp_path
    (tmp_path / "a").mkdir()
    assert nearest_existing(tmp_path / "a" / "b" / "c") == tmp_path / "a"
    (tmp_path / "a" / "b").write_text("a file, not a directory")
    assert nearest_existing(tmp_path / "a" / "b" / "c") == tmp_path / "a"


def test_directory_events_on_the_way_to_a_missing_db_directory(tmp_path):
    db = tmp_path / "data" / "opencode" / "opencode.db"
    assert on_the_way(DirCreatedEvent(str(tmp_path / "data")), tmp_path, db)
    assert on_the_way(DirMovedEvent(str(tmp_path / "tmp123"), str(tmp_path / "data")), tmp_path, db)
    assert on_the_way(DirCreatedEvent(str(tmp_path / "data" / "opencode")), tmp_path / "data", db)
    assert on_the_way(DirDeletedEvent(str(tmp_path)), tmp_path, db)  # the watched ancestor itself went
    assert not on_the_way(DirCreatedEvent(str(tmp_path / "database")), tmp_path, db)  # a prefix, not a parent
    assert not on_the_way(DirCreatedEvent(str(tmp_path / "other")), tmp_path, db)
    assert not on_the_way(FileCreatedEvent(str(tmp_path / "data")), tmp_path, db)


def test_new_db_files_that_discovery_would_add(tmp_path):
    assert new_db(FileCreatedEvent(str(tmp_path / "opencode-dev.db"))) == tmp_path / "opencode-dev.db"
    assert new_db(FileMovedEvent(str(tmp_path / "x.tmp"), str(tmp_path / "opencode.db"))) == tmp_path / "opencode.db"
    assert new_db(FileCreatedEvent(str(tmp_path / "opencode.db-wal"))) is None
    assert new_db(FileCreatedEvent(str(tmp_path / "notes.db"))) is None
    assert new_db(FileModifiedEvent(str(tmp_path / "opencode-dev.db"))) is None


def test_the_watch_moves_down_as_the_path_is_created(tmp_path):
    """Real inotify: each directory created on the way is an event; a sync places the watch deeper."""
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
        assert seen.wait(10) and events[-1] == (db, LIFECYCLE)
        assert watcher.sync([db]) == {db: tmp_path / "data"}
        (tmp_path / "data" / "opencode").mkdir()
        assert watcher.sync([db]) == {}  # its own directory now: nothing is waited for
        seen.clear()
        db.write_bytes(b"")
        assert seen.wait(10) and (db, LIFECYCLE) in events
    finally:
        watcher.stop()
