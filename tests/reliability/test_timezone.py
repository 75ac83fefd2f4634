"""A local time zone Python's datetime cannot hold (POSIX TZ allows offsets up to 24 h, datetime less than 24 h)."""

from __future__ import annotations

import re

import pytest

from tests import dbfactory
from tests.integration.daemonproc import DaemonProcess
from tests.reliability.conftest import scenario
from tests.reliability.helpers import add_orphans, cli

pytestmark = pytest.mark.integration

TZ_24H = {"TZ": "UTC+24"}  # valid POSIX (hours 0-24); glibc's offset is then a whole day


@scenario(
    "signals_clock",
    "the daemon runs with TZ=UTC+24 (a POSIX zone 24 h behind) while an orphan waits for its grace (a next "
    "deadline to show); then `status` and `history` in that zone",
    "no pass fails: STATUS= shows the next deadline (in UTC, the zone cannot be represented), `status` and "
    "`history` exit 0 without a traceback",
)
def test_a_24_hour_zone_does_not_fail_a_pass(tmp_path, observe):
    db = dbfactory.make_db(tmp_path / "opencode.db")
    add_orphans(db, 1, age_s=0)
    env = {**TZ_24H, "OPENCODE_WATCHDOGD_POLICY__ORPHAN_GRACE": "1h"}
    daemon = DaemonProcess(tmp_path, [db], env=env)
    try:
        status = daemon.wait_status(lambda s: s["passes"] >= 1, timeout=60, what="first pass")
        assert daemon.proc.poll() is None, daemon.own_log()
        assert "next deadline" in status["status_line"], status
        shown = cli(tmp_path, "status", state_dir=daemon.state_dir, env=TZ_24H)
        assert shown.returncode == 0 and "Traceback" not in shown.stderr, shown.stdout + shown.stderr
    finally:
        assert daemon.stop() == 0
    assert not any("pass failed" in str(line.get("event")) for line in daemon.log_lines())
    cli(tmp_path, "reap", "--db", str(db), env={"OPENCODE_WATCHDOGD_POLICY__ORPHAN_GRACE": "0s"})
    history = cli(tmp_path, "history", env=TZ_24H)
    assert history.returncode == 0 and "db-repair" in history.stdout, history.stdout + history.stderr
    # the row is compared with the committed doc: the deadline's clock time differs at every run
    line = re.sub(r"\b\d{2}:\d{2}:\d{2}\b", "HH:MM:SS", status["status_line"])
    observe(f"STATUS= '{line}'; status and history exit 0, no 'pass failed'")
