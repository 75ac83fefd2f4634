"""Desktop notifications from a real daemon on a real private session bus (`dbus-run-session`), received
by a test-side `org.freedesktop.Notifications` server that records every call. A bus or server that fails
is a reliability scenario: tests/reliability/test_notifiers.py."""

from __future__ import annotations

import os
import shutil
import time

import pytest

from tests import dbfactory
from tests.integration.daemonproc import DaemonProcess, Holder, wait_until
from tests.support.notification_server import NotificationBus

# Under CI a missing dbus-run-session fails the tests (.ci/run installs it) instead of skipping them.
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        shutil.which("dbus-run-session") is None and not os.environ.get("CI"),
        reason="dbus-run-session missing (Debian package dbus)",
    ),
]

FAST = {"OPENCODE_WATCHDOGD_POLICY__ORPHAN_GRACE": "0s", "OPENCODE_WATCHDOGD_WATCH__DEBOUNCE": "0.1s"}


@pytest.fixture
def started(tmp_path):
    """Start daemons and buses; everything is stopped at the end of the test."""
    daemons: list[DaemonProcess] = []
    buses: list[NotificationBus] = []

    class Start:
        @staticmethod
        def bus(mode: str = "record") -> NotificationBus:
            bus = NotificationBus(tmp_path / f"bus-{len(buses)}", mode)
            buses.append(bus)
            return bus

        @staticmethod
        def daemon(dbs, env) -> DaemonProcess:
            daemon = DaemonProcess(tmp_path, dbs, env=env)
            daemons.append(daemon)
            return daemon

    yield Start
    for daemon in daemons:
        daemon.stop()
    for bus in buses:
        bus.stop()


def repaired(db, part_ids) -> bool:
    return all(dbfactory.read_data(db, "part", p)["state"]["status"] == "error" for p in part_ids)


def test_ten_orphans_at_start_make_one_notification(tmp_path, started):
    bus = started.bus()
    db = dbfactory.make_db(tmp_path / "opencode.db")
    parts = [dbfactory.stuck_question(db, age_s=7200 + i).part_id for i in range(10)]
    daemon = started.daemon(
        [db], FAST | {"DBUS_SESSION_BUS_ADDRESS": bus.address, "OPENCODE_WATCHDOGD_NOTIFY__ORPHANS": "true"}
    )
    wait_until(lambda: repaired(db, parts), timeout=60, what="ten repairs")
    [call] = wait_until(bus.calls, timeout=60, what="a notification")
    time.sleep(1.0)  # nothing else follows
    assert bus.calls() == [call]
    assert (
        call["app_name"] == "opencode-watchdogd"
        and call["summary"] == "opencode: 10 abandoned tool calls repaired"
    )
    assert call["body"] == "in 10 sessions:\n“Fake session title” in /home/user/proj (10 sessions)"
    assert call["hints"]["urgency"] == 1
    assert daemon.proc.poll() is None


def test_orphans_are_not_told_unless_asked(tmp_path, started):
    bus = started.bus()
    db = dbfactory.make_db(tmp_path / "opencode.db")
    part = dbfactory.stuck_question(db, age_s=7200).part_id
    daemon = started.daemon([db], FAST | {"DBUS_SESSION_BUS_ADDRESS": bus.address})
    wait_until(lambda: repaired(db, [part]), timeout=60, what="repair")
    daemon.wait_status(lambda s: s["counts"]["repaired"] == 1, what="the repair published")
    time.sleep(1.0)
    assert bus.calls() == []


def test_a_stuck_part_held_by_an_api_less_process_is_told_once_with_what_to_do(tmp_path, started):
    bus = started.bus()
    db = dbfactory.make_db(tmp_path / "opencode.db")
    sid = dbfactory.add_session(db, title="Fix \x1b[31mthe <b>build</b>\n", directory="/home/user/a&b")
    holder = Holder(db)  # started before the part: it may own it, and it has no API
    try:
        stuck = dbfactory.stuck_question(db, age_s=0, session=sid, directory="/home/user/a&b")
        daemon = started.daemon(
            [db],
            FAST
            | {
                "DBUS_SESSION_BUS_ADDRESS": bus.address,
                "OPENCODE_WATCHDOGD_POLICY__TOOLS__QUESTION": "1s",
                "OPENCODE_WATCHDOGD_WATCH__POLL_INTERVAL": "1s",
            },
        )
        [call] = wait_until(bus.calls, timeout=60, what="the stuck notification")
        # Several more passes report it again: still one notification.
        passes = daemon.wait_status(lambda s: True)["passes"]
        daemon.wait_status(lambda s: s["passes"] >= passes + 4, timeout=30, what="four more passes")
        assert bus.calls() == [call]
    finally:
        holder.kill()
    assert call["summary"] == "opencode session stuck" and call["hints"]["urgency"] == 2
    body = call["body"]
    assert body.startswith(
        "Session “Fix \\x1b[31mthe &lt;b&gt;build&lt;/b&gt;\\x0a” in /home/user/a&amp;b is stuck "
        "(question unanswered for "
    )
    assert f"cannot be asked (pid {holder.proc.pid} holds the DB " in body  # the live layer's own why follows
    assert "Answer or cancel it in that opencode (a TUI without --port has no API), or quit it" in body
    assert stuck.part_id not in body  # people get titles, not ids
    assert "SCRIPT:question" not in body  # never conversation content


@pytest.mark.parametrize("desktop, warned", [("auto", False), ("true", True)])
def test_without_a_session_bus(tmp_path, started, desktop, warned):
    db = dbfactory.make_db(tmp_path / "opencode.db")
    part = dbfactory.stuck_question(db, age_s=7200).part_id
    daemon = started.daemon(
        [db],
        FAST | {"OPENCODE_WATCHDOGD_NOTIFY__DESKTOP": desktop, "OPENCODE_WATCHDOGD_NOTIFY__ORPHANS": "true"},
    )
    wait_until(lambda: repaired(db, [part]), timeout=60, what="repair")
    daemon.wait_status(lambda s: s["counts"]["repaired"] == 1, what="the repair published")
    mentions = [line for line in daemon.log_lines() if "desktop" in str(line.get("event", ""))]
    assert len(mentions) == (1 if warned else 0), mentions


def test_a_later_burst_of_the_same_kind_updates_the_notification_in_place(tmp_path, started):
    bus = started.bus()
    db = dbfactory.make_db(tmp_path / "opencode.db")
    first = [dbfactory.stuck_question(db, age_s=7200).part_id for _ in range(2)]
    started.daemon(
        [db], FAST | {"DBUS_SESSION_BUS_ADDRESS": bus.address, "OPENCODE_WATCHDOGD_NOTIFY__ORPHANS": "true"}
    )
    wait_until(lambda: repaired(db, first), timeout=60, what="first repairs")
    [shown] = wait_until(bus.calls, timeout=60, what="the first notification")
    later = [dbfactory.stuck_question(db, age_s=7200).part_id for _ in range(3)]
    wait_until(lambda: repaired(db, later), timeout=60, what="later repairs")
    # The later three may be repaired in one pass or several: each update counts all of them so far.
    calls = wait_until(
        lambda: (c := bus.calls())[-1]["summary"] == "opencode: 5 abandoned tool calls repaired" and c,
        timeout=60,
        what="the update counting five",
    )
    assert shown["replaces_id"] == 0 and shown["summary"] == "opencode: 2 abandoned tool calls repaired"
    assert [c["replaces_id"] for c in calls[1:]] == [shown["id"]] * (
        len(calls) - 1
    )  # one notification on screen
