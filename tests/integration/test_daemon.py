"""`opencode-watchdogd run` as a real subprocess: triggers, sd_notify, signals, DB life cycle."""

from __future__ import annotations

import shutil
import signal
import sqlite3
import time

import pytest

from tests import dbfactory
from tests.integration.daemonproc import Holder, NotifySocket, wait_until

pytestmark = pytest.mark.integration


def part_status(db, part_id) -> str:
    return dbfactory.read_data(db, "part", part_id)["state"]["status"]


@pytest.fixture
def notify(tmp_path):
    sock = NotifySocket(tmp_path / "notify.sock")
    yield sock
    sock.close()


def test_ready_status_watchdog_and_graceful_stop(tmp_path, notify, daemons):
    db = dbfactory.make_db(tmp_path / "opencode.db")
    daemon = daemons(tmp_path, [db], notify=notify, env={"WATCHDOG_USEC": "1000000"})
    ready = notify.wait_for("READY=1")
    assert ready == "READY=1"
    status = notify.wait_for("STATUS=")
    assert "watching 1 DB" in status and "0 candidates" in status
    # WATCHDOG=1 at half of WATCHDOG_USEC (1 s), again and again while the daemon runs (a loaded machine only
    # spaces them out: no rate asserted).
    wait_until(lambda: notify.lines().count("WATCHDOG=1") >= 3, timeout=60, what="three WATCHDOG=1 pings")
    daemon.signal(signal.SIGTERM)
    assert daemon.proc.wait(timeout=60) == 0
    assert "STOPPING=1" in notify.lines()
    summary = [line for line in daemon.log_lines() if str(line.get("event", "")).startswith("stopped after")]
    assert len(summary) == 1 and "repaired" in summary[0]["event"]


def test_watchdog_pid_for_another_process_is_ignored(tmp_path, notify, daemons):
    db = dbfactory.make_db(tmp_path / "opencode.db")
    daemons(tmp_path, [db], notify=notify, env={"WATCHDOG_USEC": "400000", "WATCHDOG_PID": "1"})
    notify.wait_for("READY=1")
    time.sleep(1.0)
    assert "WATCHDOG=1" not in notify.lines()


def test_orphan_repaired_at_its_deadline_without_a_poll(tmp_path, notify, daemons):
    db = dbfactory.make_db(tmp_path / "opencode.db")
    daemon = daemons(
        tmp_path,
        [db],
        notify=notify,
        env={
            "OPENCODE_WATCHDOGD_POLICY__ORPHAN_GRACE": "2s",
            "OPENCODE_WATCHDOGD_WATCH__POLL_INTERVAL": "1h",
        },
    )
    notify.wait_for("READY=1")
    stuck = dbfactory.stuck_question(db, age_s=0)  # its row changed just now: the grace counts from there
    # The deadline job, not the hourly poll (a loaded machine only delays it: no upper bound asserted).
    wait_until(lambda: part_status(db, stuck.part_id) == "error", timeout=30, what="repair")
    part = dbfactory.read_data(db, "part", stuck.part_id)
    assert part["state"]["time"]["end"] - stuck.start_ms >= 2000  # never before the grace was over
    assert "Abandoned by opencode-watchdogd" in part["state"]["error"]
    assert part["state"]["metadata"]["interrupted"] is True
    message = dbfactory.read_data(db, "message", stuck.message_id)
    assert message["time"]["completed"] and message["error"]["name"] == "MessageAbortedError"
    status = daemon.wait_status(
        lambda s: s["counts"]["repaired"] == 1 and not s["candidates"], what="re-pass after repair"
    )
    assert status["counts"]["failed"] == 0


def test_holder_exit_is_noticed_without_a_file_change(tmp_path, notify, daemons):
    db = dbfactory.make_db(tmp_path / "opencode.db")
    holder = Holder(db)
    try:
        stuck = dbfactory.stuck_question(db, age_s=0)  # started while the holder runs: it may own it
        daemon = daemons(
            tmp_path,
            [db],
            notify=notify,
            env={
                "OPENCODE_WATCHDOGD_POLICY__ORPHAN_GRACE": "1s",
                "OPENCODE_WATCHDOGD_WATCH__POLL_INTERVAL": "1h",
            },
        )
        notify.wait_for("READY=1")
        status = daemon.wait_status(lambda s: s["candidates"], what="candidate listed")
        assert status["candidates"][0]["owner"].startswith(("held:", "live-unreachable:"))
        assert status["candidates"][0]["verdict"] == "keep"
        time.sleep(1.5)
        assert part_status(db, stuck.part_id) == "running"  # a possible live owner: never written
    finally:
        holder.kill()
    # The poll is an hour away: only the exit itself (its fds closing) can bring the repair. A loaded machine only
    # delays it, so no upper bound on how soon.
    wait_until(lambda: part_status(db, stuck.part_id) == "error", timeout=60, what="repair after holder exit")


def test_no_self_trigger_loop_when_the_db_is_untouched(tmp_path, notify, daemons):
    db = dbfactory.make_db(tmp_path / "opencode.db")
    dbfactory.stuck_question(db, age_s=0)
    holder = Holder(db)  # keeps the part live so the candidate stays
    try:
        daemon = daemons(tmp_path, [db], notify=notify, extra_args=["-v"])
        notify.wait_for("READY=1")
        time.sleep(1.0)  # let start-up events settle

        def passes() -> int:
            return sum(1 for line in daemon.log_lines() if line.get("event") == "pass")

        before = passes()
        assert before >= 1  # the debug "pass" line is there to be counted
        time.sleep(10)
        assert passes() == before
    finally:
        holder.kill()


def test_sighup_reload_valid_and_invalid(tmp_path, notify, daemons):
    db = dbfactory.make_db(tmp_path / "opencode.db")
    config = tmp_path / "watchdogd.toml"
    config.write_text('[policy]\norphan_grace = "1h"\n')
    stuck = dbfactory.stuck_question(db, age_s=60)
    daemon = daemons(tmp_path, [db], notify=notify, extra_args=["--config", str(config)])
    notify.wait_for("READY=1")
    time.sleep(0.5)
    assert part_status(db, stuck.part_id) == "running"

    config.write_text('[policy]\norphan_grace = "soon"\n')
    mark = len(notify.lines())
    daemon.signal(signal.SIGHUP)
    notify.wait_for("RELOADING=1", after=mark)
    failed = notify.wait_for("STATUS=config reload failed", after=mark)
    assert "orphan_grace" in failed
    notify.wait_for("READY=1", after=mark)
    assert daemon.proc.poll() is None and part_status(db, stuck.part_id) == "running"
    monotonic = [line for line in notify.lines()[mark:] if line.startswith("MONOTONIC_USEC=")]
    assert monotonic and int(monotonic[0].split("=")[1]) > 0

    config.write_text('[policy]\norphan_grace = "0s"\n')
    mark = len(notify.lines())
    daemon.signal(signal.SIGHUP)
    notify.wait_for("RELOADING=1", after=mark)
    notify.wait_for("READY=1", after=mark)
    wait_until(
        lambda: part_status(db, stuck.part_id) == "error", timeout=60, what="repair under the new config"
    )


def test_db_that_appears_later_is_attached(tmp_path, notify, daemons):
    db = tmp_path / "later" / "opencode.db"
    daemon = daemons(
        tmp_path,
        [db],
        notify=notify,
        env={
            "OPENCODE_WATCHDOGD_POLICY__ORPHAN_GRACE": "0s",
            "OPENCODE_WATCHDOGD_WATCH__POLL_INTERVAL": "1s",
        },
    )
    notify.wait_for("READY=1")
    status = daemon.wait_status(lambda s: s["databases"], what="db listed")
    assert status["databases"][0]["exists"] is False
    db.parent.mkdir()
    dbfactory.make_db(db)
    stuck = dbfactory.stuck_question(db, age_s=60)
    wait_until(
        lambda: part_status(db, stuck.part_id) == "error", timeout=60, what="repair in a DB that appeared"
    )
    assert daemon.proc.poll() is None


def test_replaced_db_file_is_reattached(tmp_path, notify, daemons):
    db = dbfactory.make_db(tmp_path / "opencode.db")
    daemon = daemons(
        tmp_path,
        [db],
        notify=notify,
        env={
            "OPENCODE_WATCHDOGD_POLICY__ORPHAN_GRACE": "0s",
            "OPENCODE_WATCHDOGD_WATCH__POLL_INTERVAL": "1h",
        },
    )
    notify.wait_for("READY=1")
    replacement = dbfactory.make_db(tmp_path / "restored.db")
    stuck = dbfactory.stuck_question(replacement, age_s=60)
    for suffix in ("-wal", "-shm"):
        (tmp_path / f"opencode.db{suffix}").unlink(missing_ok=True)
    shutil.move(replacement, db)  # a restored backup: same path, new inode
    wait_until(
        lambda: part_status(db, stuck.part_id) == "error", timeout=60, what="repair in the replaced DB"
    )
    assert any(line.get("event") == "database replaced" for line in daemon.log_lines())


def test_second_sigint_forces_exit(tmp_path, notify, daemons):
    db = dbfactory.make_db(tmp_path / "opencode.db")
    daemon = daemons(tmp_path, [db], notify=notify)
    notify.wait_for("READY=1")
    daemon.signal(signal.SIGINT)
    daemon.signal(signal.SIGINT)
    code = daemon.proc.wait(timeout=30)
    assert code in (0, 128 + signal.SIGINT)


@pytest.mark.parametrize("quiet_after_s", [0.0, 0.05, 0.25, 0.45, 0.5, 0.55, 0.7])
@pytest.mark.xfail(
    strict=False,
    reason="open bug, 1 failure in 21 cases here: a commit just as a pass reads may wait for the next poll "
    "(default 1 m); see the closing note of this landing",
)
def test_commit_as_the_stream_goes_quiet_is_seen(tmp_path, notify, daemons, quiet_after_s):
    """While commits stream the watcher stops listening until the due pass drains its events. The last
    commit of a stream — placed around the debounce window (0.5 s) — must still be seen: with the poll an
    hour away, only a file event can bring it to a pass."""
    db = dbfactory.make_db(tmp_path / "opencode.db")
    sid = dbfactory.add_session(db)
    mid = dbfactory.add_message(db, sid, role="assistant", completed=True)
    streamed = dbfactory.add_text_part(db, sid, mid, text="")
    daemon = daemons(tmp_path, [db], notify=notify, env={"OPENCODE_WATCHDOGD_WATCH__POLL_INTERVAL": "1h"})
    notify.wait_for("READY=1")
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout=10000")
        for i in range(100):  # ~1 s of streaming, one commit each
            conn.execute(
                "UPDATE part SET data=?, time_updated=? WHERE id=?",
                (dbfactory.compact({"type": "text", "text": "x" * i}), dbfactory.now_ms(), streamed),
            )
            time.sleep(0.01)
        time.sleep(quiet_after_s)
        conn.execute("BEGIN IMMEDIATE")
        stuck = dbfactory.stuck_question(conn, age_s=0)
        conn.execute("COMMIT")
        # The connection stays open: its close would be a second event that hides a missed commit.
        status = daemon.wait_status(
            lambda s: any(c["part_id"] == stuck.part_id for c in s["candidates"]),
            timeout=30,
            what="the last commit of the stream seen",
        )
        assert "change" in status["last_pass"]["reasons"]
    finally:
        conn.close()
