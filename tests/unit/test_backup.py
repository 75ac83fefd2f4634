"""Full consistent copies before the first write: retention, size limit, no partial files left."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

from tests import dbfactory as f
from tests.unit.helpers import make_settings
from watchdogd.backup import backup_dir, db_size, take_backup
from watchdogd.opencode.store import OpencodeStore


@pytest.fixture
def db(tmp_path: Path) -> Path:
    db = f.make_db(tmp_path / "opencode.db")
    f.stuck_question(db)
    return db


@pytest.fixture
def store(db: Path):
    store = OpencodeStore(db)
    yield store
    store.close()


def test_copy_is_made_private_and_openable(tmp_path, db, store):
    settings = make_settings(tmp_path)
    # an uncheckpointed commit sits in the WAL: the copy must contain it
    extra = f.stuck_question(db, age_s=5)
    path, why = take_backup(settings, db, store.reader)
    assert why == "ok" and path is not None and path.exists()
    assert path.parent == backup_dir(settings, db)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    copy = sqlite3.connect(path)
    try:
        assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert copy.execute("SELECT data FROM part WHERE id = ?", (extra.part_id,)).fetchone()[
            0
        ] == f.read_text(db, "part", extra.part_id)
        assert (
            copy.execute("SELECT count(*) FROM part").fetchone()
            == sqlite3.connect(db).execute("SELECT count(*) FROM part").fetchone()
        )
    finally:
        copy.close()
    assert not store.reader.in_transaction


def test_backup_dir_is_per_db(tmp_path):
    settings = make_settings(tmp_path)
    a, b = (
        backup_dir(settings, tmp_path / "x" / "opencode.db"),
        backup_dir(settings, tmp_path / "y" / "opencode.db"),
    )
    assert a != b and a.parent == b.parent == settings.state_dir / "backups"
    assert a.name.startswith("opencode-")


def test_retention_keeps_the_newest(tmp_path, db, store, journal):
    settings = make_settings(tmp_path, backup={"keep": 2})
    made = [take_backup(settings, db, store.reader, journal)[0] for _ in range(4)]
    left = sorted(backup_dir(settings, db).glob("*.db"))
    assert left == sorted(made[-2:])
    assert len(set(made)) == 4  # every copy had its own name
    assert journal.backups(str(db)) == [str(p) for p in made[-2:]]


def test_retention_deletes_only_recorded_copies(tmp_path, db, store, journal):
    settings = make_settings(tmp_path, backup={"keep": 1})
    folder = backup_dir(settings, db)
    folder.mkdir(parents=True, mode=0o700)
    mine = folder / "opencode-00000000T000000.000000Z.db"  # the user's own copy, named like ours and older
    mine.write_bytes(b"keep me")
    made = [take_backup(settings, db, store.reader, journal)[0] for _ in range(3)]
    assert sorted(folder.glob("*.db")) == sorted([mine, made[-1]])
    assert mine.read_bytes() == b"keep me"


def test_keep_zero_disables_backups(tmp_path, db, store):
    path, why = take_backup(make_settings(tmp_path, backup={"keep": 0}), db, store.reader)
    assert path is None and "backup.keep = 0" in why
    assert not (tmp_path / "state" / "backups").exists()


def test_size_limit_skips_big_dbs(tmp_path, db, store):
    size = db_size(db)
    assert size >= db.stat().st_size  # the WAL counts too
    settings = make_settings(tmp_path, backup={"max_db_size": size - 1})
    path, why = take_backup(settings, db, store.reader)
    assert path is None and "over backup.max_db_size" in why and "before-images" in why
    assert not backup_dir(settings, db).exists()
    path, why = take_backup(make_settings(tmp_path, backup={"max_db_size": size}), db, store.reader)
    assert path is not None and why == "ok"


def test_failed_copy_leaves_no_partial_file(tmp_path, db):
    settings = make_settings(tmp_path)
    closed = sqlite3.connect(db)
    closed.close()
    with pytest.raises(sqlite3.Error):
        take_backup(settings, db, closed)
    folder = backup_dir(settings, db)
    assert list(folder.iterdir()) == []
