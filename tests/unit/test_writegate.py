"""The write gate: which DBs this process may write at all, and the settings that relax it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import dbfactory
from watchdogd.config import Settings
from watchdogd.opencode import writegate
from watchdogd.opencode.writegate import FUSE_MAGIC, WriteRules, write_refusal


@pytest.fixture
def on_fs(monkeypatch):
    """Make statfs report `magic` for the test's DB directory only."""

    def use(db: Path, magic: int) -> None:
        real = writegate.fs_magic
        monkeypatch.setattr(
            writegate, "fs_magic", lambda path: magic if path.startswith(str(db.parent)) else real(path)
        )

    return use


def test_a_local_db_of_our_own_may_be_written(db):
    assert write_refusal(db) is None


def test_a_missing_db_is_not_refused_there_is_nothing_to_write(tmp_path):
    assert write_refusal(tmp_path / "absent.db") is None


def test_fuse_is_refused_by_default_with_the_key_that_allows_it(db, on_fs):
    on_fs(db, FUSE_MAGIC)
    refusal = write_refusal(db)
    assert refusal and "fuse" in refusal and "allow_fuse = true" in refusal


def test_allow_fuse_lets_a_fuse_db_be_written(db, on_fs):
    on_fs(db, FUSE_MAGIC)
    assert write_refusal(db, WriteRules(allow_fuse=True)) is None


def test_allow_fuse_never_opens_network_filesystems(db, on_fs):
    on_fs(db, 0x6969)  # NFS
    refusal = write_refusal(db, WriteRules(allow_fuse=True))
    assert refusal and "nfs" in refusal and "allow_fuse" not in refusal


def test_rules_come_from_the_settings(tmp_path):
    settings = Settings(state_dir=tmp_path / "state", allow_fuse=True, allow_other_users=True)
    assert WriteRules.from_settings(settings) == WriteRules(allow_other_users=True, allow_fuse=True)
    assert WriteRules.from_settings(Settings(state_dir=tmp_path / "s")) == WriteRules()


def test_the_store_refuses_to_write_a_fuse_db_unless_allowed(tmp_path, on_fs):
    from watchdogd.opencode.store import OpencodeStore, RowChange, StoreError

    db = dbfactory.make_db(tmp_path / "opencode.db")
    stuck = dbfactory.stuck_question(db)
    on_fs(db, FUSE_MAGIC)
    before = dbfactory.read_text(db, "part", stuck.part_id)
    change = [RowChange("part", stuck.part_id, before, before.replace('"running"', '"error"'))]
    with pytest.raises(StoreError, match="fuse"):
        OpencodeStore(db).compare_and_set(change)
    assert dbfactory.read_text(db, "part", stuck.part_id) == before
    assert OpencodeStore(db, rules=WriteRules(allow_fuse=True)).compare_and_set(change) is None
    assert '"error"' in dbfactory.read_text(db, "part", stuck.part_id)
