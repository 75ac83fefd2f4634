"""journal.keep: a daemon prunes old settled journal rows at start, never one an allowed undo still needs."""

from __future__ import annotations

import sqlite3
import time

import pytest

from tests import dbfactory
from tests.integration.daemonproc import DaemonProcess
from tests.reliability.conftest import scenario
from tests.reliability.helpers import GRACE0, add_orphans, cli, journal_actions, pair_states
from watchdogd.journal import Journal

pytestmark = pytest.mark.integration

DAY = 86400


def _history(state_dir, db) -> dict[str, int]:
    """Earlier runs' rows, as a journal holds them after months of use (aged below)."""
    journal = Journal(state_dir)
    base = dict(db=str(db), session_id="ses_old", message_id="msg_old", tool="question", reason="orphan")
    ids = {}
    try:
        for name, part, route, outcome in [
            ("old repair", "prt_a", "db-repair", "done"),
            ("old failure", "prt_b", "db-repair", "failed"),
            ("old planned", "prt_c", "db-repair", "planned"),
            ("older undo", "prt_d", "undo", "done"),
            ("last undo", "prt_d", "undo", "done"),
            ("young repair", "prt_e", "db-repair", "done"),
        ]:
            journal.next_run("run")  # one run per pass, as the daemon journals
            extra = {"undo_of": 1, "part_after": '{"restored":1}'} if route == "undo" else {}
            if outcome == "planned":  # a DB no longer watched: no pass can settle its row from the DB
                extra["db"] = str(db.parent / "gone" / "opencode.db")
            ids[name] = journal.record(**{**base, **extra}, part_id=part, route=route, outcome=outcome)
    finally:
        journal.close()
    return ids


def _age(state_dir, days: dict[int, float]) -> None:
    conn = sqlite3.connect(state_dir / "journal.db")
    try:
        for action_id, age in days.items():
            conn.execute("UPDATE actions SET time = ? WHERE id = ?", (time.time() - age * DAY, action_id))
        conn.commit()
    finally:
        conn.close()


@scenario(
    "state_dir",
    "a journal with rows 100 days old (done, failed, planned, two undos of one part), a 10-day-old repair and "
    "a 100-day-old last run that wrote (a `reap`); the daemon starts with `journal.keep = 30d`",
    "at start the old settled rows are pruned (logged once: 'journal pruned', 3 actions); kept: the `planned` "
    "row, the part's last undo, the young repair and the whole last run that wrote — `undo --last` still "
    "restores it (exit 0); no run is left without actions",
)
def test_journal_keep_prunes_old_settled_rows_at_start(tmp_path, observe):
    db = dbfactory.make_db(tmp_path / "opencode.db")
    state = tmp_path / "state"
    ids = _history(state, db)
    [orphan] = add_orphans(db, 1)
    assert cli(tmp_path, "reap", "--db", str(db), env=GRACE0).returncode == 0
    [last] = [a["id"] for a in journal_actions(state) if a["part_id"] == orphan.part_id]
    _age(state, {**{i: 100 for i in ids.values()}, ids["young repair"]: 10, last: 100})

    daemon = DaemonProcess(tmp_path, [db], env={**GRACE0, "OPENCODE_WATCHDOGD_JOURNAL__KEEP": "30d"})
    try:
        daemon.wait_status(lambda s: s["passes"] >= 1, timeout=60, what="first pass")
    finally:
        assert daemon.stop() == 0
    kept = {a["id"] for a in journal_actions(state)}
    assert kept == {ids["old planned"], ids["last undo"], ids["young repair"], last}, kept
    pruned = [line for line in daemon.log_lines() if line.get("event") == "journal pruned"]
    assert [line["actions"] for line in pruned] == [3], pruned
    conn = sqlite3.connect(state / "journal.db")
    try:
        empty_runs = conn.execute("SELECT count(*) FROM runs WHERE id NOT IN (SELECT run_id FROM actions)")
        assert empty_runs.fetchone()[0] == 0
    finally:
        conn.close()

    undo = cli(tmp_path, "undo", "--last")
    assert undo.returncode == 0, undo.stdout + undo.stderr
    assert pair_states(db, [orphan]) == {orphan.part_id: "untouched"}
    observe(
        "'journal pruned' actions=3 at start; left: the planned row, the last undo of the part, the 10-day-old "
        "repair and the last run that wrote; `undo --last` exit 0, the orphan's rows restored"
    )
