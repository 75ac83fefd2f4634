"""Desktop notifications that cannot be delivered never hold up a pass: a session bus without a notification
server, a server that never answers, a bus that goes away while the daemon runs."""

from __future__ import annotations

import os
import shutil

import pytest

from tests import dbfactory
from tests.integration.daemonproc import DaemonProcess, wait_until
from tests.reliability.conftest import scenario
from tests.support.notification_server import NotificationBus

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        shutil.which("dbus-run-session") is None and not os.environ.get("CI"),
        reason="dbus-run-session missing (Debian package dbus)",
    ),
]

ENV = {
    "OPENCODE_WATCHDOGD_POLICY__ORPHAN_GRACE": "0s",
    "OPENCODE_WATCHDOGD_WATCH__DEBOUNCE": "0.1s",
    "OPENCODE_WATCHDOGD_NOTIFY__ORPHANS": "true",
}
BUS_MODES = {"no-server": "absent", "hung-server": "hang", "bus-gone": "record"}


def _repaired(db, parts) -> bool:
    return all(dbfactory.read_data(db, "part", p)["state"]["status"] == "error" for p in parts)


@pytest.mark.parametrize("case", list(BUS_MODES))
@scenario(
    "notifiers",
    "notify.orphans = true and the desktop path is broken: a session bus with no "
    "org.freedesktop.Notifications owner, an owner that never answers, or the bus killed after the first "
    "notification; orphans keep arriving",
    "every orphan repaired as usual, the daemon keeps running, one warning for the whole failure (bounded "
    "2 s per attempt, on the sender thread)",
)
def test_orphans_are_repaired_whatever_the_bus_does(tmp_path, case, observe):
    bus = NotificationBus(tmp_path / "bus", BUS_MODES[case])
    db = dbfactory.make_db(tmp_path / "opencode.db")
    daemon = DaemonProcess(tmp_path, [db], env=ENV | {"DBUS_SESSION_BUS_ADDRESS": bus.address})
    try:
        first = [dbfactory.stuck_question(db, age_s=7200).part_id]
        wait_until(lambda: _repaired(db, first), timeout=60, what="first repair")
        if case == "bus-gone":
            wait_until(bus.calls, timeout=60, what="the first notification")
            bus.stop()
        later = [dbfactory.stuck_question(db, age_s=7200).part_id for _ in range(3)]
        wait_until(lambda: _repaired(db, later), timeout=60, what="later repairs")
        warnings = wait_until(
            lambda: [
                line
                for line in daemon.log_lines()
                if line.get("event", "").startswith("desktop notification not delivered")
            ],
            timeout=60,
            what="the warning",
        )
        daemon.wait_status(lambda s: s["counts"]["repaired"] == 4, what="every repair published")
        more = [dbfactory.stuck_question(db, age_s=7200).part_id]
        wait_until(lambda: _repaired(db, more), timeout=60, what="one more repair")
        daemon.wait_status(lambda s: s["counts"]["repaired"] == 5, what="that repair published")
        warnings = [
            line
            for line in daemon.log_lines()
            if line.get("event", "").startswith("desktop notification not delivered")
        ]
        running = daemon.proc.poll() is None
    finally:
        daemon.stop()
        bus.stop()
    assert running and len(warnings) == 1
    observe("5 of 5 orphans repaired", "daemon running", f"1 warning ({_kind(warnings[0]['error'])})")


def _kind(error: str) -> str:
    """What the warning says went wrong (the exact OSError of a lost bus depends on timing)."""
    if error.startswith("DBusErrorResponse") and "ServiceUnknown" in error:
        return "no notification server"
    if error.startswith("TimeoutError"):
        return "timed out"
    if error.startswith(
        ("BrokenPipeError", "ConnectionResetError", "ConnectionRefusedError", "FileNotFoundError")
    ):
        return "bus connection lost"
    return error
