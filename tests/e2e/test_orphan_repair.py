"""Orphans left by a dead opencode, repaired by `reap` and by the running daemon; opencode agrees after."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.daemonproc import DaemonProcess, NotifySocket, wait_until
from tests.support.opencode import OpencodeServer
from tests.support.watchdog import assert_finished_through_api

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


def watchdogd(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCODE_")}
    full_env.update({"PYTHONPATH": str(REPO), **(env or {})})
    return subprocess.run(
        [sys.executable, "-m", "watchdogd", *args], env=full_env, capture_output=True, text=True, timeout=60
    )


def stuck(server: OpencodeServer):
    session = server.create_session()
    server.prompt_async(session["id"], "Please ask me. SCRIPT:question")
    return session["id"], session["directory"], server.wait_for_running_part(session["id"])


def test_reap_repairs_an_orphan_and_undo_restores_it(opencode_server: OpencodeServer, tmp_path: Path) -> None:
    server = opencode_server
    sid, directory, part = stuck(server)
    state = tmp_path / "state"

    # While opencode holds the DB and its API is not used, the expired part is reported, never written.
    held = watchdogd(
        "reap",
        "--db",
        str(server.db_path),
        "--state-dir",
        str(state),
        env={
            "OPENCODE_WATCHDOGD_POLICY__TOOLS__QUESTION": "0s",
            "OPENCODE_WATCHDOGD_LIVE__DISCOVER": "false",
        },
    )
    assert held.returncode == 1, held.stdout + held.stderr
    assert "reported" in held.stdout
    assert server.db_message(part.message_id)["data"]["time"].get("completed") is None

    server.kill()
    grace0 = {"OPENCODE_WATCHDOGD_POLICY__ORPHAN_GRACE": "0s"}
    scan = watchdogd("scan", "--json", "--db", str(server.db_path), "--state-dir", str(state), env=grace0)
    assert scan.returncode == 1, scan.stderr
    [record] = json.loads(scan.stdout)
    assert (record["part_id"], record["owner"], record["verdict"], record["route"]) == (
        part.part_id,
        "none",
        "expired",
        "db-repair",
    )

    reap = watchdogd("reap", "--db", str(server.db_path), "--state-dir", str(state), env=grace0)
    assert reap.returncode == 0, reap.stdout + reap.stderr
    assert list((state / "backups").glob("*/*.db")), "a full copy is taken before the first write"
    again = watchdogd("reap", "--db", str(server.db_path), "--state-dir", str(state), env=grace0)
    assert again.returncode == 0 and "nothing due" in again.stdout

    undo = watchdogd("undo", "--last", "--state-dir", str(state))
    assert undo.returncode == 0, undo.stdout + undo.stderr
    with server.db() as conn:
        data = json.loads(conn.execute("SELECT data FROM part WHERE id=?", (part.part_id,)).fetchone()[0])
    assert data["state"]["status"] == "running"

    # An undone part is left alone until its row changes again (then the usual rules apply).
    left = watchdogd("reap", "--db", str(server.db_path), "--state-dir", str(state), env=grace0)
    assert left.returncode == 0 and "nothing due" in left.stdout, left.stdout + left.stderr
    writer = sqlite3.connect(server.db_path, timeout=10)
    try:
        row = writer.execute("SELECT data FROM part WHERE id=?", (part.part_id,)).fetchone()[0]
        assert json.loads(row)["state"]["status"] == "running"
        data["state"]["metadata"] = {"moved": True}  # the row changes (as a write of opencode's would)
        writer.execute(
            "UPDATE part SET data=?, time_updated=time_updated+1 WHERE id=?",
            (json.dumps(data, separators=(",", ":")), part.part_id),
        )
        writer.commit()
    finally:
        writer.close()
    assert (
        watchdogd("reap", "--db", str(server.db_path), "--state-dir", str(state), env=grace0).returncode == 0
    )
    server.restart()
    assert_finished_through_api(server, sid, directory, part)


def test_running_daemon_repairs_when_opencode_dies(opencode_server: OpencodeServer, tmp_path: Path) -> None:
    server = opencode_server
    sid, directory, part = stuck(server)
    notify = NotifySocket(tmp_path / "notify.sock")
    daemon = DaemonProcess(
        tmp_path,
        [server.db_path],
        notify=notify,
        env={
            "OPENCODE_WATCHDOGD_POLICY__ORPHAN_GRACE": "1s",
            "OPENCODE_WATCHDOGD_WATCH__POLL_INTERVAL": "1h",
        },
    )
    try:
        notify.wait_for("READY=1", timeout=90)
        status = daemon.wait_status(lambda s: s["candidates"], what="the live question listed")
        assert status["candidates"][0]["verdict"] == "keep"  # a live owner: hours, not seconds
        server.kill()

        def repaired() -> bool:
            with server.db() as conn:
                row = conn.execute("SELECT data FROM part WHERE id=?", (part.part_id,)).fetchone()
            return json.loads(row[0])["state"]["status"] == "error"

        # The poll is an hour away: only the daemon's own wake-ups (the DB closed, the grace's deadline)
        # repair it.
        wait_until(repaired, timeout=60, what="the daemon's repair")
    finally:
        assert daemon.stop() == 0
        notify.close()
    server.restart()
    assert_finished_through_api(server, sid, directory, part)
