"""Another writer holds opencode's write lock while a repair is due.

The issue asks for a 30 s hold; these tests hold the lock until the daemon's first attempt has
given up (the store's busy timeout is 5 s, so at least 5 s) and then about a second more, so the
wait-give-up-retry path really runs, without spending 30 s of CI time on it.
"""

from __future__ import annotations

import time

import pytest

from tests import dbfactory
from tests.integration.daemonproc import DaemonProcess, wait_until
from tests.reliability.conftest import scenario
from tests.reliability.helpers import GRACE0, add_orphans, cli, journal_actions, journal_lies, pair_states

pytestmark = pytest.mark.integration

BUSY_TIMEOUT_S = 5.0


@scenario(
    "locks",
    "a writer holds the write lock (BEGIN IMMEDIATE) longer than the 5 s busy timeout while 3 "
    "orphan repairs are due, under the running daemon",
    "the daemon waits/retries, never crashes, never half-writes; the repair lands after the lock is released",
)
def test_daemon_waits_out_a_held_write_lock(tmp_path, observe):
    db = dbfactory.make_db(tmp_path / "opencode.db")
    orphans = add_orphans(db, 3)
    with dbfactory.holder_process(db, "write"):
        locked_at = time.monotonic()
        daemon = DaemonProcess(
            tmp_path, [db], env={**GRACE0, "OPENCODE_WATCHDOGD_WATCH__POLL_INTERVAL": "1h"}
        )
        try:
            failed = wait_until(
                lambda: [a for a in journal_actions(daemon.state_dir) if a["outcome"] == "failed"],
                timeout=60,
                interval=0.1,
                what="a write attempt that gave up on the lock",
            )
            assert time.monotonic() - locked_at >= BUSY_TIMEOUT_S
            assert "locked" in failed[0]["detail"]
            assert set(pair_states(db, orphans).values()) == {"untouched"}
            assert daemon.proc.poll() is None
            time.sleep(1.0)  # the retry is waiting on the lock now
        except BaseException:
            daemon.stop()
            raise
    try:
        wait_until(
            lambda: set(pair_states(db, orphans).values()) == {"repaired"},
            timeout=60,
            interval=0.1,
            what="the repairs after the lock was released",
        )
        assert daemon.proc.poll() is None
        actions = journal_actions(daemon.state_dir)
        done = [a["part_id"] for a in actions if a["outcome"] == "done"]
        assert sorted(done) == sorted(o.part_id for o in orphans)  # each exactly once
        assert not [a for a in actions if a["outcome"] == "planned"]
        assert {a["outcome"] for a in actions} <= {"done", "failed"}
        assert journal_lies(db, daemon.state_dir) == []
    finally:
        assert daemon.stop() == 0
    observe(
        "first attempt gave up after the 5 s busy timeout, journaled failed with 'locked'",
        "no part/message pair half-written while locked",
        "all 3 repaired once after release; daemon kept running",
        "hold used: until the first give-up + 1 s (≥ 5 s, not 30 s)",
    )


@scenario(
    "locks",
    "`reap` while another process holds the write lock",
    "waits the busy timeout, fails cleanly (exit 1, one line, journaled failed), writes nothing; "
    "a later `reap` repairs",
)
def test_reap_cli_under_a_held_write_lock(tmp_path, observe):
    db = dbfactory.make_db(tmp_path / "opencode.db")
    orphans = add_orphans(db, 1)
    with dbfactory.holder_process(db, "write"):
        started = time.monotonic()
        result = cli(tmp_path, "reap", "--db", str(db), env=GRACE0)
        waited = time.monotonic() - started
        assert pair_states(db, orphans) == {orphans[0].part_id: "untouched"}
    assert result.returncode == 1, result.stderr
    assert "database is locked by another writer (busy timeout reached)" in result.stdout
    assert "Traceback" not in result.stderr
    assert waited >= BUSY_TIMEOUT_S
    assert [a["outcome"] for a in journal_actions(tmp_path / "state")] == ["failed"]
    again = cli(tmp_path, "reap", "--db", str(db), env=GRACE0)
    assert again.returncode == 0, again.stdout + again.stderr
    assert pair_states(db, orphans) == {orphans[0].part_id: "repaired"}
    observe(
        "exit 1 after the busy timeout: 'database is locked by another writer (busy timeout reached)'",
        "nothing written, journaled failed",
        "the next reap repaired it (exit 0)",
    )
