"""Backups: before the first write, restorable, retention, never torn (also under a writer and kill -9)."""

from __future__ import annotations

import random
import shutil
import sqlite3
import stat
import subprocess
import sys
import time

import pytest

from tests import dbfactory
from tests.integration.daemonproc import DaemonProcess, wait_until
from tests.reliability.conftest import scenario
from tests.reliability.helpers import GRACE0, REPO, add_orphans, clean_env, cli, journal_actions, pair_states
from watchdogd.backup import take_backup
from watchdogd.config import BackupConfig, Settings
from watchdogd.opencode.store import OpencodeStore

pytestmark = pytest.mark.integration


def copies(state_dir, suffix=".db"):
    return sorted(p for p in (state_dir / "backups").rglob(f"*{suffix}"))


def integrity(path) -> str:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


@scenario(
    "backups",
    "`reap` repairs orphans in a small DB",
    "a full copy is taken before the first write (it holds the rows as they were), files 0600 in 0700 "
    "directories; copying it back restores the DB exactly",
)
def test_backup_before_first_write_and_restore(tmp_path, observe):
    db = dbfactory.make_db(tmp_path / "opencode.db")
    orphans = add_orphans(db, 3)
    before = dbfactory.snapshot(db)
    result = cli(tmp_path, "reap", "--db", str(db), env=GRACE0)
    assert result.returncode == 0, result.stdout + result.stderr
    assert set(pair_states(db, orphans).values()) == {"repaired"}
    [copy] = copies(tmp_path / "state")
    assert integrity(copy) == "ok"
    assert dbfactory.snapshot(copy) == before  # taken before any write
    for path in [tmp_path / "state", *(tmp_path / "state").rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), f"{path}: {oct(mode)}"
    # Restore by hand, as the docs say: opencode stopped, the copy put in place, -wal/-shm removed.
    for suffix in ("-wal", "-shm"):
        (tmp_path / f"opencode.db{suffix}").unlink(missing_ok=True)
    shutil.copyfile(copy, db)
    assert integrity(db) == "ok" and dbfactory.snapshot(db) == before
    observe(
        "one copy, taken before the first write, equal to the pre-write rows",
        "state dir, backups/ and its sub-dirs 0700, every file 0600",
        "copied back: integrity ok, rows restored",
    )


@scenario(
    "backups",
    "the daemon repairs orphans in two separate passes",
    "one backup per DB per process lifetime (not one per pass)",
)
def test_one_backup_per_process_lifetime(tmp_path, observe):
    db = dbfactory.make_db(tmp_path / "opencode.db")
    first = add_orphans(db, 1)
    daemon = DaemonProcess(tmp_path, [db], env={**GRACE0, "OPENCODE_WATCHDOGD_WATCH__POLL_INTERVAL": "1h"})
    try:
        wait_until(
            lambda: pair_states(db, first)[first[0].part_id] == "repaired", timeout=30, what="first repair"
        )
        second = add_orphans(db, 1)
        wait_until(
            lambda: pair_states(db, second)[second[0].part_id] == "repaired", timeout=30, what="second repair"
        )
        wait_until(
            lambda: len([a for a in journal_actions(daemon.state_dir) if a["outcome"] == "done"]) == 2,
            timeout=30,
            what="both journaled",
        )
    finally:
        assert daemon.stop() == 0
    assert len(copies(daemon.state_dir)) == 1
    backups = [line for line in daemon.log_lines() if line.get("event") == "backup taken"]
    assert len(backups) == 1
    observe("two passes wrote, one backup taken")


@scenario(
    "backups",
    "retention: backup.keep = 2, four `reap` runs that each write",
    "only the 2 newest copies are kept, each intact",
)
def test_retention(tmp_path, observe):
    db = dbfactory.make_db(tmp_path / "opencode.db")
    config = tmp_path / "config.toml"
    config.write_text('[backup]\nkeep = 2\n[policy]\norphan_grace = "0s"\n')
    made = []
    for _ in range(4):
        add_orphans(db, 1)
        result = cli(tmp_path, "reap", "--db", str(db), "--config", str(config))
        assert result.returncode == 0, result.stdout + result.stderr
        made.append(copies(tmp_path / "state")[-1])
        time.sleep(0.01)
    kept = copies(tmp_path / "state")
    assert kept == made[-2:]
    assert all(integrity(p) == "ok" for p in kept)
    observe("4 copies made, the 2 newest kept, both pass integrity_check")


@scenario(
    "backups",
    "a DB over backup.max_db_size",
    "no full copy (explained in the log); the repair still happens with row before-images in the journal",
)
def test_big_db_is_not_copied(tmp_path, observe):
    db = dbfactory.make_db(tmp_path / "opencode.db")
    orphans = add_orphans(db, 1)
    result = cli(
        tmp_path,
        "reap",
        "--db",
        str(db),
        "-v",  # one-shot verbs log warnings only unless -v
        env={**GRACE0, "OPENCODE_WATCHDOGD_BACKUP__MAX_DB_SIZE": "1KiB"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "over backup.max_db_size" in result.stderr
    assert copies(tmp_path / "state") == []
    [action] = journal_actions(tmp_path / "state")
    assert action["outcome"] == "done" and action["part_before"] == orphans[0].part_before
    observe("'backup skipped … over backup.max_db_size' logged", "repaired; journal holds the before-image")


WRITER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
print("ready", flush=True)
i = 0
while True:
    conn.execute("BEGIN IMMEDIATE")
    for _ in range(2):  # every commit adds two rows and bumps the counter by two
        i += 1
        conn.execute("INSERT INTO filler(n, blob) VALUES (?, randomblob(3000))", (i,))
    conn.execute("UPDATE counter SET n = ?", (i,))
    conn.execute("COMMIT")
"""


def big_db(tmp_path):
    db = dbfactory.make_db(tmp_path / "opencode.db")
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE filler(n INTEGER, blob BLOB)")
    conn.execute("CREATE TABLE counter(n INTEGER)")
    conn.execute("INSERT INTO counter VALUES (0)")
    conn.execute(
        "WITH RECURSIVE s(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM s WHERE x < 2500) "
        "INSERT INTO filler(n, blob) SELECT -x, randomblob(4000) FROM s"
    )
    conn.commit()
    conn.close()
    return db


@scenario(
    "backups",
    "backups taken while another process commits continuously (two rows and a counter per "
    "transaction), 15 times",
    "every copy is a consistent snapshot: integrity_check ok, row count matches the counter (no torn page)",
)
def test_backups_under_a_busy_writer_are_consistent(tmp_path, observe):
    db = big_db(tmp_path)
    settings = Settings(state_dir=tmp_path / "state", backup=BackupConfig(keep=20))
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(db)], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "ready"
        store = OpencodeStore(db)
        made = []
        for _ in range(15):
            path, why = take_backup(settings, db, store.reader)
            assert path is not None, why
            made.append(path)
        store.close()
    finally:
        writer.kill()
        writer.wait()
    counts = set()
    for path in made:
        assert integrity(path) == "ok"
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        rows, counter = conn.execute(
            "SELECT (SELECT count(*) FROM filler WHERE n > 0), (SELECT n FROM counter)"
        ).fetchone()
        conn.close()
        assert rows == counter and rows % 2 == 0
        counts.add(rows)
    assert len(counts) > 1, "the writer made no progress during the backups: the test proved nothing"
    observe("15 copies during continuous commits: all integrity ok, each a whole-transaction snapshot")


BACKER = """
import sys
from pathlib import Path
from watchdogd.backup import take_backup
from watchdogd.config import BackupConfig, Settings
from watchdogd.opencode.store import OpencodeStore
settings = Settings(state_dir=Path(sys.argv[2]), backup=BackupConfig(keep=50))
store = OpencodeStore(Path(sys.argv[1]))
print("ready", flush=True)
while True:
    take_backup(settings, Path(sys.argv[1]), store.reader)
"""


@scenario(
    "backups",
    "a process taking backups in a loop is SIGKILLed at 8 seeded random moments",
    "no half-made copy is ever named *.db (each kept copy is intact); the next backup removes the "
    "partial files of dead processes",
)
def test_kill_during_backup_never_leaves_a_torn_copy(tmp_path, observe):
    rng = random.Random(4242)
    db = big_db(tmp_path)
    state_dir = tmp_path / "state"
    for _ in range(8):
        proc = subprocess.Popen(
            [sys.executable, "-c", BACKER, str(db), str(state_dir)],
            stdout=subprocess.PIPE,
            text=True,
            env=clean_env(tmp_path),
            cwd=REPO,
        )
        try:
            assert proc.stdout.readline().strip() == "ready"
            time.sleep(rng.uniform(0.0, 0.3))
        finally:
            proc.kill()
            proc.wait()
    made = copies(state_dir)
    assert made and all(integrity(p) == "ok" for p in made)
    orphans = add_orphans(db, 1)
    result = cli(tmp_path, "reap", "--db", str(db), env=GRACE0, state_dir=state_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert pair_states(db, orphans)[orphans[0].part_id] == "repaired"
    assert copies(state_dir, ".partial") == []
    observe(
        "every kept *.db copy passed integrity_check",
        "partial copies of killed processes were removed by the next backup",
    )
