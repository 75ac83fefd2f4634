"""`undo --last` under a daemon that ran for a while: the last pass that wrote, not every repair since start."""

from __future__ import annotations

import json

import pytest

from tests import dbfactory
from tests.integration.daemonproc import DaemonProcess, wait_until
from tests.reliability.conftest import scenario
from tests.reliability.helpers import GRACE0, add_orphans, cli, pair_states
from watchdogd.journal import Journal

pytestmark = pytest.mark.integration


@scenario(
    "cas",
    "the daemon repairs an orphan in DB 1, then (a later pass) one in DB 2; it is stopped and "
    "`undo --last` runs",
    "one journal run per pass that writes: only DB 2's repair (the most recent run that wrote, across DBs) "
    "is restored; DB 1's repair stays",
)
def test_undo_last_is_the_last_pass_that_wrote(tmp_path, observe):
    first = dbfactory.make_db(tmp_path / "one" / "opencode.db")
    second = dbfactory.make_db(tmp_path / "two" / "opencode.db")
    daemon = DaemonProcess(
        tmp_path, [first, second], env={**GRACE0, "OPENCODE_WATCHDOGD_WATCH__POLL_INTERVAL": "1s"}
    )
    try:
        daemon.wait_status(lambda s: s["passes"] >= 1, timeout=60, what="first pass")
        early = add_orphans(first, 1)
        wait_until(
            lambda: set(pair_states(first, early).values()) == {"repaired"}, timeout=60, what="DB 1 repaired"
        )
        late = add_orphans(second, 1)
        wait_until(
            lambda: set(pair_states(second, late).values()) == {"repaired"}, timeout=60, what="DB 2 repaired"
        )
    finally:
        assert daemon.stop() == 0
    undo = cli(tmp_path, "undo", "--last")
    assert undo.returncode == 0, undo.stdout + undo.stderr
    assert pair_states(second, late) == {late[0].part_id: "untouched"}
    assert pair_states(first, early) == {early[0].part_id: "repaired"}
    observe("undo --last exit 0: DB 2's part and message restored, DB 1's repair kept")


@scenario(
    "cas",
    "`undo --last` of 20 repairs after opencode touched the assistant message of 10 of them (as it "
    "does while a session goes on)",
    "each pair is undone whole or not at all (part and message in one compare-and-set transaction): the 10 "
    "untouched pairs restored, the 10 touched ones left repaired and listed as NOT restored; exit 1",
)
def test_undo_is_both_rows_or_neither(tmp_path, observe):
    db = dbfactory.make_db(tmp_path / "opencode.db")
    orphans = add_orphans(db, 20)
    assert cli(tmp_path, "reap", "--db", str(db), env=GRACE0).returncode == 0
    touched = orphans[:10]
    with dbfactory.connection(db) as conn:
        for orphan in touched:
            data = dbfactory.read_data(conn, "message", orphan.message_id)
            data["tokens"] = {"input": 1, "output": 2}  # opencode updated it after the repair
            conn.execute("UPDATE message SET data=? WHERE id=?", (dbfactory.compact(data), orphan.message_id))
    undo = cli(tmp_path, "undo", "--last")
    assert undo.returncode == 1, undo.stdout + undo.stderr
    states = pair_states(db, orphans)
    assert not [s for s in states.values() if s.startswith("HALF")], states
    assert {states[o.part_id] for o in touched} == {"repaired"}  # neither row restored
    assert {states[o.part_id] for o in orphans[10:]} == {"untouched"}
    assert all(f"NOT restored part {o.part_id}" in undo.stdout for o in touched), undo.stdout
    observe("exit 1: 10 pairs restored whole, 10 left repaired (NOT restored, listed); no half-undone pair")


@scenario(
    "cas",
    "`undo` of a repair after the session moved on (a newer user prompt and assistant reply); then "
    "`undo --force --json`",
    "refused with one line per row ('the session moved on (2 newer message(s) since) … use --force'), exit 1, "
    "nothing written; with --force both rows restored, the JSON lists them, exit 0",
)
def test_undo_refuses_when_the_session_moved_on(tmp_path, observe):
    db = dbfactory.make_db(tmp_path / "opencode.db")
    [orphan] = add_orphans(db, 1)
    assert cli(tmp_path, "reap", "--db", str(db), env=GRACE0).returncode == 0
    later = dbfactory.now_ms() + 1000
    dbfactory.add_message(db, orphan.session_id, role="user", created_ms=later)
    dbfactory.add_message(db, orphan.session_id, completed=True, created_ms=later + 1)
    before = dbfactory.snapshot(db)
    undo = cli(tmp_path, "undo", "--last")
    assert undo.returncode == 1, undo.stdout + undo.stderr
    assert (
        f"NOT restored part {orphan.part_id}: the session moved on (2 newer message(s) since)" in undo.stdout
    )
    assert "use --force" in undo.stdout and dbfactory.snapshot(db) == before
    forced = cli(tmp_path, "undo", "--last", "--force", "--json")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    [result] = json.loads(forced.stdout)
    assert result["restored"] == [f"part {orphan.part_id}", f"message {orphan.message_id}"]
    assert result["not_restored"] == [] and result["undo_action"]
    assert pair_states(db, [orphan]) == {orphan.part_id: "untouched"}
    observe(
        "undo: exit 1, 'NOT restored part …: the session moved on (2 newer message(s) since) … (use --force "
        "…)', nothing written",
        "undo --force --json: exit 0, both rows listed as restored, rows back as before",
    )


def _full_row(db, table: str, row_id: str) -> tuple:
    """time_updated, then every column of one row, with SQLite's own types (an integer 5 and a text "5" differ)."""
    with dbfactory.connection(db) as conn:
        query = f"SELECT time_updated, typeof(time_updated), * FROM {table} WHERE id = ?"
        return conn.execute(query, (row_id,)).fetchone()


@scenario(
    "cas",
    "`reap` repairs an orphan whose rows opencode last wrote 2 h ago, then `undo --last`",
    "every column of both rows comes back: the part and the message equal their before-images byte for byte, "
    "`time_updated` included (the whole DB equals its state before the repair)",
)
def test_undo_restores_both_rows_byte_for_byte(tmp_path, observe):
    db = dbfactory.make_db(tmp_path / "opencode.db")
    [orphan] = add_orphans(db, 1)
    part, message = _full_row(db, "part", orphan.part_id), _full_row(db, "message", orphan.message_id)
    before = dbfactory.snapshot(db)
    assert cli(tmp_path, "reap", "--db", str(db), env=GRACE0).returncode == 0
    repaired = _full_row(db, "part", orphan.part_id)
    assert repaired[0] > part[0]  # the repair moved time_updated on
    undo = cli(tmp_path, "undo", "--last")
    assert undo.returncode == 0, undo.stdout + undo.stderr
    assert _full_row(db, "part", orphan.part_id) == part
    assert _full_row(db, "message", orphan.message_id) == message
    assert dbfactory.snapshot(db) == before
    observe("after undo both rows equal their before-images in every column (time_updated 2 h old again)")


@scenario(
    "cas",
    "`undo --last` when the last run that acted freed a live session through its server (reject-question: "
    "a request, no DB row written), after an earlier reap's DB repair; then `undo ID` of that request",
    "the request is named as nothing to restore (not 'NOT restored'), exit 0, the earlier repair kept "
    "(with --json: `[]` on stdout, the line on stderr); "
    "`undo ID` of the request: one line, exit 2",
)
def test_undo_of_a_request_to_the_server(tmp_path, observe):
    db = dbfactory.make_db(tmp_path / "opencode.db")
    [orphan] = add_orphans(db, 1)
    assert cli(tmp_path, "reap", "--db", str(db), env=GRACE0).returncode == 0
    journal = Journal(tmp_path / "state")  # the live layer's record of a question rejected through the server
    journal.next_run("run")
    with journal.journaled(
        db=str(db),
        session_id=orphan.session_id,
        message_id=orphan.message_id,
        part_id=orphan.part_id,
        tool="question",
        route="reject-question",
        reason="question running for 2h, over policy.tools.question = 2h",
        part_before=orphan.part_before,
        server_version="1.18.33",
    ) as action:
        action.settle("done", "rejected question que_1; verified: absent from /session/status")
    journal.close()
    undo = cli(tmp_path, "undo", "--last")
    assert undo.returncode == 0 and "NOT restored" not in undo.stdout, undo.stdout + undo.stderr
    assert f"#{action.id} reject-question" in undo.stdout and "nothing to restore" in undo.stdout, undo.stdout
    assert pair_states(db, [orphan]) == {orphan.part_id: "repaired"}
    as_json = cli(tmp_path, "undo", "--last", "--json")
    assert as_json.returncode == 0 and json.loads(as_json.stdout) == [], as_json.stdout + as_json.stderr
    assert "nothing to restore" in as_json.stderr, as_json.stderr
    one = cli(tmp_path, "undo", str(action.id))
    assert one.returncode == 2 and one.stdout == "" and len(one.stderr.splitlines()) == 1, one.stderr
    assert "request to the opencode server" in one.stderr and "Traceback" not in one.stderr, one.stderr
    observe(f"undo --last exit 0: '{undo.stdout.splitlines()[0]}'; undo {action.id}: exit 2, one line")
