"""Orphans left by a dead opencode, repaired by `reap` and by the running daemon; opencode agrees after."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.daemonproc import DaemonProcess, NotifySocket, wait_until
from tests.support.opencode import OpencodeServer

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


def watchdogd(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCODE_")}
    full_env.update({"PYTHONPATH": str(REPO), **(env or {})})
    return subprocess.run([sys.executable, "-m", "watchdogd", *args], env=full_env, capture_output=True, text=True,
                          timeout=60)


def stuck(server: OpencodeServer):
    session = server.create_session()
    server.prompt_async(session["id"], "Please ask me. SCRIPT:question")
    return session["id"], session["directory"], server.wait_for_running_part(session["id"])


def assert_finished_through_api(server: OpencodeServer, sid: str, directory: str, part) -> None:
    """What a user sees after a restart: the call ended as abandoned, the turn is over, the session works."""
    assert server.session_status(directory) == {}
    [entry] = [m for m in server.messages(sid) if m["info"]["id"] == part.message_id]
    assert entry["info"]["time"].get("completed")
    assert entry["info"]["error"]["name"] == "MessageAbortedError"
    [tool] = [p for p in entry["parts"] if p.get("callID") == part.call_id]
    assert tool["state"]["status"] == "error"
    assert tool["state"]["error"].startswith("Abandoned by opencode-watchdogd")
    assert tool["state"]["metadata"]["interrupted"] is True
    assert server.delete_message(sid, part.message_id, directory) == 200
    server.prompt_async(sid, "thanks, carry on")

    def answered():  # prompt_async returns before the run starts: wait for the reply itself
        last = server.messages(sid)[-1]["info"]
        return last["role"] == "assistant" and last["time"].get("completed") and last

    assert wait_until(answered, timeout=30, what="a reply to the new prompt").get("finish") == "stop"


def test_reap_repairs_an_orphan_and_undo_restores_it(opencode_server: OpencodeServer, tmp_path: Path) -> None:
    server = opencode_server
    sid, directory, part = stuck(server)
    state = tmp_path / "state"

    # While opencode holds the DB and its API is not used, the expired part is reported, never written.
    held = watchdogd("reap", "--db", str(server.db_path), "--state-dir", str(state),
                     env={"OPENCODE_WATCHDOGD_POLICY__TOOLS__QUESTION": "0s", "OPENCODE_WATCHDOGD_LIVE__DISCOVER": "false"})
    assert held.returncode == 1, held.stdout + held.stderr
    assert "reported" in held.stdout
    assert server.db_message(part.message_id)["data"]["time"].get("completed") is None

    server.kill()
    grace0 = {"OPENCODE_WATCHDOGD_POLICY__ORPHAN_GRACE": "0s"}
    scan = watchdogd("scan", "--json", "--db", str(server.db_path), "--state-dir", str(state), env=grace0)
    assert scan.returncode == 1, scan.stderr
    [record] = json.loads(scan.stdout)
    assert (record["part_id"], record["owner"], record["verdict"], record["route"]) == (
        part.part_id, "none", "expired", "db-repair")

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

    assert watchdogd("reap", "--db", str(server.db_path), "--state-dir", str(state), env=grace0).returncode == 0
    server.restart()
    assert_finished_through_api(server, sid, directory, part)


def test_running_daemon_repairs_when_opencode_dies(opencode_server: OpencodeServer, tmp_path: Path) -> None:
    server = opencode_server
    sid, directory, part = stuck(server)
    notify = NotifySocket(tmp_path / "notify.sock")
    daemon = DaemonProcess(tmp_path, [server.db_path], notify=notify,
                           env={"OPENCODE_WATCHDOGD_POLICY__ORPHAN_GRACE": "1s",
                                "OPENCODE_WATCHDOGD_WATCH__POLL_INTERVAL": "1h"})
    try:
        notify.wait_for("READY=1", timeout=30)
        status = daemon.wait_status(lambda s: s["candidates"], what="the live question listed")
        assert status["candidates"][0]["verdict"] == "keep"  # a live owner: hours, not seconds
        killed = time.monotonic()
        server.kill()

        def repaired() -> bool:
            with server.db() as conn:
                row = conn.execute("SELECT data FROM part WHERE id=?", (part.part_id,)).fetchone()
            return json.loads(row[0])["state"]["status"] == "error"

        wait_until(repaired, timeout=15, what="the daemon's repair")
        assert time.monotonic() - killed <= 1 + 2  # orphan_grace + 2 s, no command, no file change
    finally:
        assert daemon.stop() == 0
        notify.close()
    server.restart()
    assert_finished_through_api(server, sid, directory, part)
