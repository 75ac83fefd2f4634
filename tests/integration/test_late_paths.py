"""DBs and data dirs that appear after the daemon started: found by file events, not by the poll.

The daemon watches the nearest existing ancestor of a missing directory and moves the watch down as the
path is created. Every test sets `watch.poll_interval` to an hour and waits at most 30 s: a repair seen
here came from a file event (a slow machine may delay it, never turn it into a poll).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests import dbfactory
from tests.integration.daemonproc import DaemonProcess, wait_until

pytestmark = pytest.mark.integration
ENV = {"OPENCODE_WATCHDOGD_POLICY__ORPHAN_GRACE": "1s", "OPENCODE_WATCHDOGD_WATCH__POLL_INTERVAL": "1h"}
WAIT_S = 30  # generous on a loaded machine, and far below the hour-long poll


def _repaired(db: Path, part_id: str) -> bool:
    try:
        return dbfactory.read_data(db, "part", part_id)["state"]["status"] == "error"
    except Exception:  # noqa: BLE001  # the file is being created: not yet
        return False


def _ready(daemon: DaemonProcess) -> dict:
    return daemon.wait_status(lambda s: s["passes"] >= 1, timeout=WAIT_S, what="the first pass")


def _waiting_lines(daemon: DaemonProcess) -> list[dict]:
    return [line for line in daemon.log_lines() if line.get("event") == "waiting for databases to appear"]


def test_daemon_started_before_the_data_dir_exists(tmp_path, daemons):
    data_dir = tmp_path / "data" / "opencode"  # $XDG_DATA_HOME/opencode; not even $XDG_DATA_HOME exists
    daemon = daemons(tmp_path, [], env=ENV)
    _ready(daemon)
    [line] = _waiting_lines(daemon)
    assert line["level"] == "info" and line["databases"] == [str(data_dir / "opencode.db")]
    assert line["watching"] == [str(tmp_path)]
    db = dbfactory.make_db(data_dir / "opencode.db")  # mkdir -p, then the file: the watch moves down twice
    stuck = dbfactory.stuck_question(db, age_s=0)
    wait_until(lambda: _repaired(db, stuck.part_id), timeout=WAIT_S, what="the orphan of a DB that appeared")
    assert len(_waiting_lines(daemon)) == 1  # said once, at start
    assert any(line.get("event") == "database appeared" for line in daemon.log_lines())


def test_opencode_db_in_a_directory_that_does_not_exist_yet(tmp_path, daemons):
    db = tmp_path / "elsewhere" / "deep" / "custom.db"
    daemon = daemons(tmp_path, [], env={**ENV, "OPENCODE_DB": str(db)})
    _ready(daemon)
    [line] = _waiting_lines(daemon)
    assert line["databases"] == [str(db)] and line["watching"] == [str(tmp_path)]
    dbfactory.make_db(db)
    stuck = dbfactory.stuck_question(db, age_s=7 * 86400)  # a week old: due at once
    wait_until(lambda: _repaired(db, stuck.part_id), timeout=WAIT_S, what="the orphan of $OPENCODE_DB")


def test_a_db_deleted_and_created_again(tmp_path, daemons):
    db = dbfactory.make_db(tmp_path / "data" / "opencode" / "opencode.db")
    daemon = daemons(tmp_path, [db], env=ENV)
    _ready(daemon)
    assert _waiting_lines(daemon) == []
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    daemon.wait_status(lambda s: not s["databases"][0]["exists"], timeout=WAIT_S, what="the DB seen gone")
    dbfactory.make_db(db)
    stuck = dbfactory.stuck_question(db, age_s=0)
    wait_until(lambda: _repaired(db, stuck.part_id), timeout=WAIT_S, what="the orphan of the re-created DB")


def test_the_whole_data_dir_removed_and_created_again(tmp_path, daemons):
    data_dir = tmp_path / "data" / "opencode"
    db = dbfactory.make_db(data_dir / "opencode.db")
    daemon = daemons(tmp_path, [], env=ENV)
    _ready(daemon)
    shutil.rmtree(tmp_path / "data")
    daemon.wait_status(lambda s: not s["databases"][0]["exists"], timeout=WAIT_S, what="the DB seen gone")
    dbfactory.make_db(db)
    stuck = dbfactory.stuck_question(db, age_s=0)
    wait_until(
        lambda: _repaired(db, stuck.part_id), timeout=WAIT_S, what="the orphan in the re-created data dir"
    )


def test_a_second_db_in_the_data_dir_is_discovered(tmp_path, daemons):
    data_dir = tmp_path / "data" / "opencode"
    dbfactory.make_db(data_dir / "opencode.db")
    daemon = daemons(tmp_path, [], env=ENV)
    _ready(daemon)
    other = dbfactory.make_db(data_dir / "opencode-dev.db")
    stuck = dbfactory.stuck_question(other, age_s=0)
    wait_until(
        lambda: _repaired(other, stuck.part_id), timeout=WAIT_S, what="the orphan of a new opencode-*.db"
    )
    status = daemon.wait_status(lambda s: len(s["databases"]) == 2, timeout=WAIT_S, what="both DBs listed")
    assert {d["path"] for d in status["databases"]} == {str(data_dir / "opencode.db"), str(other)}
