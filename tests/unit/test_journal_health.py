"""A damaged journal is recognised by its type, its header and SQLite's own verdict; nothing writes through it."""

from __future__ import annotations

import socket
import sqlite3
from pathlib import Path

import pytest

from watchdogd.journal import Journal, read_recent
from watchdogd.journal_health import JournalDamaged, ReadOnlyJournal, damage_of, file_damage
from watchdogd.notify import Notifier


def test_file_damage_by_type_and_header(tmp_path: Path) -> None:
    assert file_damage(tmp_path / "missing.db") is None
    (tmp_path / "empty.db").touch()
    assert file_damage(tmp_path / "empty.db") is None  # SQLite makes a new database of an empty file
    (tmp_path / "dir.db").mkdir()
    assert file_damage(tmp_path / "dir.db") == "a directory is in its place"
    (tmp_path / "text.db").write_text("not sqlite at all, but long enough")
    assert file_damage(tmp_path / "text.db") == "file is not a database"
    sqlite3.connect(tmp_path / "real.db").execute("CREATE TABLE t(x)").connection.close()
    assert file_damage(tmp_path / "real.db") is None
    (tmp_path / "link.db").symlink_to(tmp_path / "text.db")
    assert file_damage(tmp_path / "link.db") is None  # refused by the state dir check, not judged here


def test_sqlite_codes_for_damage_only(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"\x01" * 4096)
    with pytest.raises(sqlite3.DatabaseError) as caught:
        sqlite3.connect(garbage).execute("SELECT * FROM sqlite_master").fetchall()
    assert damage_of(caught.value) == "file is not a database"
    with pytest.raises(sqlite3.OperationalError) as caught:
        sqlite3.connect(":memory:").execute("SELECT * FROM nowhere")
    assert damage_of(caught.value) is None


def test_journal_refuses_a_truncated_file_with_the_fix(tmp_path: Path) -> None:
    state = tmp_path / "state"
    journal = Journal(state)
    journal.record_sightings("/db", {f"prt_{i:04d}": (1.0 * i, None) for i in range(3000)})
    journal.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    journal.close()
    path = state / "journal.db"
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size // 2)
    with pytest.raises(JournalDamaged) as caught:
        Journal(state)
    assert "is damaged (" in str(caught.value) and "move it aside: cd " in str(caught.value)
    with pytest.raises(JournalDamaged):
        read_recent(state, 5)


def test_read_only_journal_remembers_sightings_and_writes_nothing(tmp_path: Path) -> None:
    stand_in = ReadOnlyJournal(JournalDamaged(tmp_path / "journal.db", "file is not a database"))
    stand_in.record_sightings("/db", {"prt_1": (1.0, None)})
    assert stand_in.sightings("/db") == {"prt_1": (1.0, None)} and stand_in.undone("/db", ["prt_1"]) == {}
    with pytest.raises(JournalDamaged):
        stand_in.journaled(db="/db")
    with pytest.raises(JournalDamaged):
        stand_in.record_backup("/db", "/copy")


def test_a_long_status_keeps_its_ready(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A STATUS= shortened with "…" must not take READY=1 down with it (sdnotify encodes as latin-1)."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(tmp_path / "notify.sock"))
    server.settimeout(5)
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify.sock"))
    Notifier().ready("x" * 1000)
    message = server.recv(65536).decode()
    server.close()
    assert message.startswith("READY=1\nSTATUS=xxx") and message.endswith("…")
