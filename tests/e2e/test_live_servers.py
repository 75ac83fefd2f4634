"""Finding the owner: password-protected servers, a holder without API, a restarted server (real opencode)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from tests.support.opencode import RELEASES, OpencodeServer
from tests.support.watchdog import (
    ONE_SECOND_POLICY,
    Watchdog,
    abandoned,
    assert_freed,
    assert_prompt_completes,
    start_stuck,
)

pytestmark = pytest.mark.e2e


def test_a_password_protected_server_configured_and_discovered(
    opencode_factory, opencode_version, tmp_path
) -> None:
    server = opencode_factory(opencode_version, password="s3cret")
    first, first_part = start_stuck(server)
    time.sleep(1.1)

    # Discovered, without credentials: reported as "auth needed" with the setting to add; nothing written.
    plain = Watchdog(tmp_path, server.db_path, policy=ONE_SECOND_POLICY)
    [record] = plain.json("scan")
    assert record["owner"] == f"live-unreachable:{server.server_pid}"
    assert "auth needed" in record["owner_detail"] and "OPENCODE_SERVER_PASSWORD" in record["owner_detail"]
    assert [o["outcome"] for o in plain.json("reap")] == ["reported"]
    assert server.session_status(first["directory"]) == {first["id"]: {"type": "busy"}}

    # Configured ([[servers]] with a password file), discovery off.
    secret = tmp_path / "server-password"
    secret.write_text("s3cret\n")
    configured = Watchdog(
        tmp_path,
        server.db_path,
        name="configured",
        policy=ONE_SECOND_POLICY,
        live={"discover": False},
        servers=[{"url": server.url, "password_file": str(secret)}],
    )
    [outcome] = configured.json("reap")
    assert (outcome["route"], outcome["outcome"]) == ("reject-question", "done"), outcome
    assert_freed(server, first["id"], first_part, first["directory"])

    # Discovered, with the password in the daemon's environment (the variables opencode itself reads).
    second, second_part = start_stuck(server)
    time.sleep(1.1)
    [outcome] = plain.json("reap", env={"OPENCODE_SERVER_PASSWORD": "s3cret"})
    assert (outcome["route"], outcome["outcome"]) == ("reject-question", "done"), outcome
    assert_freed(server, second["id"], second_part, second["directory"])
    assert "s3cret" not in configured.daemon_log() + json.dumps(configured.actions())


def test_a_holder_without_api_is_reported_and_never_written(
    opencode_server: OpencodeServer, tmp_path
) -> None:
    server = opencode_server
    # Like a TUI started without --port: an `opencode` process holding the DB, listening on nothing.
    hold = (
        "import sqlite3, sys, time; c = sqlite3.connect(sys.argv[1]); "
        "c.execute('SELECT count(*) FROM part').fetchall(); print('ready', flush=True); time.sleep(300)"
    )
    tui = subprocess.Popen(
        ["opencode", "-c", hold, str(server.db_path)],
        executable=sys.executable,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert tui.stdout.readline().strip() == "ready"
        session, part = start_stuck(server)
        server.kill()  # the real owner is gone; only the API-less holder remains, older than the part
        watchdog = Watchdog(tmp_path, server.db_path, policy={**ONE_SECOND_POLICY, "orphan_grace": "0s"})
        time.sleep(1.1)
        before = server.tool_parts(session["id"])
        [record] = watchdog.json("scan")
        assert record["owner"] == f"live-unreachable:{tui.pid}"
        assert record["owner_detail"] == f"opencode TUI, pid {tui.pid}, no HTTP API"
        assert record["route"].startswith("report")
        [outcome] = watchdog.json("reap")
        assert outcome["outcome"] == "reported", outcome
        assert server.tool_parts(session["id"]) == before
        assert "completed" not in server.db_message(part.message_id)["data"]["time"]
        assert not (tmp_path / "watchdog-state" / "journal.db").exists() or watchdog.actions() == []
    finally:
        tui.kill()
        tui.wait()


def test_an_orphan_on_a_restarted_server_is_patched_through_it(
    opencode_server: OpencodeServer, opencode_version, tmp_path
) -> None:
    server = opencode_server
    session, part = start_stuck(server)
    sid, directory = session["id"], session["directory"]
    server.kill()
    server.restart()
    server.session_status(directory)  # as a UI does at start; 1.14 opens its DB only when first asked
    watchdog = Watchdog(tmp_path, server.db_path, policy={**ONE_SECOND_POLICY, "orphan_grace": "0s"})
    [record] = watchdog.json("scan")
    assert (record["owner"], record["route"]) == (f"live-idle:{server.url}", "patch-part")
    [outcome] = watchdog.json("reap")
    assert (outcome["route"], outcome["outcome"]) == ("patch-part", "done"), outcome
    patch, finish = watchdog.actions()
    assert (patch["route"], patch["server_version"], finish["route"]) == (
        "patch-part",
        opencode_version,
        "db-repair",
    )
    assert finish["part_after"] is None and finish["message_after"]  # the part went through the server
    [row] = server.tool_parts(sid, "question")
    assert abandoned(row["data"])
    if RELEASES[opencode_version].event_log:  # 1.17+ keep an event log: the PATCH went into it too
        with server.db() as conn:
            [last] = conn.execute(
                "SELECT data FROM event WHERE aggregate_id = ? AND type LIKE 'message.part.updated%'"
                " ORDER BY seq DESC LIMIT 1",
                (sid,),
            ).fetchall()
        assert "opencode_watchdogd" in last["data"]
    assert_freed(server, sid, part, directory)
    assert_prompt_completes(server, sid, directory)
