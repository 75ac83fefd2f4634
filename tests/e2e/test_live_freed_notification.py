"""A live session freed by the running daemon is told on the desktop (real opencode, real session bus)."""

from __future__ import annotations

import json
import os
import shutil
import time
from datetime import datetime

import pytest

from tests.support.notification_server import NotificationBus
from tests.support.opencode import PINNED_VERSIONS, OpencodeServer
from tests.support.prometheus import free_port, scrape, value
from tests.support.watchdog import Watchdog, assert_freed, start_stuck

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        shutil.which("dbus-run-session") is None and not os.environ.get("CI"),
        reason="dbus-run-session missing (Debian package dbus)",
    ),
]


# The free itself is tested on every release elsewhere; telling about it does not depend on the release.
@pytest.mark.parametrize("opencode_version", [PINNED_VERSIONS[0], PINNED_VERSIONS[-1]])
def test_the_daemon_tells_the_desktop_it_freed_a_live_session(
    opencode_server: OpencodeServer, opencode_version, tmp_path
) -> None:
    server = opencode_server
    bus = NotificationBus(tmp_path / "bus")
    try:
        watchdog = Watchdog(
            tmp_path, server.db_path, policy={"tools": {"question": "2s"}}, watch={"debounce": "0.1s"}
        )
        port = free_port()
        env = {
            "DBUS_SESSION_BUS_ADDRESS": bus.address,
            "OPENCODE_WATCHDOGD_METRICS__LISTEN": f"127.0.0.1:{port}",
        }
        with watchdog.daemon(env=env):
            session, part = start_stuck(server)
            deadline = time.monotonic() + 90
            while not bus.calls():
                assert time.monotonic() < deadline, f"no notification\n{watchdog.daemon_log()}"
                time.sleep(0.05)
            time.sleep(1.0)  # the patch of the part that follows the free is not told separately
            calls = bus.calls()
            metrics = scrape(f"http://127.0.0.1:{port}/metrics")
        actions = watchdog.actions()
        log = watchdog.daemon_log()
    finally:
        bus.stop()
    assert_freed(server, session["id"], part, session["directory"])
    [call] = calls
    assert call["summary"] == "opencode session freed" and call["hints"]["urgency"] == 1
    assert call["body"].startswith("Freed session “") and call["body"].endswith(
        f"” in {session['directory']}: question unanswered for 2s"
    ), call["body"]
    assert "SCRIPT:question" not in call["body"]  # the prompt is conversation content
    # The operator's view of the same free: counted by route and outcome, the server's version seen.
    assert value(metrics, "opencode_watchdogd_actions_total", route="reject-question", outcome="done") == 1
    assert value(metrics, "opencode_watchdogd_actions_total", route="abort", outcome="done") == 0
    [build] = [labels for name, labels in metrics if name == "opencode_watchdogd_build_info"]
    assert dict(build)["opencode_versions"] == opencode_version
    [free] = [a for a in actions if a["route"] == "reject-question"]
    assert free["outcome"] == "done"
    # Told after the free was journaled; how long after the action finished is printed for the record (not
    # asserted: a loaded machine decides it; 0.02 s on the project's machine).
    assert call["at"] >= free["time"]
    [done] = [
        line
        for line in map(_json, log.splitlines())
        if line.get("event") == "action done" and line.get("route") == "reject-question"
    ]
    finished = datetime.fromisoformat(done["timestamp"]).timestamp()
    print(f"notification {call['at'] - finished:.3f}s after the free finished")


def _json(line: str) -> dict:
    try:
        return json.loads(line)
    except ValueError:
        return {}
