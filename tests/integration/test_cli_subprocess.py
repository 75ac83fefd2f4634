"""`python -m watchdogd` as a real process against a real WAL DB that other connections are using."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import dbfactory as f

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("hermetic_env")]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def db(hermetic_env) -> Path:
    return f.make_db(hermetic_env["XDG_DATA_HOME"] / "opencode" / "opencode.db")


def watchdogd(*argv: str, grace: str = "0s") -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, OPENCODE_WATCHDOGD_POLICY__ORPHAN_GRACE=grace)
    return subprocess.run(
        [sys.executable, "-m", "watchdogd", *argv],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def spawn(*argv: str) -> subprocess.Popen[str]:
    env = dict(os.environ, OPENCODE_WATCHDOGD_POLICY__ORPHAN_GRACE="0s")
    return subprocess.Popen(
        [sys.executable, "-m", "watchdogd", *argv],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def status_of(db: Path, stuck: f.Stuck) -> tuple[str, bool]:
    """(part status, whether the message has time.completed), read through a fresh connection."""
    part, message = f.read_data(db, "part", stuck.part_id), f.read_data(db, "message", stuck.message_id)
    return part["state"]["status"], "completed" in message["time"]


def test_version():
    result = watchdogd("--version")
    assert result.returncode == 0 and result.stdout.startswith("opencode-watchdogd ")


def test_scan_reap_undo_while_another_connection_reads(db):
    # the call started a day ago, long before this test process (which keeps the DB open) started:
    # the holder is a restarted process, so the part is an orphan
    stuck = f.stuck_question(db, age_s=86400)
    original = {t: f.read_text(db, t, i) for t, i in (("part", stuck.part_id), ("message", stuck.message_id))}

    reader = sqlite3.connect(db, isolation_level=None)
    try:
        reader.execute("BEGIN")
        held = reader.execute("SELECT data FROM part WHERE id = ?", (stuck.part_id,)).fetchone()[0]

        scan = watchdogd("scan", "--json")
        assert scan.returncode == 1, scan.stderr
        [record] = json.loads(scan.stdout)
        assert (record["part_id"], record["owner"], record["verdict"], record["route"]) == (
            stuck.part_id,
            "restarted",
            "expired",
            "db-repair",
        )

        reap = watchdogd("reap")
        assert reap.returncode == 0, reap.stdout + reap.stderr
        assert reap.stdout.startswith("#1 done")
        assert status_of(db, stuck) == ("error", True)
        # the open read transaction still sees its snapshot: WAL let the write land beside it
        assert (
            reader.execute("SELECT data FROM part WHERE id = ?", (stuck.part_id,)).fetchone()[0]
            == held
            == original["part"]
        )

        again = watchdogd("reap")
        assert (again.returncode, again.stdout.strip()) == (0, "nothing due")

        undo = watchdogd("undo", "--last")
        assert undo.returncode == 0, undo.stdout + undo.stderr
        assert f"#1 restored part {stuck.part_id}" in undo.stdout
        assert {
            t: f.read_text(db, t, i) for t, i in (("part", stuck.part_id), ("message", stuck.message_id))
        } == original
    finally:
        reader.execute("ROLLBACK")
        reader.close()

    history = watchdogd("history", "--json")
    assert [(a["id"], a["route"], a["outcome"]) for a in json.loads(history.stdout)] == [
        (2, "undo", "done"),
        (1, "db-repair", "undone"),
    ]


def test_reap_against_a_writer_holding_the_lock(db):
    stuck = f.stuck_question(db, age_s=86400)
    before = f.snapshot(db)
    writer = sqlite3.connect(db, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    locked_at = time.monotonic()
    try:
        proc = spawn("reap")
        # opencode keeps the write lock for ~6 s: longer than the 5 s busy timeout
        time.sleep(max(0.0, 6.0 - (time.monotonic() - locked_at)))
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    out, err = proc.communicate(timeout=120)

    after = f.snapshot(db)
    if proc.returncode == 0:
        # it got the lock after the writer let go: the whole repair landed
        assert "done" in out
        assert status_of(db, stuck) == ("error", True)
    else:
        # it gave up at the busy timeout: it said so, and wrote nothing at all
        assert proc.returncode == 1, out + err
        assert "failed" in out and "locked" in out
        assert after == before
        history = json.loads(
            subprocess.run(
                [sys.executable, "-m", "watchdogd", "history", "--json"],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=60,
            ).stdout
        )
        assert [a["outcome"] for a in history] == ["failed"]
    # never half a repair: the part and its message change together or not at all
    part_changed = (
        f.read_text(db, "part", stuck.part_id) != dict((r[0], r[5]) for r in before["part"])[stuck.part_id]
    )
    message_changed = (
        f.read_text(db, "message", stuck.message_id)
        != dict((r[0], r[4]) for r in before["message"])[stuck.message_id]
    )
    assert part_changed == message_changed == (proc.returncode == 0)


def test_reap_waits_out_a_short_write_lock(db):
    stuck = f.stuck_question(db, age_s=86400)
    writer = sqlite3.connect(db, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    try:
        proc = spawn("reap")
        time.sleep(2)  # well inside the 5 s busy timeout, however late the process gets to its write
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, out + err
    assert out.startswith("#1 done")
    assert status_of(db, stuck) == ("error", True)
