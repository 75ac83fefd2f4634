"""An undo under a running daemon sticks: the daemon sees the part again and leaves it alone until it changes."""

from __future__ import annotations

import json

import pytest

from tests import dbfactory
from tests.integration.daemonproc import DaemonProcess, wait_until
from tests.reliability.conftest import scenario
from tests.reliability.helpers import GRACE0, add_orphans, cli, pair_states

pytestmark = pytest.mark.integration


def _undone_reason(status: dict, part_id: str) -> str | None:
    for cand in status.get("candidates", []):
        if cand["part_id"] == part_id and cand["verdict"] == "keep" and "undone at" in cand["reason"]:
            return cand["reason"]
    return None


def _opencode_like_write(db, part_id: str) -> None:
    """What opencode does to a running part (its metadata moves on): new data, a newer time_updated."""
    with dbfactory.connection(db) as conn:
        data = dbfactory.read_data(conn, "part", part_id)
        data["state"]["metadata"] = {"progress": 1}
        conn.execute(
            "UPDATE part SET data = ?, time_updated = ? WHERE id = ?",
            (dbfactory.compact(data), dbfactory.now_ms(), part_id),
        )


@scenario(
    "cas",
    "a running daemon (full rescan only hourly) repairs an orphan; `undo --last` runs beside it; the daemon "
    "passes on; then opencode writes the part again",
    "the daemon's next incremental pass sees the part running again and leaves it alone: `status` and `scan` "
    "show it as keep, 'undone at …'; two more passes later it is still running; once the row changes again "
    "it is repaired at the next pass",
)
def test_undo_sticks_under_a_running_daemon(tmp_path, observe):
    db = dbfactory.make_db(tmp_path / "opencode.db")
    env = {**GRACE0, "OPENCODE_WATCHDOGD_WATCH__POLL_INTERVAL": "1s"}
    daemon = DaemonProcess(tmp_path, [db], env=env)
    try:
        daemon.wait_status(lambda s: s["passes"] >= 1, timeout=60, what="first pass")
        [orphan] = add_orphans(db, 1)
        wait_until(lambda: pair_states(db, [orphan])[orphan.part_id] == "repaired", timeout=60, what="repair")
        undo = cli(tmp_path, "undo", "--last")
        assert undo.returncode == 0, undo.stdout + undo.stderr
        assert pair_states(db, [orphan]) == {orphan.part_id: "untouched"}
        seen = daemon.wait_status(
            lambda s: _undone_reason(s, orphan.part_id), timeout=60, what="undone part seen"
        )
        passes = seen["passes"]
        daemon.wait_status(lambda s: s["passes"] >= passes + 2, timeout=60, what="two more passes")
        assert pair_states(db, [orphan]) == {orphan.part_id: "untouched"}

        status = cli(tmp_path, "status", "--json")
        assert _undone_reason(json.loads(status.stdout)["status"], orphan.part_id), (
            status.stdout + status.stderr
        )
        text = cli(tmp_path, "status").stdout
        assert f"{orphan.part_id}: undone at " in text and "left alone until its row changes" in text, text
        scan = cli(tmp_path, "scan", "--db", str(db), env=GRACE0)
        assert f"{orphan.part_id}: " in scan.stdout and "undone at" in scan.stdout, scan.stdout + scan.stderr
        reap = cli(tmp_path, "reap", "--db", str(db), env=GRACE0)
        assert reap.returncode == 0, reap.stdout + reap.stderr
        assert pair_states(db, [orphan]) == {orphan.part_id: "untouched"}

        _opencode_like_write(db, orphan.part_id)
        wait_until(
            lambda: pair_states(db, [orphan])[orphan.part_id] == "repaired", timeout=60, what="re-repair"
        )
    finally:
        assert daemon.stop() == 0
    observe(
        "after `undo --last` the daemon's next pass listed the part as keep ('undone at …'); 2+ passes, `scan` "
        "and `reap` later it was still running",
        "after an opencode-like write to the part it was repaired again by the daemon",
    )
