"""Corrupt inputs: rows and files the daemon must explain and skip, never write."""

from __future__ import annotations

import hashlib
import json
import sqlite3

import pytest

from tests import dbfactory
from tests.integration.daemonproc import DaemonProcess
from tests.reliability.conftest import scenario
from tests.reliability.helpers import GRACE0, add_orphans, cli, journal_actions, pair_states

pytestmark = pytest.mark.integration


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def add_raw_part(db, stuck, data: str) -> str:
    return dbfactory.add_tool_part(db, stuck.session_id, stuck.message_id, data=data)


@scenario(
    "corrupt_inputs",
    'part `data` that is not JSON (but contains "status":"running"), next to a normal orphan in the same DB',
    "explained ('part … skipped: part data is not valid JSON'), skipped, never written; the normal orphan "
    "is still repaired",
)
def test_part_data_not_json(tmp_path, observe):
    db = dbfactory.make_db(tmp_path / "opencode.db")
    [good] = add_orphans(db, 1)
    stuck = dbfactory.stuck_question(db)
    bad = add_raw_part(db, stuck, '{"type":"tool","tool":"bash","state":{"status":"running"')
    before = dbfactory.read_text(db, "part", bad)
    scan = cli(tmp_path, "scan", "--db", str(db), env=GRACE0)
    assert f"part {bad} skipped: part data is not valid JSON" in scan.stderr
    reap = cli(tmp_path, "reap", "--db", str(db), env=GRACE0)
    assert reap.returncode == 0, reap.stdout + reap.stderr
    assert f"part {bad} skipped: part data is not valid JSON" in reap.stderr
    assert dbfactory.read_text(db, "part", bad) == before
    assert pair_states(db, [good]) == {good.part_id: "repaired"}
    observe(
        "scan and reap: 'part … skipped: part data is not valid JSON'",
        "row unchanged; the good orphan repaired",
    )


SHAPES = {
    "state-not-object": '{"type":"tool","tool":"bash","state":"x","s":{"status":"running"}}',
    "tool-not-string": '{"type":"tool","tool":5,"callID":7,"state":{"status":"running","input":{},"time":{"start":1}}}',
    "time-not-object": '{"type":"tool","tool":"bash","state":{"status":"running","input":{},"time":"yesterday"}}',
    "metadata-a-list": '{"type":"tool","tool":"bash","state":{"status":"running","input":{},"metadata":[1],'
    '"time":{"start":1}}}',
    "top-level-list": '[{"type":"tool","state":{"status":"running"}}]',
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
@scenario(
    "corrupt_inputs",
    "part `data` that is JSON of an unexpected shape (state a string, tool a number, "
    "state.time a string, state.metadata a list, a top-level list)",
    "explained, skipped, no write (the row is never guessed at)",
)
def test_json_of_unexpected_shape(tmp_path, shape, observe):
    db = dbfactory.make_db(tmp_path / "opencode.db")
    stuck = dbfactory.stuck_question(db)
    # The normal part of the fixture would be repaired: make it completed, keep only the odd one running.
    done = dbfactory.read_data(db, "part", stuck.part_id)
    done["state"]["status"] = "completed"
    with dbfactory.connection(db) as conn:
        conn.execute("UPDATE part SET data=? WHERE id=?", (dbfactory.compact(done), stuck.part_id))
    odd = add_raw_part(db, stuck, SHAPES[shape])
    before = dbfactory.snapshot(db)
    reap = cli(tmp_path, "reap", "--db", str(db), env=GRACE0)
    assert "Traceback" not in reap.stderr
    text = reap.stdout + reap.stderr
    assert odd in text and ("skipped" in text), text
    assert dbfactory.snapshot(db) == before
    assert [a["outcome"] for a in journal_actions(tmp_path / "state")] == []
    observe("reap names the part and why it is skipped; no row changed, nothing journaled")


@scenario(
    "corrupt_inputs",
    "the assistant message row of an orphan is not JSON",
    "explained, skipped (part and message both left as they are), no journal row",
)
def test_message_not_json(tmp_path, observe):
    db = dbfactory.make_db(tmp_path / "opencode.db")
    [orphan] = add_orphans(db, 1)
    with dbfactory.connection(db) as conn:
        conn.execute("UPDATE message SET data=? WHERE id=?", ("{not json", orphan.message_id))
    before = dbfactory.snapshot(db)
    reap = cli(tmp_path, "reap", "--db", str(db), env=GRACE0)
    assert reap.returncode == 1 and "Traceback" not in reap.stderr, reap.stderr
    assert "skipped" in reap.stdout and "message row is not valid JSON" in reap.stdout
    assert dbfactory.snapshot(db) == before
    assert journal_actions(tmp_path / "state") == []
    observe("reap: skipped '… its message row is not valid JSON): nothing written', exit 1")


@scenario(
    "corrupt_inputs",
    "a running tool part whose `data` is 50 MB",
    "explained ('over the 8 MiB limit'), skipped, never parsed into the journal, no write; scan stays quick",
)
def test_fifty_megabyte_part(tmp_path, observe):
    db = dbfactory.make_db(tmp_path / "opencode.db")
    stuck = dbfactory.stuck_question(db)
    value = dbfactory.read_data(db, "part", stuck.part_id)
    value["state"]["input"]["questions"][0]["question"] = "x" * (50 * 1024 * 1024)
    huge = dbfactory.compact(value)
    with dbfactory.connection(db) as conn:
        conn.execute("UPDATE part SET data=? WHERE id=?", (huge, stuck.part_id))
    reap = cli(tmp_path, "reap", "--db", str(db), env=GRACE0)
    assert "Traceback" not in reap.stderr
    assert f"part {stuck.part_id} skipped: part data is 50 MiB, over the 8 MiB limit" in reap.stderr
    assert dbfactory.read_text(db, "part", stuck.part_id) == huge
    assert journal_actions(tmp_path / "state") == []
    observe(
        "'part … skipped: part data is 50 MiB, over the 8 MiB limit: not parsed, never written'", "no write"
    )


def not_sqlite(path):
    path.write_bytes(b"this is not a database\n" * 100)


def truncated(path):
    dbfactory.make_db(path)
    add_orphans(path, 3)
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE filler(b BLOB)")
    conn.execute(
        "WITH RECURSIVE s(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM s WHERE x < 300) "
        "INSERT INTO filler SELECT randomblob(4000) FROM s"
    )
    conn.commit()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    size = path.stat().st_size
    with open(path, "r+b") as handle:
        handle.truncate(size * 6 // 10)


def opencode_2x(path):
    dbfactory.make_db(path)
    with dbfactory.connection(path) as conn:
        conn.execute("CREATE TABLE session_v2 (id text PRIMARY KEY, data text)")
    add_orphans(path, 1)


def unknown_layout(path):
    dbfactory.make_db(
        path,
        sql="CREATE TABLE project (id text, worktree text, vcs text, time_created integer, "
        "time_updated integer, sandboxes text); CREATE TABLE part (id text, data text);",
    )
    with dbfactory.connection(path) as conn:
        conn.execute(
            "INSERT INTO part VALUES ('prt_1', ?)",
            ('{"type":"tool","tool":"question","state":{"status":"running"}}',),
        )


FILES = {  # how to make it, what is said, `reap`'s exit code (1: candidates listed and reported, 2: DB error)
    "not-sqlite": (not_sqlite, "not an SQLite database", 2),
    "truncated": (truncated, "database disk image is malformed", 2),
    "opencode-2x": (opencode_2x, "newer opencode layout (session_v2): read-only, nothing will be written", 1),
    "unknown-layout": (unknown_layout, "not an opencode v1 database: table 'session' is missing", 2),
}


@pytest.mark.parametrize("kind", sorted(FILES))
@scenario(
    "corrupt_inputs",
    "the DB file is not SQLite, is truncated, has the opencode 2.x layout (session_v2), or "
    "an unknown layout; checked with scan, reap and the running daemon",
    "explained (one line naming the problem), skipped, no write: the file is byte-for-byte unchanged; the "
    "daemon keeps running and shows the problem in its status",
)
def test_bad_database_files(tmp_path, kind, observe):
    make, message, reap_code = FILES[kind]
    db = tmp_path / "opencode.db"
    make(db)
    before = digest(db)
    scan = cli(tmp_path, "scan", "--db", str(db), env=GRACE0)
    reap = cli(tmp_path, "reap", "--db", str(db), env=GRACE0)
    assert (scan.returncode, reap.returncode) == (2, reap_code), scan.stderr + reap.stdout + reap.stderr
    for result in (scan, reap):
        assert message in result.stdout + result.stderr and "Traceback" not in result.stderr
    daemon = DaemonProcess(tmp_path, [db], env={**GRACE0, "OPENCODE_WATCHDOGD_WATCH__POLL_INTERVAL": "1h"})
    try:
        status = daemon.wait_status(lambda s: s["databases"] and s["passes"] >= 1, what="status")
        shown = json.dumps(status["databases"])
        assert message in shown
        assert daemon.proc.poll() is None
    finally:
        assert daemon.stop() == 0
    assert digest(db) == before
    assert journal_actions(tmp_path / "state") == []
    observe(
        f"scan exit 2, reap exit {reap_code}: '{message}'",
        "daemon status shows it, daemon alive",
        "file unchanged",
    )
